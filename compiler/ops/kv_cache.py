"""Writing into an LLM's KV cache: ``kv_cache_write``.

- ``kv_cache_write``(k_cache, v_cache, k_rows, v_rows) {offset} -> (k_cache', v_cache'):
  caches [batch, kv_heads, max_ctx, head_dim] (any float dtype), rows [batch, kv_heads, n,
  head_dim] (float); the caches with rows ``offset .. offset + n`` replaced by the rows cast to
  the cache dtype. ``offset`` is usually symbolic (the decode step's past length).

Why an op: a decode step that took the past as an input and concatenated the new row copied
the whole cache twice per layer and step (host -> tensor, then the concat). With this op the
runtime keeps the cache as persistent tensors, the step writes its new rows in place (the
backends emit the call in place: output i aliases cache input i) and attention reads the
cache's first ``kv_length`` rows (``attention``'s ``kv_length`` attribute). The reference
semantics stay functional (the reference interpreter returns updated copies), so the graph
is still an ordinary dataflow graph for every pass; only the backend call aliases.
"""
from __future__ import annotations

import numpy as np

from .. import dims as D
from .. import dtypes as T
from ..errors import ShapeError
from . import register_op


def _kv_cache_write_infer(in_types, attrs):
    if len(in_types) != 4 or any(t is None for t in in_types):
        raise ShapeError("expects inputs (k_cache, v_cache, k_rows, v_rows)")
    kc, vc, kr, vr = in_types
    if "offset" not in attrs:
        raise ShapeError("needs an 'offset' attribute (the first cache row to write)")
    for name, t in (("k_cache", kc), ("v_cache", vc), ("k_rows", kr), ("v_rows", vr)):
        if t.rank != 4:
            raise ShapeError(f"{name} must be [batch, kv_heads, len, head_dim], got "
                             f"{D.shape_str(t.shape)}")
        if not T.is_float(t.dtype):
            raise ShapeError(f"{name} must be float, got {t.dtype}")
    if kc != vc:
        raise ShapeError(f"k_cache {kc} and v_cache {vc} differ")
    if kr.shape != vr.shape:
        raise ShapeError(f"k_rows {D.shape_str(kr.shape)} and v_rows {D.shape_str(vr.shape)} differ")
    for ax, what in ((0, "batch"), (1, "kv_heads"), (3, "head_dim")):
        if not D.equal(kc.shape[ax], kr.shape[ax]) and \
                isinstance(kc.shape[ax], int) == isinstance(kr.shape[ax], int):
            raise ShapeError(f"cache and rows differ in {what} ({kc.shape[ax]} vs {kr.shape[ax]})")
    off, n, ctx = attrs["offset"], kr.shape[2], kc.shape[2]
    if all(isinstance(x, int) for x in (off, n, ctx)) and (off < 0 or off + n > ctx):
        raise ShapeError(f"rows {off}..{off + n} do not fit a cache of {ctx}")
    return [kc, vc]


def _kv_cache_write_ref(inputs, attrs):
    kc, vc, kr, vr = inputs
    off, n = int(attrs["offset"]), kr.shape[2]
    if off < 0 or off + n > kc.shape[2]:
        raise ShapeError(f"KV cache overflow: rows {off}..{off + n} do not fit a cache of "
                         f"{kc.shape[2]}")
    outs = []
    for cache, rows in ((kc, kr), (vc, vr)):
        c = np.array(cache, copy=True)
        c[:, :, off:off + n] = rows.astype(c.dtype)
        outs.append(c)
    return outs


register_op("kv_cache_write", _kv_cache_write_infer, _kv_cache_write_ref)

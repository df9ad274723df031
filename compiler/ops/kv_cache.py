"""Writing into an LLM's KV cache: ``kv_cache_write``.

- ``kv_cache_write``(k_cache, v_cache, k_rows, v_rows) {offset} -> (k_cache', v_cache'):
  caches [batch, kv_heads, max_ctx, head_dim], rows [batch, kv_heads, n, head_dim]; the caches
  with rows ``offset .. offset + n`` replaced by the rows cast to the cache dtype. ``offset`` is
  usually symbolic (the decode step's past length). Float caches take float rows; an int8
  cache takes int8 rows (the codes of ``quantize_rows_int8``; its scales go into a float cache
  of head_dim 1 through a second write).
- ``quantize_rows_int8``(x) -> (codes int8 [..., E], scales float32 [..., 1]): symmetric int8
  per row of the last axis: scale = max|x| / 127, codes = round_half_even(x / scale) (a zero
  row has scale 0 and codes 0). The int8 KV cache stores K and V rows this way: a quarter of
  fp32's bytes and one scale per token and head, so a row's error is relative to that row.

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
from ..ir import TensorType
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
    if kc.dtype == "int8":
        if kr.dtype != "int8":
            raise ShapeError(f"an int8 cache takes int8 rows (quantize_rows_int8), got {kr.dtype}")
    elif not (T.is_float(kc.dtype) and T.is_float(kr.dtype)):
        raise ShapeError(f"caches must be float or int8 and rows float, got {kc.dtype} and "
                         f"{kr.dtype}")
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


def _quantize_rows_infer(in_types, attrs):
    if len(in_types) != 1 or in_types[0] is None:
        raise ShapeError("expects one input")
    x = in_types[0]
    if not T.is_float(x.dtype) or x.rank < 1:
        raise ShapeError(f"x must be a float tensor of rank >= 1, got {x}")
    return [TensorType("int8", x.shape), TensorType("float32", x.shape[:-1] + (1,))]


def _quantize_rows_ref(inputs, attrs):
    x = inputs[0].astype(np.float32)
    scale = (np.max(np.abs(x), axis=-1, keepdims=True) / np.float32(127)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))
    codes = np.clip(np.rint(x / safe), -127, 127).astype(np.int8)
    return [codes, scale]


register_op("quantize_rows_int8", _quantize_rows_infer, _quantize_rows_ref)

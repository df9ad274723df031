"""The in-place KV cache write kernel (op ``kv_cache_write``) and its Relax call.

TE cannot express a kernel that writes into one of its inputs, so this one is written in TIR:
rows ``offset .. offset + n`` of both caches get the new rows (cast to the cache dtype), and a
run-time assertion refuses a write past the cache's end (an out-of-range ``offset`` would
otherwise corrupt memory). The call is ``call_tir_inplace``: its two outputs alias the two
cache inputs, so a decode step writes its K/V rows where the next steps read them, with no
copy of the cache at all.
"""
from __future__ import annotations

from tvm import relax, tirx
from tvm.script import tirx as T


def kv_cache_write_func(kv_heads: int, head_dim: int, cache_dtype: str, rows_dtype: str
                        ) -> tirx.PrimFunc:
    """The PrimFunc ``(k_cache, v_cache, k_rows, v_rows, offset)`` writing in place."""
    KV, E = int(kv_heads), int(head_dim)

    @T.prim_func(private=True, s_tir=True)
    def kv_cache_write(var_kc: T.handle, var_vc: T.handle, var_kr: T.handle, var_vr: T.handle,
                       offset: T.int64):
        T.func_attr({"llmc_kind": "kv_write", "tirx.noalias": True})
        batch = T.int64()
        ctx = T.int64()
        n = T.int64()
        kc = T.match_buffer(var_kc, (batch, KV, ctx, E), cache_dtype)
        vc = T.match_buffer(var_vc, (batch, KV, ctx, E), cache_dtype)
        kr = T.match_buffer(var_kr, (batch, KV, n, E), rows_dtype)
        vr = T.match_buffer(var_vr, (batch, KV, n, E), rows_dtype)
        assert offset >= T.int64(0) and offset + n <= ctx, \
            "kv_cache_write: the new rows do not fit the KV cache (past + new > max context)"
        for b, h, r, e in T.grid(batch, KV, n, E):
            with T.sblock("kv_write"):
                vb, vh, vr_, ve = T.axis.remap("SSSS", [b, h, r, e])
                kc[vb, vh, offset + vr_, ve] = T.Cast(cache_dtype, kr[vb, vh, vr_, ve])
                vc[vb, vh, offset + vr_, ve] = T.Cast(cache_dtype, vr[vb, vh, vr_, ve])

    return kv_cache_write


def emit_kv_cache_write(bb: relax.BlockBuilder, name: str, k_cache, v_cache, k_rows, v_rows,
                        offset: tirx.PrimExpr, kv_heads: int, head_dim: int, cache_dtype: str,
                        rows_dtype: str, cache_type: relax.TensorType):
    """Bind the in-place call; returns the (k_cache', v_cache') tuple (aliases of the inputs)."""
    func = kv_cache_write_func(kv_heads, head_dim, cache_dtype, rows_dtype)
    gv = bb.add_func(func, name)
    return bb.emit(relax.call_tir_inplace(gv, [k_cache, v_cache, k_rows, v_rows,
                                               relax.prim_value(offset)],
                                          [0, 1], [cache_type, cache_type]))

"""TE lowering of ``qlinear_int8_wo`` (int8 weight-only linear, compiler/ops/quant_w8.py).

Why it has the packed fp32 matmul's shape: the weight is stored in the same panel layout
([N/32, K, 32], int8 instead of float32) and the stages carry the same names (``matmul`` for
the full tiles of :data:`MTILE` rows, ``matmul_tail`` for the M % MTILE rest, a GEMV when
decoding, ``out`` for the epilogue), so the x86 schedule of the packed matmul applies as is
(kind ``matmul_packed``): 8x32 / 1x32 register tiles, parallel over the N panels, the 32 int8
codes of a panel row converted to float in registers right before the FMA. The per-channel
scale and the bias are applied once per output in ``out``, not per product.

``qlinear_int8_wo_grouped`` (one scale per group of K rows and output column) has the int4
kernel's shape instead (kind ``quant_int4``, backends/x86/schedule_quant.py, same stage names):
64-column panels; the rows after the full tiles (the decode GEMV) sum code * x over a group in
registers (``part4``) and multiply by the group's scale once (``qmm4_tail``); the full
:data:`MTILE`-row tiles (prefill) multiply by a fp32 32-column panel dequantized once per call
(``dequant4``, then ``qmm4``: the fp32 8x32 register tile).
"""
from __future__ import annotations

from tvm import te

from .lowering import _ld, lower, row_tiles, tile_rows_output
from .lowering_quant import _i64, dequant_tile_matmul


@lower("qlinear_int8_wo", kind="matmul_packed")
def _qlinear_int8_wo(ins, attrs, ctx):
    """x @ int8 panels (converted in registers), then * scale[n] + bias[n]."""
    x, w, s = ins[:3]
    bias = ins[3] if len(ins) > 3 else None
    k = int(attrs["k"])
    blk = int(w.shape[2])
    npad = w.shape[0] * blk
    m, unravel, mfull, has_full, has_tail = row_tiles(x)

    def xv(r, kk):
        return _ld(x, *unravel(r), kk)

    def wv(j, kk):
        return w[j // blk, kk, j % blk].astype("float32")
    cp = ct = None
    if has_full:
        rk = te.reduce_axis((0, k), "k")
        cp = te.compute((mfull, npad), lambda i, j: te.sum(xv(i, rk) * wv(j, rk), axis=rk),
                        name="matmul")
    if has_tail:
        rt = te.reduce_axis((0, k), "kt")
        ct = te.compute((m - mfull, npad),
                        lambda i, j: te.sum(xv(mfull + i, rt) * wv(j, rt), axis=rt),
                        name="matmul_tail")

    def finish(v, j):
        v = v * s[j]
        if bias is not None:
            v = v + bias[j]
        return v
    return [tile_rows_output(ctx.out_shape(), cp, ct, mfull, finish)]


@lower("qlinear_int8_wo_grouped", kind="quant_int4")
def _qlinear_int8_wo_grouped(ins, attrs, ctx):
    """int8 panels [N/64, K, 64], scales [N/64, K/G, 64]: prefill dequantizes a 32-column
    panel once, decode sums code * x per group and scales each group's sum once."""
    x, w, s = ins[:3]
    bias = ins[3] if len(ins) > 3 else None
    k, g = int(attrs["k"]), int(attrs["group_size"])
    pw = int(w.shape[2])
    npad = int(w.shape[0]) * pw
    ng = k // g
    m, unravel, mfull, has_full, has_tail = row_tiles(x)

    def xv(r, kk):
        return _ld(x, *unravel(r), kk).astype("float32")
    cp = ct = None
    if has_full:
        cp = dequant_tile_matmul(
            xv, lambda p, kk, c: w[p, kk, c].astype("float32") * s[p, kk // g, c],
            k, npad, pw, mfull)
    if has_tail:
        mt = m - mfull
        kp = te.reduce_axis((0, g), "kp")
        part = te.compute((mt, _i64(ng), _i64(npad)), lambda r, gi, j: te.sum(
            xv(mfull + r, gi * g + kp) * w[j // pw, gi * g + kp, j % pw].astype("float32"),
            axis=kp), name="part4")
        rg = te.reduce_axis((0, ng), "g")
        ct = te.compute((mt, _i64(npad)), lambda r, j: te.sum(
            s[j // pw, rg, j % pw] * part[r, rg, j], axis=rg), name="qmm4_tail")

    def finish(v, j):
        return v + bias[j] if bias is not None else v
    return [tile_rows_output(ctx.out_shape(), cp, ct, mfull, finish)]

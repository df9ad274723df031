"""TE lowering of ``qlinear_int8_wo`` (int8 weight-only linear, compiler/ops/quant_w8.py).

Why it has the packed fp32 matmul's shape: the weight is stored in the same panel layout
([N/32, K, 32], int8 instead of float32) and the stages carry the same names (``matmul`` for
the full tiles of :data:`MTILE` rows, ``matmul_tail`` for the M % MTILE rest, a GEMV when
decoding, ``out`` for the epilogue), so the x86 schedule of the packed matmul applies as is
(kind ``matmul_packed``): 8x32 / 1x32 register tiles, parallel over the N panels, the 32 int8
codes of a panel row converted to float in registers right before the FMA. The per-channel
scale and the bias are applied once per output in ``out``, not per product.
"""
from __future__ import annotations

from tvm import te, tirx

from .lowering import MTILE, _ld, flat_rows, lower, tile_rows_output


@lower("qlinear_int8_wo", kind="matmul_packed")
def _qlinear_int8_wo(ins, attrs, ctx):
    """x @ int8 panels (converted in registers), then * scale[n] + bias[n]."""
    x, w, s = ins[:3]
    bias = ins[3] if len(ins) > 3 else None
    k = int(attrs["k"])
    blk = int(w.shape[2])
    npad = w.shape[0] * blk
    m, unravel = flat_rows(x)
    static_m = int(m) if isinstance(m, tirx.IntImm) else None
    mfull = tirx.floordiv(m, MTILE) * MTILE
    has_full = static_m is None or static_m >= MTILE
    has_tail = static_m is None or static_m % MTILE != 0

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

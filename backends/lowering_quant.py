"""TE lowerings of the quantized ops (compiler/ops/quant.py).

Why separate stages: ``qlinear_int8`` quantizes the activation once (``quant_x``: scale, round
half to even, clip, +128 -> uint8) into a row-padded buffer, runs the integer GEMM
(``qmm``: uint8 x int8 -> int32 over the VNNI-packed weight) and rescales in the epilogue
(``out``: subtract 128 * colsum, multiply by x_scale * w_scale[n], add bias). The GEMM's
rows are padded to a multiple of :data:`MT` and laid out [M/MT, MT, N] so that the schedule
(backends/x86/schedule_quant.py) can tile it without predicates whatever M is (symbolic
batch*seq, 1 when decoding). ``qlinear_int4`` dequantizes the 4-bit codes inside the
reduction: the weight is read as packed bytes, which is the point of int4 on a memory-bound
decode path.
"""
from __future__ import annotations

from tvm import te, tirx

from .lowering import _ld, lower

MT = 4  # GEMM rows per register tile of the int8 kernel
NB, KB = 16, 4


def _i64(v: int) -> tirx.PrimExpr:
    return tirx.IntImm("int64", v)


def _rows(x: te.Tensor):
    """Number of rows M (product of the leading dims) and a function row -> lead indices."""
    lead = list(x.shape[:-1])
    m = _i64(1)
    for d in lead:
        m = m * d

    def unravel(r):
        idx = []
        for d in reversed(lead):
            idx.append(tirx.floormod(r, d))
            r = tirx.floordiv(r, d)
        return list(reversed(idx))
    return m, unravel


@lower("qlinear_int8", kind="quant_int8")
def _qlinear_int8(ins, attrs, ctx):
    """Quantize x, int8 GEMM with int32 accumulation, per-channel rescale epilogue."""
    x, w, s, cs = ins[:4]
    bias = ins[4] if len(ins) > 4 else None
    smooth = ins[5] if len(ins) > 5 else None
    n, k = int(attrs["n"]), int(attrs["k"])
    xs = float(attrs["x_scale"])
    zp = int(attrs.get("x_zero_point", 0))
    qmin = float(attrs.get("x_qmin", -127))
    kp = int(w.shape[1]) * KB
    npad = int(w.shape[0]) * NB
    m, unravel = _rows(x)
    static_m = int(m) if isinstance(m, tirx.IntImm) else None
    mt_rows = 1 if static_m is not None and static_m < MT else MT
    mt = tirx.floordiv(m + (mt_rows - 1), mt_rows)

    def qx(r, kk):
        rr = tirx.min(r, m - 1)
        kc = tirx.min(kk, _i64(k - 1))
        v = _ld(x, *unravel(rr), kc).astype("float32")
        if smooth is not None:
            v = v * smooth[kc]
        q = tirx.nearbyint(v / tirx.const(xs, "float32"))  # as the reference: no 1/s
        if zp:
            q = q + tirx.const(float(zp), "float32")
        q = tirx.max(tirx.min(q, tirx.const(127.0, "float32")), tirx.const(qmin, "float32"))
        val = (q.astype("int32") + 128).astype("uint8")
        ok = tirx.all(r < m, kk < k) if k < kp else r < m
        return tirx.if_then_else(ok, val, tirx.const(128, "uint8"))
    xq = te.compute((mt * mt_rows, _i64(kp)), qx, name="quant_x")
    red = te.reduce_axis((0, kp), "k")
    acc = te.compute(
        (mt, _i64(mt_rows), _i64(npad)),
        lambda a, b, j: te.sum(xq[a * mt_rows + b, red].astype("int32") *
                               w[j // NB, red // KB, j % NB, red % KB].astype("int32"), axis=red),
        name="qmm")
    oshape = ctx.out_shape()

    def epi(*idx):
        r = _i64(0)
        for d, i in zip(oshape[:-1], idx[:-1]):
            r = r * d + i
        j = idx[-1]
        a = acc[r // mt_rows, r % mt_rows, j] - cs[j] * (128 + zp)
        y = a.astype("float32") * (tirx.const(xs, "float32") * s[j])
        if bias is not None:
            y = y + bias[j]
        return y
    return [te.compute(oshape, epi, name="out")]


@lower("qlinear_int4", kind="quant_int4")
def _qlinear_int4(ins, attrs, ctx):
    """x @ dequant(w) with the 4-bit codes unpacked and rescaled inside the reduction."""
    x, w, s, z = ins[:4]
    bias = ins[4] if len(ins) > 4 else None
    k, g = int(attrs["k"]), int(attrs["group_size"])
    oshape = ctx.out_shape()
    red = te.reduce_axis((0, k), "k")

    def body(*idx):
        j = idx[-1]
        byte = w[red // 2, j]
        code = tirx.bitwise_and(tirx.shift_right(byte, ((red % 2) * 4).astype("uint8")),
                                tirx.const(15, "uint8"))
        wv = (code.astype("float32") - z[red // g, j].astype("float32")) * \
            s[red // g, j].astype("float32")
        return te.sum(_ld(x, *idx[:-1], red).astype("float32") * wv, axis=red)
    acc = te.compute(oshape, body, name="qmm4")

    def epi(*idx):
        v = acc[idx]
        if bias is not None:
            v = v + bias[idx[-1]].astype("float32")
        return v.astype(ctx.out_dtype())
    return [te.compute(oshape, epi, name="out")]

"""TE lowerings of the quantized ops (compiler/ops/quant.py, compiler/ops/quant_conv.py).

Why separate stages: ``qlinear_int8`` quantizes the activation once (``quant_x``: scale, round
half to even, clip, +128 -> uint8) into a row-padded buffer, runs the integer GEMM
(``qmm``: uint8 x int8 -> int32 over the VNNI-packed weight) and rescales in the epilogue
(``out``: subtract 128 * colsum, multiply by x_scale * w_scale[n], add bias). The GEMM's
rows are padded to a multiple of :data:`MT` and laid out [M/MT, MT, N] so that the schedule
(backends/x86/schedule_quant.py) can tile it without predicates whatever M is (symbolic
batch*seq, 1 when decoding). ``qconv2d_int8`` shares the GEMM and epilogue: its ``quant_x``
rows are patches gathered from x quantized once into a padded NHWC uint8 image (``xq_pad``).
``qlinear_int4`` reads its weight as packed 64-column panels: the decode GEMV sums
code * x per group before applying the group's scale / zero point (the packed bytes are the
cost on a memory-bound decode path); prefill's full row tiles run on dequantized fp32 panels.
"""
from __future__ import annotations

from typing import Callable

from tvm import te, tirx

from .lowering import PACK, _ld, flat_rows, lower, row_tiles, tile_rows_output

MT = 4  # GEMM rows per register tile of the int8 kernel
NB, KB = 16, 4


def _i64(v: int) -> tirx.PrimExpr:
    return tirx.IntImm("int64", v)


def _row_tile(m) -> int:
    static_m = int(m) if isinstance(m, tirx.IntImm) else None
    return 1 if static_m is not None and static_m < MT else MT


def _int8_gemm(qx, m, k: int, w: te.Tensor) -> tuple[te.Tensor, int]:
    """``quant_x`` [M padded, K padded] uint8 from ``qx(row, col)`` and the VNNI GEMM ``qmm``.

    ``qx`` is called only for rows < M and columns < K; the padding is 128 (the code of 0).
    Returns (qmm [M/mt, mt, N padded] int32, mt).
    """
    kp = int(w.shape[1]) * KB
    npad = int(w.shape[0]) * NB
    mt_rows = _row_tile(m)
    mt = tirx.floordiv(m + (mt_rows - 1), mt_rows)

    def body(r, kk):
        ok = tirx.all(r < m, kk < k) if k < kp else r < m
        return tirx.if_then_else(ok, qx(tirx.min(r, m - 1), tirx.min(kk, _i64(k - 1))),
                                 tirx.const(128, "uint8"))
    xq = te.compute((mt * mt_rows, _i64(kp)), body, name="quant_x")
    red = te.reduce_axis((0, kp), "k")
    acc = te.compute(
        (mt, _i64(mt_rows), _i64(npad)),
        lambda a, b, j: te.sum(xq[a * mt_rows + b, red].astype("int32") *
                               w[j // NB, red // KB, j % NB, red % KB].astype("int32"), axis=red),
        name="qmm")
    return acc, mt_rows


def _quant_u8(v, xs: float, zp: int = 0, qmin: float = -127.0):
    """float -> uint8 code + 128 as the reference: round half even of v / x_scale, clipped."""
    q = tirx.nearbyint(v / tirx.const(xs, "float32"))  # as the reference: no 1/s
    if zp:
        q = q + tirx.const(float(zp), "float32")
    q = tirx.max(tirx.min(q, tirx.const(127.0, "float32")), tirx.const(qmin, "float32"))
    return (q.astype("int32") + 128).astype("uint8")


def _rescale(acc, mt_rows: int, r, j, cs, s, xs: float, zp: int, bias):
    """The epilogue of one int32 sum: remove the u8 shift, per-channel scale, bias."""
    a = acc[r // mt_rows, r % mt_rows, j] - cs[j] * (128 + zp)
    y = a.astype("float32") * (tirx.const(xs, "float32") * s[j])
    return y + bias[j] if bias is not None else y


@lower("qlinear_int8", kind="quant_int8")
def _qlinear_int8(ins, attrs, ctx):
    """Quantize x, int8 GEMM with int32 accumulation, per-channel rescale epilogue."""
    x, w, s, cs = ins[:4]
    bias = ins[4] if len(ins) > 4 else None
    smooth = ins[5] if len(ins) > 5 else None
    k = int(attrs["k"])
    xs = float(attrs["x_scale"])
    zp = int(attrs.get("x_zero_point", 0))
    qmin = float(attrs.get("x_qmin", -127))
    m, unravel = flat_rows(x)

    def qx(r, kc):
        v = _ld(x, *unravel(r), kc).astype("float32")
        if smooth is not None:
            v = v * smooth[kc]
        return _quant_u8(v, xs, zp, qmin)
    acc, mt_rows = _int8_gemm(qx, m, k, w)
    oshape = ctx.out_shape()

    def epi(*idx):
        r = _i64(0)
        for d, i in zip(oshape[:-1], idx[:-1]):
            r = r * d + i
        return _rescale(acc, mt_rows, r, idx[-1], cs, s, xs, zp, bias)
    return [te.compute(oshape, epi, name="out")]


@lower("qconv2d_int8", kind="quant_int8")
def _qconv2d_int8(ins, attrs, ctx):
    """x quantized once into a padded NHWC uint8 image (``xq_pad``), patch rows gathered from
    it (channels innermost: contiguous runs), the int8 GEMM, the rescale epilogue to NCHW."""
    from llmc.ops.quant_conv import conv_geometry
    x, w, s, cs = ins[:4]
    bias = ins[4] if len(ins) > 4 else None
    k, xs = int(attrs["k"]), float(attrs["x_scale"])
    (kh, kw), (s0, s1), (d0, d1), (p0, p1, p2, p3) = conv_geometry(attrs)
    oshape = ctx.out_shape()
    nb, _, oh, ow = oshape
    c_in, h, wd = int(x.shape[1]), x.shape[2], x.shape[3]

    def pad_q(b, hh, ww, c):
        hi, wi = hh - p0, ww - p1
        inside = tirx.all(hi >= 0, hi < h, wi >= 0, wi < wd)
        val = x[b, c, tirx.max(tirx.min(hi, h - 1), 0), tirx.max(tirx.min(wi, wd - 1), 0)]
        return tirx.if_then_else(inside, _quant_u8(val.astype("float32"), xs),
                                 tirx.const(128, "uint8"))
    xqp = te.compute((x.shape[0], h + p0 + p2, wd + p1 + p3, _i64(c_in)), pad_q, name="xq_pad")

    def qx(r, kk):
        b, rest = tirx.floordiv(r, oh * ow), tirx.floormod(r, oh * ow)
        i, j = tirx.floordiv(rest, ow), tirx.floormod(rest, ow)
        uv, c = tirx.floordiv(kk, c_in), tirx.floormod(kk, c_in)
        u, v = tirx.floordiv(uv, kw), tirx.floormod(uv, kw)
        return xqp[b, i * s0 + u * d0, j * s1 + v * d1, c]
    acc, mt_rows = _int8_gemm(qx, nb * oh * ow, k, w)

    def epi(b, o, i, j):
        return _rescale(acc, mt_rows, (b * oh + i) * ow + j, o, cs, s, xs, 0, bias)
    return [te.compute(oshape, epi, name="out")]


def dequant_tile_matmul(xv: Callable, dq: Callable, k: int, npad: int, pw: int, mfull
                        ) -> te.Tensor:
    """The full MTILE-row tiles of the group-wise weight-only kernels (int4, grouped int8):
    ``dequant4``, the fp32 weight in PACK-column panels (``dq(panel, k, column)`` of the
    ``pw``-wide storage panels; K rows only when there is a full tile, so decoding dequantizes
    nothing), and ``qmm4`` = x @ it, which the schedule runs as the fp32 register tile."""
    def dq_packed(b, kk, jj):
        j = b * PACK + jj
        return dq(j // pw, kk, j % pw)
    kdq = _i64(k) * tirx.min(mfull, _i64(1))
    wdq = te.compute((_i64(npad // PACK), kdq, _i64(PACK)), dq_packed, name="dequant4")
    rk = te.reduce_axis((0, k), "k")
    return te.compute((mfull, _i64(npad)), lambda i, j: te.sum(
        xv(i, rk) * wdq[j // PACK, rk, j % PACK], axis=rk), name="qmm4")


@lower("qlinear_int4", kind="quant_int4")
def _qlinear_int4(ins, attrs, ctx):
    """int4 panels [N/64, K/2, 64]: prefill dequantizes, decode sums each group first.

    Rows split as :func:`lowering.matmul_packed` (M is symbolic: batch*seq, batch when
    decoding). The full tiles of :data:`MTILE` rows (``qmm4``) multiply by ``dequant4``, the
    fp32 weight in 32-column panels, which the schedule computes one panel at a time inside
    the parallel panel loop (once per call, reused by every row tile; K rows only when there
    is a full tile), so prefill runs the fp32 packed register tile. The M % MTILE remaining rows
    (``qmm4_tail``, the decode GEMV) stream the packed bytes once: per group,
    ``part4`` = sum_k code * x, then scale * (part4 - zero * ``xsum``), so each product costs
    one FMA and the scale / zero point are applied once per group, not per weight.
    """
    x, w, s, z = ins[:4]
    bias = ins[4] if len(ins) > 4 else None
    k, g = int(attrs["k"]), int(attrs["group_size"])
    pw = int(w.shape[2])
    npad = int(w.shape[0]) * pw
    ng = k // g
    m, unravel, mfull, has_full, has_tail = row_tiles(x)

    def xv(r, kk):
        return _ld(x, *unravel(r), kk).astype("float32")

    def nib(byte, hi):
        """Low (hi False), high (True) or (hi * 4)-shifted nibble of a byte, as float32."""
        b = byte.astype("int32")
        if hi is not True and hi is not False:
            b = tirx.shift_right(b, (hi * 4).astype("int32"))
        elif hi:
            return tirx.shift_right(b, tirx.const(4, "int32")).astype("float32")
        return tirx.bitwise_and(b, tirx.const(15, "int32")).astype("float32")
    cp = ct = None
    if has_full:
        def dq(p, kk, c):
            gi = kk // g
            code = nib(w[p, kk // 2, c], kk % 2)
            return (code - z[p, gi, c].astype("float32")) * s[p, gi, c].astype("float32")
        cp = dequant_tile_matmul(xv, dq, k, npad, pw, mfull)
    if has_tail:
        mt = m - mfull
        rs = te.reduce_axis((0, g), "ks")
        xs = te.compute((mt, _i64(ng)), lambda r, gi: te.sum(xv(mfull + r, gi * g + rs), axis=rs),
                        name="xsum")
        kp = te.reduce_axis((0, g // 2), "kp")

        def pbody(r, gi, j):
            byte = w[j // pw, gi * (g // 2) + kp, j % pw]
            kk = gi * g + 2 * kp
            return te.sum(xv(mfull + r, kk) * nib(byte, False) +
                          xv(mfull + r, kk + 1) * nib(byte, True), axis=kp)
        part = te.compute((mt, _i64(ng), _i64(npad)), pbody, name="part4")
        rg = te.reduce_axis((0, ng), "g")
        ct = te.compute((mt, _i64(npad)), lambda r, j: te.sum(
            s[j // pw, rg, j % pw].astype("float32") *
            (part[r, rg, j] - z[j // pw, rg, j % pw].astype("float32") * xs[r, rg]), axis=rg),
            name="qmm4_tail")

    def finish(v, j):
        if bias is not None:
            v = v + bias[j].astype("float32")
        return v.astype(ctx.out_dtype())
    return [tile_rows_output(ctx.out_shape(), cp, ct, mfull, finish)]

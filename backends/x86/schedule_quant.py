"""CPU schedules of the quantized kernels (backends/lowering_quant.py).

- ``quant_int8``: the activation quantizer (``quant_x``) parallel and vectorized; the integer
  GEMM (``qmm`` [M/4, 4, N] += u8[M, K] * s8 panels [N/16, K/4, 16, 4]) as a 4 x (up to)
  64 int32 register tile per (N panels, row tile), parallel over both, the (16 x 4) inner block
  tensorized onto AVX-512 VNNI ``vpdpbusd`` (one instruction = 16 outputs x 4 products), or
  the AVX-512BW emulation (vpmaddubsw + vpmaddwd) when the CPU lacks VNNI; the requantization
  epilogue (``out``) vectorized.
- ``quant_int4``: the full 8-row tiles run the fp32 packed matmul's 8 x 32 register tile on
  32-column panels dequantized once per call (parallel over panels); the other rows (the
  decode GEMV) stream the packed 64-wide panels, parallel over panels, one vectorized group
  sum per (row, group) in registers.

Entry point :func:`schedule_quant` (called by backends/x86/schedule.py for kinds starting with
``quant_``); it raises on failure so the caller's generic fallback applies.
"""
from __future__ import annotations

import functools

from tvm import s_tir

from ..lowering import MTILE
from .schedule import _blocks, _into_gemv, _loop_extent, _parallel_vectorize, parallel


LLMC_VNNI_INTRIN = "llmc_dot_16x4_vnni"
LLMC_AVX512_INTRIN = "llmc_dot_16x4_avx512"
PANELS = 4  # 16-wide N panels per register tile: MT x 4 = 16 independent VNNI accumulators


@functools.lru_cache(maxsize=1)
def _register_intrins() -> tuple[str, str]:
    """Register llmc's 16x4 u8*s8->i32 intrinsics (VNNI, and the AVX-512BW emulation).

    Why our own: importing ``tvm.s_tir.tensor_intrin`` (for TVM's ``dot_16x4_vnni``) imports
    every target's intrinsics (CUDA, ROCm, Hexagon...): 20-130 s per process here, which was
    most of an int8 build. And TVM's VNNI version passes the u8/s8 operands as <16 x i32>;
    LLVM >= 20 declares ``llvm.x86.avx512.vpdpbusd.512`` with <64 x i8> operands.
    """
    import tvm
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    bytes_operands = tvm.target.codegen.llvm_version_major() >= 20

    @T.prim_func(s_tir=True)
    def desc(A: T.Buffer((4,), "uint8", offset_factor=1),
             B: T.Buffer((16, 4), "int8", offset_factor=1),
             C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            for i in T.serial(0, 16):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def vnni(A: T.Buffer((4,), "uint8", offset_factor=1),
             B: T.Buffer((16, 4), "int8", offset_factor=1),
             C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            a_i32 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
            C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                C.vload([0], dtype="int32x16"),
                T.reinterpret(T.broadcast(a_i32, 16), dtype="uint8x64"),
                B.vload([0, 0], dtype="int8x64"),
                dtype="int32x16")

    @T.prim_func(s_tir=True)
    def vnni_i32(A: T.Buffer((4,), "uint8", offset_factor=1),
                 B: T.Buffer((16, 4), "int8", offset_factor=1),
                 C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            a_i32 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
            C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                C.vload([0], dtype="int32x16"),
                T.broadcast(a_i32, 16),
                T.reinterpret(B.vload([0, 0], dtype="int8x64"), dtype="int32x16"),
                dtype="int32x16")

    @T.prim_func(s_tir=True)
    def avx512(A: T.Buffer((4,), "uint8", offset_factor=1),
               B: T.Buffer((16, 4), "int8", offset_factor=1),
               C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            a_i32 = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
            red = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.pmaddubs.w.512"),
                T.reinterpret(T.broadcast(a_i32, 16), dtype="uint8x64"),
                B.vload([0, 0], dtype="int8x64"), dtype="int16x32")
            C[T.ramp(T.int32(0), 1, 16)] += T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.pmaddw.d.512"),
                red, T.int16x32(1), dtype="int32x16")

    for name, impl in ((LLMC_VNNI_INTRIN, vnni if bytes_operands else vnni_i32),
                       (LLMC_AVX512_INTRIN, avx512)):
        try:
            TensorIntrin.register(name, desc, impl)
        except Exception:  # already registered (module reloaded)
            pass
    return LLMC_VNNI_INTRIN, LLMC_AVX512_INTRIN


@functools.lru_cache(maxsize=1)
def dot_intrin() -> str | None:
    """Name of the 16x4 u8*s8->i32 tensor intrinsic this host supports (None: no AVX-512)."""
    import tvm

    from .target import host_target
    try:
        t = tvm.target.Target(host_target())
        has = tvm.target.codegen.target_has_features
        if has("avx512vnni", t):
            return _register_intrins()[0]
        if has("avx512bw", t):
            return _register_intrins()[1]
    except Exception:  # pragma: no cover - odd LLVM builds
        return None
    return None


def schedule_quant(sch: s_tir.Schedule, kind: str, lanes: int) -> None:
    """Schedule a ``quant_*`` PrimFunc in place (raises when its TIR is not the expected one)."""
    if kind == "quant_int8":
        _sched_int8(sch, lanes)
    elif kind == "quant_int4":
        _sched_int4(sch, lanes)
    else:
        raise ValueError(f"unknown quantized kernel kind {kind!r}")


def _sched_int8(sch: s_tir.Schedule, lanes: int) -> None:
    names = {sch.get(b).name_hint for b in _blocks(sch)}
    for name in ("xq_pad", "quant_x"):  # (qconv2d_int8's quantized padded image first)
        if name in names:
            _parallel_vectorize(sch, sch.get_sblock(name), lanes)
    _parallel_vectorize(sch, sch.get_sblock("out"), lanes)
    blk = sch.get_sblock("qmm")
    mt, mi, n, k = sch.get_loops(blk)
    # register tile: MT rows x p 16-wide panels (p | N/16, at most PANELS): 16 independent
    # accumulators hide vpdpbusd's latency; one 4-byte x broadcast feeds p dot products
    panels = (_loop_extent(sch, n) or 16) // 16
    p = max(d for d in range(1, PANELS + 1) if panels % d == 0)
    no, nj, ni = sch.split(n, [None, p, 16])
    ko, ki = sch.split(k, [None, 4])
    sch.reorder(no, mt, ko, mi, nj, ni, ki)
    # no local cache: the intrinsic's C buffer must be global; the tile stays in L1 and
    # LLVM keeps it in registers across the K loop (noalias buffers; checked in the asm)
    fused = sch.fuse(no, mt)
    parallel(sch, fused)
    if (_loop_extent(sch, mi) or 0) > 1:
        sch.unroll(mi)
    if p > 1:
        sch.unroll(nj)
    init = sch.decompose_reduction(blk, ko)
    sch.vectorize(sch.get_loops(init)[-1])
    intrin = dot_intrin()
    if intrin is not None:
        sch.tensorize(ni, intrin)


def _sched_int4(sch: s_tir.Schedule, lanes: int) -> None:
    """qlinear_int4 (lowering_quant.py): fp32 register tile on dequantized panels for the full
    row tiles, the group-sum GEMV over the packed 64-wide panels for the remaining rows."""
    names = {sch.get(b).name_hint for b in _blocks(sch)}
    if "qmm4" in names:  # absent when a static M has no full tile
        at = _int4_tile(sch, sch.get_sblock("qmm4"))
        # dequantize each 32-column panel once (per call), right before its row tiles use it
        dq = sch.get_sblock("dequant4")
        sch.compute_at(dq, at)
        kk, jj = sch.get_loops(dq)[-2:]
        sch.unroll(sch.split(kk, [None, 2])[1])  # constant nibble shifts (K is even)
        sch.vectorize(jj)
    if "qmm4_tail" in names:  # absent when a static M is a multiple of the tile
        _int4_gemv(sch)
    if "qmm4" in names or not _into_gemv(sch, sch.get_sblock("out"), "qmm4_tail_local"):
        _parallel_vectorize(sch, sch.get_sblock("out"), lanes)


def _int4_tile(sch: s_tir.Schedule, blk, kunroll: int = 4):
    """The fp32 packed matmul's MTILE x 32 register tile (schedule.py ``_packed_tile``), with
    the 32-column panel loop alone outermost and parallel (not fused with the row tiles), so
    that the dequantized panel is made once and reused by every row tile. Returns that loop."""
    i, j, k = sch.get_loops(blk)
    jo, ji = sch.split(j, [None, 32])
    kext = _loop_extent(sch, k)
    ku = kunroll if kext is not None and kext % kunroll == 0 else 1
    ko, ki = sch.split(k, [None, ku])
    io, ii = sch.split(i, [None, MTILE])
    sch.reorder(jo, io, ko, ki, ii, ji)
    acc = sch.cache_write(blk, 0, "local")
    sch.reverse_compute_at(acc, io)
    parallel(sch, jo)
    sch.unroll(ki)
    sch.unroll(ii)
    sch.vectorize(ji)
    sch.vectorize(sch.get_loops(acc)[-1])
    init = sch.decompose_reduction(blk, ko)
    sch.vectorize(sch.get_loops(init)[-1])
    return jo


def _int4_gemv(sch: s_tir.Schedule) -> None:
    """Parallel over the 64-wide panels; per row and group, ``part4`` (sum of code * x over the
    group's packed bytes: one contiguous stream per panel) in registers, vectorized over the
    panel's 64 columns, then folded into the accumulator row with the group's scale / zero."""
    blk = sch.get_sblock("qmm4_tail")
    r, j, g = sch.get_loops(blk)
    jo, ji = sch.split(j, [None, 64])
    sch.reorder(jo, r, g, ji)
    acc = sch.cache_write(blk, 0, "local")
    sch.reverse_compute_at(acc, r)
    part = sch.get_sblock("part4")
    sch.compute_at(part, g)
    sch.set_scope(part, 0, "local")
    pj, pk = sch.get_loops(part)[-2:]
    sch.reorder(pk, pj)
    kext = _loop_extent(sch, pk)
    ko, ki = sch.split(pk, [None, 2 if kext is not None and kext % 2 == 0 else 1])
    sch.unroll(ki)
    sch.vectorize(pj)
    parallel(sch, jo)
    sch.vectorize(ji)
    sch.vectorize(sch.get_loops(acc)[-1])
    init = sch.decompose_reduction(blk, g)
    sch.vectorize(sch.get_loops(init)[-1])
    pinit = sch.decompose_reduction(part, ko)
    sch.vectorize(sch.get_loops(pinit)[-1])

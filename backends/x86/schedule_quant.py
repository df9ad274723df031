"""CPU schedules of the quantized kernels (backends/lowering_quant.py).

- ``quant_int8``: the activation quantizer (``quant_x``) parallel and vectorized; the integer
  GEMM (``qmm`` [M/4, 4, N] += u8[M, K] * s8 panels [N/16, K/4, 16, 4]) as a 4 x 16 int32
  register tile per (N panel, row tile), parallel over both, the (16 x 4) inner block
  tensorized onto AVX-512 VNNI ``vpdpbusd`` (one instruction = 16 outputs x 4 products), or
  the AVX-512BW emulation (vpmaddubsw + vpmaddwd) when the CPU lacks VNNI; the requantization
  epilogue (``out``) vectorized.
- ``quant_int4``: parallel over 16-wide N panels, the row loop and K inside, N vectorized, the
  accumulator row in registers; the codes are unpacked and rescaled in registers.

Entry point :func:`schedule_quant` (called by backends/x86/schedule.py for kinds starting with
``quant_``); it raises on failure so the caller's generic fallback applies.
"""
from __future__ import annotations

import functools

from tvm import s_tir

from .schedule import _blocks, _loop_extent, _parallel_vectorize


LLMC_VNNI_INTRIN = "llmc_dot_16x4_vnni"


def _register_vnni() -> str:
    """Register a 16x4 u8*s8->i32 VNNI intrinsic with the operand types of today's LLVM.

    TVM's own ``dot_16x4_vnni`` passes the u8/s8 operands as <16 x i32>; LLVM >= 20 declares
    ``llvm.x86.avx512.vpdpbusd.512`` with <64 x i8> operands and rejects the call.
    """
    import tvm
    from tvm.s_tir import TensorIntrin
    from tvm.s_tir.tensor_intrin import x86 as intrins
    from tvm.script import tirx as T

    bytes_operands = tvm.target.codegen.llvm_version_major() >= 20

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((4,), "uint8", offset_factor=1),
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

    if not bytes_operands:
        return intrins.VNNI_DOT_16x4_INTRIN
    try:
        TensorIntrin.register(LLMC_VNNI_INTRIN, intrins.dot_product_16x4_u8i8i32_desc, impl)
    except Exception:  # already registered (module reloaded)
        pass
    return LLMC_VNNI_INTRIN


@functools.lru_cache(maxsize=1)
def dot_intrin() -> str | None:
    """Name of the 16x4 u8*s8->i32 tensor intrinsic this host supports (None: no AVX-512)."""
    import tvm
    from tvm.s_tir.tensor_intrin import x86 as intrins  # registers TVM's intrinsics

    from .target import host_target
    try:
        t = tvm.target.Target(host_target())
        has = tvm.target.codegen.target_has_features
        if has("avx512vnni", t):
            return _register_vnni()
        if has("avx512bw", t):
            return intrins.AVX512_DOT_16x4_INTRIN
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
    if "quant_x" in names:
        _parallel_vectorize(sch, sch.get_sblock("quant_x"), lanes)
    _parallel_vectorize(sch, sch.get_sblock("out"), lanes)
    blk = sch.get_sblock("qmm")
    mt, mi, n, k = sch.get_loops(blk)
    no, ni = sch.split(n, [None, 16])
    ko, ki = sch.split(k, [None, 4])
    sch.reorder(no, mt, ko, mi, ni, ki)
    # no local cache: the intrinsic's C buffer must be global; the 4 x 16 tile stays in L1
    # and LLVM keeps it in registers across the K loop (noalias buffers)
    fused = sch.fuse(no, mt)
    sch.parallel(fused)
    if (_loop_extent(sch, mi) or 0) > 1:
        sch.unroll(mi)
    init = sch.decompose_reduction(blk, ko)
    sch.vectorize(sch.get_loops(init)[-1])
    intrin = dot_intrin()
    if intrin is not None:
        sch.tensorize(ni, intrin)


def _sched_int4(sch: s_tir.Schedule, lanes: int) -> None:
    _parallel_vectorize(sch, sch.get_sblock("out"), lanes)
    blk = sch.get_sblock("qmm4")
    loops = sch.get_loops(blk)
    rows, j, k = loops[:-2], loops[-2], loops[-1]
    jext = _loop_extent(sch, j)
    w = lanes if jext is not None and jext % lanes == 0 else None
    if w is None:
        raise ValueError("qlinear_int4 needs N divisible by the vector width")
    jo, ji = sch.split(j, [None, w])
    kext = _loop_extent(sch, k)
    if kext is not None and kext % 16 == 0:
        # 16 divides every group size: scale/zero loads are invariant in the middle loop
        kg, ko, ki = sch.split(k, [None, 8, 2])
    else:
        kg, (ko, ki) = None, sch.split(k, [None, 2])
    row = sch.fuse(*rows) if len(rows) > 1 else (rows[0] if rows else None)
    if row is None:
        raise ValueError("qlinear_int4 without rows")
    sch.reorder(jo, row, *([kg] if kg is not None else []), ko, ki, ji)
    acc = sch.cache_write(blk, 0, "local")
    sch.reverse_compute_at(acc, row)
    sch.parallel(jo)
    sch.unroll(ki)
    sch.vectorize(ji)
    sch.vectorize(sch.get_loops(acc)[-1])
    init = sch.decompose_reduction(blk, kg if kg is not None else ko)
    sch.vectorize(sch.get_loops(init)[-1])

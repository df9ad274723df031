"""CPU schedules for the PrimFuncs the Relax builder made (tvm.s_tir.Schedule).

Unscheduled TIR runs one thread, scalar, in TE's naive loop order: ~400x slower than PyTorch
on a matmul here. Every PrimFunc gets a schedule chosen by its ``llmc_kind`` attribute:

- ``matmul_packed`` (activation @ constant weight pre-packed to [N/32, K, 32]): 8x32 register
  tile accumulated in a local buffer, the 32-wide N axis vectorized (two AVX-512 registers), K
  unrolled by 4, parallel over the fused (N-tile, M-tile) loop; the M % 8 remainder rows run
  as a 1x32 tile (a GEMV when decoding with M = 1).
- ``matmul`` (both operands computed) and ``attention`` (q k^T, softmax, p v): parallel over
  batch*rows, K outside the vectorized N loop, short static rows accumulated in registers.
- ``conv``: padding inlined, parallel over N*C_out, reduction loops outside the output row.
- everything else: cheap producers inlined, spatial loops fused and parallelized, innermost
  static axis vectorized; reductions parallel over their spatial loops.

A schedule that fails (an unusual shape of TIR) falls back to the generic one, then to the
unscheduled function, so a build never fails because of scheduling.
"""
from __future__ import annotations

import logging

import tvm
from tvm import s_tir, tirx

log = logging.getLogger(__name__)

_DATA_PAR = 0


def schedule_module(mod: tvm.IRModule, lanes: int = 16) -> tuple[tvm.IRModule, dict[str, str]]:
    """Schedule every PrimFunc of ``mod``; returns the module and name -> schedule used."""
    used: dict[str, str] = {}
    for gv, func in list(mod.functions.items()):
        if not isinstance(func, tirx.PrimFunc):
            continue
        kind = str(func.attrs["llmc_kind"]) if func.attrs and "llmc_kind" in func.attrs \
            else "injective"
        new, how = schedule_func(func, kind, lanes)
        mod[gv] = new
        used[gv.name_hint] = how
    return mod, used


def schedule_func(func: tirx.PrimFunc, kind: str, lanes: int = 16) -> tuple[tirx.PrimFunc, str]:
    """Schedule one PrimFunc; returns it and the name of the schedule that succeeded."""
    special = {"matmul_packed": _sched_matmul_packed, "matmul": _sched_matmul,
               "conv": _sched_conv, "attention": _sched_attention}.get(kind)
    attempts = ([(kind, special)] if special else []) + [("generic", _sched_generic)]
    for name, fn in attempts:
        sch = s_tir.Schedule(tvm.IRModule({"main": func}))
        try:
            fn(sch, lanes)
        except Exception as exc:  # ScheduleError and friends: try the next one
            log.debug("schedule %s failed: %s", name, str(exc).splitlines()[-1:])
            continue
        return sch.mod["main"], name
    return func, "none"


# ----------------------------------------------------------------------------- helpers
def _blocks(sch: s_tir.Schedule) -> list:
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def _static(extent) -> int | None:
    return int(extent) if isinstance(extent, tirx.IntImm) else None


def _loop_extent(sch, loop) -> int | None:
    return _static(sch.get(loop).extent)


def _n_spatial(sch, block) -> int:
    """Number of leading data-parallel block iter vars (TE puts reduce axes last)."""
    n = 0
    for iv in sch.get(block).iter_vars:
        if int(iv.iter_type) != _DATA_PAR:
            break
        n += 1
    return n


def _is_reduction(sch, block) -> bool:
    return any(int(iv.iter_type) != _DATA_PAR for iv in sch.get(block).iter_vars)


def _try(fn, *args) -> bool:
    try:
        fn(*args)
        return True
    except Exception:
        return False


def _inline_cheap(sch: s_tir.Schedule) -> None:
    """Inline producers whose consumers are all elementwise (and pads into anything).

    Inlining into a reduction repeats the producer's work per reduction step (an exp inlined
    into attention's PV matmul would run Ev times per element), so only pads go there.
    """
    outputs = {sch.get(b).name_hint for b in sch.get_output_blocks(sch.get_sblock("root"))}
    for b in _blocks(sch):
        name = sch.get(b).name_hint
        if name in outputs or _is_reduction(sch, b):
            continue
        consumers = sch.get_consumers(b)
        if not consumers:
            continue
        into_reduction = any(_is_reduction(sch, c) for c in consumers)
        if into_reduction and "pad" not in name.lower():
            continue
        _try(sch.compute_inline, b)


def _parallel_vectorize(sch: s_tir.Schedule, block, lanes: int) -> None:
    """Fuse a spatial block's loops, parallel outside, vectorize a static inner axis."""
    loops = sch.get_loops(block)
    if not loops:
        return
    inner = _loop_extent(sch, loops[-1])
    if inner is not None and inner % lanes == 0 and inner >= lanes:
        outer_loops = loops[:-1]
        lo, li = sch.split(loops[-1], [None, lanes])
        sch.vectorize(li)
        outer_loops = list(outer_loops) + [lo]
    elif inner is not None and len(loops) == 1 and inner >= 4 * lanes:
        lo, li = sch.split(loops[0], [None, lanes])
        outer_loops = [lo]
        sch.vectorize(li) if inner % lanes == 0 else None
    else:
        outer_loops = list(loops)
    if len(outer_loops) > 1:
        fused = sch.fuse(*outer_loops)
    elif outer_loops:
        fused = outer_loops[0]
    else:
        return
    ext = _loop_extent(sch, fused)
    if ext is None or ext > 1:
        sch.parallel(fused)


def _parallel_reduction(sch: s_tir.Schedule, block) -> None:
    ns = _n_spatial(sch, block)
    loops = sch.get_loops(block)
    if ns == 0:
        return
    fused = sch.fuse(*loops[:ns]) if ns > 1 else loops[0]
    ext = _loop_extent(sch, fused)
    if ext is None or ext > 1:
        sch.parallel(fused)


# ----------------------------------------------------------------------------- schedules
def _sched_generic(sch: s_tir.Schedule, lanes: int) -> None:
    _inline_cheap(sch)
    for b in _blocks(sch):
        if _is_reduction(sch, b):
            _try(_parallel_reduction, sch, b)
        else:
            _try(_parallel_vectorize, sch, b, lanes)


def _sched_matmul_packed(sch: s_tir.Schedule, lanes: int, mtile: int = 8, kunroll: int = 4
                         ) -> None:
    """The register-tiled kernel for lowering.matmul_packed (matmul, matmul_tail -> out)."""
    names = {sch.get(b).name_hint for b in _blocks(sch)}
    if "matmul" in names:  # absent when a static M has no full tile
        _packed_tile(sch, sch.get_sblock("matmul"), mtile, kunroll)
    if "matmul_tail" in names:  # absent when a static M is a multiple of the tile
        _packed_tile(sch, sch.get_sblock("matmul_tail"), 1, kunroll)
    _parallel_vectorize(sch, sch.get_sblock("out"), lanes)


def _packed_tile(sch: s_tir.Schedule, blk, mtile: int, kunroll: int) -> None:
    """mtile x 32 accumulator tile in registers, N tiles outermost and parallel.

    N tiles outermost: each [K, 32] weight panel is read from memory once and reused from
    cache by every row tile (row-outer order would stream the whole weight once per tile).
    """
    i, j, k = sch.get_loops(blk)
    jo, ji = sch.split(j, [None, 32])
    kext = _loop_extent(sch, k)
    ku = kunroll if kext is not None and kext % kunroll == 0 else 1
    ko, ki = sch.split(k, [None, ku])
    if mtile > 1:
        io, ii = sch.split(i, [None, mtile])
        sch.reorder(jo, io, ko, ki, ii, ji)
    else:
        io, ii = i, None
        sch.reorder(jo, io, ko, ki, ji)
    acc = sch.cache_write(blk, 0, "local")
    sch.reverse_compute_at(acc, io)
    fused = sch.fuse(jo, io)
    sch.parallel(fused)
    sch.unroll(ki)
    if ii is not None:
        sch.unroll(ii)
    sch.vectorize(ji)
    sch.vectorize(sch.get_loops(acc)[-1])
    init = sch.decompose_reduction(blk, ko)
    sch.vectorize(sch.get_loops(init)[-1])


def _matmul_block(sch: s_tir.Schedule, blk, lanes: int) -> None:
    """C[rows.., j] += A[rows.., k] * B[.., k, j]: rows parallel, k outside the j loop.

    The innermost j loop reads B and writes C contiguously, so it vectorizes (explicitly when
    its extent is a static multiple of the vector width, by LLVM otherwise).
    """
    loops = sch.get_loops(blk)
    ns = _n_spatial(sch, blk)
    if ns < 2 or len(loops) != ns + 1:
        raise ValueError("not a plain matmul")
    rows, j, k = loops[:ns - 1], loops[ns - 1], loops[ns]
    fused = sch.fuse(*rows) if len(rows) > 1 else rows[0]
    sch.reorder(fused, k, j)
    jext = _loop_extent(sch, j)
    if jext is not None and jext <= 256:
        # a short static row accumulates in registers (written back once per row)
        acc = sch.cache_write(blk, 0, "local")
        sch.reverse_compute_at(acc, fused)
        if jext % lanes == 0:
            sch.vectorize(sch.split(sch.get_loops(acc)[-1], [None, lanes])[1])
    sch.parallel(fused)
    if jext is not None and jext % lanes == 0:
        jo, ji = sch.split(j, [None, lanes])
        sch.vectorize(ji)
    sch.decompose_reduction(blk, k)


def _sched_matmul(sch: s_tir.Schedule, lanes: int) -> None:
    """Both operands computed (no weight to pack): the matmul block plus generic epilogue."""
    _inline_cheap(sch)
    _matmul_block(sch, sch.get_sblock("matmul"), lanes)
    for b in _blocks(sch):
        if sch.get(b).name_hint not in ("matmul", "matmul_init"):
            _try(_parallel_vectorize, sch, b, lanes)


def _sched_attention(sch: s_tir.Schedule, lanes: int) -> None:
    """scores = q k_t and out = p v as row-parallel matmuls; softmax stages generic."""
    _inline_cheap(sch)
    done = set()
    for name in ("scores", "attn_out"):
        _matmul_block(sch, sch.get_sblock(name), lanes)
        done |= {name, name + "_init"}
    for b in _blocks(sch):
        if sch.get(b).name_hint in done:
            continue
        if _is_reduction(sch, b):
            _try(_parallel_reduction, sch, b)
        else:
            _try(_parallel_vectorize, sch, b, lanes)


def _sched_conv(sch: s_tir.Schedule, lanes: int) -> None:
    """Parallel over (n, c_out), reduction loops outside the output row (vectorizable w)."""
    _inline_cheap(sch)
    conv = None
    for b in _blocks(sch):
        if _is_reduction(sch, b):
            conv = b
    if conv is None:
        raise ValueError("no conv reduction block")
    loops = sch.get_loops(conv)
    ns = _n_spatial(sch, conv)
    if ns < 3:
        raise ValueError("conv without spatial dims")
    n, c = loops[0], loops[1]
    sp, red = loops[2:ns], loops[ns:]
    fused = sch.fuse(n, c)
    sch.parallel(fused)
    sch.reorder(*sp[:-1], *red, sp[-1])
    conv_name = sch.get(conv).name_hint
    sch.decompose_reduction(conv, red[0])
    for b in _blocks(sch):
        name = sch.get(b).name_hint
        if name != conv_name and not _is_reduction(sch, b) and not name.endswith("_init"):
            _try(_parallel_vectorize, sch, b, lanes)

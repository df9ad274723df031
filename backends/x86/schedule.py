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
- fused groups (``fused_<kind>``, made by the fuse pass; one PrimFunc per group):
  ``fused_matmul_epilogue`` = the packed tile plus the whole epilogue inlined into one
  vectorized pass over the output; ``fused_reduction`` = parallel over rows with every stage
  (producers, mean/var or max/sum, consumers) computed per row; ``fused_attention`` =
  parallel over (batch, head, query row), scores/probabilities as per-row temporaries, PV
  accumulated in registers and written straight through the output transpose;
  ``fused_elementwise`` = the generic schedule (everything inlined into one loop nest).

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
               "conv": _sched_conv, "attention": _sched_attention,
               "fused_matmul_epilogue": _sched_matmul_epilogue,
               "fused_attention": _sched_fused_attention,
               "fused_reduction": _sched_rowwise}.get(kind)
    if kind.startswith("quant_"):  # quantized kernels: backends/x86/schedule_quant.py
        from .schedule_quant import schedule_quant
        special = lambda sch, lanes: schedule_quant(sch, kind, lanes)  # noqa: E731
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


# ----------------------------------------------------------------------------- fused groups
def _sched_matmul_epilogue(sch: s_tir.Schedule, lanes: int, mtile: int = 8,
                           kunroll: int = 4) -> None:
    """Packed matmul tiles, then the whole epilogue (row join, unflatten, bias, activation,
    residual) inlined into one vectorized pass over the output: no intermediate leaves
    the kernel except the tile buffer."""
    names = {sch.get(b).name_hint for b in _blocks(sch)}
    if "matmul" in names:
        _packed_tile(sch, sch.get_sblock("matmul"), mtile, kunroll)
    if "matmul_tail" in names:
        _packed_tile(sch, sch.get_sblock("matmul_tail"), 1, kunroll)
    outputs = {sch.get(b).name_hint for b in sch.get_output_blocks(sch.get_sblock("root"))}
    for b in _blocks(sch):
        name = sch.get(b).name_hint
        if name in outputs or _is_reduction(sch, b) or name.endswith("_init"):
            continue
        sch.compute_inline(b)
    for b in sch.get_output_blocks(sch.get_sblock("root")):
        _parallel_vectorize(sch, b, lanes)


def _row_loop(sch: s_tir.Schedule, block):
    """Fuse all spatial loops of ``block`` but the innermost into one parallel row loop."""
    loops = sch.get_loops(block)
    ns = _n_spatial(sch, block)
    if ns < 2:
        raise ValueError("no row loop")
    rows = loops[:ns - 1]
    fused = sch.fuse(*rows) if len(rows) > 1 else rows[0]
    sch.parallel(fused)
    return fused


def _producers_at(sch: s_tir.Schedule, root_block, loop, skip: tuple = ()) -> None:
    """compute_at every other block at ``loop`` (consumers first): per-row temporaries."""
    names = {sch.get(root_block).name_hint, *(sch.get(b).name_hint for b in skip)}
    for b in reversed(_blocks(sch)):
        if sch.get(b).name_hint in names:
            continue
        sch.compute_at(b, loop, preserve_unit_loops=True)


def _vector_inner(sch: s_tir.Schedule, block, lanes: int) -> None:
    """Vectorize the innermost loop of a spatial block when it is a static multiple of lanes."""
    if _is_reduction(sch, block):
        return
    loops = sch.get_loops(block)
    ext = _loop_extent(sch, loops[-1])
    if ext is not None and ext % lanes == 0 and ext >= lanes:
        sch.vectorize(sch.split(loops[-1], [None, lanes])[1])


def _sched_rowwise(sch: s_tir.Schedule, lanes: int) -> None:
    """LayerNorm / RMSNorm / softmax with their elementwise producers and consumers as one
    kernel: parallel over rows, every stage computed per row (the row stays in cache)."""
    _inline_cheap(sch)
    outs = sch.get_output_blocks(sch.get_sblock("root"))
    if len(outs) != 1:
        raise ValueError("row-wise schedule needs one output")
    out = outs[0]
    row = _row_loop(sch, out)
    _producers_at(sch, out, row)
    for b in _blocks(sch):
        _try(_vector_inner, sch, b, lanes)


def _sched_fused_attention(sch: s_tir.Schedule, lanes: int) -> None:
    """QK^T, scale, mask, softmax and PV in one kernel, parallel over (batch, head, query row):
    each row's scores live in a per-row temporary ([Lk]), never the full [Lq, Lk] matrix."""
    outs = sch.get_output_blocks(sch.get_sblock("root"))
    if len(outs) != 1:
        raise ValueError("attention needs one output")
    pv, epi = outs[0], None
    if not _is_reduction(sch, pv):  # PV then an output transpose / cast
        epi = pv
        prods = [b for b in sch.get_producers(epi) if _is_reduction(sch, b)]
        if len(prods) != 1:
            raise ValueError("attention output is not fed by the PV reduction")
        pv = prods[0]
    # the cheap score stages (scale, mask) are recomputed where read instead of stored
    for b in _blocks(sch):
        name = sch.get(b).name_hint
        if name not in (sch.get(pv).name_hint, sch.get(epi).name_hint if epi else "") and \
                not _is_reduction(sch, b) and not name.startswith(("sexp", "sdiv")):
            _try(sch.compute_inline, b)
    loops = sch.get_loops(pv)
    ns = _n_spatial(sch, pv)
    rows, c, j = loops[:ns - 1], loops[ns - 1], loops[ns]
    row = sch.fuse(*rows) if len(rows) > 1 else rows[0]
    sch.parallel(row)
    cext = _loop_extent(sch, c)
    if cext is not None and cext % lanes == 0:
        co, ci = sch.split(c, [None, lanes])
        sch.reorder(j, co, ci)
        sch.vectorize(ci)
    else:
        sch.reorder(j, c)
    skip: tuple = ()
    if cext is not None and cext <= 256:
        acc = sch.cache_write(pv, 0, "local")
        sch.reverse_compute_at(acc, row)
        skip = (acc,)
        if cext % lanes == 0:
            sch.vectorize(sch.split(sch.get_loops(acc)[-1], [None, lanes])[1])
        if epi is not None:  # the write-back of the register row goes straight to the output
            sch.reverse_compute_inline(epi)
            epi = None
    if epi is not None:
        sch.reverse_compute_at(epi, row)
        skip = skip + (epi,)
    _producers_at(sch, pv, row, skip)
    done = {sch.get(pv).name_hint, *(sch.get(b).name_hint for b in skip)}
    sch.decompose_reduction(pv, j)
    for b in _blocks(sch):
        name = sch.get(b).name_hint
        if name in done or name.endswith("_init"):
            continue
        if _is_reduction(sch, b):
            bl = sch.get_loops(b)
            if len(bl) >= 2 and _n_spatial(sch, b) == len(sch.get(b).iter_vars) - 1 and \
                    any(int(iv.iter_type) != _DATA_PAR for iv in sch.get(b).iter_vars) and \
                    _loop_extent(sch, bl[-2]) != 1:
                # the QK^T row: e outside the key loop, so the key loop runs over contiguous
                # k^T and vectorizes; the zeroing goes before the e loop
                if _try(sch.reorder, bl[-1], bl[-2]):
                    _try(sch.decompose_reduction, b, sch.get_loops(b)[-2])
        else:
            _try(_vector_inner, sch, b, lanes)

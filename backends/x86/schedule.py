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
- ``conv_nchwc`` (the layout pass's blocked conv) and ``fused_conv_epilogue``: a register tile
  of up to 16 output columns x 16 output channels (more channel blocks for narrow outputs),
  the 16-channel block vectorized, parallel over n*oc_outer*oh, the epilogue (bias,
  activation, residual, scale) applied to the tile before it is stored; a plain NCHW conv
  group keeps the ``conv`` recipe with its epilogue per (n, c_out) plane. ``pool_nchwc``:
  window loops outside the vectorized channel block.
- everything else: cheap producers inlined, spatial loops fused and parallelized, innermost
  static axis vectorized; reductions parallel over their spatial loops.
- fused groups (``fused_<kind>``, made by the fuse pass; one PrimFunc per group):
  ``fused_matmul_epilogue`` = the packed tile plus the whole epilogue inlined into one
  vectorized pass over the output; ``fused_reduction`` = parallel over rows with every stage
  (producers, mean/var or max/sum, consumers) computed per row; ``fused_attention`` =
  parallel over (batch*head, block of 64 query rows), k^T of the head built once per block
  from k in its natural layout (no transpose kernel), then per query row: scores /
  probabilities as per-row temporaries, PV accumulated in registers and written straight
  through the output transpose;
  ``fused_elementwise`` = the generic schedule (everything inlined into one loop nest).

A schedule that fails (an unusual shape of TIR) falls back to the generic one, then to the
unscheduled function, so a build never fails because of scheduling.
"""
from __future__ import annotations

import contextvars
import logging
from typing import Iterable

import tvm
from tvm import s_tir, tirx

log = logging.getLogger(__name__)

_DATA_PAR = 0


def schedule_module(mod: tvm.IRModule, lanes: int = 16, tuned=None,
                    small_dims: Iterable[str] = ()) -> tuple[tvm.IRModule, dict[str, str]]:
    """Schedule every PrimFunc of ``mod``; returns the module and name -> schedule used.

    ``tuned(func) -> (func, how) | None`` (backends/x86/tune.py) may supply a tuned schedule
    that measured faster than the default; None keeps the default.
    ``small_dims``: symbols known to stay small at run time (an LLM's batch); a kernel whose
    buffers are small when those are 1 runs on one thread (see :func:`parallel`).
    """
    used: dict[str, str] = {}
    small = frozenset(small_dims)
    for gv, func in list(mod.functions.items()):
        if not isinstance(func, tirx.PrimFunc):
            continue
        kind = str(func.attrs["llmc_kind"]) if func.attrs and "llmc_kind" in func.attrs \
            else "injective"
        serial = bool(small) and _small_work(func, small)
        token = _SERIAL.set(serial)
        try:
            new, how = (tuned(func) if tuned else None) or schedule_func(func, kind, lanes)
        finally:
            _SERIAL.reset(token)
        if serial:
            how += "+serial"
        mod[gv] = new
        used[gv.name_hint] = how
    return mod, used


SMALL_WORK_ELEMENTS = 1 << 15   # below this many buffer elements a fork/join costs more


def _small_work(func: tirx.PrimFunc, small: frozenset) -> bool:
    """All of the kernel's parameter buffers together hold fewer than SMALL_WORK_ELEMENTS
    elements when the ``small`` symbols are 1 (any other symbolic dim counts as large)."""
    total = 0
    for param in func.params:   # buffer parameters carry their shape; scalars have none
        n = 1
        for d in getattr(param, "shape", None) or ():
            if isinstance(d, tirx.IntImm):
                n *= int(d)
            elif getattr(d, "name", None) not in small:
                return False
        total += n
    return total < SMALL_WORK_ELEMENTS


_SERIAL = contextvars.ContextVar("llmc_serial_kernel", default=False)


def parallel(sch: s_tir.Schedule, loop) -> None:
    """``sch.parallel(loop)``, except in a kernel too small to share (see ``small_dims``).

    Why: a decode step runs hundreds of kernels of a few thousand elements (norms, RoPE,
    residual adds, the KV write); each parallel loop is a fork/join of the thread pool that
    costs more than the work, and on a loaded machine a descheduled worker stalls the whole
    step. Measured on SmolLM2 decode: see docs/llm.md.
    """
    if not _SERIAL.get():
        sch.parallel(loop)


def schedule_func(func: tirx.PrimFunc, kind: str, lanes: int = 16) -> tuple[tirx.PrimFunc, str]:
    """Schedule one PrimFunc; returns it and the name of the schedule that succeeded."""
    special = {"matmul_packed": _sched_matmul_packed, "matmul": _sched_matmul,
               "conv": _sched_conv, "attention": _sched_attention,
               "fused_matmul_epilogue": _sched_matmul_epilogue,
               "fused_attention": _sched_fused_attention,
               "fused_reduction": _sched_rowwise,
               "conv_nchwc": _sched_conv_nchwc, "pool_nchwc": _sched_pool_nchwc,
               "fused_conv_epilogue": _sched_conv_epilogue,
               "kv_write": _sched_serial_copy}.get(kind)
    if kind.startswith("quant_"):  # quantized kernels: backends/x86/schedule_quant.py
        from .schedule_quant import schedule_quant
        special = lambda sch, lanes: schedule_quant(sch, kind, lanes)  # noqa: E731
    attempts = ([(kind, special)] if special else []) + [("generic", _sched_generic)]
    if kind == "attention":  # the one-kernel schedule first; the staged one if it does not apply
        attempts.insert(0, ("fused_attention", _sched_fused_attention))
    for name, fn in attempts:
        sch = s_tir.Schedule(tvm.IRModule({"main": func}))
        try:
            fn(sch, lanes)
        except Exception as exc:  # ScheduleError and friends: try the next one
            log.debug("schedule %s failed: %s", name, str(exc).splitlines()[-1:])
            continue
        return sch.mod["main"], name
    return func, "none"


def _sched_serial_copy(sch: s_tir.Schedule, lanes: int) -> None:
    """A copy of a few rows (the KV cache write): one thread, as written."""


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
        parallel(sch, fused)


def _parallel_reduction(sch: s_tir.Schedule, block) -> None:
    ns = _n_spatial(sch, block)
    loops = sch.get_loops(block)
    if ns == 0:
        return
    fused = sch.fuse(*loops[:ns]) if ns > 1 else loops[0]
    ext = _loop_extent(sch, fused)
    if ext is None or ext > 1:
        parallel(sch, fused)


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
    if "matmul" in names or not _into_gemv(sch, sch.get_sblock("out")):
        _parallel_vectorize(sch, sch.get_sblock("out"), lanes)


def _into_gemv(sch: s_tir.Schedule, out, writeback: str = "matmul_tail_local") -> bool:
    """A GEMV-only kernel (decode: no full-tile stage): compute the output stage inside the
    GEMV's parallel panel loop, from the register tile as it is written back, so the kernel
    is one parallel region (one fork/join) instead of two."""
    try:
        sch.reverse_compute_inline(out)
        return True
    except Exception:  # ScheduleError: not a simple elementwise consumer of the tile
        pass
    try:
        wb = sch.get_sblock(writeback)
        sch.reverse_compute_at(out, sch.get_loops(wb)[0])
        return True
    except Exception:
        return False


GEMV_PANELS = 8  # weight panels one decode (M = 1) step reads side by side


def _gemv_panels(panels: int | None) -> int:
    """Panels per step of the M = 1 tile: a single sequential stream per core reaches only
    part of the memory bandwidth (the prefetchers keep few lines in flight per stream), so a
    GEMV walks several panels at once -- if enough groups remain to share between threads."""
    for g in (GEMV_PANELS, 4, 2):
        if panels is not None and panels % g == 0 and panels // g >= 8:
            return g
    return 1


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
    jg = None
    if mtile > 1:
        io, ii = sch.split(i, [None, mtile])
        sch.reorder(jo, io, ko, ki, ii, ji)
    else:
        io, ii = i, None
        group = _gemv_panels(_loop_extent(sch, jo))
        if group > 1:  # several panels per step: more weight streams in flight per core
            jo, jg = sch.split(jo, [None, group])
            sch.reorder(jo, io, ko, ki, jg, ji)
        else:
            sch.reorder(jo, io, ko, ki, ji)
    acc = sch.cache_write(blk, 0, "local")
    sch.reverse_compute_at(acc, io)
    fused = sch.fuse(jo, io)
    parallel(sch, fused)
    sch.unroll(ki)
    if ii is not None:
        sch.unroll(ii)
    if jg is not None:
        sch.unroll(jg)
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
    parallel(sch, fused)
    if jext is not None and jext % lanes == 0:
        jo, ji = sch.split(j, [None, lanes])
        sch.vectorize(ji)
    sch.decompose_reduction(blk, k)


def _sched_matmul(sch: s_tir.Schedule, lanes: int) -> None:
    """Both operands computed (no weight to pack): the matmul block plus generic epilogue."""
    _inline_cheap(sch)
    _matmul_block(sch, sch.get_sblock("matmul"), lanes)
    # decompose_reduction renamed the block matmul_update; it and its register write-back
    # (matmul_local) are scheduled already (re-splitting the update lost its vector loop:
    # a batched q.k^T ran at 2 GFLOP/s)
    done = ("matmul", "matmul_init", "matmul_update", "matmul_local")
    for b in _blocks(sch):
        if sch.get(b).name_hint not in done:
            _try(_parallel_vectorize, sch, b, lanes)


def _sched_attention(sch: s_tir.Schedule, lanes: int) -> None:
    """scores = q k_t and out = p v as row-parallel matmuls; softmax stages generic."""
    _inline_cheap(sch)
    done = set()
    names = {sch.get(b).name_hint for b in _blocks(sch)}
    for name in ("scores" if "scores" in names else "scores_dot", "attn_out"):
        _matmul_block(sch, sch.get_sblock(name), lanes)
        done |= {name, name + "_init", name + "_update", name + "_local"}
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
    parallel(sch, fused)
    sch.reorder(*sp[:-1], *red, sp[-1])
    conv_name = sch.get(conv).name_hint
    sch.decompose_reduction(conv, red[0])
    for b in _blocks(sch):
        name = sch.get(b).name_hint
        if name != conv_name and not _is_reduction(sch, b) and not name.endswith("_init"):
            _try(_parallel_vectorize, sch, b, lanes)


# ----------------------------------------------------------------------------- conv + epilogue
CONV_REG_W = 16  # output columns per register tile of the blocked conv (x 16 channels)


def _conv_nchwc_tile(sch: s_tir.Schedule, conv, max_reg: int = CONV_REG_W):
    """Register tile of conv_nchwc: ``oci`` channel blocks x ``reg`` output columns x 16.

    Loops n, oc, oh, ow, ob, ic, kh, kw, ib become (n*oc_outer*oh parallel), ow_outer, ic,
    kh, kw, ib, oc_inner, ow_inner (both unrolled), ob (vectorized): each step loads ``oci``
    16-wide weight vectors and FMAs them with ``reg`` broadcast inputs into ``oci * reg``
    accumulators that stay in registers. ``reg`` is the largest divisor of the output width
    up to 16; narrow outputs (late layers: 7, 4 columns) take 2 or 4 channel blocks at once
    so that enough independent FMAs are in flight.
    """
    n, oc, oh, ow, ob, ic, kh, kw, ib = sch.get_loops(conv)
    owe, oce = _loop_extent(sch, ow), _loop_extent(sch, oc)
    reg = max(d for d in range(1, max_reg + 1) if owe % d == 0) if owe else 8
    oci = 1
    if reg < 8 and oce:
        oci = next((k for k in (4, 2) if oce % k == 0 and k * reg <= max_reg), 1)
    owo, owi = sch.split(ow, [None, reg])
    oco, oc_i = sch.split(oc, [None, oci])
    sch.reorder(n, oco, oh, owo, ic, kh, kw, ib, oc_i, owi, ob)
    row = sch.fuse(n, oco, oh)
    parallel(sch, row)
    sch.unroll(oc_i)
    sch.unroll(owi)
    sch.vectorize(ob)
    return owo, ic


def _tile_tail(sch: s_tir.Schedule, block, at) -> None:
    """Under the tile loop ``at``: vectorize the channel block, unroll the short loops."""
    loops = sch.get_loops(block)
    at_stmt = sch.get(at)
    pos = next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(at_stmt))
    tail = loops[pos + 1:]
    sch.vectorize(tail[-1])
    for lp in tail[:-1]:
        if _loop_extent(sch, lp) not in (None, 1):
            sch.unroll(lp)


def _sched_conv_nchwc(sch: s_tir.Schedule, lanes: int) -> None:
    """Blocked conv (layout pass) with its epilogue applied to the register tile.

    The stages between the conv and the output (bias, activation, residual add, scale) are
    inlined into the output block, which is computed per tile: the accumulators never go to
    memory before the epilogue. The zero padding is a separate vectorized copy.
    """
    names = {sch.get(b).name_hint for b in _blocks(sch)}
    conv = sch.get_sblock("conv_nchwc")
    outs = sch.get_output_blocks(sch.get_sblock("root"))
    if len(outs) != 1:
        raise ValueError("blocked conv needs one output")
    out_name = sch.get(outs[0]).name_hint
    for b in _blocks(sch):
        name = sch.get(b).name_hint
        if name in ("conv_nchwc", "data_pad", out_name):
            continue
        if _is_reduction(sch, b):
            raise ValueError("a second reduction in a conv epilogue")
        sch.compute_inline(b)
    owo, ic = _conv_nchwc_tile(sch, conv)
    if out_name == "conv_nchwc":
        acc = sch.cache_write(conv, 0, "local")
        sch.reverse_compute_at(acc, owo)
        _tile_tail(sch, acc, owo)
    else:
        out = sch.get_sblock(out_name)
        sch.reverse_compute_at(out, owo)
        sch.set_scope(conv, 0, "local")
        _tile_tail(sch, out, owo)
    init = sch.decompose_reduction(conv, ic)
    _tile_tail(sch, init, owo)
    if "data_pad" in names:  # rows in parallel, the channel block vectorized
        # (measured: a separate pass beats padding per conv row computed at the row loop,
        # 7.5 vs 8.1 ms for the w64 CNN at batch 8 on one thread)
        n, c, h, w, i = sch.get_loops(sch.get_sblock("data_pad"))
        parallel(sch, sch.fuse(n, c, h))
        sch.vectorize(i)


def _sched_pool_nchwc(sch: s_tir.Schedule, lanes: int) -> None:
    """Blocked pool: parallel over (n, c_outer, oh), window loops outside the vectorized
    channel block; the average's division is computed per output column right after."""
    pool = sch.get_sblock("pool")
    n, c, h, w, i, r0, r1 = sch.get_loops(pool)
    sch.reorder(n, c, h, w, r0, r1, i)
    row = sch.fuse(n, c, h)
    parallel(sch, row)
    names = {sch.get(b).name_hint for b in _blocks(sch)}
    for name in ("avg", "T_cast_out"):
        if name in names:
            blk = sch.get_sblock(name)
            sch.reverse_compute_at(blk, row)
            sch.vectorize(sch.get_loops(blk)[-1])
    sch.vectorize(i)
    init = sch.decompose_reduction(pool, r0)
    sch.vectorize(sch.get_loops(init)[-1])


def _sched_conv_epilogue(sch: s_tir.Schedule, lanes: int) -> None:
    """A fused conv group: blocked conv as above; a plain NCHW conv keeps the ``conv``
    recipe and computes its epilogue per (n, c_out) plane right after the plane's sums."""
    names = {sch.get(b).name_hint for b in _blocks(sch)}
    if "conv_nchwc" in names:
        _sched_conv_nchwc(sch, lanes)
        return
    _inline_cheap(sch)
    convs = [b for b in _blocks(sch) if _is_reduction(sch, b)]
    outs = sch.get_output_blocks(sch.get_sblock("root"))
    if len(convs) != 1 or len(outs) != 1:
        raise ValueError("conv epilogue needs one conv and one output")
    conv, out = convs[0], outs[0]
    loops = sch.get_loops(conv)
    ns = _n_spatial(sch, conv)
    if ns < 3:
        raise ValueError("conv without spatial dims")
    sp, red = loops[2:ns], loops[ns:]
    plane = sch.fuse(loops[0], loops[1])
    parallel(sch, plane)
    sch.reorder(*sp[:-1], *red, sp[-1])
    sch.decompose_reduction(conv, red[0])
    sch.reverse_compute_at(out, plane)
    _try(_vector_inner, sch, out, lanes)


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
    gemv_only = "matmul" not in names
    for b in _blocks(sch):
        name = sch.get(b).name_hint
        if name in outputs or _is_reduction(sch, b) or name.endswith("_init") or \
                (gemv_only and name == "matmul_tail_local"):   # _into_gemv's anchor
            continue
        sch.compute_inline(b)
    for b in sch.get_output_blocks(sch.get_sblock("root")):
        if not gemv_only or not _into_gemv(sch, b):
            _parallel_vectorize(sch, b, lanes)


def _row_loop(sch: s_tir.Schedule, block):
    """Fuse all spatial loops of ``block`` but the innermost into one parallel row loop."""
    loops = sch.get_loops(block)
    ns = _n_spatial(sch, block)
    if ns < 2:
        raise ValueError("no row loop")
    rows = loops[:ns - 1]
    fused = sch.fuse(*rows) if len(rows) > 1 else rows[0]
    parallel(sch, fused)
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


_ATTN_QBLOCK = 64  # query rows per parallel attention task (they share one k^T copy)


def _moves_last_axis(sch: s_tir.Schedule, block) -> bool:
    """A copy whose innermost output axis is not the innermost axis it reads (a transpose
    such as k [.., Lk, E] -> k^T [.., E, Lk])."""
    b = sch.get(block)
    if _is_reduction(sch, block) or len(b.iter_vars) < 2 or len(b.reads) != 1:
        return False
    region = b.reads[0].region
    last = b.iter_vars[-1].var
    return len(region) >= 2 and not region[-1].min.same_as(last)


def _kt_at(sch: s_tir.Schedule, kt, loop) -> None:
    """Build k^T under ``loop`` reading k row by row (contiguous reads, writes into the
    small per-block tile)."""
    sch.compute_at(kt, loop, preserve_unit_loops=True)
    e, key = sch.get_loops(kt)[-2:]
    _try(sch.reorder, key, e)


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
    # the cheap score stages (scale, mask) are recomputed where read instead of stored; a
    # transpose that moves k's last axis (k^T) stays a stage, copied once per query block
    kt = None
    for b in _blocks(sch):
        name = sch.get(b).name_hint
        if name in (sch.get(pv).name_hint, sch.get(epi).name_hint if epi else "") or \
                _is_reduction(sch, b) or name.startswith(("sexp", "sdiv")):
            continue
        if kt is None and _moves_last_axis(sch, b):
            kt = b
            continue
        _try(sch.compute_inline, b)
    loops = sch.get_loops(pv)
    ns = _n_spatial(sch, pv)
    rows, c, j = loops[:ns - 1], loops[ns - 1], loops[ns]
    block_loop = None
    if kt is not None and len(rows) >= 2:
        # parallel over (batch*head, block of query rows): k^T of that head is built once per
        # block (in cache) and shared by the block's rows; one-row decode needs no block split
        lead = sch.fuse(*rows[:-1]) if len(rows) > 2 else rows[0]
        if _loop_extent(sch, rows[-1]) == 1:
            block_loop, row = lead, rows[-1]
        else:
            qo, row = sch.split(rows[-1], [None, _ATTN_QBLOCK])
            block_loop = sch.fuse(lead, qo)
        parallel(sch, block_loop)
    else:
        row = sch.fuse(*rows) if len(rows) > 1 else rows[0]
        parallel(sch, row)
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
    _producers_at(sch, pv, row, skip + ((kt,) if kt is not None else ()))
    if kt is not None:
        _kt_at(sch, kt, block_loop if block_loop is not None else row)
        skip = skip + (kt,)
    done = {sch.get(pv).name_hint, sch.get(pv).name_hint + "_update",
            *(sch.get(b).name_hint for b in skip)}
    sch.decompose_reduction(pv, j)   # renames pv to <name>_update: keep its loop order
    for b in _blocks(sch):
        name = sch.get(b).name_hint
        if name in done or name.endswith("_init"):
            continue
        if _is_reduction(sch, b):
            bl = sch.get_loops(b)
            if name != "scores_dot" and len(bl) >= 2 and \
                    _n_spatial(sch, b) == len(sch.get(b).iter_vars) - 1 and \
                    any(int(iv.iter_type) != _DATA_PAR for iv in sch.get(b).iter_vars) and \
                    _loop_extent(sch, bl[-2]) != 1:
                # the QK^T row: e outside the key loop, so the key loop runs over contiguous
                # k^T and vectorizes; the zeroing goes before the e loop
                if _try(sch.reorder, bl[-1], bl[-2]):
                    _try(sch.decompose_reduction, b, sch.get_loops(b)[-2])
        else:
            _try(_vector_inner, sch, b, lanes)

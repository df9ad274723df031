"""GPU schedules for the PrimFuncs the shared Relax builder made: dlight first, llmc's own after.

Each PrimFunc is scheduled on its own, by its ``llmc_kind`` attribute:

- TVM's dlight rules, tried in order: ``Matmul`` (fp16 on sm_70+ with every static M/N/K > 64:
  WMMA tensor cores with shared-memory staging; otherwise a register-tiled SIMT matmul),
  ``GEMV`` (decode: one static row), ``Reduction`` / ``GeneralReduction`` (softmax, norms,
  reduce ops: one thread block per row, cross-thread reduction), ``Fallback`` (elementwise:
  producers inlined, spatial loops fused and bound to blocks x threads).
- llmc's own ``per_block`` rule where none of them applies (fused attention with several
  reductions in one PrimFunc, scans, argmax, gathers with odd loop nests): every block keeps its
  own loop nest, its spatial loops are fused and bound to blockIdx.x / threadIdx.x, its
  reduction loops run serially per thread. Slow for big reductions but always valid CUDA.
- last resort ``single_thread``: one block of one thread (only for odd shapes of TIR).

A rule that raises or returns no schedule is skipped; a kernel whose schedule leaves an unbound
loop fails at ``tvm.compile`` (VerifyMemory), so ``verify`` checks each candidate first.
"""
from __future__ import annotations

import logging

import tvm
from tvm import s_tir, tirx

log = logging.getLogger(__name__)

_THREADS = 256


def _dlight_rules() -> list:
    from tvm.s_tir import dlight as dl

    return [("dlight.matmul", dl.gpu.Matmul()), ("dlight.gemv", dl.gpu.GEMV()),
            ("dlight.reduction", dl.gpu.Reduction()),
            ("dlight.general_reduction", dl.gpu.GeneralReduction()),
            ("dlight.fallback", dl.gpu.Fallback())]


def schedule_module(mod: tvm.IRModule, target: tvm.target.Target
                    ) -> tuple[tvm.IRModule, dict[str, str]]:
    """Schedule every PrimFunc of ``mod`` for ``target``; returns it and kernel -> rule used."""
    used: dict[str, str] = {}
    rules = _dlight_rules()
    with target:
        for gv, func in list(mod.functions.items()):
            if not isinstance(func, tirx.PrimFunc):
                continue
            new, how = schedule_func(func, target, rules)
            mod[gv] = new
            used[gv.name_hint] = how
    return mod, used


def schedule_func(func: tirx.PrimFunc, target: tvm.target.Target, rules: list | None = None
                  ) -> tuple[tirx.PrimFunc, str]:
    """One PrimFunc: the first rule whose schedule is valid GPU code; returns (func, rule name)."""
    kind = str(func.attrs["llmc_kind"]) if func.attrs and "llmc_kind" in func.attrs else ""
    candidates = list(rules if rules is not None else _dlight_rules())
    if kind in ("attention", "opaque"):
        # several reductions in one kernel: dlight's single-reduction rules mis-schedule or fail
        candidates = [c for c in candidates if c[0] in ("dlight.general_reduction",)]
    for name, rule in candidates:
        try:
            sch = rule.apply(func, target, False)
        except Exception as exc:  # ScheduleError & co: next rule
            log.debug("%s failed: %s", name, str(exc).splitlines()[-1:])
            continue
        if sch is None:
            continue
        if isinstance(sch, list):
            sch = sch[0] if sch else None
            if sch is None:
                continue
        new = sch.mod["main"].with_attr("tirx.is_scheduled", True)
        if _valid(new, target):
            return new, name
    for name, fn in (("llmc.per_block", _per_block), ("llmc.single_thread", _single_thread)):
        sch = s_tir.Schedule(tvm.IRModule({"main": func}))
        try:
            fn(sch)
        except Exception as exc:
            log.debug("%s failed: %s", name, str(exc).splitlines()[-1:])
            continue
        new = sch.mod["main"].with_attr("tirx.is_scheduled", True)
        if _valid(new, target):
            return new, name
    return func, "none"


def _valid(func: tirx.PrimFunc, target: tvm.target.Target) -> bool:
    """Whether every memory access sits under a thread binding (what tvm.compile requires)."""
    try:
        return _all_bound(func)
    except Exception:  # an unexpected node type: let tvm.compile judge
        return True


def _all_bound(func: tirx.PrimFunc) -> bool:
    """Every block that touches a buffer is nested in a thread-bound loop (or is the root)."""
    ok = True

    def visit(stmt, bound: bool) -> None:
        nonlocal ok
        if not ok:
            return
        if isinstance(stmt, tirx.For):
            visit(stmt.body, bound or stmt.kind == tirx.ForKind.THREAD_BINDING)
        elif isinstance(stmt, s_tir.SBlockRealize):
            blk = stmt.block
            if blk.name_hint != "root" and not bound and (blk.reads or blk.writes):
                ok = False
                return
            if blk.init is not None:
                visit(blk.init, bound)
            visit(blk.body, bound)
        elif isinstance(stmt, tirx.SeqStmt):
            for s in stmt:
                visit(s, bound)
        elif hasattr(stmt, "body") and isinstance(getattr(stmt, "body"), tirx.Stmt):
            visit(stmt.body, bound or (isinstance(stmt, tirx.AttrStmt)
                                       and stmt.attr_key == "thread_extent"))
        elif isinstance(stmt, tirx.IfThenElse):
            visit(stmt.then_case, bound)
            if stmt.else_case is not None:
                visit(stmt.else_case, bound)
    visit(func.body, False)
    return ok


def _per_block(sch: s_tir.Schedule) -> None:
    """Bind each top-level block's fused spatial loops to blockIdx.x x threadIdx.x."""
    root = sch.get_sblock("root")
    for block in sch.get_child_blocks(root):
        loops = sch.get_loops(block)
        if not loops:
            l0 = sch.add_unit_loop(block)
            loops = [l0]
        ivs = sch.get(block).iter_vars
        n_sp = 0
        for iv in ivs:
            if int(iv.iter_type) != 0:
                break
            n_sp += 1
        n_sp = min(n_sp, len(loops))
        if n_sp == 0:
            outer = sch.add_unit_loop(loops[0])
            bx, tx = sch.split(outer, [1, 1])
        else:
            fused = sch.fuse(*loops[:n_sp]) if n_sp > 1 else loops[0]
            bx, tx = sch.split(fused, [None, _THREADS])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")


def _single_thread(sch: s_tir.Schedule) -> None:
    """One thread runs the whole function, block by block (always valid, only a last resort)."""
    root = sch.get_sblock("root")
    for block in sch.get_child_blocks(root):
        loops = sch.get_loops(block)
        first = loops[0] if loops else sch.add_unit_loop(block)
        unit = sch.add_unit_loop(first)
        bx, tx = sch.split(unit, [1, 1])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")

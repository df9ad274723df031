"""The pass manager: passes registered by name, optimization levels, a per-pass report.

Passes are plain functions ``Graph -> Graph`` (they may mutate and return their argument).
The manager copies the caller's graph first, runs the selected passes in order, times each,
and records nodes and constant bytes before/after and what changed, so that
``llmc compile --report`` can print one row per pass. In tests it also verifies the IR and
checks numerically (the numpy reference on random inputs) after every pass.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from llmc.errors import LlmcError, VerificationError
from llmc.ir import Graph

PassFn = Callable[[Graph], Graph]

_PASSES: dict[str, PassFn] = {}

# Named levels. Passes may appear twice: a fold after simplify catches what simplify exposed.
# fuse_qdq comes first: constant folding would otherwise turn an ONNX QDQ weight back into
# a float constant before the int8 pattern is seen.
LEVELS: dict[str, list[str]] = {
    "O0": [],
    "O1": ["fuse_qdq", "constant_fold", "dce"],
    "O2": ["fuse_qdq", "constant_fold", "simplify", "constant_fold", "cse", "dce", "fuse"],
    "O3": ["fuse_qdq", "fold_batchnorm", "constant_fold", "simplify", "constant_fold", "cse",
           "simplify", "dce", "layout", "fuse"],
}


class UnknownPassError(LlmcError):
    """A pass or level name that is not registered."""


class NumericMismatchError(VerificationError):
    """A pass changed what the graph computes (numpy reference before vs after)."""


def register_pass(name: str) -> Callable[[PassFn], PassFn]:
    """Decorator: make ``fn`` available to levels and ``--passes`` under ``name``."""
    def deco(fn: PassFn) -> PassFn:
        if name in _PASSES and _PASSES[name] is not fn:
            raise ValueError(f"pass {name!r} registered twice")
        _PASSES[name] = fn
        return fn
    return deco


def known_passes() -> list[str]:
    """Names of all registered passes (sorted)."""
    _load_builtin()
    return sorted(_PASSES)


def get_pass(name: str) -> PassFn:
    _load_builtin()
    try:
        return _PASSES[name]
    except KeyError:
        raise UnknownPassError(f"unknown pass {name!r}; known passes: "
                               f"{', '.join(sorted(_PASSES))}") from None


def level_passes(level: str) -> list[str]:
    """The pass list of a level ("O2", "-O2", "2" all accepted)."""
    key = str(level).lstrip("-")
    key = key if key.startswith("O") else f"O{key}"
    if key not in LEVELS:
        raise UnknownPassError(f"unknown optimization level {level!r}; levels: "
                               f"{', '.join(LEVELS)}")
    return list(LEVELS[key])


@dataclass
class PassRow:
    """What one pass did."""

    name: str
    seconds: float
    nodes_before: int
    nodes_after: int
    const_bytes_before: int
    const_bytes_after: int
    changed: str
    arena_bytes: int | None = None
    kernels: int | None = None  # filled by the backend driver when it knows (fused groups)


@dataclass
class PassReport:
    """One row per pass run, in order; ``format_table`` is what ``--report`` prints."""

    level: str | None
    rows: list[PassRow] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return sum(r.seconds for r in self.rows)

    def to_dicts(self) -> list[dict]:
        """Rows as plain dicts (JSON-friendly, for the artifact manifest)."""
        return [dict(r.__dict__) for r in self.rows]

    def format_table(self) -> str:
        head = ["pass", "time ms", "nodes", "const bytes", "arena bytes", "kernels", "changed"]
        body = []
        for r in self.rows:
            body.append([
                r.name, f"{r.seconds * 1e3:.1f}", f"{r.nodes_before} -> {r.nodes_after}",
                f"{r.const_bytes_before} -> {r.const_bytes_after}",
                "-" if r.arena_bytes is None else str(r.arena_bytes),
                "-" if r.kernels is None else str(r.kernels), r.changed or "-"])
        widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h)
                  for i, h in enumerate(head)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in body]
        lines.append(f"total {self.total_seconds * 1e3:.1f} ms over {len(self.rows)} passes")
        return "\n".join(lines)


def _op_counts(graph: Graph) -> tuple[Counter, int]:
    return Counter(n.op for n in graph.nodes), len(graph.constants)


def _summary(before: tuple[Counter, int], after: tuple[Counter, int]) -> str:
    """A short text of what a pass changed: ops removed/added by count."""
    (b, nb), (a, na) = before, after
    parts = [f"-{b[k] - a[k]} {k}" for k in sorted(b) if b[k] > a[k]]
    parts += [f"+{a[k] - b[k]} {k}" for k in sorted(a) if a[k] > b[k]]
    dc = na - nb
    if dc:
        parts.append(f"{dc:+d} constants")
    return ", ".join(parts)


def run_passes(graph: Graph, level: str | None = "O2", passes: Sequence[str] | None = None,
               disable: Sequence[str] = (), verify: bool = False,
               check_numerics: bool | Mapping[str, np.ndarray] | None = None,
               bindings: Mapping[str, int] | None = None, rtol: float = 1e-5,
               atol: float = 1e-6) -> tuple[Graph, PassReport]:
    """Optimize ``graph`` (a copy; the argument is left alone) and report each pass.

    ``passes`` (an explicit list, as ``--passes a,b,c``) overrides ``level``; ``disable``
    removes names from the list (``--disable-pass x``). ``verify`` runs the IR verifier after
    every pass. ``check_numerics`` (True for seeded random inputs, or a dict of inputs) runs
    the numpy reference before and after each pass and raises NumericMismatchError naming
    the pass when outputs differ beyond rtol/atol. ``bindings`` are the symbol values used
    for the arena column (default: every symbol = 1).
    """
    from .memory_plan import plan_memory
    from .numerics import compare_outputs, random_inputs

    _load_builtin()
    names = list(passes) if passes is not None else level_passes(level or "O0")
    for n in list(names) + list(disable):
        get_pass(n)  # raises with the list of known names
    names = [n for n in names if n not in set(disable)]
    report = PassReport(level if passes is None else None)
    g = graph.copy()
    if verify:
        g.verify()

    inputs = None
    expected = None
    if check_numerics:
        from llmc.interpreter import run_reference

        inputs = random_inputs(g) if check_numerics is True else dict(check_numerics)
        expected = run_reference(g, inputs)

    for name in names:
        before = _op_counts(g)
        nb, cb = len(g.nodes), g.constant_bytes()
        t0 = time.perf_counter()
        g = get_pass(name)(g)
        dt = time.perf_counter() - t0
        if verify:
            try:
                g.verify()
            except VerificationError as exc:
                raise VerificationError(f"after pass {name!r}: {exc}") from None
        if list(g.inputs) != list(graph.inputs) or list(g.outputs) != list(graph.outputs):
            raise VerificationError(f"pass {name!r} changed the graph's input or output names")
        if expected is not None:
            from llmc.interpreter import run_reference

            got = run_reference(g, inputs)
            problem = compare_outputs(expected, got, rtol=rtol, atol=atol)
            if problem:
                raise NumericMismatchError(f"pass {name!r} changed the results: {problem}")
        try:
            arena = plan_memory(g, bindings).arena_bytes
        except LlmcError:
            arena = None
        report.rows.append(PassRow(name, dt, nb, len(g.nodes), cb, g.constant_bytes(),
                                   _summary(before, _op_counts(g)), arena))
    return g, report


_loaded = False


def _load_builtin() -> None:
    """Import the pass modules so that their ``register_pass`` decorators run."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import constant_fold, cse, dce, fold_batchnorm, fuse, quantize, simplify  # noqa: F401
    from . import layout  # noqa: F401  (x86 blocked conv layout; a no-op for other targets)

"""Tensor dimensions: plain ints or symbolic expressions of named dims (sympy).

A model exported with a dynamic batch or sequence length has dims such as ``batch`` or
``seq``; shape arithmetic (``batch*seq``, ``seq + 1``, ``floor(seq/2)``) stays exact and
simplified because sympy does it. Symbols are positive integers, so ``batch*seq/seq`` folds.
Every ``Dim`` is either an ``int`` (never a sympy Integer) or a non-constant ``sympy.Expr``.
"""
from __future__ import annotations

import functools
import re
from typing import Iterable, Mapping, Union

import sympy

from .errors import ShapeError

Dim = Union[int, sympy.Expr]
Shape = tuple  # tuple[Dim, ...]


@functools.lru_cache(maxsize=None)
def sym(name: str) -> sympy.Symbol:
    """The symbol for a named dim (one object per name)."""
    if not name or not isinstance(name, str):
        raise ShapeError(f"invalid symbolic dim name {name!r}")
    return sympy.Symbol(name, integer=True, positive=True)


def dim(value: object) -> Dim:
    """Normalize an int, numpy int, sympy expression or symbol name to a Dim."""
    if isinstance(value, bool):
        raise ShapeError(f"a dim cannot be a bool ({value!r})")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return parse_dim(value)
    if hasattr(value, "__index__") and not isinstance(value, sympy.Basic):
        return int(value.__index__())
    if isinstance(value, sympy.Basic):
        expr = _simplify(value) if not value.is_Atom else value
        if expr.is_Integer:
            return int(expr)
        if expr.is_number:
            raise ShapeError(f"dim {value} is not an integer")
        return expr
    raise ShapeError(f"cannot use {value!r} ({type(value).__name__}) as a tensor dim")


@functools.lru_cache(maxsize=65536)
def _simplify(expr: sympy.Expr) -> sympy.Expr:
    """sympy canonicalizes sums and products itself; full simplify is only needed for the rest
    (floor, Mod, Max/Min, rationals), and it is slow, so results are cached."""
    special = (sympy.floor, sympy.ceiling, sympy.Mod, sympy.Max, sympy.Min)
    if not expr.has(*special) and all(r.is_Integer for r in expr.atoms(sympy.Rational)):
        return sympy.expand(expr)
    return sympy.simplify(expr)


def shape(values: Iterable[object]) -> tuple:
    """Normalize a sequence of dims."""
    return tuple(dim(v) for v in values)


def is_static(d: Dim) -> bool:
    return isinstance(d, int)


def is_static_shape(s: Iterable[Dim]) -> bool:
    return all(isinstance(d, int) for d in s)


def symbols(d: Dim) -> set[str]:
    """Names of the symbols a dim depends on."""
    return set() if isinstance(d, int) else {str(s) for s in d.free_symbols}


def dim_str(d: Dim) -> str:
    return str(d)


def shape_str(s: Iterable[Dim]) -> str:
    return "[" + ", ".join(dim_str(d) for d in s) + "]"


def parse_dim(text: str) -> Dim:
    """Inverse of :func:`dim_str` (used by manifests and the text form)."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        names = set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", text)) - set(_FUNCS)
        table = {n: sym(n) for n in names} | {n: getattr(sympy, n) for n in _FUNCS}
        expr = sympy.sympify(text, locals=table)
    except (sympy.SympifyError, SyntaxError, TypeError) as exc:
        raise ShapeError(f"cannot parse dim {text!r}: {exc}") from None
    return dim(expr)


_FUNCS = ("floor", "ceiling", "Max", "Min", "Mod")


def evaluate(d: Dim, bindings: Mapping[str, int]) -> int:
    """The concrete value of a dim once its symbols are bound."""
    if isinstance(d, int):
        return d
    missing = symbols(d) - set(bindings)
    if missing:
        raise ShapeError(f"dim {d} needs values for {', '.join(sorted(missing))}")
    value = d.subs({sym(k): v for k, v in bindings.items() if k in symbols(d)})
    if not value.is_Integer:
        raise ShapeError(f"dim {d} evaluates to non-integer {value}")
    return int(value)


def equal(a: Dim, b: Dim) -> bool:
    """Provably equal (symbolic dims compare structurally after simplification)."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if a == b:
        return True
    diff = sympy.sympify(a) - sympy.sympify(b)
    if diff.is_number:
        return diff == 0
    return _simplify(diff) == 0


def product(dims: Iterable[Dim]) -> Dim:
    out: Dim = 1
    for d in dims:
        out = dim(out * d) if not (isinstance(out, int) and isinstance(d, int)) else out * d
    return out


def floordiv(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    return dim(sympy.floor(sympy.sympify(a) / sympy.sympify(b)))


def broadcast(a: tuple, b: tuple, where: str = "") -> tuple:
    """Numpy broadcasting of two shapes with symbolic dims.

    A symbolic dim against 1 gives the symbol; against a static n > 1 gives n (the symbol must
    equal n at run time, checked there); two different symbols cannot be decided and raise.
    """
    out = []
    for i in range(max(len(a), len(b))):
        x = a[len(a) - 1 - i] if i < len(a) else 1
        y = b[len(b) - 1 - i] if i < len(b) else 1
        if equal(x, y) or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        elif isinstance(x, int) and not isinstance(y, int):
            out.append(x)
        elif isinstance(y, int) and not isinstance(x, int):
            out.append(y)
        else:
            loc = f" in {where}" if where else ""
            raise ShapeError(f"shapes {shape_str(a)} and {shape_str(b)} do not broadcast{loc} "
                             f"(dim {x} vs {y})")
    return tuple(reversed(out))

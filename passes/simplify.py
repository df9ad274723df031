"""Algebraic simplification: identities removed, chains merged, activation formulas recognized.

Exporters spell many things the long way: ``x + 0`` and ``x * 1`` left over from folding,
casts to the dtype a value already has, transpose after transpose, a transpose moving only
size-1 axes (a reshape), reshape after reshape,
``0.5*x*(1+erf(x/sqrt(2)))`` for GELU, ``x*sigmoid(x)`` for SiLU, divisions by constants.
Each rule here is guarded by an exact type check (dtype and provably equal shape), so a
rewrite never changes broadcasting; rules run to a fixed point.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from llmc import dims as D
from llmc.dtypes import is_float
from llmc.ir import Graph, Node

from .manager import register_pass
from .rewrite import constant_all, forward_value, new_constant, remove_nodes, same_type, \
    scalar_value

_RESHAPE_LIKE = {"reshape", "squeeze", "unsqueeze"}
_MAX_ROUNDS = 20


class _Ctx:
    """Per-sweep lookups."""

    def __init__(self, graph: Graph) -> None:
        self.g = graph
        self.refresh()

    def refresh(self) -> None:
        self.prod = self.g.producers()

    def producer(self, value: str, op: str | None = None) -> Node | None:
        n = self.prod.get(value)
        if n is None or (op is not None and n.op != op):
            return None
        return n

    def same(self, a: str, b: str) -> bool:
        return same_type(self.g.types[a], self.g.types[b])


# ---------------------------------------------------------------- monomials
def monomial(ctx: _Ctx, value: str, depth: int = 0) -> tuple[float, dict[str, int]]:
    """``value`` as coef * prod(term ** k): looks through mul, div/pow by scalar constants
    and neg, so that a formula is recognized whatever order the exporter multiplied in."""
    c = scalar_value(ctx.g, value)
    if c is not None and not isinstance(c, bool):
        return float(c), {}
    node = ctx.producer(value)
    if node is not None and depth < 12:
        if node.op == "mul":
            ca, ta = monomial(ctx, node.inputs[0], depth + 1)
            cb, tb = monomial(ctx, node.inputs[1], depth + 1)
            terms = dict(ta)
            for k, e in tb.items():
                terms[k] = terms.get(k, 0) + e
            return ca * cb, terms
        if node.op == "div":
            d = scalar_value(ctx.g, node.inputs[1])
            if d not in (None, 0) and not isinstance(d, bool):
                ca, ta = monomial(ctx, node.inputs[0], depth + 1)
                return ca / float(d), ta
        if node.op == "pow":
            e = scalar_value(ctx.g, node.inputs[1])
            if e is not None and float(e).is_integer() and 1 <= e <= 4:
                ca, ta = monomial(ctx, node.inputs[0], depth + 1)
                return ca ** int(e), {k: v * int(e) for k, v in ta.items()}
        if node.op == "neg":
            ca, ta = monomial(ctx, node.inputs[0], depth + 1)
            return -ca, ta
    return 1.0, {value: 1}


def _close(a: float, b: float, rel: float = 1e-5) -> bool:
    return abs(a - b) <= rel * abs(b)


def _one_plus(ctx: _Ctx, value: str, op: str) -> str | None:
    """If ``value`` is ``1 + op(y)`` (either order), return y."""
    add = ctx.producer(value, "add")
    if add is None:
        return None
    for a, b in (add.inputs, add.inputs[::-1]):
        if scalar_value(ctx.g, a) == 1:
            inner = ctx.producer(b, op)
            if inner is not None:
                return inner.inputs[0]
    return None


def _match_activation(ctx: _Ctx, node: Node) -> tuple[str, str, dict] | None:
    """(op, x, attrs) when the product ending at ``node`` is GELU (erf or tanh) or SiLU."""
    coef, terms = monomial(ctx, node.outputs[0])
    if len(terms) != 2 or any(e != 1 for e in terms.values()):
        return None
    a, b = terms
    for x, f in ((a, b), (b, a)):
        if _close(coef, 1.0):
            sig = ctx.producer(f, "sigmoid")
            if sig is not None and sig.inputs[0] == x:
                return "silu", x, {}
        if not _close(coef, 0.5):
            continue
        y = _one_plus(ctx, f, "erf")
        if y is not None:
            cy, ty = monomial(ctx, y)
            if ty == {x: 1} and _close(cy, 1 / math.sqrt(2)):
                return "gelu", x, {"approximate": "none"}
        t = _one_plus(ctx, f, "tanh")
        if t is not None:
            ct, tt = monomial(ctx, t)
            if len(tt) == 1 and list(tt.values()) == [1] and _close(ct, math.sqrt(2 / math.pi)):
                s = ctx.producer(next(iter(tt)), "add")
                if s is not None:
                    for p, q in (s.inputs, s.inputs[::-1]):
                        if p != x:
                            continue
                        cq, tq = monomial(ctx, q)
                        if tq == {x: 3} and _close(cq, 0.044715, 1e-4):
                            return "gelu", x, {"approximate": "tanh"}
    return None


# ---------------------------------------------------------------- rules
# A rule returns None (no match), ("forward", value) or ("mutate", op, inputs, attrs).
Rule = Callable[[_Ctx, Node], tuple | None]


def _identity(ctx: _Ctx, n: Node):
    if n.op == "identity":
        return ("forward", n.inputs[0])
    if n.op == "cast" and ctx.g.types[n.inputs[0]].dtype == n.attrs.get("to"):
        return ("forward", n.inputs[0])
    if n.op == "expand" and ctx.same(n.inputs[0], n.outputs[0]):
        return ("forward", n.inputs[0])
    if n.op == "concat" and len([i for i in n.inputs if i]) == 1:
        return ("forward", n.inputs[0])
    return None


def _reshape(ctx: _Ctx, n: Node):
    if n.op not in _RESHAPE_LIKE:
        return None
    x = n.inputs[0]
    if ctx.same(x, n.outputs[0]):
        return ("forward", x)
    inner = ctx.producer(x)
    if inner is not None and inner.op in _RESHAPE_LIKE:
        shape = list(ctx.g.types[n.outputs[0]].shape)
        return ("mutate", "reshape", [inner.inputs[0]], {"shape": shape})
    return None


def _transpose(ctx: _Ctx, n: Node):
    if n.op != "transpose":
        return None
    perm = list(n.attrs["perm"])
    if perm == list(range(len(perm))):
        return ("forward", n.inputs[0])
    inner = ctx.producer(n.inputs[0], "transpose")
    if inner is not None:
        p1 = list(inner.attrs["perm"])
        return ("mutate", "transpose", [inner.inputs[0]], {"perm": [p1[i] for i in perm]})
    shape = ctx.g.types[n.inputs[0]].shape
    moved = [a for a in perm if shape[a] != 1]
    if moved == sorted(moved):
        # only size-1 axes move (decode's [b, 1, heads, E] -> [b, heads, 1, E]): the memory
        # order is unchanged, so it is a reshape (a free view) instead of a copy kernel
        return ("mutate", "reshape", [n.inputs[0]],
                {"shape": list(ctx.g.types[n.outputs[0]].shape)})
    return None


def _slice(ctx: _Ctx, n: Node):
    if n.op != "slice":
        return None
    shape = ctx.g.types[n.inputs[0]].shape
    axes = list(n.attrs.get("axes", []))
    steps = list(n.attrs.get("steps") or [1] * len(axes))
    for ax, st, en, sp in zip(axes, n.attrs.get("starts", []), n.attrs.get("ends", []), steps):
        if not (sp == 1 and st == 0 and D.equal(en, shape[ax])):
            return None
    if ctx.same(n.inputs[0], n.outputs[0]):
        return ("forward", n.inputs[0])
    return None


def _arith(ctx: _Ctx, n: Node):
    g = ctx.g
    o = n.outputs[0]
    if n.op in ("add", "sub"):
        pairs = [(0, 1), (1, 0)] if n.op == "add" else [(0, 1)]
        for keep, zero in pairs:
            x = n.inputs[keep]
            if constant_all(g, n.inputs[zero], 0) and ctx.same(x, o):
                return ("forward", x)
    if n.op == "mul":
        for keep, one in ((0, 1), (1, 0)):
            x = n.inputs[keep]
            if constant_all(g, n.inputs[one], 1) and ctx.same(x, o):
                return ("forward", x)
    if n.op in ("logical_and", "logical_or"):
        neutral = n.op == "logical_and"
        for keep, other in ((0, 1), (1, 0)):
            arr = g.constants.get(n.inputs[other])
            x = n.inputs[keep]
            if arr is not None and arr.size and bool(np.all(arr == neutral)) and ctx.same(x, o):
                return ("forward", x)
    if n.op == "div":
        x, c = n.inputs
        if constant_all(g, c, 1) and ctx.same(x, o):
            return ("forward", x)
        arr = g.constants.get(c)
        if arr is not None and is_float(g.types[c].dtype) and arr.size and np.all(arr != 0) \
                and np.all(np.isfinite(arr)):
            recip = np.reciprocal(arr).astype(arr.dtype)
            return ("mutate", "mul", [x, new_constant(g, recip, c + "_recip")], {})
    return None


def _activation(ctx: _Ctx, n: Node):
    if n.op != "mul" or not is_float(ctx.g.types[n.outputs[0]].dtype):
        return None
    m = _match_activation(ctx, n)
    if m is None:
        return None
    op, x, attrs = m
    if not ctx.same(x, n.outputs[0]):
        return None
    return ("mutate", op, [x], attrs)


RULES: list[Rule] = [_identity, _reshape, _transpose, _slice, _activation, _arith]


def _resolve(alias: dict[str, str], v: str) -> str:
    while v in alias:
        v = alias[v]
    return v


def simplify_once(graph: Graph) -> int:
    """One sweep over the nodes; returns the number of rewrites.

    Forwarded values go into an alias map that later nodes resolve as the sweep reaches
    them (nodes are topologically ordered, so every reader comes later): linear time. Only a
    graph output being forwarded takes the slower path that keeps its name.
    """
    ctx = _Ctx(graph)
    changes = 0
    alias: dict[str, str] = {}
    dead: list[Node] = []

    def flush() -> None:
        for n in graph.nodes:
            n.inputs = [_resolve(alias, i) if i else i for i in n.inputs]
        alias.clear()

    for node in list(graph.nodes):
        if alias:
            node.inputs = [_resolve(alias, i) if i else i for i in node.inputs]
        if len(node.outputs) != 1:
            continue
        for rule in RULES:
            act = rule(ctx, node)
            if act is None:
                continue
            if act[0] == "forward":
                old, new = node.outputs[0], act[1]
                if new == old:
                    continue
                if old not in graph.outputs:
                    alias[old] = new
                    dead.append(node)
                    ctx.prod.pop(old, None)
                    changes += 1
                    break
                flush()
                was_identity = node.op == "identity" and node.inputs == [new]
                if forward_value(graph, node, old, new):
                    remove_nodes(graph, [node])
                    changes += 1
                    ctx.refresh()
                elif not was_identity:
                    changes += 1
            else:
                _, op, inputs, attrs = act
                node.op, node.inputs, node.attrs = op, list(inputs), dict(attrs)
                changes += 1
            break
    flush()
    remove_nodes(graph, dead)
    return changes


@register_pass("simplify")
def simplify(graph: Graph) -> Graph:
    """Apply the rules until nothing changes (dead producers are left to dce)."""
    for _ in range(_MAX_ROUNDS):
        if not simplify_once(graph):
            break
    return graph

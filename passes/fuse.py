"""Operator fusion decided by llmc: groups of nodes become one ``fused`` node (one kernel).

Why: a backend that launches one kernel per node pays a pass over memory for every
intermediate (bias adds, activations, residual adds, the stages of softmax and attention).
This pass finds the groups that a backend can compute in one kernel and replaces each by a
``fused`` node (:mod:`llmc.ops.fused`) whose body is the original subgraph, so the IR stays
executable by the numpy reference. Groups, formed greedily in this order, each node in at
most one group, every interior value read only inside its group and not a graph output:

- ``attention``: matmul(q, k^T) -> elementwise chain (scale, mask add / where) -> softmax
  over the last axis -> matmul(p, v), both matmul operands computed (not weights);
- ``matmul_epilogue``: matmul with a 2-D constant weight (the packed-weight kernel) followed
  by a chain of same-shape elementwise ops (bias, activation, residual add, scale);
- ``conv_epilogue``: ``conv`` or ``conv2d_nchwc`` (the blocked layout) followed by a chain of
  same-shape elementwise ops (bias, activation, residual add, scale), one kernel;
- ``reduction``: layer_norm / rms_norm / softmax / log_softmax with the elementwise chain that
  produces its input and the one that consumes its output (row-wise, one kernel);
- ``elementwise``: a chain of two or more same-shape elementwise ops.
"""
from __future__ import annotations

from typing import Any, Iterable

from llmc import dims as D
from llmc.ir import Graph, Node

from .manager import register_pass

UNARY = {"abs", "acos", "acosh", "asin", "asinh", "atan", "atanh", "bitwise_not", "ceil", "celu",
         "clip", "cos", "cosh", "elu", "erf", "exp", "floor", "gelu", "hard_sigmoid",
         "hard_swish", "identity", "isinf", "isnan", "leaky_relu", "log", "logical_not", "mish",
         "neg", "reciprocal", "relu", "round", "rsqrt", "selu", "shrink", "sigmoid", "sign",
         "silu", "sin", "sinh", "softplus", "softsign", "sqrt", "tan", "tanh",
         "thresholded_relu", "cast"}
BINARY = {"add", "bitwise_and", "bitwise_or", "bitwise_xor", "div", "equal", "greater",
          "greater_equal", "less", "less_equal", "logical_and", "logical_or", "logical_xor",
          "maximum", "minimum", "mul", "pow", "prelu", "sub", "where"}
ELEMENTWISE = UNARY | BINARY
ROW_REDUCTIONS = {"layer_norm", "rms_norm", "softmax", "log_softmax"}
MAX_CHAIN = 8  # longest elementwise chain pulled into one group


class _Ctx:
    """Lookup tables shared by the group finders."""

    def __init__(self, graph: Graph) -> None:
        self.g = graph
        self.prod = graph.producers()
        self.cons = graph.consumers()
        self.outputs = set(graph.outputs)
        self.taken: set[str] = set()  # node names already in a group

    def single_consumer(self, value: str) -> Node | None:
        """The only reader of ``value`` if it has exactly one and is not a graph output."""
        users = self.cons.get(value, [])
        if value in self.outputs or len(users) != 1:
            return None
        return users[0]

    def free(self, node: Node | None) -> bool:
        return node is not None and node.name not in self.taken and len(node.outputs) == 1

    def elementwise(self, node: Node | None) -> bool:
        """An elementwise op whose inputs broadcast up to its output (none is larger)."""
        if node is None or node.op not in ELEMENTWISE or len(node.outputs) != 1:
            return False
        rank = self.g.types[node.outputs[0]].rank
        return all(self.g.types[i].rank <= rank for i in node.inputs if i)

    def same_shape(self, a: str, b: str) -> bool:
        ta, tb = self.g.types[a], self.g.types[b]
        return ta.rank == tb.rank and all(D.equal(x, y) for x, y in zip(ta.shape, tb.shape))

    def extend(self, value: str, limit: int = MAX_CHAIN) -> list[Node]:
        """Elementwise consumers chained after ``value`` (same shape, one reader each)."""
        chain: list[Node] = []
        while len(chain) < limit:
            c = self.single_consumer(value)
            if not self.free(c) or not self.elementwise(c) or \
                    not self.same_shape(c.outputs[0], value) or \
                    self.g.types[c.outputs[0]].dtype != self.g.types[value].dtype:
                break
            chain.append(c)
            value = c.outputs[0]
        return chain


def _is_const_weight(ctx: _Ctx, n: Node) -> bool:
    if n.op != "matmul" or len(n.inputs) != 2:
        return False
    a, b = n.inputs
    ta, tb = ctx.g.types[a], ctx.g.types[b]
    return (b in ctx.g.constants and tb.rank == 2 and tb.dtype == "float32" and ta.rank >= 2
            and ta.dtype == "float32" and a not in ctx.g.constants)


CONV_OPS = ("conv", "conv2d_nchwc")


def _is_conv_anchor(ctx: _Ctx, n: Node) -> bool:
    """A float conv (plain or blocked NCHW{b}c) whose elementwise consumers (bias, activation,
    residual add, scale) can run in its kernel, on the accumulator before it is stored."""
    if n.op not in CONV_OPS or len(n.outputs) != 1 or len(n.inputs) < 2:
        return False
    return ctx.g.types[n.outputs[0]].dtype in ("float32", "float16", "bfloat16")


def _find_attention(ctx: _Ctx, m1: Node) -> list[Node] | None:
    g = ctx.g
    if m1.op != "matmul" or any(i in g.constants for i in m1.inputs) or \
            g.types[m1.outputs[0]].rank < 3 or g.types[m1.outputs[0]].dtype != "float32":
        return None
    group = [m1]
    value = m1.outputs[0]
    for _ in range(4):  # scale, mask (add / where), ...
        c = ctx.single_consumer(value)
        if not ctx.free(c):
            return None
        if c.op in ("softmax",):
            rank = g.types[value].rank
            if int(c.attrs.get("axis", -1)) % rank != rank - 1:
                return None
            group.append(c)
            value = c.outputs[0]
            break
        if not ctx.elementwise(c) or not ctx.same_shape(c.outputs[0], value):
            return None
        group.append(c)
        value = c.outputs[0]
    else:
        return None
    if group[-1].op != "softmax":
        return None
    m2 = ctx.single_consumer(value)
    if not ctx.free(m2) or m2.op != "matmul" or m2.inputs[0] != value or \
            m2.inputs[1] in g.constants or g.types[m2.outputs[0]].rank != g.types[value].rank:
        return None
    group.append(m2)
    # layout changes that only permute leading axes become index arithmetic in the kernel:
    # q and v read through their transposes, the output written through its transpose; k^T
    # may move the last axis too (k [.., Lk, E] -> [.., E, Lk]): the x86 kernel copies each
    # head's k into a transposed tile itself, so no separate transpose kernel runs
    for operand in (m1.inputs[0], m1.inputs[1], m2.inputs[1]):
        t = ctx.prod.get(operand)
        moves_ok = operand == m1.inputs[1] and ctx.free(t) and t.op == "transpose"
        if (_lead_transpose(ctx, t) or moves_ok) and ctx.single_consumer(operand) in (m1, m2):
            group.insert(0, t)
    t = ctx.single_consumer(m2.outputs[0])
    if _lead_transpose(ctx, t):
        group.append(t)
    return group


def _lead_transpose(ctx: _Ctx, t: Node | None) -> bool:
    """A transpose that keeps the last axis last (contiguous rows stay contiguous)."""
    if not ctx.free(t) or t.op != "transpose":
        return False
    perm = list(t.attrs.get("perm", []))
    return bool(perm) and perm[-1] == len(perm) - 1


def _find_reduction(ctx: _Ctx, n: Node) -> list[Node]:
    """Row reduction plus its elementwise producer chain (backwards) and consumer chain."""
    head: list[Node] = []
    value = n.inputs[0]
    while len(head) < MAX_CHAIN:
        p = ctx.prod.get(value)
        if not ctx.free(p) or not ctx.elementwise(p) or ctx.single_consumer(value) is not \
                (head[0] if head else n) or not ctx.same_shape(value, n.inputs[0]):
            break
        head.insert(0, p)
        # continue through the producer's first same-shape computed input
        nxt = [i for i in p.inputs if i and i in ctx.prod and ctx.same_shape(i, n.inputs[0])]
        if not nxt:
            break
        value = nxt[0]
    return head + [n] + ctx.extend(n.outputs[0])


def _last_axis(graph: Graph, n: Node) -> bool:
    """The op reduces over the last axis only (rows are then contiguous and independent)."""
    rank = graph.types[n.inputs[0]].rank
    if rank < 2 or len(n.outputs) != 1:
        return False
    return int(n.attrs.get("axis", -1)) % rank == rank - 1


def find_groups(graph: Graph) -> list[tuple[str, list[Node]]]:
    """The fusion groups of ``graph`` as (kind, nodes in topological order)."""
    ctx = _Ctx(graph)
    groups: list[tuple[str, list[Node]]] = []

    def claim(kind: str, nodes: list[Node]) -> None:
        if _closed(ctx, nodes) and _symbols_ok(graph, nodes):
            groups.append((kind, nodes))
            ctx.taken.update(n.name for n in nodes)

    for n in graph.nodes:
        if n.name not in ctx.taken:
            grp = _find_attention(ctx, n)
            if grp:
                claim("attention", grp)
    for n in graph.nodes:
        if n.name not in ctx.taken and _is_const_weight(ctx, n):
            chain = ctx.extend(n.outputs[0])
            if chain:
                claim("matmul_epilogue", [n] + chain)
    for n in graph.nodes:
        if n.name not in ctx.taken and _is_conv_anchor(ctx, n):
            chain = ctx.extend(n.outputs[0])
            if chain:
                claim("conv_epilogue", [n] + chain)
    for n in graph.nodes:
        if n.name not in ctx.taken and n.op in ROW_REDUCTIONS and _last_axis(graph, n):
            # alone too: one row-wise kernel instead of one loop nest per statistic
            claim("reduction", _find_reduction(ctx, n))
    for n in graph.nodes:
        if n.name not in ctx.taken and ctx.elementwise(n):
            chain = ctx.extend(n.outputs[0])
            if chain:
                claim("elementwise", [n] + chain)
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    return [(k, sorted(ns, key=lambda n: order[n.name])) for k, ns in groups]


def _closed(ctx: _Ctx, nodes: list[Node]) -> bool:
    """Only the last node's single output leaves the group."""
    names = {n.name for n in nodes}
    for n in nodes[:-1]:
        for o in n.outputs:
            if o in ctx.outputs or any(u.name not in names for u in ctx.cons.get(o, [])):
                return False
    return len(nodes[-1].outputs) == 1


def _walk_symbols(v: Any, out: set[str]) -> None:
    if isinstance(v, (list, tuple)):
        for x in v:
            _walk_symbols(x, out)
    elif hasattr(v, "free_symbols") and not isinstance(v, (int, float, str)):
        out.update(str(s) for s in v.free_symbols)


def _external_inputs(nodes: Iterable[Node]) -> list[str]:
    made = {o for n in nodes for o in n.outputs}
    seen: list[str] = []
    for n in nodes:
        for i in n.inputs:
            if i and i not in made and i not in seen:
                seen.append(i)
    return seen


def _symbols_ok(graph: Graph, nodes: list[Node]) -> bool:
    """Every symbol the body mentions is bound by a plain symbolic dim of a body input.

    The reference binds a body's symbols from its input arrays, so a symbol that appears only
    inside an expression (or only in an attribute) would be unbound there.
    """
    bound: set[str] = set()
    for i in _external_inputs(nodes):
        for d in graph.types[i].shape:
            if not isinstance(d, int) and getattr(d, "is_Symbol", False):
                bound.add(str(d))
    used: set[str] = set()
    for n in nodes:
        _walk_symbols(list(n.attrs.values()), used)
        for o in n.outputs:
            for d in graph.types[o].shape:
                used |= D.symbols(d)
    return used <= bound


def make_body(graph: Graph, nodes: list[Node], name: str) -> Graph:
    """The subgraph of ``nodes``: external values become inputs, the last output the output."""
    body = Graph(name)
    for i in _external_inputs(nodes):
        body.inputs.append(i)
        body.types[i] = graph.types[i]
        body._used.add(i)
    for n in nodes:
        body.nodes.append(Node(n.op, list(n.inputs), list(n.outputs), dict(n.attrs), n.name))
        body._used.add(n.name)
        for o in n.outputs:
            body.types[o] = graph.types[o]
            body._used.add(o)
    body.outputs = list(nodes[-1].outputs)
    return body


@register_pass("fuse")
def fuse(graph: Graph) -> Graph:
    """Replace every fusion group by one ``fused`` node placed where its last node was."""
    groups = find_groups(graph)
    if not groups:
        return graph
    replace: dict[str, Node] = {}
    drop: set[str] = set()
    for kind, nodes in groups:
        name = graph.fresh_name(f"fused_{kind}")
        body = make_body(graph, nodes, name)
        fused = Node("fused", list(body.inputs), list(body.outputs),
                     {"kind": kind, "body": body}, name)
        replace[nodes[-1].name] = fused
        drop.update(n.name for n in nodes[:-1])
    graph.nodes = [replace.get(n.name, n) for n in graph.nodes if n.name not in drop]
    return graph


def fused_groups(graph: Graph) -> list[tuple[str, str, list[str]]]:
    """(node name, kind, ops of the body) for every fused node: what reports print."""
    return [(n.name, n.attrs["kind"], [b.op for b in n.attrs["body"].nodes])
            for n in graph.nodes if n.op == "fused"]

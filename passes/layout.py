"""Blocked channel layout for x86 convolutions: NCHW -> NCHW{b}c where it pays.

Why: a direct convolution on a CPU is fast when it vectorizes over output channels, which
needs ``b`` channels contiguous in memory (``[N, C/b, H, W, b]``, b = 16 floats = one
AVX-512 register). Converting costs a copy, so the conversion must be paid once per chain of
convolutions, not once per convolution. The pass works in two steps:

1. **Rewrite** (:func:`block_convs`): every eligible ``conv`` becomes ``conv2d_nchwc`` with an
   explicit ``layout_transform`` to the blocked layout in front and one back to NCHW behind.
   Its weight is re-packed at compile time (OIHW -> OIHW{b}i{b}o, a new constant; nothing
   runs at run time). Ops between convolutions follow when one of their inputs comes out of
   such a transform: same-shape elementwise ops (bias, activations, residual add, scale;
   per-channel constants are re-packed to ``[1, C/b, 1, 1, b]``), ``max_pool``/``avg_pool``
   (-> ``pool2d_nchwc``), ``global_avg_pool`` (-> ``reduce_mean`` over H, W) and
   ``reduce_mean/max/sum`` over H, W with keepdims.
2. **Cancel** (:func:`cancel_transforms`): a transform back to NCHW followed by one to the same
   blocked layout is the identity, so readers of the second use the first's input; transforms
   nobody reads any more are dropped. What remains are the boundaries with NCHW ops.

Which convolutions (the rule, measured in bench/fusion.py): 2-D, group 1, float32, constant
weight (and bias), output channels a static multiple of the block, input channels a multiple
of the block or fewer than it (a stem on 3 RGB channels reads NCHW3c: the whole channel axis
is one block) and at least ``min_channels`` (default 1). Others (depthwise convs, channel
counts such as 24 with b = 16) stay in NCHW; channels are never padded with zeros (padding
3 -> 16 input channels would do 5x the work).

The pass only fires for targets with a blocked-conv schedule (x86); the pipeline says which
target it compiles for through :func:`layout_options`. Run without it (the default), the pass
leaves the graph alone, so a graph optimized for the systolic array or CUDA keeps plain convs.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from llmc.ir import Graph, Node
from llmc.ops.layout import block_of, pack_conv_weight, to_blocked

from .manager import register_pass
from .dce import dce

LAYOUT_TARGETS = ("x86",)  # targets whose backend lowers and schedules the blocked ops

# elementwise ops that commute with a permutation of elements (attrs are layout-free)
BLOCKABLE = {"relu", "clip", "gelu", "sigmoid", "silu", "tanh", "leaky_relu", "hard_swish",
             "hard_sigmoid", "elu", "selu", "celu", "mish", "softplus", "neg", "abs", "exp",
             "identity", "add", "sub", "mul", "div", "maximum", "minimum", "prelu"}


SPATIAL_REDUCES = ("reduce_mean", "reduce_max", "reduce_sum")

@dataclass(frozen=True)
class LayoutOptions:
    """Where and how to block: the compile target, the channel block, the smallest C_in."""

    target: str | None = None
    block: int = 16
    min_channels: int = 1


_OPTIONS: contextvars.ContextVar[LayoutOptions] = contextvars.ContextVar(
    "llmc_layout_options", default=LayoutOptions())


@contextlib.contextmanager
def layout_options(target: str | None = "x86", block: int = 16,
                   min_channels: int = 1) -> Iterator[LayoutOptions]:
    """Within the block, the ``layout`` pass compiles for ``target`` with channel block ``block``.

    Why a context and not a pass argument: passes are ``Graph -> Graph`` and levels are lists
    of names; the target is known only to the pipeline (or a benchmark comparing layouts).
    """
    opts = LayoutOptions(target, int(block), int(min_channels))
    token = _OPTIONS.set(opts)
    try:
        yield opts
    finally:
        _OPTIONS.reset(token)


def current_options() -> LayoutOptions:
    """The layout options in effect (target None: the pass does nothing)."""
    return _OPTIONS.get()


# ----------------------------------------------------------------------------- step 1: rewrite
def _static_c(graph: Graph, value: str) -> int | None:
    ty = graph.types[value]
    return ty.shape[1] if ty.rank == 4 and isinstance(ty.shape[1], int) else None


def _conv_ok(graph: Graph, n: Node, block: int, min_channels: int) -> bool:
    if n.op != "conv" or len(n.outputs) != 1 or int(n.attrs.get("group", 1)) != 1:
        return False
    x, w = n.inputs[0], n.inputs[1]
    b = n.inputs[2] if len(n.inputs) > 2 else ""
    tx = graph.types[x]
    if tx.rank != 4 or tx.dtype != "float32" or w not in graph.constants:
        return False
    if b and b not in graph.constants:
        return False
    ci, co = _static_c(graph, x), graph.types[w].shape[0]
    return ci is not None and co % block == 0 and ci >= min_channels and \
        (ci % block == 0 or ci < block)


def blocked_convs(graph: Graph) -> list[str]:
    """Names of the convs the ``layout`` pass will block under the current options (none
    without a target): the precision pass keeps these float32 where that kernel is faster."""
    opts = current_options()
    if opts.target != "x86":
        return []
    return [n.name for n in graph.nodes
            if n.name and _conv_ok(graph, n, opts.block, opts.min_channels)]


def input_block(c_in: int, block: int) -> int:
    """The input channel block of a blocked conv: ``block``, or all of C_in when it is smaller
    (a stem on 3 RGB channels reads NCHW3c: no zero channels, output still NCHW{block}c)."""
    return block if c_in % block == 0 else c_in


def _channel_const(graph: Graph, value: str, c: int) -> str | None:
    """How a constant operand broadcasts against [N, C, H, W]: "scalar" (every dim 1: it
    broadcasts against the blocked tensor as it is), "channel" ([C] along axis 1: re-packed
    to [1, C/b, 1, 1, b]) or None (anything else keeps the op in NCHW)."""
    arr = graph.constants[value]
    if arr.ndim > 4:
        return None
    shape = (1,) * (4 - arr.ndim) + arr.shape
    if shape[0] != 1 or shape[2] != 1 or shape[3] != 1 or shape[1] not in (1, c):
        return None
    return "scalar" if shape[1] == 1 else "channel"


class _Rewriter:
    """Step 1: walk the nodes in order, emitting blocked ops with transforms around them."""

    def __init__(self, graph: Graph, block: int, min_channels: int = 1) -> None:
        self.g = graph
        self.b = block
        self.min_c = min_channels
        self.layout = f"NCHW{block}c"
        self.blocked_src: dict[str, str] = {}  # NCHW value made by a to-NCHW transform -> source
        self.to_blk: dict[str, str] = {}       # NCHW value -> its to-blocked transform's output
        self.consts: dict[tuple, str] = {}     # (constant, kind) -> re-packed constant
        self.changed = 0

    def blocked(self, value: str, block: int | None = None) -> str:
        """``value`` in a blocked layout (one transform per value and block, shared)."""
        layout = f"NCHW{block}c" if block else self.layout
        key = value if not block or block == self.b else f"{value}@{layout}"
        if key not in self.to_blk:
            (out,) = self.g.add_node("layout_transform", [value],
                                     {"src": "NCHW", "dst": layout}, name="to_nchwc")
            self.to_blk[key] = out
        return self.to_blk[key]

    def back(self, blocked: str, name: str) -> None:
        """The transform back to NCHW, keeping the original output name."""
        self.g.types.pop(name)
        self.g.add_node("layout_transform", [blocked], {"src": self.layout, "dst": "NCHW"},
                        name="to_nchw", outputs=[name])
        self.blocked_src[name] = blocked
        self.changed += 1

    def const(self, value: str, kind: str, make) -> str:
        key = (value, kind)
        if key not in self.consts:
            self.consts[key] = self.g.add_constant(make(self.g.constants[value]),
                                                   f"{value}_{self.layout}")
        return self.consts[key]

    def conv(self, n: Node) -> None:
        b = self.b
        bi = input_block(_static_c(self.g, n.inputs[0]), b)
        ins = [self.blocked(n.inputs[0], bi),
               self.const(n.inputs[1], f"w{bi}", lambda w: pack_conv_weight(w, bi, b))]
        if len(n.inputs) > 2 and n.inputs[2]:
            ins.append(n.inputs[2])  # the bias stays [O]: the kernel indexes it as oc * b + ob
        attrs = {k: v for k, v in n.attrs.items() if k != "group"}
        (y,) = self.g.add_node("conv2d_nchwc", ins, attrs, name=n.name + "_nchwc")
        self.back(y, n.outputs[0])

    def elementwise(self, n: Node) -> bool:
        g = self.g
        if n.op not in BLOCKABLE or len(n.outputs) != 1:
            return False
        out_t = g.types[n.outputs[0]]
        c = _static_c(g, n.outputs[0])
        if out_t.dtype != "float32" or c is None or c % self.b or \
                not any(i in self.blocked_src for i in n.inputs if i):
            return False
        kinds: list = []
        for i in n.inputs:
            if not i:
                kinds.append("absent")
            elif g.types[i] == out_t:
                kinds.append("tensor")
            elif i in g.constants and _channel_const(g, i, c) is not None:
                kinds.append(_channel_const(g, i, c))
            else:
                return False
        new = []
        for i, kind in zip(n.inputs, kinds):
            if kind == "tensor":
                new.append(self.blocked(i))
            elif kind == "channel":
                new.append(self.const(i, "channel", lambda a, c=c: to_blocked(
                    np.broadcast_to(a.reshape((1,) * (4 - a.ndim) + a.shape), (1, c, 1, 1)),
                    self.b)))
            else:  # absent, or a scalar-like constant that broadcasts as it is
                new.append(i)
        (y,) = g.add_node(n.op, new, dict(n.attrs), name=n.name + "_nchwc")
        self.back(y, n.outputs[0])
        return True

    def pool(self, n: Node) -> bool:
        g = self.g
        x = n.inputs[0]
        if x not in self.blocked_src or len(n.outputs) != 1:
            return False
        c = _static_c(g, x)
        if c is None or c % self.b:
            return False
        src = self.blocked(x)
        if n.op in ("max_pool", "avg_pool"):
            kind = "max" if n.op == "max_pool" else "avg"
            (y,) = g.add_node("pool2d_nchwc", [src], {"kind": kind, **n.attrs},
                              name=n.name + "_nchwc")
        else:  # global_avg_pool: a mean over H, W keeps the channel block
            (y,) = g.add_node("reduce_mean", [src], {"axes": [2, 3], "keepdims": True},
                              name=n.name + "_nchwc")
        self.back(y, n.outputs[0])
        return True

    def spatial_reduce(self, n: Node) -> bool:
        """reduce_mean / max / sum over H and/or W with keepdims: the same op, blocked."""
        x = n.inputs[0]
        axes = [int(a) for a in n.attrs.get("axes") or []]
        c = _static_c(self.g, x)
        if x not in self.blocked_src or not axes or not set(axes) <= {2, 3} or \
                not n.attrs.get("keepdims", True) or len(n.outputs) != 1 or c is None or \
                c % self.b or self.g.types[x].dtype != "float32":
            return False
        (y,) = self.g.add_node(n.op, [self.blocked(x)], dict(n.attrs), name=n.name + "_nchwc")
        self.back(y, n.outputs[0])
        return True

    def run(self) -> int:
        g = self.g
        old, g.nodes = g.nodes, []
        for n in old:
            if _conv_ok(g, n, self.b, self.min_c):
                self.conv(n)
                continue
            if n.op in BLOCKABLE and self.elementwise(n):
                continue
            if n.op in SPATIAL_REDUCES and self.spatial_reduce(n):
                continue
            if n.op in ("max_pool", "avg_pool", "global_avg_pool") and \
                    g.types[n.inputs[0]].rank == 4 and g.types[n.inputs[0]].dtype == "float32" \
                    and self.pool(n):
                continue
            g.nodes.append(n)
        return self.changed


def block_convs(graph: Graph, block: int = 16, min_channels: int = 1) -> Graph:
    """Step 1 alone: eligible convs and their neighbours in NCHW{block}c, transforms explicit.

    Every rewritten op gets a transform back to NCHW under its original output name, so the
    graph is valid (and computes the same) after this step; :func:`cancel_transforms` then
    removes the round trips between blocked ops.
    """
    _Rewriter(graph, block, min_channels).run()
    return graph


# ----------------------------------------------------------------------------- step 2: cancel
def cancel_transforms(graph: Graph) -> int:
    """Bypass blocked -> NCHW -> blocked round trips and drop dead transforms and constants.

    Returns how many transforms were removed.
    """
    prod = graph.producers()
    alias: dict[str, str] = {}
    for n in graph.nodes:
        if n.op != "layout_transform" or block_of(n.attrs["dst"]) == 0:
            continue
        p = prod.get(n.inputs[0])
        if p is not None and p.op == "layout_transform" and p.attrs["dst"] == "NCHW" and \
                p.attrs["src"] == n.attrs["dst"] and n.outputs[0] not in graph.outputs:
            alias[n.outputs[0]] = p.inputs[0]
    for n in graph.nodes:
        n.inputs = [alias.get(i, i) for i in n.inputs]
    before = sum(n.op == "layout_transform" for n in graph.nodes)
    dce(graph)  # the cancelled transforms and their repacked constants
    return before - count_transforms(graph)


def count_transforms(graph: Graph) -> int:
    """Number of ``layout_transform`` nodes (what the tests and the report count)."""
    return sum(n.op == "layout_transform" for n in graph.nodes)


@register_pass("layout")
def layout(graph: Graph) -> Graph:
    """Blocked layout for the convolutions of an x86 compile (see the module docstring)."""
    opts = current_options()
    if opts.target not in LAYOUT_TARGETS:
        return graph
    if not any(_conv_ok(graph, n, opts.block, opts.min_channels) for n in graph.nodes):
        return graph
    block_convs(graph, opts.block, opts.min_channels)
    cancel_transforms(graph)
    return graph

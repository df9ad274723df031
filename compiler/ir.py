"""llmc's graph IR: typed values, nodes in topological order, constants as numpy arrays.

The IR is a plain data structure that frontends build, passes rewrite and backends lower.
Every value (graph input, constant, node output) has a :class:`TensorType`. Each node's op
is defined in :mod:`llmc.ops` with shape inference and a numpy reference, so a graph can be
executed before and after any rewrite (:func:`llmc.interpreter.run_reference`).
networkx is used for analyses (:meth:`Graph.to_networkx`), not as the storage.
"""
from __future__ import annotations

import copy as _copy
import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import dims as D
from .dtypes import DTYPES, from_numpy
from .errors import ShapeError, VerificationError


@dataclass(frozen=True)
class TensorType:
    """dtype name and shape (ints and symbolic dims)."""

    dtype: str
    shape: tuple

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ShapeError(f"unknown dtype {self.dtype!r}")
        object.__setattr__(self, "shape", D.shape(self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        return D.is_static_shape(self.shape)

    def numel(self) -> D.Dim:
        return D.product(self.shape)

    def __str__(self) -> str:
        return f"{self.dtype}{D.shape_str(self.shape)}"


@dataclass
class Node:
    """One operation. ``inputs`` holds value names ("" for an omitted optional input)."""

    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""


class Graph:
    """A dataflow graph with named inputs, outputs, constants and typed values."""

    def __init__(self, name: str = "model") -> None:
        self.name = name
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.types: dict[str, TensorType] = {}
        self.constants: dict[str, np.ndarray] = {}
        self.nodes: list[Node] = []
        self._counter = itertools.count()
        self._used: set[str] = set()

    # ----------------------------------------------------------------- building
    def fresh_name(self, hint: str = "v") -> str:
        """A value or node name not used yet in this graph (and reserve it)."""
        hint = hint or "v"
        name = hint
        while name in self._used:
            name = f"{hint}_{next(self._counter)}"
        self._used.add(name)
        return name

    def add_input(self, name: str, dtype: str, shape: Sequence[object]) -> str:
        """Declare a graph input."""
        if name in self.types:
            raise VerificationError(f"value {name!r} defined twice")
        self.types[name] = TensorType(dtype, tuple(shape))
        self._used.add(name)
        self.inputs.append(name)
        return name

    def add_constant(self, array: np.ndarray, name: str = "const") -> str:
        """Add a constant (weights, small literals); returns its value name."""
        array = np.asarray(array)
        name = self.fresh_name(name)
        self.constants[name] = array
        self.types[name] = TensorType(from_numpy(array.dtype), array.shape)
        return name

    def add_node(self, op: str, inputs: Sequence[str], attrs: Mapping[str, Any] | None = None,
                 name: str = "", outputs: Sequence[str] | None = None,
                 num_outputs: int | None = None) -> list[str]:
        """Append a node, infer its output types and return its output names.

        ``outputs`` names the results (fresh names are made otherwise); ``num_outputs`` is
        for ops with a variable number of results (split).
        """
        from .ops import get_op  # late: ops import this module

        opdef = get_op(op)
        attrs = dict(attrs or {})
        name = self.fresh_name(name or op)
        for inp in inputs:
            if inp and inp not in self.types:
                raise VerificationError(f"node {name!r} ({op}) uses undefined value {inp!r}")
        in_types = [self.types[i] if i else None for i in inputs]
        try:
            out_types = opdef.infer(in_types, attrs)
        except ShapeError as exc:
            raise ShapeError(f"node {name!r} ({op}): {exc}") from None
        if num_outputs is not None and len(out_types) != num_outputs:
            raise VerificationError(f"node {name!r} ({op}) makes {len(out_types)} outputs, "
                                    f"{num_outputs} expected")
        if outputs is None:
            outputs = [self.fresh_name(f"{name}_out{i}" if len(out_types) > 1 else name + "_out")
                       for i in range(len(out_types))]
        outputs = list(outputs)
        if len(outputs) != len(out_types):
            raise VerificationError(f"node {name!r} ({op}) makes {len(out_types)} outputs, "
                                    f"{len(outputs)} names given")
        for out, ty in zip(outputs, out_types):
            if out in self.types:
                raise VerificationError(f"node {name!r} ({op}) redefines value {out!r}")
            self.types[out] = ty
            self._used.add(out)
        self.nodes.append(Node(op, list(inputs), outputs, attrs, name))
        return list(outputs)

    def set_outputs(self, names: Iterable[str]) -> None:
        self.outputs = list(names)

    # ----------------------------------------------------------------- queries
    def producers(self) -> dict[str, Node]:
        """Value name -> the node that makes it."""
        return {out: n for n in self.nodes for out in n.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        """Value name -> nodes that read it."""
        use: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    use.setdefault(i, []).append(n)
        return use

    def symbols(self) -> set[str]:
        """Names of all symbolic dims in the graph inputs."""
        out: set[str] = set()
        for i in self.inputs:
            for d in self.types[i].shape:
                out |= D.symbols(d)
        return out

    def to_networkx(self):
        """A DiGraph of nodes (by node name) with value names on edges, for analyses."""
        import networkx as nx

        g = nx.DiGraph()
        prod = self.producers()
        for n in self.nodes:
            g.add_node(n.name, op=n.op)
            for i in n.inputs:
                if i in prod:
                    g.add_edge(prod[i].name, n.name, value=i)
        return g

    def copy(self) -> "Graph":
        """A deep copy of structure; constant arrays are shared (treat them as immutable)."""
        g = Graph(self.name)
        g.inputs = list(self.inputs)
        g.outputs = list(self.outputs)
        g.types = dict(self.types)
        g.constants = dict(self.constants)
        g.nodes = [Node(n.op, list(n.inputs), list(n.outputs), _copy.deepcopy(n.attrs), n.name)
                   for n in self.nodes]
        g._used = set(self._used)
        return g

    def constant_bytes(self) -> int:
        return int(sum(a.nbytes for a in self.constants.values()))

    # ----------------------------------------------------------------- checks
    def verify(self) -> None:
        """Check the invariants every pass must keep; raise VerificationError if broken."""
        from .ops import get_op

        defined: set[str] = set()
        for i in self.inputs:
            if i not in self.types:
                raise VerificationError(f"graph input {i!r} has no type")
            defined.add(i)
        for c, arr in self.constants.items():
            ty = self.types.get(c)
            if ty is None or ty.shape != tuple(arr.shape) or ty.dtype != from_numpy(arr.dtype):
                raise VerificationError(f"constant {c!r} type {ty} does not match its array "
                                        f"{arr.dtype}{list(arr.shape)}")
            defined.add(c)
        names: set[str] = set()
        for n in self.nodes:
            if n.name in names:
                raise VerificationError(f"node name {n.name!r} used twice")
            names.add(n.name)
            opdef = get_op(n.op)
            for i in n.inputs:
                if i and i not in defined:
                    raise VerificationError(f"node {n.name!r} ({n.op}) reads {i!r} before it is "
                                            "defined (not topologically ordered, or undefined)")
            try:
                expect = opdef.infer([self.types[i] if i else None for i in n.inputs], n.attrs)
            except ShapeError as exc:
                raise VerificationError(f"node {n.name!r} ({n.op}): {exc}") from None
            if len(expect) != len(n.outputs):
                raise VerificationError(f"node {n.name!r} ({n.op}) has {len(n.outputs)} outputs, "
                                        f"op makes {len(expect)}")
            for out, ty in zip(n.outputs, expect):
                if out in defined:
                    raise VerificationError(f"value {out!r} defined twice (node {n.name!r})")
                have = self.types.get(out)
                if have is None or have.dtype != ty.dtype or len(have.shape) != len(ty.shape) or \
                        not all(D.equal(a, b) for a, b in zip(have.shape, ty.shape)):
                    raise VerificationError(f"node {n.name!r} ({n.op}) output {out!r} typed {have}, "
                                            f"inference says {ty}")
                defined.add(out)
        for o in self.outputs:
            if o not in defined:
                raise VerificationError(f"graph output {o!r} is never defined")

    # ----------------------------------------------------------------- text form
    def __str__(self) -> str:
        return format_graph(self)


def _fmt_attr(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt_attr(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, np.ndarray):
        return f"array<{v.dtype}{list(v.shape)}>"
    return str(v)


def format_graph(g: Graph, max_const_elems: int = 4) -> str:
    """The readable text form that `llmc inspect` prints."""
    lines = [f"graph {g.name}("]
    for i in g.inputs:
        lines.append(f"    %{i}: {g.types[i]},")
    lines.append(") {")
    for c, arr in g.constants.items():
        if arr.size <= max_const_elems:
            body = np.array2string(arr.reshape(-1), separator=", ")
        else:
            body = f"<{arr.nbytes} bytes>"
        lines.append(f"  const %{c}: {g.types[c]} = {body}")
    for n in g.nodes:
        outs = ", ".join(f"%{o}: {g.types[o]}" for o in n.outputs)
        ins = ", ".join(f"%{i}" if i else "_" for i in n.inputs)
        attrs = ", ".join(f"{k}={_fmt_attr(v)}" for k, v in sorted(n.attrs.items()))
        attrs = f" {{{attrs}}}" if attrs else ""
        lines.append(f"  {outs} = {n.op}({ins}){attrs}  # {n.name}")
    lines.append("  return " + ", ".join(f"%{o}" for o in g.outputs))
    lines.append("}")
    return "\n".join(lines)

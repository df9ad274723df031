"""Draw an llmc graph (after passes) as Graphviz DOT, with each fused group as a cluster.

``llmc inspect --graph out.svg`` (or ``.dot``) calls :func:`write_graph`: one box per node,
value edges labelled with their type, and every ``fused`` node drawn as a cluster holding its
body's ops, so what became one kernel is visible at a glance. SVG/PNG/PDF go through the
``dot`` program when it is installed; without it only ``.dot`` can be written.
"""
from __future__ import annotations

import os
import shutil
import subprocess

from .errors import LlmcError
from .ir import Graph

_KIND_COLOR = {"attention": "#fde0dd", "matmul_epilogue": "#deebf7",
               "reduction": "#e5f5e0", "elementwise": "#fff7bc"}


def _q(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: Graph, max_label: int = 40) -> str:
    """The DOT text of ``graph``: inputs, constants (only small ones drawn), nodes, clusters."""
    lines = [f"digraph {_q(graph.name)} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fillcolor=white, fontsize=10];',
             "  edge [fontsize=8];"]
    made: dict[str, str] = {}  # value -> dot node id that makes it
    for i in graph.inputs:
        lines.append(f"  {_q('in:' + i)} [label={_q(i + chr(10) + str(graph.types[i]))}, "
                     "shape=ellipse, fillcolor=\"#f0f0f0\"];")
        made[i] = "in:" + i
    for ci, n in enumerate(graph.nodes):
        if n.op == "fused":
            kind = n.attrs.get("kind", "")
            body = n.attrs["body"]
            color = _KIND_COLOR.get(kind, "#eeeeee")
            lines.append(f"  subgraph {_q('cluster_' + n.name)} {{")
            lines.append(f"    label={_q(f'{n.name} [{kind}] one kernel')}; style=filled; "
                         f"fillcolor={_q(color)}; fontsize=10;")
            inner: dict[str, str] = {}
            for b in body.nodes:
                nid = f"{n.name}/{b.name}"
                lines.append(f"    {_q(nid)} [label={_q(b.op)}];")
                for o in b.outputs:
                    inner[o] = nid
            lines.append("  }")
            outer = dict(zip(body.inputs, n.inputs))
            for b in body.nodes:
                nid = f"{n.name}/{b.name}"
                for i in b.inputs:
                    if i in inner:
                        lines.append(f"  {_q(inner[i])} -> {_q(nid)};")
                    elif i in outer and outer[i] in made:
                        src = outer[i]
                        lines.append(f"  {_q(made[src])} -> {_q(nid)} "
                                     f"[label={_q(str(graph.types[src])[:max_label])}];")
            for o in n.outputs:
                made[o] = inner.get(body.outputs[n.outputs.index(o)], n.name)
        else:
            lines.append(f"  {_q(n.name)} [label={_q(n.op)}];")
            for i in n.inputs:
                if i in made:
                    lines.append(f"  {_q(made[i])} -> {_q(n.name)} "
                                 f"[label={_q(str(graph.types[i])[:max_label])}];")
            for o in n.outputs:
                made[o] = n.name
    for o in graph.outputs:
        lines.append(f"  {_q('out:' + o)} [label={_q(o)}, shape=ellipse, "
                     "fillcolor=\"#f0f0f0\"];")
        if o in made:
            lines.append(f"  {_q(made[o])} -> {_q('out:' + o)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_graph(graph: Graph, path: str | os.PathLike) -> str:
    """Write ``graph`` to ``path``: DOT for ``.dot``/``.gv``, else rendered by ``dot -T<ext>``.

    Returns the path written. Raises LlmcError naming the fix when ``dot`` is missing for a
    rendered format.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    text = to_dot(graph)
    if ext in ("dot", "gv", ""):
        with open(path, "w") as fh:
            fh.write(text)
        return path
    exe = shutil.which("dot")
    if exe is None:
        raise LlmcError(f"cannot write {path}: rendering .{ext} needs Graphviz's `dot` "
                        "(apt-get install graphviz); or ask for a .dot file")
    proc = subprocess.run([exe, f"-T{ext}", "-o", path], input=text.encode(),
                          capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise LlmcError(f"dot failed writing {path}: {proc.stderr.decode()[-300:].strip()}")
    return path

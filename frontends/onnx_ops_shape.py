"""ONNX converters and import-time evaluators: shapes and data movement.

Shape arguments (Reshape targets, Expand shapes, Slice bounds, Pad widths, ...) must be known
at import (constants or shape arithmetic evaluated by ``onnx_known``); they become plain
attributes. Ops whose output shape depends on tensor data (NonZero, Unique, ...) are refused
with an explanation.
"""
from __future__ import annotations

import numpy as np
import sympy
from onnx import numpy_helper

from llmc import dims as D
from llmc.dtypes import to_numpy

from . import onnx_known as K
from .onnx_context import NodeCtx, converter, evaluator, onnx_dtype

#: Slice bounds at or beyond this magnitude mean "to the end" (INT_MAX-like exporter values).
_BIG = 2 ** 30


def _known_or_cannot(c: NodeCtx, i: int) -> K.Known:
    k = c.known(i)
    if k is None:
        raise K.CannotEval("input not known")
    return k


# ------------------------------------------------------------------ Constant / Shape / Size
@converter("Constant")
def conv_constant(c: NodeCtx) -> list:
    a = c.attrs
    if "value" in a:
        arr = numpy_helper.to_array(a["value"])
        dtype = onnx_dtype(a["value"].data_type, f"Constant '{c.name}'")
    elif "value_float" in a:
        arr, dtype = np.array(a["value_float"], np.float32), "float32"
    elif "value_floats" in a:
        arr, dtype = np.array(a["value_floats"], np.float32), "float32"
    elif "value_int" in a:
        arr, dtype = np.array(a["value_int"], np.int64), "int64"
    elif "value_ints" in a:
        arr, dtype = np.array(a["value_ints"], np.int64), "int64"
    else:
        raise c.unsupported(f"a Constant of kind {sorted(a)}")
    return [K.Known(np.asarray(arr), dtype)]


@evaluator("Shape")
def eval_shape(c: NodeCtx) -> list:
    shape = list(c.shape(0))
    start, end = c.attr("start", 0), c.attr("end", None)
    r = len(shape)
    start = min(max(start + r if start < 0 else start, 0), r)
    end = r if end is None else min(max(end + r if end < 0 else end, 0), r)
    return [K.make(np.array(shape[start:end], dtype=object), "int64")]


@evaluator("Size")
def eval_size(c: NodeCtx) -> list:
    return [K.make(np.array(D.product(c.shape(0)), dtype=object), "int64")]


@converter("Shape", "Size")
def conv_shape(c: NodeCtx) -> list:  # only reached if evaluation failed (never for valid input)
    raise c.error("could not evaluate the shape at import")


@converter("EyeLike")
def conv_eyelike(c: NodeCtx) -> list:
    shape = c.shape(0)
    if not all(isinstance(d, int) for d in shape):
        raise c.unsupported("EyeLike of a symbolic shape")
    dtype = onnx_dtype(int(c.attr("dtype")), c.name) if c.attr("dtype") is not None else c.dtype(0)
    arr = np.eye(shape[0], shape[1], k=int(c.attr("k", 0)), dtype=to_numpy(dtype))
    return [K.Known(arr, dtype)]


# ------------------------------------------------------------------ Gather / Concat
@evaluator("Gather")
def eval_gather(c: NodeCtx) -> list:
    data, idx = _known_or_cannot(c, 0), _known_or_cannot(c, 1)
    return [K.gather(data, idx, int(c.attr("axis", 0)))]


@converter("Gather")
def conv_gather(c: NodeCtx) -> list:
    axis = c.axis(int(c.attr("axis", 0)), c.rank(0))
    return [c.emit("gather", [c.x(0), c.x(1)], {"axis": axis})]


@converter("GatherElements")
def conv_gather_elements(c: NodeCtx) -> list:
    axis = c.axis(int(c.attr("axis", 0)), c.rank(0))
    return [c.emit("gather_elements", [c.x(0), c.x(1)], {"axis": axis})]


@converter("GatherND")
def conv_gather_nd(c: NodeCtx) -> list:
    return [c.emit("gather_nd", [c.x(0), c.x(1)], {"batch_dims": int(c.attr("batch_dims", 0))})]


@converter("ScatterElements", "Scatter")
def conv_scatter_elements(c: NodeCtx) -> list:
    axis = c.axis(int(c.attr("axis", 0)), c.rank(0))
    return [c.emit("scatter_elements", [c.x(0), c.x(1), c.x(2)],
                   {"axis": axis, "reduction": c.attr("reduction", "none")})]


@converter("ScatterND")
def conv_scatter_nd(c: NodeCtx) -> list:
    return [c.emit("scatter_nd", [c.x(0), c.x(1), c.x(2)],
                   {"reduction": c.attr("reduction", "none")})]


@evaluator("Concat")
def eval_concat(c: NodeCtx) -> list:
    ks = [_known_or_cannot(c, i) for i in range(c.n_in()) if c.has(i)]
    rank = len(ks[0].shape)
    return [K.concat(ks, int(c.attr("axis")) % max(rank, 1))]


@converter("Concat")
def conv_concat(c: NodeCtx) -> list:
    ins = [i for i in range(c.n_in()) if c.has(i)]
    axis = c.axis(int(c.attr("axis")), c.rank(ins[0]))
    xs = [c.x(i) for i in ins if not (c.shape(i) and c.shape(i)[axis] == 0 and len(ins) > 1)]
    return [c.emit("concat", xs or [c.x(ins[0])], {"axis": axis})]


# ------------------------------------------------------------------ Squeeze / Unsqueeze
def _axes_arg(c: NodeCtx, opset_input: int) -> list | None:
    if c.opset >= opset_input:
        if not c.has(1):
            return None
        return [int(a) for a in c.const(1, "axes").reshape(-1)]
    v = c.attr("axes")
    return list(v) if v is not None else None


def _unsqueeze_axes(c: NodeCtx) -> list[int]:
    axes = _axes_arg(c, 13) or []
    out_rank = c.rank(0) + len(axes)
    return sorted(c.axis(a, out_rank) for a in axes)


def _squeeze_axes(c: NodeCtx) -> list[int]:
    axes = _axes_arg(c, 13)
    shape = c.shape(0)
    if axes is None:
        return [i for i, d in enumerate(shape) if d == 1]
    return sorted(c.axis(a, len(shape)) for a in axes)


@evaluator("Unsqueeze")
def eval_unsqueeze(c: NodeCtx) -> list:
    k = _known_or_cannot(c, 0)
    shape = list(k.shape)
    for a in _unsqueeze_axes(c):
        shape.insert(a, 1)
    return [K.reshape(k, shape)]


@evaluator("Squeeze")
def eval_squeeze(c: NodeCtx) -> list:
    k = _known_or_cannot(c, 0)
    axes = set(_squeeze_axes(c))
    return [K.reshape(k, [d for i, d in enumerate(k.shape) if i not in axes])]


@converter("Unsqueeze")
def conv_unsqueeze(c: NodeCtx) -> list:
    return [c.emit("unsqueeze", [c.x(0)], {"axes": _unsqueeze_axes(c)})]


@converter("Squeeze")
def conv_squeeze(c: NodeCtx) -> list:
    return [c.emit("squeeze", [c.x(0)], {"axes": _squeeze_axes(c)})]


# ------------------------------------------------------------------ Reshape / Flatten / Expand
def _reshape_target(c: NodeCtx, shape_in: tuple, target: list) -> list:
    allowzero = int(c.attr("allowzero", 0))
    out = []
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            if i >= len(shape_in):
                raise c.error(f"reshape target {target} copies dim {i} the input lacks")
            d = shape_in[i]
        out.append(d)
    if sum(1 for d in out if isinstance(d, int) and d == -1) > 1:
        raise c.error(f"reshape target {target} has more than one -1")
    if -1 in [d for d in out if isinstance(d, int)]:
        rest = D.product([d for d in out if not (isinstance(d, int) and d == -1)])
        total = D.product(shape_in)
        if isinstance(rest, int) and isinstance(total, int):
            if rest == 0 or total % rest:
                raise c.error(f"cannot reshape {D.shape_str(shape_in)} to {target}")
            missing = total // rest
        else:
            missing = D.dim(sympy.sympify(total) / sympy.sympify(rest))
        out = [missing if (isinstance(d, int) and d == -1) else d for d in out]
    return out


@evaluator("Reshape")
def eval_reshape(c: NodeCtx) -> list:
    k = _known_or_cannot(c, 0)
    target = c.known(1)
    if target is None or not target.is_static:
        raise K.CannotEval("target not static")
    return [K.reshape(k, _reshape_target(c, k.shape, [int(v) for v in target.value.reshape(-1)]))]


@converter("Reshape")
def conv_reshape(c: NodeCtx) -> list:
    if c.opset < 5:
        target = list(c.attr("shape"))
    else:
        target = c.dims(1, "Reshape target shape")
    return [c.emit("reshape", [c.x(0)], {"shape": _reshape_target(c, c.shape(0), target)})]


@converter("Flatten")
def conv_flatten(c: NodeCtx) -> list:
    shape = c.shape(0)
    axis = int(c.attr("axis", 1))
    axis = axis + len(shape) if axis < 0 else axis
    return [c.emit("reshape", [c.x(0)], {"shape": [D.product(shape[:axis]),
                                                   D.product(shape[axis:])]})]


@converter("Expand")
def conv_expand(c: NodeCtx) -> list:
    target = tuple(c.dims(1, "Expand shape"))
    shape = D.broadcast(tuple(c.shape(0)), target, f"Expand '{c.name}'")
    return [c.emit("expand", [c.x(0)], {"shape": list(shape)})]


@converter("Transpose")
def conv_transpose(c: NodeCtx) -> list:
    rank = c.rank(0)
    perm = c.attr("perm")
    perm = list(range(rank))[::-1] if perm is None else [c.axis(p, rank) for p in perm]
    return [c.emit("transpose", [c.x(0)], {"perm": perm})]


@converter("Tile")
def conv_tile(c: NodeCtx) -> list:
    return [c.emit("tile", [c.x(0)], {"repeats": c.dims(1, "Tile repeats")})]


# ------------------------------------------------------------------ Slice
def _clamp(v, dim, step: int, is_end: bool):
    """One slice bound clamped per docs/ops.md (symbolic dims: INT_MAX-like -> the dim)."""
    if isinstance(v, int) and isinstance(dim, int):
        if v < 0:
            v += dim
        if step > 0:
            return min(max(v, 0), dim)
        return min(max(v, -1 if is_end else 0), dim - 1)
    if isinstance(v, int):
        if v >= _BIG:
            return dim if step > 0 else dim - 1
        if v <= -_BIG:
            return 0 if step > 0 else (-1 if is_end else 0)
        if v < 0:
            return D.dim(dim + v)
        return v
    return D.dim(v)


def _slice_args(c: NodeCtx) -> tuple[list, list, list, list]:
    rank = c.rank(0)
    if c.opset < 10:
        starts, ends = list(c.attr("starts")), list(c.attr("ends"))
        axes = list(c.attr("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = c.dims(1, "Slice starts"), c.dims(2, "Slice ends")
        axes = [int(a) for a in c.const(3, "Slice axes").reshape(-1)] if c.has(3) \
            else list(range(len(starts)))
        steps = [int(s) for s in c.const(4, "Slice steps").reshape(-1)] if c.has(4) \
            else [1] * len(starts)
    axes = [c.axis(int(a), rank) for a in axes]
    if any(s == 0 for s in steps):
        raise c.error("slice step 0")
    return starts, ends, axes, steps


@evaluator("Slice")
def eval_slice(c: NodeCtx) -> list:
    k = _known_or_cannot(c, 0)
    starts, ends, axes, steps = _slice_args(c)
    if not all(isinstance(v, int) for v in starts + ends):
        raise K.CannotEval("symbolic bounds")
    ends = [min(max(e, -_BIG), _BIG) for e in ends]
    starts = [min(max(s, -_BIG), _BIG) for s in starts]
    return [K.slice_(k, starts, ends, axes, steps)]


@converter("Slice")
def conv_slice(c: NodeCtx) -> list:
    starts, ends, axes, steps = _slice_args(c)
    shape = c.shape(0)
    s2 = [_clamp(s, shape[a], st, False) for s, a, st in zip(starts, axes, steps)]
    e2 = [_clamp(e, shape[a], st, True) for e, a, st in zip(ends, axes, steps)]
    return [c.emit("slice", [c.x(0)], {"axes": axes, "starts": s2, "ends": e2, "steps": steps})]


# ------------------------------------------------------------------ Split
def _split_sizes(c: NodeCtx, dim, n_out: int) -> list:
    if c.opset >= 13 and c.has(1):
        return c.dims(1, "Split sizes")
    if c.opset < 13 and c.attr("split") is not None:
        return list(c.attr("split"))
    n = int(c.attr("num_outputs", n_out))
    if isinstance(dim, int):
        chunk = -(-dim // n)
        sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
        return sizes
    return [D.dim(sympy.sympify(dim) / n)] * n


@converter("Split")
def conv_split(c: NodeCtx) -> list:
    axis = c.axis(int(c.attr("axis", 0)), c.rank(0))
    sizes = _split_sizes(c, c.shape(0)[axis], len(c.outputs))
    return c.emit_multi("split", [c.x(0)], {"axis": axis, "sizes": sizes}, len(sizes))


# ------------------------------------------------------------------ Pad
@converter("Pad")
def conv_pad(c: NodeCtx) -> list:
    rank = c.rank(0)
    mode = c.attr("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        raise c.unsupported(f"Pad mode {mode!r}")
    if c.opset < 11:
        pads, value = list(c.attr("pads", c.attr("paddings"))), float(c.attr("value", 0.0))
    else:
        pads = [D.dim(p) for p in c.dims(1, "Pad widths")]
        value = 0.0
        if c.has(2):
            value = c.const(2, "Pad value").reshape(-1)[0].item()
        if c.has(3):
            axes = [c.axis(int(a), rank) for a in c.const(3, "Pad axes").reshape(-1)]
            full = [0] * (2 * rank)
            for j, a in enumerate(axes):
                full[a], full[a + rank] = pads[j], pads[j + len(axes)]
            pads = full
    if any(isinstance(p, int) and p < 0 for p in pads):
        neg = [p < 0 for p in pads]
        raise c.unsupported(f"negative pads {pads} (cropping) {neg.count(True)} sides")
    if isinstance(value, bool):
        value = float(value)
    return [c.emit("pad", [c.x(0)], {"pads": pads, "mode": mode, "value": value})]


# ------------------------------------------------------------------ ConstantOfShape / Range
def _fill_value(c: NodeCtx) -> tuple[object, str]:
    t = c.attr("value")
    if t is None:
        return 0.0, "float32"
    arr = numpy_helper.to_array(t).reshape(-1)
    return arr[0].item(), onnx_dtype(t.data_type, c.name)


@evaluator("ConstantOfShape")
def eval_constant_of_shape(c: NodeCtx) -> list:
    shape = _known_or_cannot(c, 0)
    if not shape.is_static:
        raise K.CannotEval("symbolic shape")
    value, dtype = _fill_value(c)
    dims = [int(d) for d in shape.value.reshape(-1)]
    if not K.trackable(dtype, int(np.prod(dims))):
        raise K.CannotEval("too large")
    return [K.Known(np.full(dims, value, dtype=to_numpy(dtype)), dtype)]


@converter("ConstantOfShape")
def conv_constant_of_shape(c: NodeCtx) -> list:
    value, dtype = _fill_value(c)
    shape = c.dims(0, "ConstantOfShape shape")
    return [c.emit("full", [], {"shape": shape, "value": value, "dtype": dtype})]


def _range_scalar(c: NodeCtx, i: int):
    k = c.known(i)
    if k is None:
        raise c.unsupported(f"a Range bound computed from tensor data (input '{c.inputs[i]}')")
    v = k.value.reshape(-1)[0]
    return v.item() if isinstance(v, np.generic) else D.dim(v)


@evaluator("Range")
def eval_range(c: NodeCtx) -> list:
    ks = [_known_or_cannot(c, i) for i in range(3)]
    if not all(k.is_static for k in ks):
        raise K.CannotEval("symbolic")
    start, limit, delta = (k.value.reshape(-1)[0] for k in ks)
    n = max(int(np.ceil((limit - start) / delta)), 0)
    if not K.trackable(ks[0].dtype, n):
        raise K.CannotEval("too large")
    arr = (start + np.arange(n, dtype=np.float64 if ks[0].dtype.startswith("float") else np.int64)
           * delta).astype(to_numpy(ks[0].dtype))
    return [K.Known(arr, ks[0].dtype)]


@converter("Range")
def conv_range(c: NodeCtx) -> list:
    start, limit, delta = (_range_scalar(c, i) for i in range(3))
    return [c.emit("range", [], {"start": start, "limit": limit, "delta": delta,
                                 "dtype": c.dtype(0)})]


# ------------------------------------------------------------------ misc data movement
@converter("Trilu")
def conv_trilu(c: NodeCtx) -> list:
    k = int(c.const(1, "Trilu k").reshape(-1)[0]) if c.has(1) else 0
    return [c.emit("trilu", [c.x(0)], {"upper": bool(c.attr("upper", 1)), "k": k})]


@converter("DepthToSpace")
def conv_depth_to_space(c: NodeCtx) -> list:
    return [c.emit("depth_to_space", [c.x(0)], {"blocksize": int(c.attr("blocksize")),
                                                "mode": c.attr("mode", "DCR")})]


@converter("SpaceToDepth")
def conv_space_to_depth(c: NodeCtx) -> list:
    b = int(c.attr("blocksize"))
    if c.attr("mode", "DCR") == "DCR":
        return [c.emit("space_to_depth", [c.x(0)], {"blocksize": b})]
    n, ch, h, w = c.shape(0)  # CRD: channel-major blocks, via reshape/transpose
    hb, wb = D.floordiv(h, b), D.floordiv(w, b)
    y = c.emit("reshape", [c.x(0)], {"shape": [n, ch, hb, b, wb, b]})
    y = c.emit("transpose", [y], {"perm": [0, 1, 3, 5, 2, 4]})
    return [c.emit("reshape", [y], {"shape": [n, ch * b * b, hb, wb]})]


@converter("OneHot")
def conv_one_hot(c: NodeCtx) -> list:
    depth = c.const(1, "OneHot depth").reshape(-1)[0].item()
    values = c.const(2, "OneHot values").reshape(-1)
    axis = c.axis(int(c.attr("axis", -1)), c.rank(0) + 1)
    return [c.emit("one_hot", [c.x(0)], {"depth": int(depth), "axis": axis,
                                         "off_value": values[0].item(),
                                         "on_value": values[1].item(), "dtype": c.dtype(2)})]


@converter("NonZero", "Unique", "NonMaxSuppression", "Compress")
def conv_data_dependent(c: NodeCtx) -> list:
    raise c.unsupported(f"{c.op_type}, whose output shape depends on tensor values at run time "
                        "(llmc compiles static or symbolic shapes only),")


@converter("If")
def conv_if(c: NodeCtx) -> list:
    cond = c.known(0)
    if cond is None or not cond.is_static:
        raise c.unsupported("If with a condition computed at run time (control flow)")
    branch = c.attrs["then_branch" if bool(cond.value.reshape(-1)[0]) else "else_branch"]
    from .onnx import _topo_order
    for node in branch.node:
        for o in node.output:
            if o:
                c.imp.graph.fresh_name(o)
    for node in _topo_order(branch, c.imp.where):
        c.imp.convert_node(node)
    out = []
    for o in branch.output:
        k = c.imp.known_value(o.name)
        out.append(k if k is not None and o.name not in c.imp.env else c.imp.tensor(o.name))
    return out

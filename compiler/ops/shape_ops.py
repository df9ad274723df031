"""Shape and data-movement ops: reshape, transpose, concat, split, slice, gather, scatter, ...

Shape attributes hold dims (int or sympy); the interpreter substitutes bound values before a
reference runs, so references only see ints.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import sympy

from .. import dims as D
from .. import dtypes as T
from ..errors import ShapeError
from ..ir import TensorType
from . import register_op


# --------------------------------------------------------------------------- helpers
def check_axis(axis: Any, rank: int, what: str = "axis") -> int:
    """Validate a non-negative axis attribute (frontends normalize negative axes)."""
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ShapeError(f"{what} must be an int, got {axis!r}")
    if not 0 <= axis < rank:
        raise ShapeError(f"{what} {axis} out of range for rank {rank} (axes are non-negative, "
                         f"0..{rank - 1})")
    return axis


def check_axes(axes: Any, rank: int, what: str = "axes") -> list[int]:
    """Validate a list of distinct non-negative axes."""
    if not isinstance(axes, (list, tuple)):
        raise ShapeError(f"{what} must be a list of ints, got {axes!r}")
    out = [check_axis(a, rank, what) for a in axes]
    if len(set(out)) != len(out):
        raise ShapeError(f"{what} {list(axes)} repeats an axis")
    return out


def n_inputs(in_types: Sequence, n: int, names: str) -> None:
    """Require exactly ``n`` present inputs."""
    if len(in_types) != n or any(t is None for t in in_types):
        raise ShapeError(f"expects {n} input(s) ({names}), got {len(in_types)}")


def _known_ne(a: D.Dim, b: D.Dim) -> bool:
    """True when two dims are provably different (both static, or a constant ratio != 1)."""
    if D.equal(a, b):
        return False
    if isinstance(a, int) and isinstance(b, int):
        return True
    if a == 0 or b == 0:
        return True
    ratio = sympy.simplify(sympy.sympify(a) / sympy.sympify(b))
    return bool(ratio.is_number)


def _check_index_dtype(ty: TensorType, what: str = "indices") -> None:
    if ty.dtype not in ("int32", "int64"):
        raise ShapeError(f"{what} must be int32 or int64, got {ty.dtype}")


def _shape_attr(attrs, key: str = "shape") -> tuple:
    if key not in attrs:
        raise ShapeError(f"missing attribute {key!r}")
    s = D.shape(attrs[key])
    for d in s:
        if isinstance(d, int) and d < 0:
            raise ShapeError(f"{key} {D.shape_str(s)} has a negative dim (frontends resolve -1)")
    return s


# --------------------------------------------------------------------------- reshape & co
def _reshape_infer(in_types, attrs):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    target = _shape_attr(attrs)
    if _known_ne(x.numel(), D.product(target)):
        raise ShapeError(f"cannot reshape {D.shape_str(x.shape)} ({x.numel()} elements) to "
                         f"{D.shape_str(target)} ({D.product(target)} elements)")
    return [TensorType(x.dtype, target)]


register_op("reshape", _reshape_infer,
            lambda i, a: [np.reshape(i[0], tuple(int(d) for d in a["shape"]))])


def _transpose_infer(in_types, attrs):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    perm = attrs.get("perm", list(range(x.rank))[::-1])
    if sorted(check_axes(perm, x.rank, "perm")) != list(range(x.rank)):
        raise ShapeError(f"perm {perm} is not a permutation of 0..{x.rank - 1}")
    return [TensorType(x.dtype, tuple(x.shape[p] for p in perm))]


register_op("transpose", _transpose_infer, lambda i, a: [np.require(
    np.transpose(i[0], a.get("perm", list(range(i[0].ndim))[::-1])), requirements="C")])


def _expand_infer(in_types, attrs):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    target = _shape_attr(attrs)
    out = D.broadcast(x.shape, target)
    if len(out) != len(target) or any(_known_ne(a, b) for a, b in zip(out, target)):
        raise ShapeError(f"expand target {D.shape_str(target)} is not the broadcast of "
                         f"{D.shape_str(x.shape)} with it ({D.shape_str(out)})")
    return [TensorType(x.dtype, target)]


register_op("expand", _expand_infer, lambda i, a: [
    np.broadcast_to(i[0], tuple(int(d) for d in a["shape"])).copy()])


def _concat_infer(in_types, attrs):
    if not in_types or any(t is None for t in in_types):
        raise ShapeError("expects at least one input")
    first = in_types[0]
    axis = check_axis(attrs.get("axis"), first.rank)
    total: D.Dim = 0
    for i, t in enumerate(in_types):
        if t.dtype != first.dtype:
            raise ShapeError(f"input {i} dtype {t.dtype} differs from input 0's {first.dtype}")
        if t.rank != first.rank:
            raise ShapeError(f"input {i} has rank {t.rank}, input 0 has {first.rank}")
        for ax, (a, b) in enumerate(zip(t.shape, first.shape)):
            if ax != axis and _known_ne(a, b):
                raise ShapeError(f"input {i} shape {D.shape_str(t.shape)} differs from input 0 "
                                 f"{D.shape_str(first.shape)} on axis {ax} (concat axis {axis})")
        total = D.dim(total + t.shape[axis]) if not (isinstance(total, int) and
                                                      isinstance(t.shape[axis], int)) \
            else total + t.shape[axis]
    return [TensorType(first.dtype, first.shape[:axis] + (total,) + first.shape[axis + 1:])]


register_op("concat", _concat_infer, lambda i, a: [np.concatenate(list(i), axis=a["axis"])])


def _split_infer(in_types, attrs):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    axis = check_axis(attrs.get("axis"), x.rank)
    sizes = D.shape(attrs.get("sizes", ()))
    if not sizes:
        raise ShapeError("split needs a non-empty 'sizes'")
    if _known_ne(D.dim(sum(sympy.sympify(s) for s in sizes)), x.shape[axis]):
        raise ShapeError(f"split sizes {D.shape_str(sizes)} do not add up to dim "
                         f"{x.shape[axis]} of axis {axis}")
    return [TensorType(x.dtype, x.shape[:axis] + (s,) + x.shape[axis + 1:]) for s in sizes]


def _split_ref(inputs, attrs):
    x, axis = inputs[0], attrs["axis"]
    cuts = np.cumsum([int(s) for s in attrs["sizes"]])[:-1]
    return [np.ascontiguousarray(p) for p in np.split(x, cuts, axis=axis)]


register_op("split", _split_infer, _split_ref)


def slice_len(start: D.Dim, end: D.Dim, step: int) -> D.Dim:
    """Number of elements of ``x[start:end:step]`` with frontend-clamped bounds."""
    if step > 0:
        n = sympy.ceiling((sympy.sympify(end) - start) / step)
    else:
        n = sympy.ceiling((sympy.sympify(start) - end) / (-step))
    return D.dim(sympy.Max(0, n))


def _slice_infer(in_types, attrs):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    axes = check_axes(attrs.get("axes", []), x.rank)
    starts, ends = D.shape(attrs.get("starts", [])), D.shape(attrs.get("ends", []))
    steps = attrs.get("steps") or [1] * len(axes)
    if not len(starts) == len(ends) == len(steps) == len(axes):
        raise ShapeError("axes, starts, ends and steps must have the same length")
    shape = list(x.shape)
    for ax, s, e, st in zip(axes, starts, ends, steps):
        if not isinstance(st, int) or st == 0:
            raise ShapeError(f"slice step must be a non-zero int, got {st!r}")
        if isinstance(s, int) and isinstance(x.shape[ax], int) and not 0 <= s <= x.shape[ax]:
            raise ShapeError(f"slice start {s} outside 0..{x.shape[ax]} on axis {ax}")
        shape[ax] = slice_len(s, e, st)
    return [TensorType(x.dtype, tuple(shape))]


def _slice_ref(inputs, attrs):
    x = inputs[0]
    idx: list[Any] = [slice(None)] * x.ndim
    steps = attrs.get("steps") or [1] * len(attrs["axes"])
    for ax, s, e, st in zip(attrs["axes"], attrs["starts"], attrs["ends"], steps):
        s, e = int(s), int(e)
        idx[ax] = slice(s, None if (st < 0 and e < 0) else e, st)
    return [np.ascontiguousarray(x[tuple(idx)])]


register_op("slice", _slice_infer, _slice_ref)


def _squeeze_infer(in_types, attrs):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    axes = check_axes(attrs.get("axes", []), x.rank)
    for a in axes:
        if x.shape[a] != 1:
            raise ShapeError(f"cannot squeeze axis {a} of {D.shape_str(x.shape)}: dim is "
                             f"{x.shape[a]}, not 1")
    return [TensorType(x.dtype, tuple(d for i, d in enumerate(x.shape) if i not in axes))]


register_op("squeeze", _squeeze_infer,
            lambda i, a: [np.squeeze(i[0], axis=tuple(a.get("axes", [])))])


def _unsqueeze_infer(in_types, attrs):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    rank = x.rank + len(attrs.get("axes", []))
    axes = check_axes(attrs.get("axes", []), rank)
    it = iter(x.shape)
    return [TensorType(x.dtype, tuple(1 if i in axes else next(it) for i in range(rank)))]


register_op("unsqueeze", _unsqueeze_infer,
            lambda i, a: [np.expand_dims(i[0], axis=tuple(a.get("axes", [])))])


def _identity_infer(in_types, attrs):
    n_inputs(in_types, 1, "x")
    return [in_types[0]]


register_op("identity", _identity_infer, lambda i, a: [i[0].copy()])


# --------------------------------------------------------------------------- gather / scatter
def _gather_infer(in_types, attrs):
    n_inputs(in_types, 2, "data, indices")
    data, ind = in_types
    _check_index_dtype(ind)
    axis = check_axis(attrs.get("axis", 0), data.rank)
    return [TensorType(data.dtype, data.shape[:axis] + ind.shape + data.shape[axis + 1:])]


def _norm_index(ind: np.ndarray, n: int) -> np.ndarray:
    ind = ind.astype(np.int64)
    ind = np.where(ind < 0, ind + n, ind)
    if ind.size and (ind.min() < 0 or ind.max() >= n):
        raise ShapeError(f"index out of range for a dim of size {n}")
    return ind


register_op("gather", _gather_infer, lambda i, a: [
    np.take(i[0], _norm_index(i[1], i[0].shape[a.get("axis", 0)]), axis=a.get("axis", 0))])


def _gather_elements_infer(in_types, attrs):
    n_inputs(in_types, 2, "data, indices")
    data, ind = in_types
    _check_index_dtype(ind)
    check_axis(attrs.get("axis", 0), data.rank)
    if ind.rank != data.rank:
        raise ShapeError(f"indices rank {ind.rank} differs from data rank {data.rank}")
    return [TensorType(data.dtype, ind.shape)]


register_op("gather_elements", _gather_elements_infer, lambda i, a: [np.take_along_axis(
    i[0], _norm_index(i[1], i[0].shape[a.get("axis", 0)]), axis=a.get("axis", 0))])


def _gather_nd_infer(in_types, attrs):
    n_inputs(in_types, 2, "data, indices")
    data, ind = in_types
    _check_index_dtype(ind)
    b = attrs.get("batch_dims", 0)
    k = ind.shape[-1] if ind.rank else None
    if not isinstance(k, int):
        raise ShapeError("gather_nd needs a static last dim of indices")
    if b + k > data.rank:
        raise ShapeError(f"batch_dims {b} + index depth {k} exceeds data rank {data.rank}")
    return [TensorType(data.dtype, ind.shape[:-1] + data.shape[b + k:])]


def _gather_nd_ref(inputs, attrs):
    data, ind = inputs
    b = attrs.get("batch_dims", 0)
    k = ind.shape[-1]
    batch_shape = data.shape[:b]
    nb = int(np.prod(batch_shape)) if b else 1
    d = data.reshape((nb,) + data.shape[b:])
    ix = ind.reshape((nb, -1, k)).astype(np.int64)
    ix = np.where(ix < 0, ix + np.array(data.shape[b:b + k]), ix)
    out = [d[i][tuple(ix[i].T)] for i in range(nb)]
    res = np.stack(out) if out else np.zeros((0,), data.dtype)
    return [res.reshape(ind.shape[:-1] + data.shape[b + k:])]


register_op("gather_nd", _gather_nd_infer, _gather_nd_ref)

_REDUCERS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _check_reduction(attrs) -> str:
    r = attrs.get("reduction", "none")
    if r != "none" and r not in _REDUCERS:
        raise ShapeError(f"reduction must be one of none, add, mul, max, min; got {r!r}")
    return r


def _scatter_elements_infer(in_types, attrs):
    n_inputs(in_types, 3, "data, indices, updates")
    data, ind, upd = in_types
    _check_index_dtype(ind)
    check_axis(attrs.get("axis", 0), data.rank)
    _check_reduction(attrs)
    if upd.dtype != data.dtype:
        raise ShapeError(f"updates dtype {upd.dtype} differs from data's {data.dtype}")
    if ind.rank != data.rank or upd.rank != data.rank:
        raise ShapeError("data, indices and updates must have the same rank")
    return [data]


def _apply(out: np.ndarray, idx: tuple, upd: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "none":
        out[idx] = upd
    else:
        _REDUCERS[reduction].at(out, idx, upd)
    return out


def _scatter_elements_ref(inputs, attrs):
    data, ind, upd = inputs
    axis = attrs.get("axis", 0)
    ind = _norm_index(ind, data.shape[axis])
    grid = list(np.indices(ind.shape, sparse=True))
    grid[axis] = ind
    return [_apply(data.copy(), tuple(grid), upd, _check_reduction(attrs))]


register_op("scatter_elements", _scatter_elements_infer, _scatter_elements_ref)


def _scatter_nd_infer(in_types, attrs):
    n_inputs(in_types, 3, "data, indices, updates")
    data, ind, upd = in_types
    _check_index_dtype(ind)
    _check_reduction(attrs)
    if upd.dtype != data.dtype:
        raise ShapeError(f"updates dtype {upd.dtype} differs from data's {data.dtype}")
    return [data]


def _scatter_nd_ref(inputs, attrs):
    data, ind, upd = inputs
    k = ind.shape[-1]
    ind = ind.astype(np.int64)
    ind = np.where(ind < 0, ind + np.array(data.shape[:k]), ind)
    idx = tuple(ind[..., j] for j in range(k))
    return [_apply(data.copy(), idx, upd, _check_reduction(attrs))]


register_op("scatter_nd", _scatter_nd_infer, _scatter_nd_ref)


# --------------------------------------------------------------------------- pad / tile / trilu
def _pad_infer(in_types, attrs):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    pads = D.shape(attrs.get("pads", []))
    if len(pads) != 2 * x.rank:
        raise ShapeError(f"pads has {len(pads)} entries, rank {x.rank} needs {2 * x.rank}")
    if attrs.get("mode", "constant") not in ("constant", "reflect", "edge", "wrap"):
        raise ShapeError("pad mode must be constant, reflect, edge or wrap; got "
                         f"{attrs.get('mode')!r}")
    r = x.rank
    return [TensorType(x.dtype, tuple(D.dim(sympy.sympify(d) + pads[i] + pads[i + r])
                                      for i, d in enumerate(x.shape)))]


def _pad_ref(inputs, attrs):
    x = inputs[0]
    r = x.ndim
    pads = [int(p) for p in attrs["pads"]]
    mode = attrs.get("mode", "constant")
    # negative pads crop
    crop = tuple(slice(max(0, -pads[i]), x.shape[i] - max(0, -pads[i + r])) for i in range(r))
    x = x[crop]
    width = [(max(0, pads[i]), max(0, pads[i + r])) for i in range(r)]
    if mode == "constant":
        return [np.pad(x, width, mode="constant",
                       constant_values=np.asarray(attrs.get("value", 0.0)).astype(x.dtype))]
    return [np.pad(x, width, mode=mode)]


register_op("pad", _pad_infer, _pad_ref)


def _tile_infer(in_types, attrs):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    reps = D.shape(attrs.get("repeats", []))
    if len(reps) != x.rank:
        raise ShapeError(f"repeats has {len(reps)} entries, x has rank {x.rank}")
    return [TensorType(x.dtype, tuple(D.product([d, r]) for d, r in zip(x.shape, reps)))]


register_op("tile", _tile_infer,
            lambda i, a: [np.tile(i[0], tuple(int(r) for r in a["repeats"]))])


def _trilu_infer(in_types, attrs):
    n_inputs(in_types, 1, "x")
    if in_types[0].rank < 2:
        raise ShapeError(f"trilu needs rank >= 2, got {in_types[0].rank}")
    return [in_types[0]]


register_op("trilu", _trilu_infer, lambda i, a: [
    (np.triu if a.get("upper", True) else np.tril)(i[0], int(a.get("k", 0)))])


# --------------------------------------------------------------------------- depth/space
def _block_operand(op: str, in_types, attrs) -> tuple[TensorType, int]:
    """The input and blocksize of depth_to_space / space_to_depth, checked."""
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    b = attrs.get("blocksize")
    if x.rank != 4 or not isinstance(b, int) or b < 1:
        raise ShapeError(f"{op} needs a rank-4 input and a positive int blocksize")
    if attrs.get("mode", "DCR") not in ("DCR", "CRD"):
        raise ShapeError(f"mode must be DCR or CRD, got {attrs.get('mode')!r}")
    return x, b


def _d2s_infer(in_types, attrs):
    x, b = _block_operand("depth_to_space", in_types, attrs)
    n, c, h, w = x.shape
    if isinstance(c, int) and c % (b * b):
        raise ShapeError(f"channels {c} not divisible by blocksize^2 = {b * b}")
    return [TensorType(x.dtype, (n, D.floordiv(c, b * b), D.product([h, b]), D.product([w, b])))]


def _d2s_ref(inputs, attrs):
    x, b = inputs[0], attrs["blocksize"]
    n, c, h, w = x.shape
    if attrs.get("mode", "DCR") == "DCR":
        y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return [np.ascontiguousarray(y.reshape(n, c // (b * b), h * b, w * b))]


register_op("depth_to_space", _d2s_infer, _d2s_ref)


def _s2d_infer(in_types, attrs):
    x, b = _block_operand("space_to_depth", in_types, attrs)
    n, c, h, w = x.shape
    for d in (h, w):
        if isinstance(d, int) and d % b:
            raise ShapeError(f"spatial dim {d} not divisible by blocksize {b}")
    return [TensorType(x.dtype, (n, D.product([c, b * b]), D.floordiv(h, b), D.floordiv(w, b)))]


def _s2d_ref(inputs, attrs):
    x, b = inputs[0], attrs["blocksize"]
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b)
    y = y.transpose(0, 3, 5, 1, 2, 4) if attrs.get("mode", "DCR") == "DCR" \
        else y.transpose(0, 1, 3, 5, 2, 4)
    return [np.ascontiguousarray(y.reshape(n, c * b * b, h // b, w // b))]


register_op("space_to_depth", _s2d_infer, _s2d_ref)


# --------------------------------------------------------------------------- one_hot / sources
def _one_hot_infer(in_types, attrs):
    n_inputs(in_types, 1, "indices")
    ind = in_types[0]
    if not T.is_int(ind.dtype) and not T.is_float(ind.dtype):
        raise ShapeError(f"indices must be numeric, got {ind.dtype}")
    depth = attrs.get("depth")
    if not isinstance(depth, int) or depth < 1:
        raise ShapeError(f"one_hot depth must be a positive int, got {depth!r}")
    axis = check_axis(attrs.get("axis", ind.rank), ind.rank + 1)
    dtype = attrs.get("dtype", "float32")
    T.to_numpy(dtype)
    return [TensorType(dtype, ind.shape[:axis] + (depth,) + ind.shape[axis:])]


def _one_hot_ref(inputs, attrs):
    ind = inputs[0]
    depth = attrs["depth"]
    axis = attrs.get("axis", ind.ndim)
    dt = T.to_numpy(attrs.get("dtype", "float32"))
    ix = np.trunc(ind.astype(np.float64)).astype(np.int64) if ind.dtype.kind == "f" \
        else ind.astype(np.int64)
    ix = np.where(ix < 0, ix + depth, ix)
    hot = np.expand_dims(ix, axis) == np.arange(depth).reshape(
        (depth,) + (1,) * (ind.ndim - axis))
    on = np.asarray(attrs.get("on_value", 1)).astype(dt)
    off = np.asarray(attrs.get("off_value", 0)).astype(dt)
    return [np.where(hot, on, off).astype(dt)]


register_op("one_hot", _one_hot_infer, _one_hot_ref)


def _range_infer(in_types, attrs):
    if any(t is not None for t in in_types):
        raise ShapeError("range takes no inputs")
    dtype = attrs.get("dtype", "int64")
    T.to_numpy(dtype)
    start, limit, delta = (attrs.get(k) for k in ("start", "limit", "delta"))
    if delta == 0:
        raise ShapeError("range delta must not be 0")
    n = sympy.ceiling((sympy.sympify(limit) - sympy.sympify(start)) / sympy.sympify(delta))
    return [TensorType(dtype, (D.dim(sympy.Max(0, n)),))]


def _range_ref(inputs, attrs):
    dt = T.to_numpy(attrs.get("dtype", "int64"))
    start, limit, delta = attrs["start"], attrs["limit"], attrs["delta"]
    n = max(0, int(np.ceil((limit - start) / delta)))
    if dt.kind in "iu":
        return [(np.arange(n, dtype=np.int64) * int(delta) + int(start)).astype(dt)]
    return [(start + np.arange(n, dtype=np.float64) * delta).astype(dt)]


register_op("range", _range_infer, _range_ref)


def _full_infer(in_types, attrs):
    if any(t is not None for t in in_types):
        raise ShapeError("full takes no inputs")
    dtype = attrs.get("dtype", "float32")
    T.to_numpy(dtype)
    return [TensorType(dtype, _shape_attr(attrs))]


register_op("full", _full_infer, lambda i, a: [np.full(
    tuple(int(d) for d in a["shape"]), np.asarray(a.get("value", 0)).astype(
        T.to_numpy(a.get("dtype", "float32"))), dtype=T.to_numpy(a.get("dtype", "float32")))])


def _dims_tensor_infer(in_types, attrs):
    if any(t is not None for t in in_types):
        raise ShapeError("dims_tensor takes no inputs")
    dtype = attrs.get("dtype", "int64")
    if not T.is_int(dtype):
        raise ShapeError(f"dims_tensor dtype must be an integer type, got {dtype}")
    return [TensorType(dtype, (len(D.shape(attrs.get("values", []))),))]


register_op("dims_tensor", _dims_tensor_infer, lambda i, a: [
    np.array([int(v) for v in a.get("values", [])], dtype=T.to_numpy(a.get("dtype", "int64")))])

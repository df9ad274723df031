"""The ATen -> llmc op table of the torch frontend: one small handler per ATen op family.

A handler takes the :class:`~llmc.frontends.torch.Converter` and the node's arguments bound by
schema name (``a["self"]``, ``a["dim"]``...) and returns the llmc value name (or a list for
multi-output ops, ``None`` for outputs llmc does not compute). The converter casts results to
torch's dtype and checks shapes against torch's metadata, so handlers stay short.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

import torch

from .. import dims as D
from ..dtypes import is_float, to_numpy

Handler = Callable[[Any, dict], Any]
HANDLERS: dict[str, Handler] = {}


def register(*names: str) -> Callable[[Handler], Handler]:
    """Register a handler under ATen names: ``"add.Tensor"`` (one overload) or ``"add"`` (all)."""
    def deco(fn: Handler) -> Handler:
        for n in names:
            HANDLERS["aten." + n] = fn
        return fn
    return deco


def lookup(target: Any) -> Handler | None:
    """The handler for an FX call target (overload first, then the op packet)."""
    name = str(target)
    if name in HANDLERS:
        return HANDLERS[name]
    packet = name.rsplit(".", 1)[0]
    return HANDLERS.get(packet)


# ----------------------------------------------------------------------------- helpers
def _axis(d: int, rank: int) -> int:
    return d + rank if d < 0 else d


def _axes(dims: Any, rank: int) -> list[int]:
    if dims is None:
        return []
    if isinstance(dims, int):
        dims = [dims]
    return sorted({_axis(int(d), rank) for d in dims})


def _list(v: Any, n: int) -> list:
    """An int-or-list argument as a list of n (``stride=2`` -> ``[2, 2]``)."""
    if isinstance(v, (list, tuple)):
        v = list(v)
        return v * n if len(v) == 1 else v
    return [v] * n


def _num(v: Any) -> Any:
    """A plain Python number (attrs never carry numpy or torch scalars)."""
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    return float(v)


# ----------------------------------------------------------------------------- aliases
@register("clone", "contiguous", "alias", "alias_copy", "lift_fresh_copy", "detach",
          "detach_copy", "lift_fresh", "dropout", "feature_dropout", "alpha_dropout")
def _identity(cx, a):
    return cx.tensor(a.get("self", a.get("input")))


@register("_to_copy", "to.dtype", "to.dtype_layout", "type_as", "_to_dim_order_copy")
def _to_copy(cx, a):
    return cx.cast(cx.tensor(a["self"]), cx.out_dtype())


@register("native_dropout")
def _native_dropout(cx, a):
    if a.get("train"):
        raise cx.unsupported("in training mode (call model.eval() before exporting)")
    return [cx.tensor(a["input"]), None]


# ----------------------------------------------------------------------------- elementwise
_UNARY = {
    "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "silu": "silu", "erf": "erf",
    "exp": "exp", "log": "log", "sqrt": "sqrt", "rsqrt": "rsqrt", "neg": "neg", "abs": "abs",
    "reciprocal": "reciprocal", "sin": "sin", "cos": "cos", "tan": "tan", "asin": "asin",
    "acos": "acos", "atan": "atan", "sinh": "sinh", "cosh": "cosh", "asinh": "asinh",
    "acosh": "acosh", "atanh": "atanh", "floor": "floor", "ceil": "ceil", "round.default": "round",
    "sign": "sign", "mish": "mish", "hardswish": "hard_swish",
}


def _make_unary(op: str) -> Handler:
    def fn(cx, a):
        return cx.emit(op, [cx.tensor(a["self"], cx.out_dtype())])
    return fn


for _aten, _op in _UNARY.items():
    register(_aten)(_make_unary(_op))


@register("gelu")
def _gelu(cx, a):
    return cx.emit("gelu", [cx.tensor(a["self"], cx.out_dtype())],
                   {"approximate": a.get("approximate") or "none"})


@register("hardsigmoid")
def _hardsigmoid(cx, a):
    return cx.emit("hard_sigmoid", [cx.tensor(a["self"])], {"alpha": 1.0 / 6.0, "beta": 0.5})


@register("leaky_relu")
def _leaky_relu(cx, a):
    return cx.emit("leaky_relu", [cx.tensor(a["self"])], {"alpha": float(a["negative_slope"])})


@register("elu")
def _elu(cx, a):
    if float(a["input_scale"]) != 1.0:
        raise cx.unsupported("with input_scale != 1")
    y = cx.emit("elu", [cx.tensor(a["self"])], {"alpha": float(a["alpha"])})
    if float(a["scale"]) != 1.0:
        y = cx.emit("mul", [y, cx.scalar(float(a["scale"]), cx.dtype(y))])
    return y


@register("celu")
def _celu(cx, a):
    return cx.emit("celu", [cx.tensor(a["self"])], {"alpha": float(a["alpha"])})


@register("selu")
def _selu(cx, a):
    return cx.emit("selu", [cx.tensor(a["self"])],
                   {"alpha": 1.6732632423543772, "gamma": 1.0507009873554805})


@register("softplus")
def _softplus(cx, a):
    x = cx.tensor(a["self"])
    beta = float(a["beta"])
    if beta == 1.0:
        return cx.emit("softplus", [x])
    b = cx.scalar(beta, cx.dtype(x))
    return cx.emit("div", [cx.emit("softplus", [cx.emit("mul", [x, b])]), b])


@register("log1p")
def _log1p(cx, a):
    x = cx.tensor(a["self"], cx.out_dtype())
    return cx.emit("log", [cx.emit("add", [x, cx.scalar(1.0, cx.dtype(x))])])


@register("expm1")
def _expm1(cx, a):
    x = cx.tensor(a["self"], cx.out_dtype())
    return cx.emit("sub", [cx.emit("exp", [x]), cx.scalar(1.0, cx.dtype(x))])


@register("log2")
def _log2(cx, a):
    x = cx.tensor(a["self"], cx.out_dtype())
    return cx.emit("div", [cx.emit("log", [x]), cx.scalar(math.log(2.0), cx.dtype(x))])


@register("trunc")
def _trunc(cx, a):
    x = cx.tensor(a["self"])
    return _trunc_value(cx, x)


def _trunc_value(cx, x: str) -> str:
    if not is_float(cx.dtype(x)):
        return x
    return cx.emit("mul", [cx.emit("floor", [cx.emit("abs", [x])]), cx.emit("sign", [x])])


@register("logical_not")
def _logical_not(cx, a):
    return cx.emit("logical_not", [cx.tensor(a["self"], "bool")])


@register("bitwise_not")
def _bitwise_not(cx, a):
    x = cx.tensor(a["self"])
    return cx.emit("logical_not" if cx.dtype(x) == "bool" else "bitwise_not", [x])


@register("isnan")
def _isnan(cx, a):
    return cx.emit("isnan", [cx.tensor(a["self"])])


@register("isinf")
def _isinf(cx, a):
    return cx.emit("isinf", [cx.tensor(a["self"])], {"detect_positive": 1, "detect_negative": 1})


@register("clamp", "clip", "hardtanh", "clamp_min", "clamp_max", "relu6")
def _clamp(cx, a):
    x = cx.tensor(a["self"], cx.out_dtype())
    name = str(cx.node.target).split(".")[1]
    lo = a.get("min", a.get("min_val"))
    hi = a.get("max", a.get("max_val"))
    if name == "relu6":
        lo, hi = 0.0, 6.0
    if name == "clamp_max":
        lo, hi = None, a.get("max")
    if name == "clamp_min":
        lo, hi = a.get("min"), None
    if isinstance(lo, torch.fx.Node) or isinstance(hi, torch.fx.Node):  # clamp.Tensor
        if lo is not None:
            x = cx.emit("maximum", [x, cx.tensor(lo, cx.dtype(x))])
        if hi is not None:
            x = cx.emit("minimum", [x, cx.tensor(hi, cx.dtype(x))])
        return x
    conv = float if is_float(cx.dtype(x)) else int
    return cx.emit("clip", [x], {"min": None if lo is None else conv(lo),
                                 "max": None if hi is None else conv(hi)})


# ----------------------------------------------------------------------------- binary
def _operands(cx, a, dtype: str) -> tuple[str, str]:
    return cx.tensor(a["self"], dtype), cx.tensor(a["other"], dtype)


def _arith(op: str) -> Handler:
    def fn(cx, a):
        out = cx.out_dtype()
        x, y = _operands(cx, a, out)
        if out == "bool" and op in ("add", "mul", "maximum", "minimum"):
            return cx.emit("logical_or" if op in ("add", "maximum") else "logical_and", [x, y])
        alpha = a.get("alpha", 1)
        if alpha is not None and alpha != 1 and op in ("add", "sub"):
            y = cx.emit("mul", [y, cx.scalar(_num(alpha), out)])
        return cx.emit(op, [x, y])
    return fn


register("add.Tensor", "add.Scalar")(_arith("add"))
register("sub.Tensor", "sub.Scalar")(_arith("sub"))
register("mul.Tensor", "mul.Scalar")(_arith("mul"))
register("maximum", "fmax")(_arith("maximum"))
register("minimum", "fmin")(_arith("minimum"))


@register("rsub")
def _rsub(cx, a):
    out = cx.out_dtype()
    x, y = _operands(cx, a, out)
    alpha = a.get("alpha", 1)
    if alpha != 1:
        x = cx.emit("mul", [x, cx.scalar(_num(alpha), out)])
    return cx.emit("sub", [y, x])


@register("div", "true_divide", "floor_divide")
def _div(cx, a):
    out = cx.out_dtype()
    mode = a.get("rounding_mode")
    if str(cx.node.target).startswith("aten.floor_divide"):
        mode = "floor"
    if mode is None:
        x, y = _operands(cx, a, out)
        return cx.emit("div", [x, y])
    if is_float(out):
        q = cx.emit("div", list(_operands(cx, a, out)))
        return cx.emit("floor", [q]) if mode == "floor" else _trunc_value(cx, q)
    if mode == "trunc":
        return cx.emit("div", list(_operands(cx, a, out)))
    # floor division of integers: exact through float64 for |values| < 2**53
    x, y = _operands(cx, a, "float64")
    return cx.cast(cx.emit("floor", [cx.emit("div", [x, y])]), out)


@register("remainder", "fmod")
def _mod(cx, a):
    out = cx.out_dtype()
    x, y = _operands(cx, a, out)
    fmod = 1 if str(cx.node.target).startswith("aten.fmod") else 0
    return cx.emit("mod", [x, y], {"fmod": fmod})


@register("pow")
def _pow(cx, a):
    out = cx.out_dtype()
    if "self" in a and not isinstance(a["self"], torch.fx.Node):  # pow.Scalar
        base = cx.scalar(_num(a["self"]), out)
        return cx.emit("pow", [base, cx.tensor(a["exponent"], out)])
    x = cx.tensor(a["self"], out)
    e = a["exponent"]
    if not isinstance(e, torch.fx.Node):
        if e == 1:
            return x
        if e == 2:
            return cx.emit("mul", [x, x])
        if e == 0.5 and is_float(out):
            return cx.emit("sqrt", [x])
    return cx.emit("pow", [x, cx.tensor(e, out)])


def _common_dtype(cx, *args: Any) -> str:
    """torch's type promotion for comparison operands (Python scalars are weakly typed)."""
    vals = []
    for v in args:
        if isinstance(v, torch.fx.Node):
            mv = v.meta.get("val")
            vals.append(mv if isinstance(mv, torch.Tensor) else (
                1 if isinstance(mv, torch.SymInt) else mv))
        else:
            vals.append(v)
    if len(vals) == 1:
        return cx.scalar_dtype(args[0])
    from .torch import torch_dtype_name

    return torch_dtype_name(torch.result_type(*vals))


def _compare(op: str, negate: bool = False) -> Handler:
    def fn(cx, a):
        dt = _common_dtype(cx, a["self"], a["other"])
        y = cx.emit(op, list(_operands(cx, a, dt)))
        return cx.emit("logical_not", [y]) if negate else y
    return fn


register("eq")(_compare("equal"))
register("ne")(_compare("equal", negate=True))
register("lt")(_compare("less"))
register("le")(_compare("less_equal"))
register("gt")(_compare("greater"))
register("ge")(_compare("greater_equal"))


def _logical(op: str) -> Handler:
    def fn(cx, a):
        return cx.emit(op, list(_operands(cx, a, "bool")))
    return fn


register("logical_and")(_logical("logical_and"))
register("logical_or")(_logical("logical_or"))
register("logical_xor")(_logical("logical_xor"))


def _bitwise(op: str) -> Handler:
    def fn(cx, a):
        out = cx.out_dtype()
        x, y = _operands(cx, a, out)
        if out == "bool":
            return cx.emit(op.replace("bitwise", "logical"), [x, y])
        return cx.emit(op, [x, y])
    return fn


register("bitwise_and")(_bitwise("bitwise_and"))
register("bitwise_or")(_bitwise("bitwise_or"))
register("bitwise_xor")(_bitwise("bitwise_xor"))


@register("where.self")
def _where(cx, a):
    out = cx.out_dtype()
    return cx.emit("where", [cx.tensor(a["condition"], "bool"), cx.tensor(a["self"], out),
                             cx.tensor(a["other"], out)])


@register("masked_fill")
def _masked_fill(cx, a):
    out = cx.out_dtype()
    x = cx.tensor(a["self"], out)
    return cx.emit("where", [cx.tensor(a["mask"], "bool"), cx.tensor(a["value"], out), x])


# ----------------------------------------------------------------------------- creation
def _full_value(cx, shape: tuple, value: Any, dtype: str) -> str:
    if isinstance(value, torch.fx.Node):
        return cx.emit("expand", [cx.tensor(value, dtype)], {"shape": list(shape)})
    value = _num(value) if not isinstance(value, bool) else value
    if dtype == "bool":
        value = bool(value)
    elif not is_float(dtype):
        value = int(value)
    else:
        value = float(value)
    if D.is_static_shape(shape) and int(np.prod(shape, dtype=np.int64)) <= 4096:
        return cx.const(np.full(shape, value, dtype=to_numpy(dtype)), "full")
    return cx.emit("full", [], {"shape": list(shape), "value": value, "dtype": dtype})


@register("full", "full_like", "new_full")
def _full(cx, a):
    return _full_value(cx, cx.out_shape(), a["fill_value"], cx.out_dtype())


@register("zeros", "zeros_like", "new_zeros", "empty", "empty_like", "new_empty",
          "empty_strided", "new_empty_strided", "empty_permuted")
def _zeros(cx, a):
    return _full_value(cx, cx.out_shape(), 0, cx.out_dtype())


@register("ones", "ones_like", "new_ones")
def _ones(cx, a):
    return _full_value(cx, cx.out_shape(), 1, cx.out_dtype())


@register("fill.Scalar", "fill.Tensor")
def _fill(cx, a):
    return _full_value(cx, cx.out_shape(), a["value"], cx.out_dtype())


@register("scalar_tensor")
def _scalar_tensor(cx, a):
    return cx.tensor(a["s"], cx.out_dtype())


@register("arange")
def _arange(cx, a):
    dtype = cx.out_dtype()
    start = a.get("start", 0)
    end = a["end"]
    step = a.get("step", 1)
    vals = []
    for v in (start, end, step):
        if isinstance(v, (torch.fx.Node, torch.SymInt)):
            vals.append(cx.dim(v))
        else:
            vals.append(_num(v))
    if all(isinstance(v, (int, float)) for v in vals):
        return cx.const(np.arange(vals[0], vals[1], vals[2]).astype(to_numpy(dtype)), "arange")
    return cx.emit("range", [], {"start": vals[0], "limit": vals[1], "delta": vals[2],
                                 "dtype": dtype})


# ----------------------------------------------------------------------------- linear algebra
@register("mm", "bmm", "matmul", "mv", "dot")
def _matmul(cx, a):
    out = cx.out_dtype()
    other = a.get("mat2", a.get("other", a.get("vec", a.get("tensor"))))
    return cx.emit("matmul", [cx.tensor(a["self"], out), cx.tensor(other, out)])


def _scaled_add(cx, prod: str, bias: Any, alpha: Any, beta: Any) -> str:
    dt = cx.dtype(prod)
    if alpha != 1:
        prod = cx.emit("mul", [prod, cx.scalar(_num(alpha), dt)])
    if beta == 0:
        return prod
    b = cx.tensor(bias, dt)
    if beta != 1:
        b = cx.emit("mul", [b, cx.scalar(_num(beta), dt)])
    return cx.emit("add", [prod, b])


@register("addmm", "baddbmm", "addmv", "addbmm")
def _addmm(cx, a):
    out = cx.out_dtype()
    m1 = a.get("mat1", a.get("batch1", a.get("mat")))
    m2 = a.get("mat2", a.get("batch2", a.get("vec")))
    prod = cx.emit("matmul", [cx.tensor(m1, out), cx.tensor(m2, out)])
    if str(cx.node.target).startswith("aten.addbmm"):
        prod = cx.emit("reduce_sum", [prod], {"axes": [0], "keepdims": 0})
    return _scaled_add(cx, prod, a["self"], a.get("alpha", 1), a.get("beta", 1))


@register("linear")
def _linear(cx, a):
    out = cx.out_dtype()
    w = cx.tensor(a["weight"], out)
    r = cx.rank(w)
    wt = cx.emit("transpose", [w], {"perm": list(range(r - 2)) + [r - 1, r - 2]}) if r >= 2 else w
    y = cx.emit("matmul", [cx.tensor(a["input"], out), wt])
    if a.get("bias") is not None:
        y = cx.emit("add", [y, cx.tensor(a["bias"], out)])
    return y


@register("scaled_dot_product_attention")
def _sdpa(cx, a):
    if a.get("dropout_p") not in (None, 0, 0.0):
        raise cx.unsupported("with dropout_p > 0 (export the model in eval mode)")
    out = cx.out_dtype()
    q, k, v = (cx.tensor(a[n], out) for n in ("query", "key", "value"))
    inputs = [q, k, v]
    mask = a.get("attn_mask")
    if mask is not None:
        m = cx.tensor(mask)
        inputs.append(m if cx.dtype(m) == "bool" else cx.cast(m, out))
    scale = a.get("scale")
    return cx.emit("attention", inputs, {"scale": None if scale is None else float(scale),
                                         "is_causal": bool(a.get("is_causal"))})


# ----------------------------------------------------------------------------- shapes
@register("view", "reshape", "_unsafe_view", "view_copy", "_reshape_alias", "flatten.using_ints",
          "unflatten")
def _reshape(cx, a):
    return cx.emit("reshape", [cx.tensor(a["self"])], {"shape": list(cx.out_shape())})


@register("permute", "permute_copy")
def _permute(cx, a):
    x = cx.tensor(a["self"])
    perm = [_axis(int(d), cx.rank(x)) for d in a["dims"]]
    return x if perm == list(range(len(perm))) else cx.emit("transpose", [x], {"perm": perm})


@register("transpose.int", "transpose_copy.int", "swapaxes", "t", "t_copy", "numpy_T")
def _transpose(cx, a):
    x = cx.tensor(a["self"])
    r = cx.rank(x)
    if r < 2:
        return x
    d0 = _axis(int(a.get("dim0", a.get("axis0", r - 2))), r)
    d1 = _axis(int(a.get("dim1", a.get("axis1", r - 1))), r)
    perm = list(range(r))
    perm[d0], perm[d1] = perm[d1], perm[d0]
    return x if d0 == d1 else cx.emit("transpose", [x], {"perm": perm})


@register("expand", "expand_copy", "expand_as", "broadcast_to")
def _expand(cx, a):
    x = cx.tensor(a["self"])
    shape = cx.out_shape()
    if tuple(cx.shape(x)) == tuple(shape):
        return x
    return cx.emit("expand", [x], {"shape": list(shape)})


@register("unsqueeze", "unsqueeze_copy")
def _unsqueeze(cx, a):
    x = cx.tensor(a["self"])
    return cx.emit("unsqueeze", [x], {"axes": [_axis(int(a["dim"]), cx.rank(x) + 1)]})


@register("squeeze", "squeeze_copy")
def _squeeze(cx, a):
    x = cx.tensor(a["self"])
    shape = cx.shape(x)
    dims = a.get("dim")
    cand = range(len(shape)) if dims is None else _axes(dims, max(len(shape), 1))
    axes = [d for d in cand if d < len(shape) and shape[d] == 1]
    return cx.emit("squeeze", [x], {"axes": axes}) if axes else x


@register("slice.Tensor", "slice_copy.Tensor")
def _slice(cx, a):
    x = cx.tensor(a["self"])
    shape = cx.shape(x)
    axis = _axis(int(a["dim"]), len(shape))
    step = int(a.get("step") or 1)
    length = cx.out_shape()[axis]
    size = shape[axis]
    start = a.get("start")
    start = 0 if start is None else cx.dim(start)
    if isinstance(start, int) and start < 0:
        start = D.dim(size + start) if not isinstance(size, int) else max(size + start, 0)
    if isinstance(start, int) and isinstance(size, int):
        start = min(start, size)
    if D.equal(length, size) and step == 1:
        return x
    end = D.dim(start + (length - 1) * step + 1) if length != 0 else start
    return cx.emit("slice", [x], {"axes": [axis], "starts": [start], "ends": [end],
                                  "steps": [step]})


@register("select.int", "select_copy.int")
def _select(cx, a):
    x = cx.tensor(a["self"])
    axis = _axis(int(a["dim"]), cx.rank(x))
    idx = a["index"]
    index = cx.tensor(idx, "int64") if isinstance(idx, torch.fx.Node) else \
        cx.scalar(int(idx), "int64")
    return cx.emit("gather", [x, index], {"axis": axis})


@register("cat", "concat", "concatenate")
def _cat(cx, a):
    out = cx.out_dtype()
    rank = len(cx.out_shape())
    xs = [cx.tensor(t, out) for t in a["tensors"]]
    xs = [x for x in xs if not (cx.rank(x) == 1 and cx.shape(x)[0] == 0 and rank != 1)]
    if len(xs) == 1:
        return xs[0]
    return cx.emit("concat", xs, {"axis": _axis(int(a.get("dim", 0)), rank)})


@register("stack")
def _stack(cx, a):
    out = cx.out_dtype()
    rank = len(cx.out_shape())
    axis = _axis(int(a.get("dim", 0)), rank)
    xs = [cx.emit("unsqueeze", [cx.tensor(t, out)], {"axes": [axis]}) for t in a["tensors"]]
    return xs[0] if len(xs) == 1 else cx.emit("concat", xs, {"axis": axis})


@register("split.Tensor", "split_with_sizes", "split_with_sizes_copy", "split_copy.Tensor",
          "unsafe_split.Tensor", "chunk", "tensor_split.sections")
def _split(cx, a):
    x = cx.tensor(a["self"])
    axis = _axis(int(a.get("dim", 0)), cx.rank(x))
    sizes = [cx.shape_of(v)[axis] for v in cx.meta()]
    if len(sizes) == 1:
        return [x]
    return cx.emit("split", [x], {"axis": axis, "sizes": sizes}, num_outputs=len(sizes))


@register("unbind.int", "unbind_copy.int")
def _unbind(cx, a):
    x = cx.tensor(a["self"])
    axis = _axis(int(a.get("dim", 0)), cx.rank(x))
    n = cx.shape(x)[axis]
    if not isinstance(n, int):
        raise cx.unsupported("along a symbolic dim")
    parts = [x] if n == 1 else cx.emit("split", [x], {"axis": axis, "sizes": [1] * n},
                                       num_outputs=n)
    return [cx.emit("squeeze", [p], {"axes": [axis]}) for p in parts]


@register("flip")
def _flip(cx, a):
    x = cx.tensor(a["self"])
    shape = cx.shape(x)
    axes = _axes(a["dims"], len(shape))
    if not axes:
        return x
    return cx.emit("slice", [x], {"axes": axes, "starts": [D.dim(shape[d] - 1) for d in axes],
                                  "ends": [-1] * len(axes), "steps": [-1] * len(axes)})


@register("repeat")
def _repeat(cx, a):
    x = cx.tensor(a["self"])
    reps = [int(cx.dim(r)) for r in a["repeats"]]
    extra = len(reps) - cx.rank(x)
    if extra > 0:
        x = cx.emit("unsqueeze", [x], {"axes": list(range(extra))})
    return cx.emit("tile", [x], {"repeats": reps})


@register("constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d",
          "replication_pad1d", "replication_pad2d", "replication_pad3d")
def _pad(cx, a):
    x = cx.tensor(a["self"])
    r = cx.rank(x)
    pad = [int(cx.dim(p)) for p in a.get("pad", a.get("padding"))]
    if any(p < 0 for p in pad):
        raise cx.unsupported("with negative padding (cropping)")
    begins, ends = [0] * r, [0] * r
    for i in range(len(pad) // 2):
        begins[r - 1 - i] = pad[2 * i]
        ends[r - 1 - i] = pad[2 * i + 1]
    name = str(cx.node.target)
    mode = "reflect" if "reflection" in name else "edge" if "replication" in name else "constant"
    return cx.emit("pad", [x], {"pads": begins + ends, "mode": mode,
                                "value": float(a.get("value") or 0.0)})


@register("tril", "triu")
def _trilu(cx, a):
    upper = str(cx.node.target).startswith("aten.triu")
    return cx.emit("trilu", [cx.tensor(a["self"])], {"upper": upper,
                                                     "k": int(a.get("diagonal") or 0)})


# ----------------------------------------------------------------------------- gathers
@register("embedding")
def _embedding(cx, a):
    return cx.emit("gather", [cx.tensor(a["weight"]), cx.tensor(a["indices"], "int64")],
                   {"axis": 0})


@register("index_select")
def _index_select(cx, a):
    x = cx.tensor(a["self"])
    return cx.emit("gather", [x, cx.tensor(a["index"], "int64")],
                   {"axis": _axis(int(a["dim"]), cx.rank(x))})


@register("gather")
def _gather(cx, a):
    x = cx.tensor(a["self"])
    idx = cx.tensor(a["index"], "int64")
    axis = _axis(int(a["dim"]), cx.rank(x))
    xs, ish = cx.shape(x), cx.shape(idx)
    axes, ends = [], []
    for d, (n, m) in enumerate(zip(xs, ish)):
        if d != axis and not D.equal(n, m):  # torch allows a smaller index: crop the data
            axes.append(d)
            ends.append(m)
    if axes:
        x = cx.emit("slice", [x], {"axes": axes, "starts": [0] * len(axes), "ends": ends,
                                   "steps": [1] * len(axes)})
    return cx.emit("gather_elements", [x, idx], {"axis": axis})


def _dim_tensor(cx, d: D.Dim) -> str:
    """A 0-d int64 tensor holding a (possibly symbolic) dim."""
    if isinstance(d, int):
        return cx.scalar(d, "int64")
    t = cx.emit("dims_tensor", [], {"values": [d], "dtype": "int64"})
    return cx.emit("reshape", [t], {"shape": []})


@register("index.Tensor", "_unsafe_index.Tensor")
def _index(cx, a):
    """Advanced indexing with integer index tensors (``x[i, :, j]``); bool masks unsupported."""
    x = cx.tensor(a["self"])
    indices = list(a["indices"])
    pos = [i for i, t in enumerate(indices) if t is not None]
    for i in pos:
        t = indices[i]
        if isinstance(t, torch.fx.Node) and t.meta.get("val") is not None and \
                t.meta["val"].dtype == torch.bool:
            raise cx.unsupported("with a boolean mask index (data-dependent output shape)")
    idx = [cx.tensor(indices[i], "int64") for i in pos]
    shape = cx.shape(x)
    if len(pos) == 1:
        return cx.emit("gather", [x, idx[0]], {"axis": pos[0]})
    consecutive = pos == list(range(pos[0], pos[0] + len(pos)))
    if not consecutive:  # torch puts the broadcast index dims first
        rest = [d for d in range(len(shape)) if d not in pos]
        x = cx.emit("transpose", [x], {"perm": pos + rest})
        shape = cx.shape(x)
        pos = list(range(len(pos)))
    p = pos[0]
    k = len(pos)
    # linear index over the indexed dims, then one gather on the flattened axis
    linear = None
    for j in range(k):
        n = shape[p + j]
        term = cx.emit("mod", [idx[j], _dim_tensor(cx, n)], {"fmod": 0})
        stride = D.product(shape[p + j + 1:p + k])
        if stride != 1:
            term = cx.emit("mul", [term, _dim_tensor(cx, stride)])
        linear = term if linear is None else cx.emit("add", [linear, term])
    flat = list(shape[:p]) + [D.product(shape[p:p + k])] + list(shape[p + k:])
    x = cx.emit("reshape", [x], {"shape": flat})
    return cx.emit("gather", [x, linear], {"axis": p})


@register("scatter.src", "scatter.value", "scatter_add", "scatter.reduce", "scatter.value_reduce",
          "scatter_reduce.two")
def _scatter(cx, a):
    out = cx.out_dtype()
    x = cx.tensor(a["self"], out)
    idx = cx.tensor(a["index"], "int64")
    axis = _axis(int(a["dim"]), cx.rank(x))
    if a.get("src") is not None:
        upd = cx.tensor(a["src"], out)
    else:
        upd = _full_value(cx, cx.shape(idx), a["value"], out)
    name = str(cx.node.target)
    red = a.get("reduce") or ("add" if "scatter_add" in name else "none")
    red = {"sum": "add", "prod": "mul", "multiply": "mul", "amax": "max", "amin": "min"}.get(
        red, red)
    if red not in ("none", "add", "mul", "max", "min") or a.get("include_self") is False:
        raise cx.unsupported(f"with reduce={a.get('reduce')!r}, "
                             f"include_self={a.get('include_self')}")
    return cx.emit("scatter_elements", [x, idx, upd], {"axis": axis, "reduction": red})


# ----------------------------------------------------------------------------- reductions
def _reduce(op: str, cast_input: bool) -> Handler:
    def fn(cx, a):
        x = cx.tensor(a["self"])
        if cast_input:
            x = cx.cast(x, cx.out_dtype() if not isinstance(cx.meta(), (list, tuple))
                        else cx.out_dtype(0))
        dims = a.get("dim")
        keep = int(bool(a.get("keepdim", False)))
        axes = _axes(dims, cx.rank(x))
        if cx.rank(x) == 0:
            return x
        return cx.emit(op, [x], {"axes": axes, "keepdims": keep})
    return fn


register("sum", "nansum")(_reduce("reduce_sum", True))
register("mean")(_reduce("reduce_mean", True))
register("prod")(_reduce("reduce_prod", True))
register("amax", "max.default")(_reduce("reduce_max", False))
register("amin", "min.default")(_reduce("reduce_min", False))
register("logsumexp")(_reduce("reduce_log_sum_exp", True))


@register("max.dim", "min.dim")
def _max_dim(cx, a):
    x = cx.tensor(a["self"])
    axis = _axis(int(a["dim"]), cx.rank(x))
    keep = int(bool(a.get("keepdim", False)))
    is_max = str(cx.node.target).startswith("aten.max")
    vals = cx.emit("reduce_max" if is_max else "reduce_min", [x],
                   {"axes": [axis], "keepdims": keep})
    idx = cx.emit("argmax" if is_max else "argmin", [x],
                  {"axis": axis, "keepdims": keep, "select_last_index": 0})
    return [vals, idx]


@register("argmax", "argmin")
def _argmax(cx, a):
    x = cx.tensor(a["self"])
    op = "argmax" if str(cx.node.target).startswith("aten.argmax") else "argmin"
    keep = int(bool(a.get("keepdim", False)))
    if a.get("dim") is None:
        x = cx.emit("reshape", [x], {"shape": [D.product(cx.shape(x))]})
        y = cx.emit(op, [x], {"axis": 0, "keepdims": 0, "select_last_index": 0})
        return cx.emit("reshape", [y], {"shape": list(cx.out_shape())}) if keep else y
    return cx.emit(op, [x], {"axis": _axis(int(a["dim"]), cx.rank(x)), "keepdims": keep,
                             "select_last_index": 0})


@register("any", "all")
def _any(cx, a):
    x = cx.tensor(a["self"], "float32")
    op = "reduce_max" if str(cx.node.target).startswith("aten.any") else "reduce_min"
    y = cx.emit(op, [x], {"axes": _axes(a.get("dim"), cx.rank(x)),
                          "keepdims": int(bool(a.get("keepdim", False)))})
    return cx.cast(y, "bool")


def _reduced_count(cx, x: str, axes: list[int]) -> D.Dim:
    shape = cx.shape(x)
    return D.product(shape[d] for d in (axes or range(len(shape))))


def _variance(cx, x: str, axes: list[int], correction: float, keep: int) -> tuple[str, str]:
    mean_k = cx.emit("reduce_mean", [x], {"axes": axes, "keepdims": 1})
    d = cx.emit("sub", [x, mean_k])
    ss = cx.emit("reduce_sum", [cx.emit("mul", [d, d])], {"axes": axes, "keepdims": keep})
    n = _reduced_count(cx, x, axes)
    dt = cx.dtype(x)
    if isinstance(n, int):
        denom = cx.scalar(float(max(n - correction, 0)), dt)
    else:
        denom = cx.emit("sub", [cx.cast(_dim_tensor(cx, n), dt), cx.scalar(float(correction), dt)])
    var = cx.emit("div", [ss, denom])
    mean = mean_k if keep else cx.emit("reduce_mean", [x], {"axes": axes, "keepdims": 0})
    return var, mean


def _correction(a: dict) -> float:
    if a.get("correction") is not None:
        return float(a["correction"])
    if a.get("unbiased") is not None:
        return 1.0 if a["unbiased"] else 0.0
    return 1.0


@register("var", "var_mean", "std", "std_mean")
def _var(cx, a):
    name = str(cx.node.target)
    out = cx.out_dtype(0) if isinstance(cx.meta(), (list, tuple)) else cx.out_dtype()
    x = cx.tensor(a["self"], out)
    axes = _axes(a.get("dim"), cx.rank(x))
    var, mean = _variance(cx, x, axes, _correction(a), int(bool(a.get("keepdim", False))))
    if name.startswith("aten.std"):
        var = cx.emit("sqrt", [var])
    return [var, mean] if "_mean" in name else var


@register("cumsum")
def _cumsum(cx, a):
    x = cx.tensor(a["self"], cx.out_dtype())
    return cx.emit("cumsum", [x], {"axis": _axis(int(a["dim"]), max(cx.rank(x), 1)),
                                   "exclusive": 0, "reverse": 0})


# ----------------------------------------------------------------------------- normalization
@register("_softmax", "softmax.int", "_safe_softmax")
def _softmax(cx, a):
    x = cx.tensor(a["self"], cx.out_dtype())
    return cx.emit("softmax", [x], {"axis": _axis(int(a["dim"]), max(cx.rank(x), 1))})


@register("_log_softmax", "log_softmax.int")
def _log_softmax(cx, a):
    x = cx.tensor(a["self"], cx.out_dtype())
    return cx.emit("log_softmax", [x], {"axis": _axis(int(a["dim"]), max(cx.rank(x), 1))})


def _ones_for(cx, shape: tuple, dtype: str, value: float = 1.0) -> str:
    return cx.const(np.full(shape, value, dtype=to_numpy(dtype)), "ones" if value else "zeros")


def _norm_operands(cx, a) -> tuple[bool, str, str, list[int], str]:
    """(several outputs?, dtype, x, normalized shape, weight or ones) shared by the norms."""
    multi = isinstance(cx.meta(), (list, tuple))
    out = cx.out_dtype(0) if multi else cx.out_dtype()
    x = cx.tensor(a["input"], out)
    ns = [int(cx.dim(n)) for n in a["normalized_shape"]]
    w = cx.tensor(a["weight"], out) if a.get("weight") is not None else \
        _ones_for(cx, tuple(ns), out)
    return multi, out, x, ns, w


@register("native_layer_norm", "layer_norm")
def _layer_norm(cx, a):
    multi, out, x, ns, w = _norm_operands(cx, a)
    inputs = [x, w]
    if a.get("bias") is not None:
        inputs.append(cx.tensor(a["bias"], out))
    y = cx.emit("layer_norm", inputs, {"axis": cx.rank(x) - len(ns), "epsilon": float(a["eps"])})
    return [y, None, None] if multi else y


@register("rms_norm", "_fused_rms_norm")
def _rms_norm(cx, a):
    multi, out, x, ns, w = _norm_operands(cx, a)
    eps = a.get("eps")
    eps = float(torch.finfo(getattr(torch, out)).eps) if eps is None else float(eps)
    y = cx.emit("rms_norm", [x, w], {"axis": cx.rank(x) - len(ns), "epsilon": eps})
    return [y, None] if multi else y


def _batch_norm_core(cx, a, training: bool) -> list:
    if training:
        raise cx.unsupported("in training mode (call model.eval() before exporting)")
    out = cx.out_dtype(0)
    x = cx.tensor(a["input"], out)
    c = cx.shape(x)[1]
    w = cx.tensor(a["weight"], out) if a.get("weight") is not None else _ones_for(cx, (c,), out)
    b = cx.tensor(a["bias"], out) if a.get("bias") is not None else \
        _ones_for(cx, (c,), out, 0.0)
    y = cx.emit("batch_norm", [x, w, b, cx.tensor(a["running_mean"], out),
                               cx.tensor(a["running_var"], out)], {"epsilon": float(a["eps"])})
    return [y] + [None] * (len(cx.meta()) - 1)


@register("_native_batch_norm_legit_no_training")
def _bn_no_training(cx, a):
    return _batch_norm_core(cx, a, False)


@register("native_batch_norm", "_native_batch_norm_legit.default")
def _bn(cx, a):
    return _batch_norm_core(cx, a, bool(a.get("training")))


@register("native_group_norm")
def _group_norm(cx, a):
    out = cx.out_dtype(0)
    x = cx.tensor(a["input"], out)
    shape = cx.shape(x)
    g = int(a["group"])
    n, c = shape[0], shape[1]
    xr = cx.emit("reshape", [x], {"shape": [n, g, D.product([c // g] + list(shape[2:]))]})
    var, mean = _variance(cx, xr, [2], 0.0, 1)
    eps = cx.scalar(float(a["eps"]), out)
    y = cx.emit("mul", [cx.emit("sub", [xr, mean]), cx.emit("rsqrt", [cx.emit("add", [var, eps])])])
    y = cx.emit("reshape", [y], {"shape": list(shape)})
    bshape = [c] + [1] * (len(shape) - 2)
    if a.get("weight") is not None:
        y = cx.emit("mul", [y, cx.emit("reshape", [cx.tensor(a["weight"], out)],
                                       {"shape": bshape})])
    if a.get("bias") is not None:
        y = cx.emit("add", [y, cx.emit("reshape", [cx.tensor(a["bias"], out)],
                                       {"shape": bshape})])
    return [y, None, None]


# ----------------------------------------------------------------------------- conv and pool
@register("convolution", "conv1d", "conv2d", "conv3d", "_convolution")
def _conv(cx, a):
    out = cx.out_dtype()
    x = cx.tensor(a["input"], out)
    w = cx.tensor(a["weight"], out)
    n = cx.rank(x) - 2
    if isinstance(a.get("padding"), str):
        raise cx.unsupported(f"with padding={a['padding']!r} (not decomposed to explicit pads)")
    pads = [int(p) for p in _list(a.get("padding", 0), n)]
    attrs = {"strides": [int(s) for s in _list(a.get("stride", 1), n)], "pads": pads + pads,
             "dilations": [int(d) for d in _list(a.get("dilation", 1), n)],
             "group": int(a.get("groups", 1))}
    inputs = [x, w, cx.tensor(a["bias"], out) if a.get("bias") is not None else ""]
    if a.get("transposed"):
        attrs["output_padding"] = [int(p) for p in _list(a.get("output_padding", 0), n)]
        return cx.emit("conv_transpose", inputs, attrs)
    return cx.emit("conv", inputs, attrs)


@register("max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
          "max_pool2d_with_indices", "max_pool3d_with_indices")
def _max_pool(cx, a):
    x = cx.tensor(a["self"])
    n = cx.rank(x) - 2
    k = [int(v) for v in _list(a["kernel_size"], n)]
    stride = a.get("stride") or k
    pads = [int(p) for p in _list(a.get("padding", 0), n)]
    y = cx.emit("max_pool", [x], {"kernel": k, "strides": [int(s) for s in _list(stride, n)],
                                  "pads": pads + pads,
                                  "dilations": [int(d) for d in _list(a.get("dilation", 1), n)],
                                  "ceil_mode": int(bool(a.get("ceil_mode")))})
    return [y, None] if isinstance(cx.meta(), (list, tuple)) else y


@register("avg_pool1d", "avg_pool2d", "avg_pool3d")
def _avg_pool(cx, a):
    if a.get("divisor_override") is not None:
        raise cx.unsupported("with divisor_override")
    x = cx.tensor(a["self"])
    n = cx.rank(x) - 2
    k = [int(v) for v in _list(a["kernel_size"], n)]
    stride = a.get("stride") or k
    pads = [int(p) for p in _list(a.get("padding", 0), n)]
    return cx.emit("avg_pool", [x], {"kernel": k, "strides": [int(s) for s in _list(stride, n)],
                                     "pads": pads + pads,
                                     "ceil_mode": int(bool(a.get("ceil_mode"))),
                                     "count_include_pad": int(bool(a.get("count_include_pad",
                                                                         True)))})


@register("adaptive_avg_pool1d", "adaptive_avg_pool2d", "_adaptive_avg_pool2d",
          "adaptive_avg_pool3d", "_adaptive_avg_pool3d", "adaptive_max_pool1d",
          "adaptive_max_pool2d", "adaptive_max_pool3d")
def _adaptive_pool(cx, a):
    x = cx.tensor(a["self"])
    is_max = "max" in str(cx.node.target)
    shape = cx.shape(x)
    n = len(shape) - 2
    osize = [int(cx.dim(v)) if v is not None else shape[2 + i]
             for i, v in enumerate(_list(a["output_size"], n))]
    multi = isinstance(cx.meta(), (list, tuple))
    if all(o == 1 for o in osize):
        y = cx.emit("global_max_pool" if is_max else "global_avg_pool", [x])
        return [y, None] if multi else y
    spatial = shape[2:]
    if not all(isinstance(s, int) and s % o == 0 for s, o in zip(spatial, osize)):
        raise cx.unsupported(f"from {D.shape_str(spatial)} to {osize} (only 1x1 or an exact "
                             "divisor of a static input size)")
    k = [s // o for s, o in zip(spatial, osize)]
    if is_max:
        y = cx.emit("max_pool", [x], {"kernel": k, "strides": k, "pads": [0] * 2 * n,
                                      "dilations": [1] * n, "ceil_mode": 0})
        return [y, None] if multi else y
    return cx.emit("avg_pool", [x], {"kernel": k, "strides": k, "pads": [0] * 2 * n,
                                     "ceil_mode": 0, "count_include_pad": 0})

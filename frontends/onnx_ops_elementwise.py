"""ONNX converters: elementwise unary/binary ops, variadic Sum/Max/Min/Mean, Cast, Clip, Where."""
from __future__ import annotations

import numpy as np

from . import onnx_known as K
from .onnx_context import NodeCtx, converter, evaluator, onnx_dtype

_UNARY = {
    "Abs": "abs", "Neg": "neg", "Exp": "exp", "Log": "log", "Sqrt": "sqrt",
    "Reciprocal": "reciprocal", "Tanh": "tanh", "Sigmoid": "sigmoid", "Relu": "relu",
    "Erf": "erf", "Sin": "sin", "Cos": "cos", "Tan": "tan", "Asin": "asin", "Acos": "acos",
    "Atan": "atan", "Sinh": "sinh", "Cosh": "cosh", "Asinh": "asinh", "Acosh": "acosh",
    "Atanh": "atanh", "Floor": "floor", "Ceil": "ceil", "Round": "round", "Sign": "sign",
    "Softplus": "softplus", "Softsign": "softsign", "Mish": "mish", "HardSwish": "hard_swish",
    "Not": "logical_not", "IsNaN": "isnan", "BitwiseNot": "bitwise_not",
}

# ONNX op -> (llmc op, {llmc attr: (onnx attr, default)})
_UNARY_ATTR = {
    "LeakyRelu": ("leaky_relu", {"alpha": ("alpha", 0.01)}),
    "Elu": ("elu", {"alpha": ("alpha", 1.0)}),
    "Selu": ("selu", {"alpha": ("alpha", 1.67326319217681884765625),
                      "gamma": ("gamma", 1.05070102214813232421875)}),
    "Celu": ("celu", {"alpha": ("alpha", 1.0)}),
    "ThresholdedRelu": ("thresholded_relu", {"alpha": ("alpha", 1.0)}),
    "HardSigmoid": ("hard_sigmoid", {"alpha": ("alpha", 0.2), "beta": ("beta", 0.5)}),
    "Shrink": ("shrink", {"bias": ("bias", 0.0), "lambd": ("lambd", 0.5)}),
    "IsInf": ("isinf", {"detect_positive": ("detect_positive", 1),
                        "detect_negative": ("detect_negative", 1)}),
}

_BINARY = {
    "Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow",
    "Equal": "equal", "Less": "less", "LessOrEqual": "less_equal", "Greater": "greater",
    "GreaterOrEqual": "greater_equal", "And": "logical_and", "Or": "logical_or",
    "Xor": "logical_xor", "BitwiseAnd": "bitwise_and", "BitwiseOr": "bitwise_or",
    "BitwiseXor": "bitwise_xor", "PRelu": "prelu",
}


def _check_legacy_broadcast(c: NodeCtx) -> None:
    if c.attr("broadcast") and c.attr("axis") is not None:
        raise c.unsupported("legacy broadcast with an 'axis' attribute (opset < 7)")


@converter(*_UNARY)
def conv_unary(c: NodeCtx) -> list:
    return [c.emit(_UNARY[c.op_type], [c.x(0)])]


@converter(*_UNARY_ATTR)
def conv_unary_attr(c: NodeCtx) -> list:
    op, spec = _UNARY_ATTR[c.op_type]
    attrs = {k: c.attr(a, d) for k, (a, d) in spec.items()}
    attrs = {k: (float(v) if isinstance(d, float) else int(v)) for (k, v), (_, d)
             in zip(attrs.items(), spec.values())}
    return [c.emit(op, [c.x(0)], attrs)]


@converter("Gelu")
def conv_gelu(c: NodeCtx) -> list:
    return [c.emit("gelu", [c.x(0)], {"approximate": c.attr("approximate", "none")})]


@converter(*_BINARY)
def conv_binary(c: NodeCtx) -> list:
    _check_legacy_broadcast(c)
    return [c.emit(_BINARY[c.op_type], [c.x(0), c.x(1)])]


@converter("Mod")
def conv_mod(c: NodeCtx) -> list:
    fmod = int(c.attr("fmod", 0))
    a, b = c.x(0), c.x(1)
    if fmod == 0 and c.dtype(0).startswith(("float", "bfloat")):
        # numpy-style float modulo (sign of the divisor) from C fmod:
        # r = fmod(a, b); where r != 0 and sign(r) != sign(b): r + b
        r = c.emit("mod", [a, b], {"fmod": 1})
        zero = c.scalar(0, c.dtype(0))
        nonzero = c.emit("logical_not", [c.emit("equal", [r, zero])])
        r_neg, b_neg = c.emit("less", [r, zero]), c.emit("less", [b, zero])
        flip = c.emit("logical_and", [nonzero, c.emit("logical_xor", [r_neg, b_neg])])
        return [c.emit("where", [flip, c.emit("add", [r, b]), r])]
    return [c.emit("mod", [a, b], {"fmod": fmod})]


@converter("BitShift")
def conv_bitshift(c: NodeCtx) -> list:
    return [c.emit("bit_shift", [c.x(0), c.x(1)], {"direction": c.attr("direction").lower()})]


@converter("Where")
def conv_where(c: NodeCtx) -> list:
    return [c.emit("where", [c.x(0), c.x(1), c.x(2)])]


@converter("Sum", "Max", "Min", "Mean")
def conv_variadic(c: NodeCtx) -> list:
    op = {"Sum": "add", "Max": "maximum", "Min": "minimum", "Mean": "add"}[c.op_type]
    xs = c.xs()
    acc = xs[0]
    for x in xs[1:]:
        acc = c.emit(op, [acc, x])
    if c.op_type == "Mean":
        acc = c.emit("div", [acc, c.scalar(len(xs), c.dtype(0))])
    elif len(xs) == 1:
        acc = c.emit("identity", [acc])
    return [acc]


@converter("Identity", "Dropout")
def conv_identity(c: NodeCtx) -> list:
    if c.op_type == "Dropout":
        training = c.known(2) if c.has(2) else None
        if c.attr("is_test", 1) == 0 and c.opset < 7 or (
                training is not None and training.is_static and bool(training.value)):
            raise c.unsupported("Dropout in training mode (random masks)")
        if c.has(2) and training is None:
            raise c.unsupported("Dropout whose training_mode is computed at run time")
        x = c.x(0)
        mask = None
        if c.out_used(1):
            mask = c.emit("full", [], {"shape": list(c.shape(0)), "value": True, "dtype": "bool"})
        return [x, mask]
    return [c.x(0)]


@converter("Cast")
def conv_cast(c: NodeCtx) -> list:
    to = onnx_dtype(int(c.attr("to")), f"Cast node '{c.name}'")
    return [c.emit("cast", [c.x(0)], {"to": to})]


@converter("CastLike")
def conv_castlike(c: NodeCtx) -> list:
    return [c.emit("cast", [c.x(0)], {"to": c.dtype(1)})]


def _bound(c: NodeCtx, i: int, attr: str):
    if c.opset < 11:
        v = c.attr(attr)
        return (float(v) if v is not None else None), None
    if not c.has(i):
        return None, None
    k = c.known(i)
    if k is not None and k.is_static:
        v = k.value.reshape(-1)[0].item()
        return v, None
    return None, c.x(i)


@converter("Clip")
def conv_clip(c: NodeCtx) -> list:
    lo, lo_t = _bound(c, 1, "min")
    hi, hi_t = _bound(c, 2, "max")
    dtype = c.dtype(0)
    if dtype.startswith(("int", "uint")):
        lo = int(lo) if lo is not None else None
        hi = int(hi) if hi is not None else None
    y = c.x(0)
    if lo is not None or hi is not None or (lo_t is None and hi_t is None):
        y = c.emit("clip", [y], {"min": lo, "max": hi})
    if lo_t:
        y = c.emit("maximum", [y, lo_t])
    if hi_t:
        y = c.emit("minimum", [y, hi_t])
    return [y]


# ------------------------------------------------------------------ import-time evaluation
def _all_known(c: NodeCtx) -> list[K.Known]:
    ks = [c.known(i) for i in range(c.n_in()) if c.has(i)]
    if any(k is None for k in ks):
        raise K.CannotEval("input not known")
    return ks


_EVAL_BINARY = {"Add": K.add, "Sub": K.sub, "Mul": K.mul, "Div": K.div, "Equal": K.equal,
                "Less": K.compare("lt"), "LessOrEqual": K.compare("le"),
                "Greater": K.compare("gt"), "GreaterOrEqual": K.compare("ge")}


@evaluator(*_EVAL_BINARY)
def eval_binary(c: NodeCtx) -> list:
    a, b = _all_known(c)
    if a.dtype != b.dtype:
        raise K.CannotEval("dtype mismatch")
    if a.dtype in ("float16", "bfloat16") and c.op_type in ("Add", "Sub", "Mul", "Div"):
        raise K.CannotEval("low-precision float arithmetic is left to the backend")
    return [_EVAL_BINARY[c.op_type](a, b)]


@evaluator("Max", "Min")
def eval_maxmin(c: NodeCtx) -> list:
    ks = _all_known(c)
    fn = K.maximum if c.op_type == "Max" else K.minimum
    acc = ks[0]
    for k in ks[1:]:
        acc = fn(acc, k)
    return [acc]


@evaluator("Neg")
def eval_neg(c: NodeCtx) -> list:
    (a,) = _all_known(c)
    return [K.neg(a)]


@evaluator("Not")
def eval_not(c: NodeCtx) -> list:
    (a,) = _all_known(c)
    if not a.is_static:
        raise K.CannotEval("symbolic")
    return [K.Known(np.logical_not(a.value), "bool")]


@evaluator("Where")
def eval_where(c: NodeCtx) -> list:
    cond, x, y = _all_known(c)
    return [K.where(cond, x, y)]


@evaluator("Cast")
def eval_cast(c: NodeCtx) -> list:
    (a,) = _all_known(c)
    return [K.cast(a, onnx_dtype(int(c.attr("to")), c.name))]


@evaluator("CastLike")
def eval_castlike(c: NodeCtx) -> list:
    a = c.known(0)
    if a is None:
        raise K.CannotEval("input not known")
    return [K.cast(a, c.dtype(1))]


@evaluator("Identity")
def eval_identity(c: NodeCtx) -> list:
    (a,) = _all_known(c)
    return [a]


@evaluator("And", "Or", "Xor")
def eval_logical(c: NodeCtx) -> list:
    a, b = _all_known(c)
    if not (a.is_static and b.is_static):
        raise K.CannotEval("symbolic")
    fn = {"And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor}[c.op_type]
    return [K.Known(np.asarray(fn(a.value, b.value)), "bool")]


@evaluator("Mod")
def eval_mod(c: NodeCtx) -> list:
    a, b = _all_known(c)
    if not a.dtype.startswith(("int", "uint")) or a.dtype != b.dtype:
        raise K.CannotEval("integer Mod only")
    return [K.mod(a, b, bool(c.attr("fmod", 0)))]

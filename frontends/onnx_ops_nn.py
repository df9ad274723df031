"""ONNX converters: MatMul/Gemm, convolutions and pools (auto_pad resolved), normalizations,
softmax family, reductions, ArgMax/ArgMin, CumSum."""
from __future__ import annotations

from llmc import dims as D

from . import onnx_known as K
from .onnx_context import NodeCtx, converter, evaluator, onnx_dtype


@converter("MatMul")
def conv_matmul(c: NodeCtx) -> list:
    return [c.emit("matmul", [c.x(0), c.x(1)])]


@converter("Gemm")
def conv_gemm(c: NodeCtx) -> list:
    a, b = c.x(0), c.x(1)
    if c.attr("transA", 0):
        a = c.emit("transpose", [a], {"perm": [1, 0]})
    if c.attr("transB", 0):
        b = c.emit("transpose", [b], {"perm": [1, 0]})
    y = c.emit("matmul", [a, b])
    alpha, beta = float(c.attr("alpha", 1.0)), float(c.attr("beta", 1.0))
    dtype = c.dtype(0)
    if alpha != 1.0:
        y = c.emit("mul", [y, c.scalar(alpha, dtype)])
    if c.has(2) and beta != 0.0:
        bias = c.x(2)
        if beta != 1.0:
            bias = c.emit("mul", [bias, c.scalar(beta, dtype)])
        y = c.emit("add", [y, bias])
    return [y]


# ------------------------------------------------------------------ conv / pool
def _spatial_attrs(c: NodeCtx, kernel: list, spatial: tuple, dilations: list) -> tuple[list, list]:
    """(strides, pads) with auto_pad resolved to explicit pads."""
    n = len(kernel)
    strides = list(c.attr("strides", [1] * n))
    auto = c.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = list(c.attr("pads", [0] * (2 * n)))
    elif auto == "VALID":
        pads = [0] * (2 * n)
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(n):
            size = spatial[i]
            if not isinstance(size, int):
                raise c.unsupported(f"auto_pad={auto} on a symbolic spatial dim ({size})")
            out = -(-size // strides[i])
            total = max((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size, 0)
            small = total // 2
            if auto == "SAME_UPPER":
                begin.append(small)
                end.append(total - small)
            else:
                begin.append(total - small)
                end.append(small)
        pads = begin + end
    else:
        raise c.unsupported(f"auto_pad={auto!r}")
    return strides, pads


@converter("Conv")
def conv_conv(c: NodeCtx) -> list:
    wshape = c.shape(1)
    kernel = list(c.attr("kernel_shape", wshape[2:]))
    n = len(kernel)
    dil = list(c.attr("dilations", [1] * n))
    strides, pads = _spatial_attrs(c, kernel, c.shape(0)[2:], dil)
    attrs = {"strides": strides, "pads": pads, "dilations": dil, "group": int(c.attr("group", 1))}
    return [c.emit("conv", [c.x(0), c.x(1), c.x(2)], attrs)]


@converter("ConvTranspose")
def conv_conv_transpose(c: NodeCtx) -> list:
    wshape = c.shape(1)
    kernel = list(c.attr("kernel_shape", wshape[2:]))
    n = len(kernel)
    dil = list(c.attr("dilations", [1] * n))
    strides = list(c.attr("strides", [1] * n))
    out_pad = list(c.attr("output_padding", [0] * n))
    auto = c.attr("auto_pad", "NOTSET")
    out_shape = c.attr("output_shape")
    spatial = c.shape(0)[2:]
    if out_shape is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        if out_shape is None:
            out_shape = [spatial[i] * strides[i] for i in range(n)]
        out_shape = list(out_shape)[-n:]
        begin, end = [], []
        for i in range(n):
            if not isinstance(spatial[i], int):
                raise c.unsupported("output_shape/auto_pad on a symbolic spatial dim")
            total = strides[i] * (spatial[i] - 1) + out_pad[i] + (kernel[i] - 1) * dil[i] + 1 \
                - out_shape[i]
            if total < 0:  # the requested size needs extra trailing output
                out_pad[i] -= total
                total = 0
            if auto == "SAME_UPPER":
                begin.append(total // 2)
                end.append(total - total // 2)
            else:
                begin.append(total - total // 2)
                end.append(total // 2)
        pads = begin + end
    elif auto == "VALID":
        pads = [0] * (2 * n)
    else:
        pads = list(c.attr("pads", [0] * (2 * n)))
    attrs = {"strides": strides, "pads": pads, "dilations": dil,
             "group": int(c.attr("group", 1)), "output_padding": out_pad}
    return [c.emit("conv_transpose", [c.x(0), c.x(1), c.x(2)], attrs)]


@converter("MaxPool", "AveragePool")
def conv_pool(c: NodeCtx) -> list:
    kernel = list(c.attr("kernel_shape"))
    n = len(kernel)
    dil = list(c.attr("dilations", [1] * n))
    if c.attr("storage_order", 0):
        raise c.unsupported("storage_order=1")
    strides, pads = _spatial_attrs(c, kernel, c.shape(0)[2:], dil)
    attrs = {"kernel": kernel, "strides": strides, "pads": pads,
             "ceil_mode": int(c.attr("ceil_mode", 0))}
    if c.op_type == "MaxPool":
        if c.out_used(1):
            raise c.unsupported("the Indices output of MaxPool")
        attrs["dilations"] = dil
        dtype = c.dtype(0)
        if dtype in ("int8", "uint8", "int16", "uint16"):
            # small ints are exact in float32: pool there and cast back
            y = c.emit("max_pool", [c.cast(c.x(0), "float32")], attrs)
            return [c.cast(y, dtype)]
        return [c.emit("max_pool", [c.x(0)], attrs)]
    if any(d != 1 for d in dil):
        raise c.unsupported("AveragePool with dilations")
    attrs["count_include_pad"] = int(c.attr("count_include_pad", 0))
    return [c.emit("avg_pool", [c.x(0)], attrs)]


@converter("GlobalAveragePool", "GlobalMaxPool")
def conv_global_pool(c: NodeCtx) -> list:
    op = "global_avg_pool" if c.op_type == "GlobalAveragePool" else "global_max_pool"
    return [c.emit(op, [c.x(0)])]


# ------------------------------------------------------------------ normalization
@converter("BatchNormalization")
def conv_batch_norm(c: NodeCtx) -> list:
    if c.attr("training_mode", 0) or any(c.out_used(i) for i in range(1, 5)):
        raise c.unsupported("BatchNormalization in training mode (running statistics outputs)")
    if c.opset < 9 and not c.attr("spatial", 1):
        raise c.unsupported("spatial=0")
    ins = [c.x(i) for i in range(5)]
    return [c.emit("batch_norm", ins, {"epsilon": float(c.attr("epsilon", 1e-5))})]


@converter("InstanceNormalization")
def conv_instance_norm(c: NodeCtx) -> list:
    return [c.emit("instance_norm", [c.x(0), c.x(1), c.x(2)],
                   {"epsilon": float(c.attr("epsilon", 1e-5))})]


@converter("LayerNormalization")
def conv_layer_norm(c: NodeCtx) -> list:
    if c.out_used(1) or c.out_used(2):
        raise c.unsupported("the Mean/InvStdDev outputs of LayerNormalization")
    axis = c.axis(int(c.attr("axis", -1)), c.rank(0))
    y = c.emit("layer_norm", [c.x(0), c.x(1), c.x(2)],
               {"axis": axis, "epsilon": float(c.attr("epsilon", 1e-5))})
    return [y, None, None]


@converter("RMSNormalization")
def conv_rms_norm(c: NodeCtx) -> list:
    axis = c.axis(int(c.attr("axis", -1)), c.rank(0))
    return [c.emit("rms_norm", [c.x(0), c.x(1)],
                   {"axis": axis, "epsilon": float(c.attr("epsilon", 1e-5))})]


@converter("LRN")
def conv_lrn(c: NodeCtx) -> list:
    return [c.emit("lrn", [c.x(0)], {"size": int(c.attr("size")),
                                    "alpha": float(c.attr("alpha", 1e-4)),
                                    "beta": float(c.attr("beta", 0.75)),
                                    "bias": float(c.attr("bias", 1.0))})]


@converter("Softmax", "LogSoftmax", "Hardmax")
def conv_softmax(c: NodeCtx) -> list:
    op = {"Softmax": "softmax", "LogSoftmax": "log_softmax", "Hardmax": "hardmax"}[c.op_type]
    rank = c.rank(0)
    if c.opset >= 13:
        return [c.emit(op, [c.x(0)], {"axis": c.axis(int(c.attr("axis", -1)), rank)})]
    axis = c.axis(int(c.attr("axis", 1)), rank)
    if axis == rank - 1:
        return [c.emit(op, [c.x(0)], {"axis": axis})]
    shape = c.shape(0)
    flat = c.emit("reshape", [c.x(0)], {"shape": [D.product(shape[:axis]),
                                                  D.product(shape[axis:])]})
    y = c.emit(op, [flat], {"axis": 1})
    return [c.emit("reshape", [y], {"shape": list(shape)})]


# ------------------------------------------------------------------ reductions
_REDUCE = {"ReduceSum": "reduce_sum", "ReduceMean": "reduce_mean", "ReduceMax": "reduce_max",
           "ReduceMin": "reduce_min", "ReduceProd": "reduce_prod", "ReduceL1": "reduce_l1",
           "ReduceL2": "reduce_l2", "ReduceSumSquare": "reduce_sum_square",
           "ReduceLogSum": "reduce_log_sum", "ReduceLogSumExp": "reduce_log_sum_exp"}


def _reduce_axes(c: NodeCtx) -> list | None:
    """Sorted non-negative axes, [] for all, or None for 'no-op' (noop_with_empty_axes)."""
    axes_as_input = c.opset >= (13 if c.op_type == "ReduceSum" else 18)
    if axes_as_input:
        axes = [int(a) for a in c.const(1, "reduction axes").reshape(-1)] if c.has(1) else []
    else:
        axes = list(c.attr("axes", []))
    if not axes and c.attr("noop_with_empty_axes", 0):
        return None
    rank = c.rank(0)
    return sorted({c.axis(int(a), rank) for a in axes})


@converter(*_REDUCE)
def conv_reduce(c: NodeCtx) -> list:
    axes = _reduce_axes(c)
    if axes is None:
        return [c.emit("identity", [c.x(0)])]
    return [c.emit(_REDUCE[c.op_type], [c.x(0)],
                   {"axes": axes, "keepdims": int(c.attr("keepdims", 1))})]


@evaluator("ReduceProd", "ReduceSum")
def eval_reduce(c: NodeCtx) -> list:
    a = c.known(0)
    if a is None or not a.dtype.startswith(("int", "uint")):
        raise K.CannotEval("input not a known integer tensor")
    try:
        axes = _reduce_axes(c)
    except Exception:
        raise K.CannotEval("axes not known") from None
    if axes is None:
        return [a]
    fn = K.reduce_prod if c.op_type == "ReduceProd" else K.reduce_sum
    return [fn(a, axes or None, bool(c.attr("keepdims", 1)))]


@converter("ArgMax", "ArgMin")
def conv_arg(c: NodeCtx) -> list:
    op = "argmax" if c.op_type == "ArgMax" else "argmin"
    return [c.emit(op, [c.x(0)], {"axis": c.axis(int(c.attr("axis", 0)), c.rank(0)),
                                  "keepdims": int(c.attr("keepdims", 1)),
                                  "select_last_index": int(c.attr("select_last_index", 0))})]


@converter("CumSum")
def conv_cumsum(c: NodeCtx) -> list:
    axis = int(c.const(1, "CumSum axis").reshape(-1)[0])
    return [c.emit("cumsum", [c.x(0)], {"axis": c.axis(axis, c.rank(0)),
                                        "exclusive": int(c.attr("exclusive", 0)),
                                        "reverse": int(c.attr("reverse", 0))})]



@converter("LpNormalization")
def conv_lp_norm(c: NodeCtx) -> list:
    p = int(c.attr("p", 2))
    if p not in (1, 2):
        raise c.unsupported(f"LpNormalization with p={p}")
    axis = c.axis(int(c.attr("axis", -1)), c.rank(0))
    x = c.x(0)
    norm = c.emit("reduce_l2" if p == 2 else "reduce_l1", [x], {"axes": [axis], "keepdims": 1})
    zero = c.scalar(0, c.dtype(0))
    return [c.emit("where", [c.emit("equal", [norm, zero]), zero, c.emit("div", [x, norm])])]


# ------------------------------------------------------------------ (de)quantization
def _per_axis(c: NodeCtx, v: str, x_rank: int) -> str:
    """Reshape a 1-D per-axis scale/zero point so it broadcasts along ``axis`` of x."""
    if c.attr("block_size", 0):
        raise c.unsupported("blocked (de)quantization (block_size)")
    if c.imp.graph.types[v].rank != 1 or x_rank <= 1:
        return v
    axis = c.axis(int(c.attr("axis", 1)), x_rank)
    shape = [1] * x_rank
    shape[axis] = c.imp.graph.types[v].shape[0]
    return c.emit("reshape", [v], {"shape": shape})


_QRANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767),
           "uint16": (0, 65535)}


@converter("DequantizeLinear")
def conv_dequantize(c: NodeCtx) -> list:
    rank = c.rank(0)
    scale = _per_axis(c, c.x(1), rank)
    ft = c.imp.graph.types[scale].dtype
    x = c.cast(c.x(0), ft)
    if c.has(2):
        x = c.emit("sub", [x, c.cast(_per_axis(c, c.x(2), rank), ft)])
    return [c.emit("mul", [x, scale])]


@converter("QuantizeLinear")
def conv_quantize(c: NodeCtx) -> list:
    rank = c.rank(0)
    out = c.dtype(2) if c.has(2) else "uint8"
    if c.attr("output_dtype"):
        out = onnx_dtype(int(c.attr("output_dtype")), c.name)
    if out not in _QRANGE:
        raise c.unsupported(f"quantization to {out}")
    scale = _per_axis(c, c.x(1), rank)
    ft = c.imp.graph.types[scale].dtype
    y = c.emit("round", [c.emit("div", [c.cast(c.x(0), ft), scale])])
    if c.has(2):
        y = c.emit("add", [y, c.cast(_per_axis(c, c.x(2), rank), ft)])
    lo, hi = _QRANGE[out]
    y = c.emit("clip", [y], {"min": float(lo), "max": float(hi)})
    return [c.cast(y, out)]

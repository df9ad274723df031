"""Linear algebra and NN ops: matmul, conv, pools, normalizations, softmax, attention, lrn.

Shape inference keeps symbolic dims exact (conv/pool sizes use floor division of sympy
expressions); references are plain numpy (im2col through sliding_window_view + tensordot),
float16/bfloat16 computed in float32 and cast back.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import sympy
from numpy.lib.stride_tricks import sliding_window_view

from .. import dims as D
from .. import dtypes as T
from ..errors import ShapeError
from ..ir import TensorType
from . import register_op
from .shape_ops import check_axis, n_inputs

_HALF = ("float16", "bfloat16")


def _w(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) if x.dtype.name in _HALF else x


def _known_ne(a: D.Dim, b: D.Dim) -> bool:
    """Provably different: both static and unequal, or two unequal symbolic expressions."""
    if D.equal(a, b):
        return False
    return isinstance(a, int) == isinstance(b, int)


def _need_float(ty: TensorType, what: str = "input") -> None:
    if not T.is_float(ty.dtype):
        raise ShapeError(f"{what} must have a float dtype, got {ty.dtype}")


def _same_dtype(types, names) -> None:
    first = types[0]
    for t, n in zip(types[1:], names[1:]):
        if t is not None and t.dtype != first.dtype:
            raise ShapeError(f"{n} dtype {t.dtype} differs from {names[0]}'s {first.dtype}")


# --------------------------------------------------------------------------- matmul
def _matmul_infer(in_types, attrs):
    n_inputs(in_types, 2, "a, b")
    a, b = in_types
    if a.dtype != b.dtype:
        raise ShapeError(f"operand dtypes differ ({a.dtype} vs {b.dtype}); insert a cast")
    if a.dtype == "bool":
        raise ShapeError("matmul needs a numeric dtype, got bool")
    if a.rank == 0 or b.rank == 0:
        raise ShapeError("matmul operands must have rank >= 1")
    sa = (1,) + a.shape if a.rank == 1 else a.shape
    sb = b.shape + (1,) if b.rank == 1 else b.shape
    if _known_ne(sa[-1], sb[-2]):
        raise ShapeError(f"inner dims differ: {D.shape_str(a.shape)} @ {D.shape_str(b.shape)} "
                         f"({sa[-1]} vs {sb[-2]})")
    batch = D.broadcast(sa[:-2], sb[:-2], "matmul batch dims")
    out = batch + ((sa[-2],) if a.rank > 1 else ()) + ((sb[-1],) if b.rank > 1 else ())
    return [TensorType(a.dtype, out)]


register_op("matmul", _matmul_infer,
            lambda i, a: [np.matmul(_w(i[0]), _w(i[1])).astype(i[0].dtype)])


# --------------------------------------------------------------------------- conv
def _pool_len(size: D.Dim, pb: D.Dim, pe: D.Dim, k: int, s: int, d: int,
              ceil_mode: bool = False) -> D.Dim:
    """Output length of a sliding window (ONNX conv/pool formula)."""
    span = sympy.sympify(size) + pb + pe - d * (k - 1) - 1
    if not ceil_mode:
        return D.dim(sympy.floor(span / s) + 1) if not isinstance(D.dim(span), int) \
            else D.dim(span) // s + 1
    n = D.dim(sympy.ceiling(span / s) + 1)
    start_room = D.dim(sympy.sympify(size) + pb)
    # the last window must start inside the input or the begin padding (ONNX drops it)
    if isinstance(n, int) and isinstance(start_room, int):
        return n - 1 if (n - 1) * s >= start_room else n
    slack = D.dim(sympy.sympify(pe) - d * (k - 1) - 1)
    if isinstance(slack, int) and slack + s <= 0:
        return n                     # never happens for any size
    return D.dim(sympy.Min(n, sympy.ceiling(sympy.sympify(start_room) / s)))


def _spatial_attrs(attrs, nd: int, kernel=None):
    strides = list(attrs.get("strides") or [1] * nd)
    dil = list(attrs.get("dilations") or [1] * nd)
    pads = list(attrs.get("pads") or [0] * (2 * nd))
    if len(strides) != nd or len(dil) != nd or len(pads) != 2 * nd:
        raise ShapeError(f"strides/dilations need {nd} entries and pads {2 * nd} "
                         f"(got {strides}, {dil}, {pads})")
    if kernel is not None and len(kernel) != nd:
        raise ShapeError(f"kernel needs {nd} entries, got {kernel}")
    if any(not isinstance(v, int) or v < 1 for v in strides + dil):
        raise ShapeError(f"strides and dilations must be positive ints ({strides}, {dil})")
    return strides, dil, pads


def _conv_operands(in_types):
    """(x, w, b) of conv / conv_transpose, checked: float, one dtype, same rank >= 3."""
    if len(in_types) not in (2, 3) or in_types[0] is None or in_types[1] is None:
        raise ShapeError("expects inputs (x, w, [b])")
    x, w = in_types[:2]
    b = in_types[2] if len(in_types) == 3 else None
    _need_float(x)
    _same_dtype([x, w, b], ["x", "w", "b"])
    if x.rank < 3 or w.rank != x.rank:
        raise ShapeError(f"x {D.shape_str(x.shape)} and w {D.shape_str(w.shape)} must have the "
                         "same rank >= 3 (N, C, spatial...)")
    return x, w, b


def _conv_infer(in_types, attrs):
    x, w, b = _conv_operands(in_types)
    nd = x.rank - 2
    g = attrs.get("group", 1)
    kernel = [int(k) for k in w.shape[2:]] if D.is_static_shape(w.shape[2:]) else None
    if kernel is None:
        raise ShapeError("conv kernel dims must be static")
    strides, dil, pads = _spatial_attrs(attrs, nd)
    c, o = x.shape[1], w.shape[0]
    if _known_ne(c, D.product([w.shape[1], g])):
        raise ShapeError(f"x has {c} channels but w {D.shape_str(w.shape)} with group {g} "
                         f"expects {D.product([w.shape[1], g])}")
    if isinstance(o, int) and o % g:
        raise ShapeError(f"output channels {o} not divisible by group {g}")
    if b is not None and (b.rank != 1 or _known_ne(b.shape[0], o)):
        raise ShapeError(f"bias shape {D.shape_str(b.shape)} must be [{o}]")
    sp = tuple(_pool_len(x.shape[2 + i], pads[i], pads[i + nd], kernel[i], strides[i], dil[i])
               for i in range(nd))
    for i, s in enumerate(sp):
        if isinstance(s, int) and s < 1:
            raise ShapeError(f"spatial axis {i}: kernel {kernel[i]} (dilation {dil[i]}) is larger "
                             f"than the padded input {x.shape[2 + i]}")
    return [TensorType(x.dtype, (x.shape[0], o) + sp)]


def _windows(x: np.ndarray, kernel, strides, dil, out_sp) -> np.ndarray:
    """View [N, C, *out, *kernel] of an already padded x."""
    nd = len(kernel)
    win = [d * (k - 1) + 1 for k, d in zip(kernel, dil)]
    v = sliding_window_view(x, win, axis=tuple(range(2, 2 + nd)))
    v = v[(slice(None), slice(None)) +
          tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out_sp, strides)) +
          tuple(slice(None, None, d) for d in dil)]
    return v


def _conv_ref(inputs, attrs):
    x, w = _w(inputs[0]), _w(inputs[1])
    b = inputs[2] if len(inputs) > 2 else None
    nd = x.ndim - 2
    g = attrs.get("group", 1)
    kernel = list(w.shape[2:])
    strides, dil, pads = _spatial_attrs(attrs, nd)
    out_sp = [_pool_len(x.shape[2 + i], pads[i], pads[i + nd], kernel[i], strides[i], dil[i])
              for i in range(nd)]
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)])
    v = _windows(xp, kernel, strides, dil, out_sp)
    n, c = x.shape[:2]
    cg, og = c // g, w.shape[0] // g
    outs = []
    kax = list(range(2 + nd, 2 + 2 * nd))
    for gi in range(g):
        vg = v[:, gi * cg:(gi + 1) * cg]
        wg = w[gi * og:(gi + 1) * og]
        y = np.tensordot(vg, wg, axes=([1] + kax, [1] + list(range(2, 2 + nd))))  # N,*out,O/g
        outs.append(np.moveaxis(y, -1, 1))
    y = np.concatenate(outs, axis=1) if g > 1 else outs[0]
    if b is not None:
        y = y + _w(b).reshape((1, -1) + (1,) * nd)
    return [np.ascontiguousarray(y).astype(inputs[0].dtype)]


register_op("conv", _conv_infer, _conv_ref)


def _conv_t_infer(in_types, attrs):
    x, w, b = _conv_operands(in_types)
    nd = x.rank - 2
    g = attrs.get("group", 1)
    if not D.is_static_shape(w.shape[2:]):
        raise ShapeError("conv_transpose kernel dims must be static")
    kernel = list(w.shape[2:])
    strides, dil, pads = _spatial_attrs(attrs, nd)
    op = list(attrs.get("output_padding") or [0] * nd)
    if _known_ne(x.shape[1], w.shape[0]):
        raise ShapeError(f"x has {x.shape[1]} channels, w {D.shape_str(w.shape)} expects "
                         f"{w.shape[0]}")
    o = D.product([w.shape[1], g])
    if b is not None and (b.rank != 1 or _known_ne(b.shape[0], o)):
        raise ShapeError(f"bias shape {D.shape_str(b.shape)} must be [{o}]")
    sp = tuple(D.dim(strides[i] * (sympy.sympify(x.shape[2 + i]) - 1) + op[i] +
                     (kernel[i] - 1) * dil[i] + 1 - pads[i] - pads[i + nd]) for i in range(nd))
    return [TensorType(x.dtype, (x.shape[0], o) + sp)]


def _conv_t_ref(inputs, attrs):
    x, w = _w(inputs[0]), _w(inputs[1])
    b = inputs[2] if len(inputs) > 2 else None
    nd = x.ndim - 2
    g = attrs.get("group", 1)
    kernel = list(w.shape[2:])
    strides, dil, pads = _spatial_attrs(attrs, nd)
    op = list(attrs.get("output_padding") or [0] * nd)
    n, c = x.shape[:2]
    cg, og = c // g, w.shape[1]
    ins = x.shape[2:]
    full = [strides[i] * (ins[i] - 1) + op[i] + (kernel[i] - 1) * dil[i] + 1 for i in range(nd)]
    out = np.zeros((n, og * g) + tuple(full), dtype=x.dtype)
    for gi in range(g):
        xg = x[:, gi * cg:(gi + 1) * cg]
        wg = w[gi * cg:(gi + 1) * cg]
        for kidx in itertools.product(*[range(k) for k in kernel]):
            contrib = np.tensordot(xg, wg[(slice(None), slice(None)) + kidx], axes=([1], [0]))
            contrib = np.moveaxis(contrib, -1, 1)  # N, O/g, *in
            sl = tuple(slice(kidx[i] * dil[i], kidx[i] * dil[i] + strides[i] * (ins[i] - 1) + 1,
                             strides[i]) for i in range(nd))
            out[(slice(None), slice(gi * og, (gi + 1) * og)) + sl] += contrib
    crop = tuple(slice(pads[i], full[i] - pads[i + nd]) for i in range(nd))
    y = out[(slice(None), slice(None)) + crop]
    if b is not None:
        y = y + _w(b).reshape((1, -1) + (1,) * nd)
    return [np.ascontiguousarray(y).astype(inputs[0].dtype)]


register_op("conv_transpose", _conv_t_infer, _conv_t_ref)


# --------------------------------------------------------------------------- pools
def _pool_infer(in_types, attrs, allow_int: bool = False):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    if not (allow_int and T.is_int(x.dtype)):
        _need_float(x)
    if x.rank < 3:
        raise ShapeError(f"pooling needs rank >= 3 (N, C, spatial...), got {D.shape_str(x.shape)}")
    nd = x.rank - 2
    kernel = list(attrs.get("kernel") or [])
    strides, dil, pads = _spatial_attrs(attrs, nd, kernel)
    ceil = bool(attrs.get("ceil_mode", False))
    sp = tuple(_pool_len(x.shape[2 + i], pads[i], pads[i + nd], kernel[i], strides[i], dil[i],
                         ceil) for i in range(nd))
    return [TensorType(x.dtype, x.shape[:2] + sp)]


def _pool_ref(kind: str):
    def ref(inputs, attrs):
        x0 = inputs[0]
        x = _w(x0)
        nd = x.ndim - 2
        kernel = list(attrs["kernel"])
        strides, dil, pads = _spatial_attrs(attrs, nd, kernel)
        ceil = bool(attrs.get("ceil_mode", False))
        out_sp = [_pool_len(x.shape[2 + i], pads[i], pads[i + nd], kernel[i], strides[i], dil[i],
                            ceil) for i in range(nd)]
        # extra end padding so every (ceil-mode) window fits
        extra = [max(0, (out_sp[i] - 1) * strides[i] + dil[i] * (kernel[i] - 1) + 1 -
                     (x.shape[2 + i] + pads[i] + pads[i + nd])) for i in range(nd)]
        width = [(0, 0), (0, 0)] + [(pads[i], pads[i + nd] + extra[i]) for i in range(nd)]
        if kind == "max":
            fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
            xp = np.pad(x, width, constant_values=fill)
            y = _windows(xp, kernel, strides, dil, out_sp).max(axis=tuple(range(-nd, 0)))
            return [np.ascontiguousarray(y).astype(x0.dtype)]
        xp = np.pad(x, width)
        s = _windows(xp, kernel, strides, dil, out_sp).sum(axis=tuple(range(-nd, 0)))
        if attrs.get("count_include_pad", False):
            mask = np.pad(np.ones((1, 1) + x.shape[2:], x.dtype),
                          [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)],
                          constant_values=1)
            mask = np.pad(mask, [(0, 0), (0, 0)] + [(0, e) for e in extra])
        else:
            mask = np.pad(np.ones((1, 1) + x.shape[2:], x.dtype), width)
        cnt = _windows(mask, kernel, strides, dil, out_sp).sum(axis=tuple(range(-nd, 0)))
        with np.errstate(all="ignore"):
            y = s / cnt
        return [np.ascontiguousarray(y).astype(x0.dtype)]
    return ref


register_op("max_pool", lambda t, a: _pool_infer(t, a, allow_int=True), _pool_ref("max"))
register_op("avg_pool", _pool_infer, _pool_ref("avg"))


def _global_infer(in_types, attrs):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    _need_float(x)
    if x.rank < 3:
        raise ShapeError(f"global pooling needs rank >= 3, got {D.shape_str(x.shape)}")
    return [TensorType(x.dtype, x.shape[:2] + (1,) * (x.rank - 2))]


register_op("global_avg_pool", _global_infer, lambda i, a: [
    np.mean(_w(i[0]), axis=tuple(range(2, i[0].ndim)), keepdims=True).astype(i[0].dtype)])
register_op("global_max_pool", _global_infer, lambda i, a: [
    np.max(_w(i[0]), axis=tuple(range(2, i[0].ndim)), keepdims=True).astype(i[0].dtype)])


# --------------------------------------------------------------------------- normalizations
def _batch_norm_infer(in_types, attrs):
    n_inputs(in_types, 5, "x, scale, bias, mean, var")
    x = in_types[0]
    _need_float(x)
    if x.rank < 2:
        raise ShapeError(f"batch_norm needs rank >= 2, got {D.shape_str(x.shape)}")
    for t, n in zip(in_types[1:], ("scale", "bias", "mean", "var")):
        if t.rank != 1 or _known_ne(t.shape[0], x.shape[1]):
            raise ShapeError(f"{n} shape {D.shape_str(t.shape)} must be [{x.shape[1]}] "
                             "(channels of x)")
    return [x]


def _batch_norm_ref(inputs, attrs):
    x0, *params = inputs
    x = _w(x0)
    sh = (1, -1) + (1,) * (x.ndim - 2)
    sc, bi, mu, var = (_w(p).astype(x.dtype).reshape(sh) for p in params)
    eps = np.asarray(attrs.get("epsilon", 1e-5), x.dtype)
    y = (x - mu) / np.sqrt(var + eps) * sc + bi
    return [y.astype(x0.dtype)]


register_op("batch_norm", _batch_norm_infer, _batch_norm_ref)


def _instance_norm_infer(in_types, attrs):
    n_inputs(in_types, 3, "x, scale, bias")
    x = in_types[0]
    _need_float(x)
    if x.rank < 3:
        raise ShapeError(f"instance_norm needs rank >= 3, got {D.shape_str(x.shape)}")
    for t, n in zip(in_types[1:], ("scale", "bias")):
        if t.rank != 1 or _known_ne(t.shape[0], x.shape[1]):
            raise ShapeError(f"{n} shape {D.shape_str(t.shape)} must be [{x.shape[1]}]")
    return [x]


def _instance_norm_ref(inputs, attrs):
    x = _w(inputs[0])
    sh = (1, -1) + (1,) * (x.ndim - 2)
    axes = tuple(range(2, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    eps = np.asarray(attrs.get("epsilon", 1e-5), x.dtype)
    y = (x - mu) / np.sqrt(var + eps) * _w(inputs[1]).reshape(sh) + _w(inputs[2]).reshape(sh)
    return [y.astype(inputs[0].dtype)]


register_op("instance_norm", _instance_norm_infer, _instance_norm_ref)


def _norm_tail_infer(names: str, min_inputs: int):
    def infer(in_types, attrs):
        if len(in_types) < min_inputs or any(t is None for t in in_types[:min_inputs]):
            raise ShapeError(f"expects inputs ({names})")
        x = in_types[0]
        _need_float(x)
        axis = check_axis(attrs.get("axis", x.rank - 1), x.rank)
        tail = x.shape[axis:]
        for t, n in zip(in_types[1:], names.replace("[", "").replace("]", "").split(", ")[1:]):
            if t is None:
                continue
            if t.rank > len(tail):
                raise ShapeError(f"{n} shape {D.shape_str(t.shape)} has more dims than the "
                                 f"normalized axes {D.shape_str(tail)}")
            D.broadcast(tail, t.shape, f"{n} against the normalized axes")
        return [x]
    return infer


def _layer_norm_ref(inputs, attrs):
    x = _w(inputs[0])
    axes = tuple(range(attrs.get("axis", x.ndim - 1), x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    eps = np.asarray(attrs.get("epsilon", 1e-5), x.dtype)
    y = (x - mu) / np.sqrt(var + eps) * _w(inputs[1])
    if len(inputs) > 2 and inputs[2] is not None:
        y = y + _w(inputs[2])
    return [y.astype(inputs[0].dtype)]


register_op("layer_norm", _norm_tail_infer("x, scale, [bias]", 2), _layer_norm_ref)


def _rms_norm_ref(inputs, attrs):
    x = _w(inputs[0])
    axes = tuple(range(attrs.get("axis", x.ndim - 1), x.ndim))
    eps = np.asarray(attrs.get("epsilon", 1e-5), x.dtype)
    y = x / np.sqrt(np.mean(x * x, axis=axes, keepdims=True) + eps) * _w(inputs[1])
    return [y.astype(inputs[0].dtype)]


register_op("rms_norm", _norm_tail_infer("x, scale", 2), _rms_norm_ref)


# --------------------------------------------------------------------------- softmax family
def _softmax_infer(in_types, attrs):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    _need_float(x)
    check_axis(attrs.get("axis", x.rank - 1), x.rank)
    return [x]


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - np.where(np.isfinite(m), m, 0))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def _hardmax(x: np.ndarray, axis: int) -> np.ndarray:
    idx = np.expand_dims(np.argmax(x, axis=axis), axis)
    out = np.zeros_like(x)
    np.put_along_axis(out, idx, 1, axis=axis)
    return out


for _name, _fn in (("softmax", _softmax), ("log_softmax", _log_softmax), ("hardmax", _hardmax)):
    register_op(_name, _softmax_infer, (lambda f: lambda i, a: [np.asarray(
        f(_w(i[0]), a.get("axis", i[0].ndim - 1))).astype(i[0].dtype)])(_fn))


# --------------------------------------------------------------------------- attention
def _attn_shapes(q, k, v):
    """Broadcast leading dims with grouped-query heads; returns (lead, kv repeat or None)."""
    ql, kl, vl = q.shape[:-2], k.shape[:-2], v.shape[:-2]
    rep = None
    if len(ql) >= 1 and len(kl) >= 1 and len(vl) >= 1:
        hq, hk, hv = ql[-1], kl[-1], vl[-1]
        if not D.equal(hk, hv):
            raise ShapeError(f"k and v head dims differ ({hk} vs {hv})")
        if not D.equal(hq, hk) and hk != 1 and isinstance(hq, int) and isinstance(hk, int):
            if hq % hk:
                raise ShapeError(f"q heads {hq} not a multiple of kv heads {hk}")
            rep = hq // hk
            kl, vl = kl[:-1] + (hq,), vl[:-1] + (hq,)
    lead = D.broadcast(D.broadcast(ql, kl, "attention q/k leading dims"), vl,
                       "attention q/v leading dims")
    return lead, rep


def _attention_infer(in_types, attrs):
    if len(in_types) not in (3, 4, 6) or any(t is None for t in in_types[:3]):
        raise ShapeError("expects inputs (q, k, v, [mask], [k_scale, v_scale])")
    q, k, v = in_types[:3]
    mask = in_types[3] if len(in_types) >= 4 else None
    _need_float(q, "q")
    kv_length = attrs.get("kv_length")
    if len(in_types) == 6:   # an int8 KV cache: codes and one float32 scale per row
        ks, vs = in_types[4:]
        if k.dtype != "int8" or v.dtype != "int8" or ks is None or vs is None or \
                ks.dtype != "float32" or vs.dtype != "float32":
            raise ShapeError("scaled k/v must be int8 with float32 k_scale/v_scale")
        for t, sc, name in ((k, ks, "k_scale"), (v, vs, "v_scale")):
            if sc.rank != t.rank or not all(D.equal(a, b) for a, b in
                                            zip(sc.shape, t.shape[:-1] + (1,))):
                raise ShapeError(f"{name} {D.shape_str(sc.shape)} must be "
                                 f"{D.shape_str(t.shape[:-1] + (1,))}")
    elif kv_length is None:
        _same_dtype([q, k, v], ["q", "k", "v"])
    else:  # a KV cache: k/v may be stored narrower (float16) and are read up to kv_length
        _need_float(k, "k")
        _same_dtype([k, v], ["k", "v"])
    if min(q.rank, k.rank, v.rank) < 2:
        raise ShapeError("q, k, v need rank >= 2")
    if _known_ne(q.shape[-1], k.shape[-1]):
        raise ShapeError(f"q and k embedding dims differ ({q.shape[-1]} vs {k.shape[-1]})")
    if _known_ne(k.shape[-2], v.shape[-2]):
        raise ShapeError(f"k and v sequence lengths differ ({k.shape[-2]} vs {v.shape[-2]})")
    keys = k.shape[-2] if kv_length is None else kv_length
    if isinstance(keys, int) and isinstance(k.shape[-2], int) and keys > k.shape[-2]:
        raise ShapeError(f"kv_length {keys} exceeds the {k.shape[-2]} cached keys")
    lead, _ = _attn_shapes(q, k, v)
    if mask is not None:
        if mask.dtype != "bool" and mask.dtype != q.dtype:
            raise ShapeError(f"mask must be bool or {q.dtype}, got {mask.dtype}")
        D.broadcast(lead + (q.shape[-2], keys), mask.shape, "attention mask")
    return [TensorType(q.dtype, lead + (q.shape[-2], v.shape[-1]))]


def _attention_ref(inputs, attrs):
    q0 = inputs[0]
    kv_length = attrs.get("kv_length")
    k, v = inputs[1], inputs[2]
    if len(inputs) == 6:   # int8 codes x per-row scales
        k = k.astype(q0.dtype) * inputs[4].astype(q0.dtype)
        v = v.astype(q0.dtype) * inputs[5].astype(q0.dtype)
    if kv_length is not None:  # the first kv_length rows of a cache, read in q's precision
        if int(kv_length) > k.shape[-2]:
            raise ShapeError(f"kv_length {int(kv_length)} exceeds the {k.shape[-2]} cached keys")
        k = k[..., :int(kv_length), :].astype(q0.dtype)
        v = v[..., :int(kv_length), :].astype(q0.dtype)
    q, k, v = _w(q0), _w(k), _w(v)
    mask = inputs[3] if len(inputs) > 3 else None
    if q.ndim >= 3 and k.ndim >= 3 and k.shape[-3] not in (1, q.shape[-3]):
        rep = q.shape[-3] // k.shape[-3]
        k, v = np.repeat(k, rep, axis=-3), np.repeat(v, rep, axis=-3)
    scale = attrs.get("scale")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * np.asarray(scale, q.dtype)
    lq, lk = q.shape[-2], k.shape[-2]
    if attrs.get("is_causal", False):
        keep = np.tril(np.ones((lq, lk), bool), k=lk - lq)
        s = np.where(keep, s, np.asarray(-np.inf, s.dtype))
    if mask is not None:
        if mask.dtype == np.bool_:
            s = np.where(mask, s, np.asarray(-np.inf, s.dtype))
        else:
            s = s + _w(mask)
    with np.errstate(all="ignore"):
        m = np.max(s, axis=-1, keepdims=True)
        dead = np.isneginf(m)            # every key masked: the row's output is 0 (as ONNX, torch)
        e = np.exp(s - np.where(dead, 0, m))
        p = np.where(dead, 0, e / np.where(dead, 1, np.sum(e, axis=-1, keepdims=True)))
    return [np.matmul(p.astype(s.dtype), v).astype(q0.dtype)]


register_op("attention", _attention_infer, _attention_ref)


# --------------------------------------------------------------------------- lrn
def _lrn_infer(in_types, attrs):
    n_inputs(in_types, 1, "x")
    x = in_types[0]
    _need_float(x)
    if x.rank < 3:
        raise ShapeError(f"lrn needs rank >= 3, got {D.shape_str(x.shape)}")
    size = attrs.get("size")
    if not isinstance(size, int) or size < 1:
        raise ShapeError(f"lrn size must be a positive int, got {size!r}")
    return [x]


def _lrn_ref(inputs, attrs):
    x = _w(inputs[0])
    size = attrs["size"]
    alpha, beta, bias = attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0)
    c = x.shape[1]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = np.pad(x * x, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    ssum = sum(sq[:, i:i + c] for i in range(size))
    y = x / (np.asarray(bias, x.dtype) + np.asarray(alpha / size, x.dtype) * ssum) ** \
        np.asarray(beta, x.dtype)
    return [y.astype(inputs[0].dtype)]


register_op("lrn", _lrn_infer, _lrn_ref)

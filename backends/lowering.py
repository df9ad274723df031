"""llmc op -> TVM tensor expression (TE), target-independent.

Each llmc op has one lowering that builds the TE compute of its outputs from TE tensors of its
inputs; the Relax builder turns each into a PrimFunc with ``BlockBuilder.emit_te`` and the
target backend (x86, later CUDA) schedules the PrimFuncs. The semantics are docs/ops.md's (ONNX):
integer division truncates, ``round`` is half-to-even, gather takes negative indices, ``mod``
follows the divisor's sign unless ``fmod``. Symbolic dims (sympy) become ``tirx.Var`` int64 that
one :class:`DimEnv` shares across the module.

A lowering is ``fn(ins, attrs, ctx) -> list[te.Tensor]``; ``ctx`` carries the output types
(already converted to TVM shapes) and the node for error messages. ``LOWERINGS[op].kind`` tells
the scheduler what sort of kernel it is ("injective", "reduce", "matmul", "conv", "pool",
"opaque").
"""
from __future__ import annotations

import contextvars

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import sympy
from tvm import te, tirx, topi

from ..errors import BackendError
from ..ir import Node, TensorType
from .fastmath import fast_erf, fast_exp, fast_sigmoid, fast_tanh

# ----------------------------------------------------------------------------- dims


class DimEnv:
    """One int64 ``tirx.Var`` per llmc symbol, and sympy -> PrimExpr conversion."""

    def __init__(self) -> None:
        self.vars: dict[str, tirx.Var] = {}

    def var(self, name: str) -> tirx.Var:
        if name not in self.vars:
            self.vars[name] = tirx.Var(name, "int64")
        return self.vars[name]

    def prim(self, d: Any) -> tirx.PrimExpr:
        """A dim (int or sympy expression) as an int64 PrimExpr."""
        if isinstance(d, (bool, np.bool_)):
            raise BackendError(f"a bool is not a dim ({d!r})")
        if isinstance(d, (int, np.integer)):
            return tirx.IntImm("int64", int(d))
        if not isinstance(d, sympy.Basic):
            raise BackendError(f"cannot lower dim {d!r} ({type(d).__name__})")
        return self._expr(d)

    def shape(self, dims: Sequence[Any]) -> list:
        return [self.prim(d) for d in dims]

    def _expr(self, e: sympy.Expr) -> tirx.PrimExpr:
        i64 = lambda v: tirx.IntImm("int64", int(v))  # noqa: E731
        if e.is_Integer:
            return i64(e)
        if e.is_Symbol:
            return self.var(str(e))
        if isinstance(e, sympy.Add):
            out = None
            for a in e.args:
                p = self._expr(a)
                out = p if out is None else out + p
            return out
        if isinstance(e, sympy.Mul):
            num, den = sympy.fraction(e)
            if den != 1:  # exact division known to sympy (e.g. 2*(seq/2) cancelled) -> floor
                return tirx.floordiv(self._expr(num), self._expr(den))
            out = None
            for a in e.args:
                p = self._expr(a)
                out = p if out is None else out * p
            return out
        if isinstance(e, sympy.floor):
            num, den = sympy.fraction(sympy.together(e.args[0]))
            return tirx.floordiv(self._expr(num), self._expr(den))
        if isinstance(e, sympy.ceiling):
            num, den = sympy.fraction(sympy.together(e.args[0]))
            n, d = self._expr(num), self._expr(den)
            return tirx.floordiv(n + d - i64(1), d)
        if isinstance(e, sympy.Mod):
            return tirx.floormod(self._expr(e.args[0]), self._expr(e.args[1]))
        if isinstance(e, (sympy.Max, sympy.Min)):
            f = tirx.max if isinstance(e, sympy.Max) else tirx.min
            out = self._expr(e.args[0])
            for a in e.args[1:]:
                out = f(out, self._expr(a))
            return out
        if isinstance(e, sympy.Pow) and e.args[1].is_Integer and int(e.args[1]) > 0:
            base = self._expr(e.args[0])
            out = base
            for _ in range(int(e.args[1]) - 1):
                out = out * base
            return out
        raise BackendError(f"cannot lower symbolic dim expression {e} ({type(e).__name__})")


# ----------------------------------------------------------------------------- registry


@dataclass
class LowerCtx:
    """What a lowering needs besides its input tensors."""

    node: Node
    out_types: list[TensorType]
    env: DimEnv

    def out_shape(self, i: int = 0) -> list:
        return self.env.shape(self.out_types[i].shape)

    def out_dtype(self, i: int = 0) -> str:
        return self.out_types[i].dtype

    def prim(self, d: Any) -> tirx.PrimExpr:
        return self.env.prim(d)

    def fail(self, why: str) -> BackendError:
        return BackendError(f"node {self.node.name!r} ({self.node.op}): {why}")


LowerFn = Callable[[list, dict, LowerCtx], list]


@dataclass(frozen=True)
class Lowering:
    op: str
    fn: LowerFn
    kind: str


LOWERINGS: dict[str, Lowering] = {}


def lower(*ops: str, kind: str = "injective"):
    def deco(fn: LowerFn) -> LowerFn:
        for op in ops:
            LOWERINGS[op] = Lowering(op, fn, kind)
        return fn
    return deco


def get_lowering(node: Node) -> Lowering:
    """The lowering of ``node``'s op, or a BackendError naming op and node."""
    low = LOWERINGS.get(node.op)
    if low is None:
        raise BackendError(f"node {node.name!r}: op {node.op!r} is not supported by the TVM "
                           "backends yet; run it through a pass that rewrites it, or report it")
    return low


# ----------------------------------------------------------------------------- helpers
def _dt(e) -> str:
    """dtype of a TE load or PrimExpr (PrimExprs carry it in ``.ty`` in this TVM)."""
    if hasattr(e, "asobject"):  # lazy ==/!= results
        e = e.asobject()
    d = getattr(e, "dtype", None)
    if d is not None:
        return str(d)
    return str(e.ty.dtype)


def _ld(t: te.Tensor, *idx):
    """Element of ``t`` at ``idx`` (a TE load; ``t[()]`` for 0-d tensors)."""
    return t[tuple(idx)] if idx else t[()]


def flat_rows(x: te.Tensor):
    """Rows M of ``x`` (product of the leading dims) and row -> leading indices: the quantized
    linear kernels work on a 2-D [M, K] view of any-rank activations."""
    lead = list(x.shape[:-1])
    m = tirx.IntImm("int64", 1)
    for d in lead:
        m = m * d

    def unravel(r):
        idx = []
        for d in reversed(lead):
            idx.append(tirx.floormod(r, d))
            r = tirx.floordiv(r, d)
        return list(reversed(idx))
    return m, unravel


# Symbols that stay small at run time (an LLM's batch, set by build_relax(small_dims=...)):
# a matmul whose rows M depend only on them is a GEMV stack (decode), built without the
# register-tiled full-tile stage, whose parallel loop would launch with nothing to do.
SMALL_ROWS: contextvars.ContextVar = contextvars.ContextVar("llmc_small_rows",
                                                            default=frozenset())


def gemv_rows(m) -> bool:
    """Rows M (a PrimExpr) are symbolic and made of :data:`SMALL_ROWS` symbols only."""
    small = SMALL_ROWS.get()
    if not small or isinstance(m, tirx.IntImm):
        return False
    names = {v.name for v in tirx.analysis.undefined_vars(m)}
    return bool(names) and names <= small


class RowTiles(NamedTuple):
    """How the weight-only kernels split the rows of ``x``: ``mfull`` rows in full tiles of
    MTILE (the register-tiled GEMM; prefill) and the ``m - mfull`` tail (decode's GEMV);
    ``has_full`` / ``has_tail`` are False only when a static M rules that part out."""
    m: Any
    unravel: Callable
    mfull: Any
    has_full: bool
    has_tail: bool


def row_tiles(x: te.Tensor) -> RowTiles:
    """:func:`flat_rows` of ``x`` split into full MTILE-row tiles and a tail."""
    m, unravel = flat_rows(x)
    if gemv_rows(m):   # decode: every row is a GEMV row
        return RowTiles(m, unravel, tirx.IntImm("int64", 0), False, True)
    static_m = int(m) if isinstance(m, tirx.IntImm) else None
    return RowTiles(m, unravel, tirx.floordiv(m, MTILE) * MTILE,
                    static_m is None or static_m >= MTILE,
                    static_m is None or static_m % MTILE != 0)


def tile_rows_output(oshape, cp, ct, mfull, finish: Callable, name: str = "out") -> te.Tensor:
    """The ``out`` stage of the weight-only kernels: flat row r of the output read from the
    full-tile accumulator ``cp`` (rows < mfull; None if there is none) or the tail ``ct`` (None
    if there is none), then ``finish(value, column)`` (scales, bias, cast) once per output."""
    def epi(*idx):
        r = tirx.IntImm("int64", 0)
        for d, i in zip(oshape[:-1], idx[:-1]):
            r = r * d + i
        j = idx[-1]
        if cp is None:
            v = ct[r, j]
        elif ct is None:
            v = cp[r, j]
        else:
            v = tirx.if_then_else(r < mfull, cp[r, j], ct[r - mfull, j])
        return finish(v, j)
    return te.compute(oshape, epi, name=name)


def _c(value: Any, dtype: str) -> tirx.PrimExpr:
    return tirx.const(value, dtype)


def _is_float(dtype: str) -> bool:
    return dtype.startswith("float") or dtype == "bfloat16"


def _bindex(t: te.Tensor, idx: Sequence, out_rank: int) -> list:
    """Index of a numpy-broadcast input ``t`` at output index ``idx``."""
    r = len(t.shape)
    out = []
    for a in range(r):
        i = idx[out_rank - r + a]
        dim = t.shape[a]
        if isinstance(dim, tirx.IntImm) and int(dim) == 1:
            out.append(tirx.IntImm(_dt(i) if hasattr(i, "dtype") else "int64", 0))
        else:
            out.append(i)
    return out


def _bload(t: te.Tensor, idx: Sequence, out_rank: int):
    return _ld(t, *_bindex(t, idx, out_rank)) if len(t.shape) else _ld(t)


def broadcast_compute(ins: list, ctx: LowerCtx, f: Callable, name: str = "T_bcast",
                      dtype_i: int = 0) -> te.Tensor:
    """Elementwise ``f(*values)`` over numpy-broadcast inputs with the node's output shape."""
    shape = ctx.out_shape(dtype_i)
    rank = len(shape)
    return te.compute(shape, lambda *idx: f(*[_bload(t, idx, rank) for t in ins]), name=name)


# ----------------------------------------------------------------------------- unary
def _f32(x):  # compute half types in float32
    return x.astype("float32") if _dt(x) in ("float16", "bfloat16") else x


def _unary(fn: Callable):
    def lowering(ins, attrs, ctx):
        x = ins[0]
        dt = ctx.out_dtype()

        def body(*i):
            v = _ld(x, *i)
            r = fn(_f32(v), attrs, _dt(v))
            return r.astype(dt) if _dt(r) != dt else r
        return [te.compute(ctx.out_shape(), body, name="T_" + ctx.node.op)]
    return lowering


def _one(v, dt):
    return _c(1, dt)


_UNARY: dict[str, Callable] = {
    "neg": lambda v, a, t: -v,
    "abs": lambda v, a, t: tirx.abs(v),
    "exp": lambda v, a, t: tirx.exp(v),
    "log": lambda v, a, t: tirx.log(v),
    "sqrt": lambda v, a, t: tirx.sqrt(v),
    "rsqrt": lambda v, a, t: _one(v, _dt(v)) / tirx.sqrt(v),
    "reciprocal": lambda v, a, t: _one(v, _dt(v)) / v,
    "tanh": lambda v, a, t: tirx.tanh(v),
    "sigmoid": lambda v, a, t: fast_sigmoid(v),   # polynomial exp (backends/fastmath.py)
    "relu": lambda v, a, t: tirx.max(v, _c(0, _dt(v))),
    "erf": lambda v, a, t: tirx.erf(v),
    "sin": lambda v, a, t: tirx.sin(v),
    "cos": lambda v, a, t: tirx.cos(v),
    "tan": lambda v, a, t: tirx.sin(v) / tirx.cos(v),
    "asin": lambda v, a, t: tirx.asin(v),
    "acos": lambda v, a, t: tirx.acos(v),
    "atan": lambda v, a, t: tirx.atan(v),
    "sinh": lambda v, a, t: (tirx.exp(v) - tirx.exp(-v)) * _c(0.5, _dt(v)),
    "cosh": lambda v, a, t: (tirx.exp(v) + tirx.exp(-v)) * _c(0.5, _dt(v)),
    "asinh": lambda v, a, t: tirx.log(v + tirx.sqrt(v * v + _one(v, _dt(v)))),
    "acosh": lambda v, a, t: tirx.log(v + tirx.sqrt(v * v - _one(v, _dt(v)))),
    "atanh": lambda v, a, t: _c(0.5, _dt(v)) * tirx.log((_one(v, _dt(v)) + v) /
                                                          (_one(v, _dt(v)) - v)),
    "floor": lambda v, a, t: tirx.floor(v),
    "ceil": lambda v, a, t: tirx.ceil(v),
    "round": lambda v, a, t: tirx.nearbyint(v),  # half to even in the default FP mode
    "sign": lambda v, a, t: tirx.Select(v > _c(0, _dt(v)), _c(1, _dt(v)),
                                        tirx.Select(v < _c(0, _dt(v)), _c(-1, _dt(v)),
                                                    _c(0, _dt(v)))),
    # softplus: log(1 + exp(x)) computed stably
    "softplus": lambda v, a, t: tirx.max(v, _c(0, _dt(v))) +
    tirx.log(_one(v, _dt(v)) + tirx.exp(-tirx.abs(v))),
    "softsign": lambda v, a, t: v / (_one(v, _dt(v)) + tirx.abs(v)),
    "silu": lambda v, a, t: v * fast_sigmoid(v),
    "mish": lambda v, a, t: v * tirx.tanh(tirx.max(v, _c(0, _dt(v))) +
                                          tirx.log(_one(v, _dt(v)) + tirx.exp(-tirx.abs(v)))),
    "hard_swish": lambda v, a, t: v * tirx.max(_c(0, _dt(v)), tirx.min(
        _one(v, _dt(v)), v * _c(1.0 / 6.0, _dt(v)) + _c(0.5, _dt(v)))),
    "bitwise_not": lambda v, a, t: tirx.bitwise_not(v),
    "logical_not": lambda v, a, t: tirx.Not(v),
    "isnan": lambda v, a, t: tirx.isnan(v),
    "leaky_relu": lambda v, a, t: tirx.Select(v >= _c(0, _dt(v)), v,
                                              v * _c(a.get("alpha", 0.01), _dt(v))),
    "elu": lambda v, a, t: tirx.Select(v > _c(0, _dt(v)), v, _c(a.get("alpha", 1.0), _dt(v)) *
                                       (tirx.exp(v) - _one(v, _dt(v)))),
    "selu": lambda v, a, t: _c(a.get("gamma", 1.0507009873554805), _dt(v)) * tirx.Select(
        v > _c(0, _dt(v)), v,
        _c(a.get("alpha", 1.6732632423543772), _dt(v)) * (tirx.exp(v) - _one(v, _dt(v)))),
    "celu": lambda v, a, t: tirx.max(v, _c(0, _dt(v))) + tirx.min(
        _c(0, _dt(v)), _c(a.get("alpha", 1.0), _dt(v)) *
        (tirx.exp(v / _c(a.get("alpha", 1.0), _dt(v))) - _one(v, _dt(v)))),
    "thresholded_relu": lambda v, a, t: tirx.Select(v > _c(a.get("alpha", 1.0), _dt(v)), v,
                                                    _c(0, _dt(v))),
    "hard_sigmoid": lambda v, a, t: tirx.max(_c(0, _dt(v)), tirx.min(
        _one(v, _dt(v)), v * _c(a.get("alpha", 0.2), _dt(v)) + _c(a.get("beta", 0.5), _dt(v)))),
    "shrink": lambda v, a, t: tirx.Select(
        v < _c(-a.get("lambd", 0.5), _dt(v)), v + _c(a.get("bias", 0.0), _dt(v)),
        tirx.Select(v > _c(a.get("lambd", 0.5), _dt(v)), v - _c(a.get("bias", 0.0), _dt(v)),
                    _c(0, _dt(v)))),
    "identity": lambda v, a, t: v,
}


def _isinf(v, a, t):
    pos, neg = a.get("detect_positive", 1), a.get("detect_negative", 1)
    inf = tirx.isinf(v)
    if pos and neg:
        return inf
    if pos:
        return tirx.And(inf, v > _c(0, _dt(v)))
    if neg:
        return tirx.And(inf, v < _c(0, _dt(v)))
    return tirx.const(False, "bool")


def _gelu(v, a, t):
    if a.get("approximate", "none") == "tanh":
        c = _c(math.sqrt(2.0 / math.pi), _dt(v))
        return _c(0.5, _dt(v)) * v * (_one(v, _dt(v)) + fast_tanh(
            c * (v + _c(0.044715, _dt(v)) * v * v * v)))
    # polynomial erf/tanh (backends/fastmath.py): tirx.erf is a scalar libm call per lane
    return _c(0.5, _dt(v)) * v * (_one(v, _dt(v)) + fast_erf(v * _c(1 / math.sqrt(2), _dt(v))))


def _clip(v, a, t):
    lo, hi = a.get("min"), a.get("max")
    if lo is not None:
        v = tirx.max(v, _c(lo, _dt(v)))
    if hi is not None:
        v = tirx.min(v, _c(hi, _dt(v)))
    return v


_UNARY.update({"isinf": _isinf, "gelu": _gelu, "clip": _clip})
for _name, _fn in _UNARY.items():
    LOWERINGS[_name] = Lowering(_name, _unary(_fn), "injective")


@lower("cast")
def _cast(ins, attrs, ctx):
    x, to = ins[0], ctx.out_dtype()

    def body(*i):
        v = _ld(x, *i)
        if to == "bool":
            return v != _c(0, _dt(v)) if _dt(v) != "bool" else v
        if _is_float(_dt(v)) and not _is_float(to):
            v = tirx.trunc(_f32(v))  # toward zero, as ONNX/C
        return v.astype(to)
    return [te.compute(ctx.out_shape(), body, name="T_cast")]


# ----------------------------------------------------------------------------- binary
def _int_pow(a, b):
    return tirx.power(a.astype("float64"), b.astype("float64")).astype(_dt(a))


def _div(a, b):
    return tirx.truncdiv(a, b) if not _is_float(_dt(a)) else a / b


def _pow(a, b):
    if not _is_float(_dt(a)):
        return _int_pow(a, b)
    if _dt(b) != _dt(a):
        b = b.astype(_dt(a))
    return tirx.power(a, b)


_BINARY: dict[str, Callable] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": _div,
    "pow": _pow,
    "maximum": tirx.max,
    "minimum": tirx.min,
    "equal": lambda a, b: a == b,
    "less": lambda a, b: a < b,
    "less_equal": lambda a, b: a <= b,
    "greater": lambda a, b: a > b,
    "greater_equal": lambda a, b: a >= b,
    "logical_and": tirx.And,
    "logical_or": tirx.Or,
    "logical_xor": lambda a, b: tirx.Or(tirx.And(a, tirx.Not(b)), tirx.And(tirx.Not(a), b)),
    "bitwise_and": tirx.bitwise_and,
    "bitwise_or": tirx.bitwise_or,
    "bitwise_xor": tirx.bitwise_xor,
    "prelu": lambda x, s: tirx.Select(x < _c(0, x.dtype), x * s, x),
}


def _binary(fn: Callable):
    def lowering(ins, attrs, ctx):
        dt = ctx.out_dtype()

        def f(a, b):
            r = fn(_f32(a), _f32(b)) if _dt(a) in ("float16", "bfloat16") else fn(a, b)
            r = r.asobject() if hasattr(r, "asobject") else r
            return r.astype(dt) if _dt(r) != dt else r
        return [broadcast_compute(ins, ctx, f, "T_" + ctx.node.op)]
    return lowering


for _name, _fn in _BINARY.items():
    LOWERINGS[_name] = Lowering(_name, _binary(_fn), "injective")


@lower("mod")
def _mod(ins, attrs, ctx):
    fmod = attrs.get("fmod", 0)

    def f(a, b):
        if _is_float(_dt(a)):
            a, b = _f32(a), _f32(b)
            r = a - (tirx.trunc(a / b) if fmod else tirx.floor(a / b)) * b
            return r.astype(ctx.out_dtype())
        return tirx.truncmod(a, b) if fmod else tirx.floormod(a, b)
    return [broadcast_compute(ins, ctx, f, "T_mod")]


@lower("bit_shift")
def _bit_shift(ins, attrs, ctx):
    left = attrs.get("direction", "left") == "left"
    return [broadcast_compute(ins, ctx, lambda a, b: (a << b) if left else (a >> b), "T_shift")]


@lower("where")
def _where(ins, attrs, ctx):
    return [broadcast_compute(ins, ctx, lambda c, x, y: tirx.Select(c, x, y), "T_where")]


@lower("expand")
def _expand(ins, attrs, ctx):
    return [broadcast_compute(ins[:1], ctx, lambda x: x, "T_expand")]


# ----------------------------------------------------------------------------- matmul
def _acc_dtype(dt: str) -> str:
    return "float32" if dt in ("float16", "bfloat16") else dt


@lower("matmul", kind="matmul")
def _matmul(ins, attrs, ctx):
    """numpy matmul with broadcast batch dims (1-D operands promoted)."""
    a, b = ins
    dt = ctx.out_dtype()
    ra, rb = len(a.shape), len(b.shape)
    K = a.shape[-1]
    k = te.reduce_axis((0, K), "k")
    oshape = ctx.out_shape()
    acc = _acc_dtype(dt)

    def body(*idx):
        idx = list(idx)
        if ra == 1:
            ai = [k]
        else:
            i = idx[-2] if rb != 1 else idx[-1]
            lead = idx[:-2] if rb != 1 else idx[:-1]
            ai = _bindex_lead(a, lead, ra - 2) + [i, k]
        if rb == 1:
            bi = [k]
        else:
            j = idx[-1]
            lead = idx[:-2] if ra != 1 else idx[:-1]
            bi = _bindex_lead(b, lead, rb - 2) + [k, j]
        return te.sum(_ld(a, *ai).astype(acc) * _ld(b, *bi).astype(acc), axis=k)
    out = te.compute(oshape, body, name="matmul")
    if acc != dt:
        out = te.compute(oshape, lambda *i: _ld(out, *i).astype(dt), name="T_cast_out")
    return [out]


def _bindex_lead(t: te.Tensor, lead: list, nlead: int) -> list:
    """Broadcast index of ``t``'s ``nlead`` leading (batch) dims from output lead indices."""
    out = []
    for a in range(nlead):
        i = lead[len(lead) - nlead + a]
        dim = t.shape[a]
        out.append(tirx.IntImm("int64", 0) if isinstance(dim, tirx.IntImm) and int(dim) == 1
                   else i)
    return out


PACK = 32  # N block of the pre-packed matmul weight


def pack_weight(w: np.ndarray, block: int = PACK) -> np.ndarray:
    """[K, N] -> [ceil(N/block), K, block] (zero padded): contiguous panels for the N tile."""
    K, N = w.shape
    nb = -(-N // block)
    padded = np.zeros((K, nb * block), w.dtype)
    padded[:, :N] = w
    return np.ascontiguousarray(padded.reshape(K, nb, block).transpose(1, 0, 2))


MTILE = 8  # rows of the register tile


def matmul_packed(a: te.Tensor, wp: te.Tensor, n: int) -> te.Tensor:
    """a [M, K] @ W [K, n] with W pre-packed by :func:`pack_weight`.

    Rows split in two stages so that neither computes rows it does not need (M is often
    symbolic: batch*seq, and 1 when decoding): ``matmul`` covers the full tiles of
    :data:`MTILE` rows (scheduled as an 8x32 register tile), ``matmul_tail`` the M % MTILE
    remaining rows one at a time (a GEMV when M = 1), and ``out`` joins them.
    """
    m, K = a.shape
    blk = int(wp.shape[2])
    npad = wp.shape[0] * blk
    if gemv_rows(m):   # decode: no full tiles at all (see SMALL_ROWS)
        mfull, has_full, has_tail = tirx.IntImm("int64", 0), False, True
    else:
        static_m = int(m) if isinstance(m, tirx.IntImm) else None
        mfull = tirx.floordiv(m, MTILE) * MTILE
        has_full = static_m is None or static_m >= MTILE
        has_tail = static_m is None or static_m % MTILE != 0
    if has_full:
        k = te.reduce_axis((0, K), "k")
        cp = te.compute((mfull, npad),
                        lambda i, j: te.sum(a[i, k] * wp[j // blk, k, j % blk], axis=k),
                        name="matmul")
    if has_tail:
        kt = te.reduce_axis((0, K), "kt")
        ct = te.compute((m - mfull, npad), lambda i, j: te.sum(
            a[mfull + i, kt] * wp[j // blk, kt, j % blk], axis=kt), name="matmul_tail")
    if not has_tail:
        return te.compute((m, n), lambda i, j: cp[i, j], name="out")
    if not has_full:
        return te.compute((m, n), lambda i, j: ct[i, j], name="out")
    return te.compute((m, n), lambda i, j: tirx.if_then_else(i < mfull, cp[i, j],
                                                             ct[i - mfull, j]), name="out")


# ----------------------------------------------------------------------------- attention
@lower("attention", kind="attention")
def _attention(ins, attrs, ctx):
    """softmax(q k^T * scale + mask) v, decomposed into TE stages (GQA by head index)."""
    q, k, v = ins[:3]
    mask = ins[3] if len(ins) > 3 else None
    # an int8 KV cache: codes times one scale per key row (applied to the score and to p)
    k_scale, v_scale = (ins[4], ins[5]) if len(ins) > 5 else (None, None)
    dt = ctx.out_dtype()
    acc = _acc_dtype(dt)
    oshape = ctx.out_shape()
    rank = len(oshape)
    lq, lk = q.shape[-2], k.shape[-2]
    if attrs.get("kv_length") is not None:  # the first kv_length rows of a KV cache
        lk = ctx.prim(attrs["kv_length"])
    E = q.shape[-1]
    scale = attrs.get("scale")
    scale = (1.0 / math.sqrt(int(E))) if scale is None and isinstance(E, tirx.IntImm) else scale
    sshape = oshape[:-1] + [lk]

    def kv_index(t, lead):
        r = len(t.shape)
        out = []
        for ax in range(r - 2):
            i = lead[len(lead) - (r - 2) + ax]
            dim = t.shape[ax]
            if isinstance(dim, tirx.IntImm) and int(dim) == 1:
                out.append(tirx.IntImm("int64", 0))
            elif ax == r - 3 and r >= 3 and rank >= 3:
                # grouped-query: q heads = g * kv heads at axis -3
                qh = oshape[rank - 3]
                out.append(tirx.floordiv(i, tirx.floordiv(qh, dim)))
            else:
                out.append(i)
        return out

    e = te.reduce_axis((0, E), "e")
    one_query = isinstance(lq, tirx.IntImm) and int(lq) == 1
    if one_query:
        # decode (one query row): each score is a dot product over a contiguous key row; a
        # transposed copy of K would cost more than the dot products it speeds up
        keys, key_at, score_name = k, (lambda j: [j, e]), "scores_dot"
    else:
        # k transposed once ([.., E, Lk]) so the score loop runs contiguously over keys
        keys = te.compute(list(k.shape[:-2]) + [E, lk],
                          lambda *i: _ld(k, *i[:-2], i[-1], i[-2]), name="k_t")
        key_at, score_name = (lambda j: [e, j]), "scores"

    def score(*idx):
        lead, i, j = list(idx[:-2]), idx[-2], idx[-1]
        qi = _bindex_lead(q, lead, len(q.shape) - 2) + [i, e]
        ki = kv_index(k, lead) + key_at(j)
        return te.sum(_ld(q, *qi).astype(acc) * _ld(keys, *ki).astype(acc), axis=e)
    s = te.compute(sshape, score, name=score_name)
    sc = scale if scale is not None else None

    def masked(*idx):
        val = _ld(s, *idx)
        if k_scale is not None:
            val = val * _ld(k_scale, *kv_index(k_scale, list(idx[:-2])), idx[-1], 0)
        if sc is not None:
            val = val * _c(sc, acc)
        else:
            val = val / tirx.sqrt(E.astype(acc))
        neg = tirx.min_value(acc)
        if attrs.get("is_causal", False):
            i, j = idx[-2], idx[-1]
            val = tirx.Select(j <= i + (lk - lq), val, neg)
        if mask is not None:
            mv = _bload(mask, idx, len(sshape))
            val = tirx.Select(mv, val, neg) if mask.dtype == "bool" else val + mv.astype(acc)
        return val
    sm = te.compute(sshape, masked, name="scores_masked")
    p = _softmax_stages(sm, len(sshape) - 1, acc)
    j = te.reduce_axis((0, lk), "j")

    def pv(*idx):
        lead, i, c = list(idx[:-2]), idx[-2], idx[-1]
        vi = kv_index(v, lead) + [j, c]
        pj = _ld(p, *lead, i, j)
        if v_scale is not None:
            pj = pj * _ld(v_scale, *kv_index(v_scale, lead), j, 0)
        return te.sum(pj * _ld(v, *vi).astype(acc), axis=j)
    out = te.compute(oshape, pv, name="attn_out")
    if acc != dt:
        out = te.compute(oshape, lambda *i: _ld(out, *i).astype(dt), name="T_cast_out")
    return [out]


@lower("quantize_rows_int8", kind="reduce")
def _quantize_rows_int8(ins, attrs, ctx):
    """Per-row symmetric int8 (the int8 KV cache): amax over the last axis, then codes."""
    x = ins[0]
    shape = list(x.shape)
    r = te.reduce_axis((0, shape[-1]), "r")
    amax = te.compute(shape[:-1], lambda *i: te.max(tirx.abs(_ld(x, *i, r).astype("float32")),
                                                     axis=r), name="row_amax")
    scale = te.compute(shape[:-1] + [1], lambda *i: _ld(amax, *i[:-1]) / _c(127.0, "float32"),
                       name="row_scale")

    def code(*i):
        sc = _ld(scale, *i[:-1], 0)
        safe = tirx.Select(sc > _c(0.0, "float32"), sc, _c(1.0, "float32"))
        q = tirx.nearbyint(_ld(x, *i).astype("float32") / safe)
        return tirx.max(tirx.min(q, _c(127.0, "float32")), _c(-127.0, "float32")).astype("int8")
    return [te.compute(shape, code, name="row_codes"), scale]


# ----------------------------------------------------------------------------- softmax / norms
def _softmax_stages(x: te.Tensor, axis: int, acc: str, log: bool = False) -> te.Tensor:
    """Explicit max / exp / sum (numerically the reference's recipe)."""
    shape = list(x.shape)
    red = [s for a, s in enumerate(shape) if a != axis]
    r1 = te.reduce_axis((0, shape[axis]), "r1")

    def at(idx, r):
        idx = list(idx)
        return idx[:axis] + [r] + idx[axis:]
    mx = te.compute(red, lambda *i: te.max(_ld(x, *at(i, r1)).astype(acc), axis=r1), name="smax")
    def red_at(t, i):
        return _ld(t, *(i[:axis] + i[axis + 1:]))
    # polynomial exp (backends/fastmath.py): tirx.exp is a scalar libm call per lane
    ex = te.compute(shape, lambda *i: fast_exp(_ld(x, *i).astype(acc) - red_at(mx, i)),
                    name="sexp")
    r2 = te.reduce_axis((0, shape[axis]), "r2")
    sm = te.compute(red, lambda *i: te.sum(_ld(ex, *at(i, r2)), axis=r2), name="ssum")
    if log:
        return te.compute(shape, lambda *i: _ld(x, *i).astype(acc) - red_at(mx, i) -
                          tirx.log(red_at(sm, i)), name="slog")
    # one reciprocal per row (hoisted by LLVM), a multiply per element: vdivps is ~10x vmulps
    return te.compute(shape, lambda *i: _ld(ex, *i) * (_c(1, acc) / red_at(sm, i)),
                      name="sdiv")


@lower("softmax", "log_softmax", kind="reduce")
def _softmax(ins, attrs, ctx):
    x = ins[0]
    dt = ctx.out_dtype()
    out = _softmax_stages(x, int(attrs["axis"]), _acc_dtype(dt), ctx.node.op == "log_softmax")
    if out.dtype != dt:
        out = te.compute(out.shape, lambda *i: _ld(out, *i).astype(dt), name="T_cast_out")
    return [out]


def _mean_var(x: te.Tensor, axes: list, acc: str):
    """Mean and (biased) variance over ``axes`` (kept as size-1 dims)."""
    shape = list(x.shape)
    n = None
    for a in axes:
        n = shape[a] if n is None else n * shape[a]
    r = [te.reduce_axis((0, shape[a]), f"r{a}") for a in axes]
    r2 = [te.reduce_axis((0, shape[a]), f"q{a}") for a in axes]
    kshape = [1 if a in axes else s for a, s in enumerate(shape)]

    def full(i, rr):
        i = list(i)
        it = iter(rr)
        return [next(it) if a in axes else i[a] for a in range(len(shape))]
    nf = n.astype(acc)
    total = te.compute(kshape, lambda *i: te.sum(_ld(x, *full(i, r)).astype(acc), axis=r),
                       name="sum")
    mean = te.compute(kshape, lambda *i: _ld(total, *i) / nf, name="mean")

    def dev(i, rr):
        d = _ld(x, *full(i, rr)).astype(acc) - _ld(mean, *i)
        return d * d
    sq = te.compute(kshape, lambda *i: te.sum(dev(i, r2), axis=r2), name="sqsum")
    var = te.compute(kshape, lambda *i: _ld(sq, *i) / nf, name="var")
    return mean, var


def _keep(idx: Sequence, axes: list) -> list:
    return [tirx.IntImm("int64", 0) if a in axes else i for a, i in enumerate(idx)]


@lower("layer_norm", kind="reduce")
def _layer_norm(ins, attrs, ctx):
    x, scale = ins[0], ins[1]
    bias = ins[2] if len(ins) > 2 else None
    rank = len(x.shape)
    axes = list(range(int(attrs.get("axis", -1)) % rank, rank))
    eps = float(attrs.get("epsilon", 1e-5))
    dt = ctx.out_dtype()
    acc = _acc_dtype(dt)
    mean, var = _mean_var(x, axes, acc)

    def body(*i):
        kk = _keep(i, axes)
        y = (_ld(x, *i).astype(acc) - _ld(mean, *kk)) / tirx.sqrt(_ld(var, *kk) + _c(eps, acc))
        y = y * _bload(scale, i, rank).astype(acc)
        if bias is not None:
            y = y + _bload(bias, i, rank).astype(acc)
        return y.astype(dt)
    return [te.compute(ctx.out_shape(), body, name="layer_norm")]


@lower("rms_norm", kind="reduce")
def _rms_norm(ins, attrs, ctx):
    x, scale = ins
    rank = len(x.shape)
    axes = list(range(int(attrs.get("axis", -1)) % rank, rank))
    eps = float(attrs.get("epsilon", 1e-5))
    dt = ctx.out_dtype()
    acc = _acc_dtype(dt)
    shape = list(x.shape)
    n = None
    for a in axes:
        n = shape[a] if n is None else n * shape[a]
    r = [te.reduce_axis((0, shape[a]), f"r{a}") for a in axes]
    kshape = [1 if a in axes else s for a, s in enumerate(shape)]

    def full(i):
        it = iter(r)
        return [next(it) if a in axes else i[a] for a in range(rank)]

    def sq(i):
        v = _ld(x, *full(i)).astype(acc)
        return v * v
    ss = te.compute(kshape, lambda *i: te.sum(sq(i), axis=r), name="sqsum")

    def body(*i):
        ms = _ld(ss, *_keep(i, axes)) / n.astype(acc)
        y = _ld(x, *i).astype(acc) / tirx.sqrt(ms + _c(eps, acc))
        return (y * _bload(scale, i, rank).astype(acc)).astype(dt)
    return [te.compute(ctx.out_shape(), body, name="rms_norm")]


@lower("instance_norm", kind="reduce")
def _instance_norm(ins, attrs, ctx):
    x, scale, bias = ins
    rank = len(x.shape)
    axes = list(range(2, rank))
    eps = float(attrs.get("epsilon", 1e-5))
    dt = ctx.out_dtype()
    acc = _acc_dtype(dt)
    mean, var = _mean_var(x, axes, acc)

    def body(*i):
        kk = _keep(i, axes)
        y = (_ld(x, *i).astype(acc) - _ld(mean, *kk)) / tirx.sqrt(_ld(var, *kk) + _c(eps, acc))
        return (y * scale[i[1]].astype(acc) + bias[i[1]].astype(acc)).astype(dt)
    return [te.compute(ctx.out_shape(), body, name="instance_norm")]


@lower("batch_norm")
def _batch_norm(ins, attrs, ctx):
    x, scale, bias, mean, var = ins
    eps = float(attrs.get("epsilon", 1e-5))
    dt = ctx.out_dtype()
    acc = _acc_dtype(dt)

    def body(*i):
        c = i[1]
        y = (_ld(x, *i).astype(acc) - mean[c].astype(acc)) / tirx.sqrt(var[c].astype(acc) +
                                                                 _c(eps, acc))
        return (y * scale[c].astype(acc) + bias[c].astype(acc)).astype(dt)
    return [te.compute(ctx.out_shape(), body, name="batch_norm")]


# ----------------------------------------------------------------------------- reductions
def _reduce(kind: str):
    def lowering(ins, attrs, ctx):
        x = ins[0]
        rank = len(x.shape)
        axes = sorted(int(a) for a in attrs.get("axes", [])) or list(range(rank))
        keep = bool(attrs.get("keepdims", 1))
        dt = ctx.out_dtype()
        acc = _acc_dtype(dt)
        shape = list(x.shape)
        r = [te.reduce_axis((0, shape[a]), f"r{a}") for a in axes]
        oshape = ctx.out_shape()

        def full(i):
            i = list(i)
            it = iter(r)
            if keep:
                return [next(it) if a in axes else i[a] for a in range(rank)]
            oi = iter(i)
            return [next(it) if a in axes else next(oi) for a in range(rank)]

        def val(i):
            v = _ld(x, *full(i)).astype(acc)
            if kind in ("sum_square", "l2"):
                return v * v
            if kind == "l1":
                return tirx.abs(v)
            if kind == "log_sum_exp":
                return tirx.exp(v - _ld(mx, *i))
            return v
        n = None
        for a in axes:
            n = shape[a] if n is None else n * shape[a]
        if kind == "log_sum_exp":
            rr = [te.reduce_axis((0, shape[a]), f"m{a}") for a in axes]

            def fullm(i):
                it = iter(rr)
                i = list(i)
                if keep:
                    return [next(it) if a in axes else i[a] for a in range(rank)]
                oi = iter(i)
                return [next(it) if a in axes else next(oi) for a in range(rank)]
            mx = te.compute(oshape, lambda *i: te.max(_ld(x, *fullm(i)).astype(acc), axis=rr),
                            name="rmax")
        if kind in ("max",):
            red = te.compute(oshape, lambda *i: te.max(val(i), axis=r), name="reduce")
        elif kind == "min":
            red = te.compute(oshape, lambda *i: te.min(val(i), axis=r), name="reduce")
        elif kind == "prod":
            prod = te.comm_reducer(lambda a, b: a * b, lambda t: tirx.const(1, t), name="prod")
            red = te.compute(oshape, lambda *i: prod(val(i), axis=r), name="reduce")
        else:
            red = te.compute(oshape, lambda *i: te.sum(val(i), axis=r), name="reduce")

        def post(*i):
            v = _ld(red, *i)
            if kind == "mean":
                v = v / n.astype(acc)
            elif kind == "l2":
                v = tirx.sqrt(v)
            elif kind == "log_sum":
                v = tirx.log(v)
            elif kind == "log_sum_exp":
                v = tirx.log(v) + _ld(mx, *i)
            return v.astype(dt) if _dt(v) != dt else v
        if kind in ("sum", "max", "min", "prod", "sum_square", "l1") and acc == dt:
            return [red]
        return [te.compute(oshape, post, name="reduce_post")]
    return lowering


for _k in ("sum", "mean", "max", "min", "prod", "l1", "l2", "sum_square", "log_sum",
           "log_sum_exp"):
    LOWERINGS[f"reduce_{_k}"] = Lowering(f"reduce_{_k}", _reduce(_k), "reduce")


@lower("global_avg_pool", "global_max_pool", kind="reduce")
def _global_pool(ins, attrs, ctx):
    x = ins[0]
    rank = len(x.shape)
    axes = list(range(2, rank))
    kind = "mean" if ctx.node.op == "global_avg_pool" else "max"
    return _reduce(kind)(ins, {"axes": axes, "keepdims": 1}, ctx)


@lower("argmax", "argmin", kind="reduce")
def _argmax(ins, attrs, ctx):
    x = ins[0]
    axis = int(attrs.get("axis", 0))
    keep = bool(attrs.get("keepdims", 1))
    last = bool(attrs.get("select_last_index", 0))
    is_max = ctx.node.op == "argmax"

    def fcombine(a, b):
        # (index, value) pairs; ties -> smaller index unless select_last_index
        better = (b[1] > a[1]) if is_max else (b[1] < a[1])
        tie = tirx.And(b[1] == a[1], (b[0] > a[0]) if last else (b[0] < a[0]))
        take = tirx.Or(better, tie)
        return tirx.Select(take, b[0], a[0]), tirx.Select(take, b[1], a[1])

    def fidentity(t0, t1):
        return tirx.const(-1, t0), (tirx.min_value(t1) if is_max else tirx.max_value(t1))
    red = te.comm_reducer(fcombine, fidentity, name="argred")
    r = te.reduce_axis((0, x.shape[axis]), "r")

    def body(*i):
        i = list(i)
        if keep:
            full = i[:axis] + [r] + i[axis + 1:]
        else:
            full = i[:axis] + [r] + i[axis:]
        return red((r.var.astype("int64"), _ld(x, *full)), axis=r)
    out = te.compute(ctx.out_shape(), lambda *i: body(*i), name="argred")
    return [out[0]]


@lower("cumsum", kind="opaque")
def _cumsum(ins, attrs, ctx):
    x = ins[0]
    axis = int(attrs.get("axis", 0))
    excl = bool(attrs.get("exclusive", 0))
    rev = bool(attrs.get("reverse", 0))
    n = x.shape[axis]
    r = te.reduce_axis((0, n), "r")

    def body(*i):
        i = list(i)
        pos = i[axis]
        src = i[:axis] + [r] + i[axis + 1:]
        if rev:
            cond = (r > pos) if excl else (r >= pos)
        else:
            cond = (r < pos) if excl else (r <= pos)
        return te.sum(tirx.Select(cond, _ld(x, *src), _c(0, x.dtype)), axis=r)
    return [te.compute(ctx.out_shape(), body, name="cumsum")]


# ----------------------------------------------------------------------------- shapes
def _unravel_reshape(x: te.Tensor, shape: list, name: str) -> te.Tensor:
    return topi.reshape(x, shape) if len(shape) else te.compute(
        (), lambda: _ld(x, *[tirx.IntImm("int64", 0)] * len(x.shape)), name=name)


@lower("reshape", "squeeze", "unsqueeze")
def _reshape(ins, attrs, ctx):
    return [_unravel_reshape(ins[0], ctx.out_shape(), "T_reshape")]


@lower("transpose")
def _transpose(ins, attrs, ctx):
    return [topi.transpose(ins[0], [int(p) for p in attrs["perm"]])]


@lower("concat")
def _concat(ins, attrs, ctx):
    axis = int(attrs["axis"])
    xs = [t for t in ins if t is not None]

    def body(*i):
        i = list(i)
        pos = i[axis]
        offsets = []
        off = tirx.IntImm("int64", 0)
        for t in xs:
            offsets.append(off)
            off = off + t.shape[axis]
        val = _ld(xs[-1], *(i[:axis] + [pos - offsets[-1]] + i[axis + 1:]))
        for t, o in reversed(list(zip(xs[:-1], offsets[:-1]))):
            here = _ld(t, *(i[:axis] + [pos - o] + i[axis + 1:]))
            val = tirx.Select(pos < o + t.shape[axis], here, val)
        return val
    return [te.compute(ctx.out_shape(), body, name="T_concat")]


@lower("split")
def _split(ins, attrs, ctx):
    x = ins[0]
    axis = int(attrs["axis"])
    outs = []
    off = tirx.IntImm("int64", 0)
    def make(o):
        def body(*i):
            i = list(i)
            return _ld(x, *(i[:axis] + [i[axis] + o] + i[axis + 1:]))
        return body
    for n, size in enumerate(attrs["sizes"]):
        outs.append(te.compute(ctx.out_shape(n), make(off), name=f"T_split{n}"))
        off = off + ctx.prim(size)
    return outs


@lower("slice")
def _slice(ins, attrs, ctx):
    x = ins[0]
    starts = {int(a): ctx.prim(s) for a, s in zip(attrs["axes"], attrs["starts"])}
    steps = {int(a): int(s) for a, s in zip(attrs["axes"], attrs.get("steps") or
                                            [1] * len(attrs["axes"]))}

    def body(*i):
        return _ld(x, *[starts[a] + i[a] * steps[a] if a in starts else i[a]
                        for a in range(len(i))])
    return [te.compute(ctx.out_shape(), body, name="T_slice")]


@lower("gather")
def _gather(ins, attrs, ctx):
    data, ind = ins
    axis = int(attrs.get("axis", 0))
    ri = len(ind.shape)
    n = data.shape[axis]

    def body(*i):
        i = list(i)
        iv = _ld(ind, *i[axis:axis + ri]).astype("int64") if ri else _ld(ind).astype("int64")
        iv = tirx.Select(iv < 0, iv + n, iv)
        return _ld(data, *(i[:axis] + [iv] + i[axis + ri:]))
    return [te.compute(ctx.out_shape(), body, name="T_gather")]


@lower("gather_elements")
def _gather_elements(ins, attrs, ctx):
    data, ind = ins
    axis = int(attrs.get("axis", 0))
    n = data.shape[axis]

    def body(*i):
        i = list(i)
        iv = _ld(ind, *i).astype("int64")
        iv = tirx.Select(iv < 0, iv + n, iv)
        return _ld(data, *(i[:axis] + [iv] + i[axis + 1:]))
    return [te.compute(ctx.out_shape(), body, name="T_gather_elements")]


@lower("pad")
def _pad(ins, attrs, ctx):
    x = ins[0]
    rank = len(x.shape)
    pads = [ctx.prim(p) for p in attrs["pads"]]
    before = pads[:rank]
    mode = attrs.get("mode", "constant")
    value = attrs.get("value", 0.0)

    def body(*i):
        src = [i[a] - before[a] for a in range(rank)]
        if mode == "constant":
            inside = None
            for a in range(rank):
                c = tirx.And(src[a] >= 0, src[a] < x.shape[a])
                inside = c if inside is None else tirx.And(inside, c)
            clamped = [tirx.max(tirx.min(s, x.shape[a] - 1), 0) for a, s in enumerate(src)]
            v = _ld(x, *clamped)
            return v if inside is None else tirx.Select(inside, v, _c(value, x.dtype))
        if mode == "wrap":
            return _ld(x, *[tirx.floormod(s, x.shape[a]) for a, s in enumerate(src)])
        if mode == "edge":
            return _ld(x, *[tirx.max(tirx.min(s, x.shape[a] - 1), 0) for a, s in enumerate(src)])
        # reflect
        out = []
        for a, s in enumerate(src):
            n = x.shape[a]
            s = tirx.Select(s < 0, -s, s)
            s = tirx.Select(s >= n, 2 * (n - 1) - s, s)
            out.append(s)
        return _ld(x, *out)
    return [te.compute(ctx.out_shape(), body, name="T_pad")]


@lower("tile")
def _tile(ins, attrs, ctx):
    x = ins[0]
    return [te.compute(ctx.out_shape(), lambda *i: _ld(x, *[tirx.floormod(v, x.shape[a])
                                                        for a, v in enumerate(i)]),
                       name="T_tile")]


@lower("trilu")
def _trilu(ins, attrs, ctx):
    x = ins[0]
    upper = bool(attrs.get("upper", True))
    k = int(attrs.get("k", 0))

    def body(*i):
        r, c = i[-2], i[-1]
        keep = (c - r >= k) if upper else (c - r <= k)
        return tirx.Select(keep, _ld(x, *i), _c(0, x.dtype))
    return [te.compute(ctx.out_shape(), body, name="T_trilu")]


@lower("depth_to_space")
def _d2s(ins, attrs, ctx):
    x = ins[0]
    b = int(attrs["blocksize"])
    mode = attrs.get("mode", "DCR")
    C = ctx.out_shape()[1]

    def body(n, c, h, w):
        bh, bw = tirx.floormod(h, b), tirx.floormod(w, b)
        if mode == "DCR":
            cin = (bh * b + bw) * C + c
        else:
            cin = c * (b * b) + bh * b + bw
        return _ld(x, n, cin, tirx.floordiv(h, b), tirx.floordiv(w, b))
    return [te.compute(ctx.out_shape(), body, name="T_d2s")]


@lower("space_to_depth")
def _s2d(ins, attrs, ctx):
    x = ins[0]
    b = int(attrs["blocksize"])
    C = x.shape[1]

    def body(n, c, h, w):
        blk = tirx.floordiv(c, C)
        cin = tirx.floormod(c, C)
        return _ld(x, n, cin, h * b + tirx.floordiv(blk, b), w * b + tirx.floormod(blk, b))
    return [te.compute(ctx.out_shape(), body, name="T_s2d")]


@lower("one_hot")
def _one_hot(ins, attrs, ctx):
    ind = ins[0]
    depth = ctx.prim(attrs["depth"])
    oshape = ctx.out_shape()
    axis = int(attrs.get("axis", -1)) % len(oshape)
    dt = ctx.out_dtype()
    on, off = attrs.get("on_value", 1), attrs.get("off_value", 0)

    def body(*i):
        i = list(i)
        iv = _ld(ind, *(i[:axis] + i[axis + 1:])).astype("int64")
        iv = tirx.Select(iv < 0, iv + depth, iv)
        return tirx.Select(iv == i[axis], _c(on, dt), _c(off, dt))
    return [te.compute(oshape, body, name="T_one_hot")]


@lower("range")
def _range(ins, attrs, ctx):
    dt = ctx.out_dtype()

    def val(v):
        if isinstance(v, float):
            return _c(v, dt)
        return ctx.prim(v).astype(dt)
    start, delta = val(attrs["start"]), val(attrs["delta"])
    return [te.compute(ctx.out_shape(), lambda i: start + i.astype(dt) * delta, name="T_range")]


@lower("full")
def _full(ins, attrs, ctx):
    dt = ctx.out_dtype()
    v = attrs["value"]
    val = tirx.const(bool(v), "bool") if dt == "bool" else _c(v, dt)
    return [te.compute(ctx.out_shape(), lambda *i: val, name="T_full")]


@lower("dims_tensor")
def _dims_tensor(ins, attrs, ctx):
    dt = ctx.out_dtype()
    vals = [ctx.prim(v).astype(dt) for v in attrs["values"]]

    def body(i):
        out = vals[-1]
        for n in range(len(vals) - 2, -1, -1):
            out = tirx.Select(i == n, vals[n], out)
        return out
    return [te.compute(ctx.out_shape(), body, name="T_dims")]


# ----------------------------------------------------------------------------- conv / pool
def _bias_add(out: te.Tensor, bias: te.Tensor | None) -> te.Tensor:
    if bias is None:
        return out
    return te.compute(out.shape, lambda *i: _ld(out, *i) + bias[i[1]].astype(out.dtype),
                      name="T_bias")


@lower("conv", kind="conv")
def _conv(ins, attrs, ctx):
    x, w = ins[0], ins[1]
    b = ins[2] if len(ins) > 2 else None
    nsp = len(x.shape) - 2
    if nsp not in (1, 2, 3):
        raise ctx.fail(f"conv with {nsp} spatial dims is not supported")
    layout = {1: ("NCW", "OIW"), 2: ("NCHW", "OIHW"), 3: ("NCDHW", "OIDHW")}[nsp]
    strides = [int(s) for s in attrs.get("strides", [1] * nsp)]
    dil = [int(s) for s in attrs.get("dilations", [1] * nsp)]
    pads = [int(p) for p in attrs.get("pads", [0] * 2 * nsp)]
    out = topi.nn.conv(x, w, strides, pads, dil, int(attrs.get("group", 1)), layout[0],
                       layout[1], out_dtype=_acc_dtype(x.dtype))
    out = _bias_add(out, b)
    if out.dtype != ctx.out_dtype():
        out = te.compute(out.shape, lambda *i: _ld(out, *i).astype(ctx.out_dtype()),
                         name="T_cast_out")
    return [out]


@lower("conv_transpose", kind="conv")
def _conv_transpose(ins, attrs, ctx):
    """Direct (gather) form: out[o] sums x[i] * w[k] over i*stride - pad + k*dil == o."""
    x, w = ins[0], ins[1]
    b = ins[2] if len(ins) > 2 else None
    nsp = len(x.shape) - 2
    g = int(attrs.get("group", 1))
    strides = [int(s) for s in attrs.get("strides", [1] * nsp)]
    dil = [int(s) for s in attrs.get("dilations", [1] * nsp)]
    pads = [int(p) for p in attrs.get("pads", [0] * 2 * nsp)]
    cin_g = tirx.floordiv(x.shape[1], g)
    oshape = ctx.out_shape()
    cout_g = w.shape[1]
    acc = _acc_dtype(x.dtype)
    rc = te.reduce_axis((0, cin_g), "rc")
    rk = [te.reduce_axis((0, w.shape[2 + d]), f"rk{d}") for d in range(nsp)]

    def body(n, o, *sp):
        grp = tirx.floordiv(o, cout_g)
        ci = grp * cin_g + rc
        conds, src = [], []
        for d in range(nsp):
            t = sp[d] + pads[d] - rk[d] * dil[d]
            conds.append(tirx.And(t >= 0, tirx.floormod(t, strides[d]) == 0))
            q = tirx.floordiv(t, strides[d])
            conds.append(q < x.shape[2 + d])
            src.append(tirx.max(tirx.min(q, x.shape[2 + d] - 1), 0))
        ok = conds[0]
        for c in conds[1:]:
            ok = tirx.And(ok, c)
        val = (_ld(x, n, ci, *src).astype(acc) *
               _ld(w, ci, tirx.floormod(o, cout_g), *rk).astype(acc))
        return te.sum(tirx.Select(ok, val, _c(0, acc)), axis=[rc] + rk)
    out = te.compute(oshape, body, name="conv_transpose")
    out = _bias_add(out, b)
    if out.dtype != ctx.out_dtype():
        out = te.compute(out.shape, lambda *i: _ld(out, *i).astype(ctx.out_dtype()),
                         name="T_cast_out")
    return [out]


@lower("max_pool", "avg_pool", kind="pool")
def _pool(ins, attrs, ctx):
    """Direct windowed reduction with ONNX padding semantics (pads excluded from max)."""
    x = ins[0]
    nsp = len(x.shape) - 2
    kernel = [int(k) for k in attrs["kernel"]]
    strides = [int(s) for s in attrs.get("strides") or [1] * nsp]
    dil = [int(s) for s in attrs.get("dilations") or [1] * nsp]
    pads = [int(p) for p in attrs.get("pads") or [0] * 2 * nsp]
    is_max = ctx.node.op == "max_pool"
    include_pad = bool(attrs.get("count_include_pad", 0))
    acc = _acc_dtype(x.dtype)
    rk = [te.reduce_axis((0, kernel[d]), f"rk{d}") for d in range(nsp)]

    def window(sp):
        pos, ok = [], None
        for d in range(nsp):
            p = sp[d] * strides[d] - pads[d] + rk[d] * dil[d]
            c = tirx.And(p >= 0, p < x.shape[2 + d])
            ok = c if ok is None else tirx.And(ok, c)
            pos.append(tirx.max(tirx.min(p, x.shape[2 + d] - 1), 0))
        return pos, ok

    def body(n, c, *sp):
        pos, ok = window(sp)
        v = _ld(x, n, c, *pos).astype(acc)
        if is_max:
            return te.max(tirx.Select(ok, v, tirx.min_value(acc)), axis=rk)
        return te.sum(tirx.Select(ok, v, _c(0, acc)), axis=rk)
    oshape = ctx.out_shape()
    red = te.compute(oshape, body, name="pool")
    if is_max:
        out = red
    else:
        def count(sp):
            # number of window taps inside the input (or inside input+pads if include_pad)
            total = None
            for d in range(nsp):
                lo = sp[d] * strides[d] - pads[d]
                cnt = None
                for kk in range(kernel[d]):
                    p = lo + kk * dil[d]
                    if include_pad:
                        inside = tirx.And(p >= -pads[d], p < x.shape[2 + d] + pads[nsp + d])
                    else:
                        inside = tirx.And(p >= 0, p < x.shape[2 + d])
                    one = tirx.Select(inside, _c(1, acc), _c(0, acc))
                    cnt = one if cnt is None else cnt + one
                total = cnt if total is None else total * cnt
            return total
        out = te.compute(oshape, lambda n, c, *sp: _ld(red, n, c, *sp) / count(sp), name="avg")
    if out.dtype != ctx.out_dtype():
        out = te.compute(oshape, lambda *i: _ld(out, *i).astype(ctx.out_dtype()), name="T_cast_out")
    return [out]


# ----------------------------------------------------------------------------- blocked layout
# NCHW{b}c ops made by passes/layout.py (docs/ops.md "Blocked channel layout").
def _layout_block(name: str) -> int:
    from ..ops.layout import block_of
    return block_of(name)


@lower("layout_transform")
def _layout_transform(ins, attrs, ctx):
    """NCHW <-> NCHW{b}c as index arithmetic (one copy; vectorized over the c block)."""
    x = ins[0]
    dst = _layout_block(attrs["dst"])
    if dst:
        return [te.compute(ctx.out_shape(), lambda n, co, h, w, ci: x[n, co * dst + ci, h, w],
                           name="T_to_blocked")]
    b = x.shape[4]
    return [te.compute(ctx.out_shape(), lambda n, c, h, w: x[n, tirx.floordiv(c, b), h, w,
                                                              tirx.floormod(c, b)],
                       name="T_to_plain")]


def _pad_nchwc(x: te.Tensor, pads: list) -> te.Tensor:
    """Zero-padded copy of x [N, C/b, H, W, b] over H and W (pads = [top, left, bottom, right])."""
    pt, pl, pb, pr = pads
    if not any(pads):
        return x
    n_, c_, h_, w_, b_ = x.shape

    def body(n, c, h, w, i):
        ok = tirx.And(tirx.And(h >= pt, h < h_ + pt), tirx.And(w >= pl, w < w_ + pl))
        hh = tirx.max(tirx.min(h - pt, h_ - 1), 0)
        ww = tirx.max(tirx.min(w - pl, w_ - 1), 0)
        return tirx.if_then_else(ok, x[n, c, hh, ww, i], _c(0, x.dtype))
    return te.compute([n_, c_, h_ + pt + pb, w_ + pl + pr, b_], body, name="data_pad")


@lower("conv2d_nchwc", kind="conv_nchwc")
def _conv2d_nchwc(ins, attrs, ctx):
    """out[n, oc, oh, ow, ob] = sum over (ic, kh, kw, ib) of xpad * w[oc, ic, kh, kw, ib, ob].

    The stage names (data_pad, conv_nchwc, T_bias) are what the x86 schedule looks for.
    """
    x, w = ins[0], ins[1]
    b = ins[2] if len(ins) > 2 else None
    sh, sw = [int(s) for s in attrs.get("strides", [1, 1])]
    dh, dw = [int(s) for s in attrs.get("dilations", [1, 1])]
    pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    xp = _pad_nchwc(x, pads)
    acc = _acc_dtype(x.dtype)
    ic = te.reduce_axis((0, w.shape[1]), "ic")
    kh = te.reduce_axis((0, w.shape[2]), "kh")
    kw = te.reduce_axis((0, w.shape[3]), "kw")
    ib = te.reduce_axis((0, w.shape[4]), "ib")
    out = te.compute(ctx.out_shape(), lambda n, oc, oh, ow, ob: te.sum(
        xp[n, ic, oh * sh + kh * dh, ow * sw + kw * dw, ib].astype(acc) *
        w[oc, ic, kh, kw, ib, ob].astype(acc), axis=[ic, kh, kw, ib]), name="conv_nchwc")
    if b is not None:
        bo = w.shape[5]
        conv = out
        out = te.compute(conv.shape, lambda n, oc, oh, ow, ob: conv[n, oc, oh, ow, ob] +
                         b[oc * bo + ob].astype(acc), name="T_bias")
    if out.dtype != ctx.out_dtype():
        res = out
        out = te.compute(res.shape, lambda *i: _ld(res, *i).astype(ctx.out_dtype()),
                         name="T_cast_out")
    return [out]


@lower("pool2d_nchwc", kind="pool_nchwc")
def _pool2d_nchwc(ins, attrs, ctx):
    """Max / average pool over H, W of NCHW{b}c with ONNX padding semantics (as ``_pool``)."""
    x = ins[0]
    kernel = [int(k) for k in attrs["kernel"]]
    strides = [int(s) for s in attrs.get("strides") or [1, 1]]
    dil = [int(s) for s in attrs.get("dilations") or [1, 1]]
    pads = [int(p) for p in attrs.get("pads") or [0, 0, 0, 0]]
    is_max = attrs.get("kind") == "max"
    include_pad = bool(attrs.get("count_include_pad", 0))
    acc = _acc_dtype(x.dtype)
    size = [x.shape[2], x.shape[3]]
    rk = [te.reduce_axis((0, kernel[d]), f"rk{d}") for d in range(2)]

    def window(sp):
        pos, ok = [], None
        for d in range(2):
            p = sp[d] * strides[d] - pads[d] + rk[d] * dil[d]
            c = tirx.And(p >= 0, p < size[d])
            ok = c if ok is None else tirx.And(ok, c)
            pos.append(tirx.max(tirx.min(p, size[d] - 1), 0))
        return pos, ok

    def body(n, c, h, w, i):
        pos, ok = window((h, w))
        v = x[n, c, pos[0], pos[1], i].astype(acc)
        if is_max:
            return te.max(tirx.Select(ok, v, tirx.min_value(acc)), axis=rk)
        return te.sum(tirx.Select(ok, v, _c(0, acc)), axis=rk)
    oshape = ctx.out_shape()
    out = te.compute(oshape, body, name="pool")
    if not is_max:
        red = out

        def count(sp):
            total = None
            for d in range(2):
                lo = sp[d] * strides[d] - pads[d]
                cnt = None
                for kk in range(kernel[d]):
                    p = lo + kk * dil[d]
                    inside = (tirx.And(p >= -pads[d], p < size[d] + pads[2 + d]) if include_pad
                              else tirx.And(p >= 0, p < size[d]))
                    one = tirx.Select(inside, _c(1, acc), _c(0, acc))
                    cnt = one if cnt is None else cnt + one
                total = cnt if total is None else total * cnt
            return total
        out = te.compute(oshape, lambda n, c, h, w, i: red[n, c, h, w, i] / count((h, w)),
                         name="avg")
    if out.dtype != ctx.out_dtype():
        res = out
        out = te.compute(oshape, lambda *i: _ld(res, *i).astype(ctx.out_dtype()),
                         name="T_cast_out")
    return [out]


@lower("lrn")
def _lrn(ins, attrs, ctx):
    x = ins[0]
    size = int(attrs["size"])
    alpha, beta, bias = (float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75)),
                         float(attrs.get("bias", 1.0)))
    acc = _acc_dtype(x.dtype)
    C = x.shape[1]
    lo = (size - 1) // 2
    r = te.reduce_axis((0, size), "r")

    def sq(n, c, *sp):
        ci = c - lo + r
        ok = tirx.And(ci >= 0, ci < C)
        v = _ld(x, n, tirx.max(tirx.min(ci, C - 1), 0), *sp).astype(acc)
        return te.sum(tirx.Select(ok, v * v, _c(0, acc)), axis=r)
    s = te.compute(x.shape, sq, name="lrn_sum")
    return [te.compute(x.shape, lambda *i: (_ld(x, *i).astype(acc) / tirx.power(
        _c(bias, acc) + _c(alpha / size, acc) * _ld(s, *i), _c(beta, acc))).astype(x.dtype),
        name="lrn")]


@lower("hardmax", kind="reduce")
def _hardmax(ins, attrs, ctx):
    """1 at the first maximum along ``axis``, 0 elsewhere (argmax stage + compare)."""
    x = ins[0]
    axis = int(attrs.get("axis", len(x.shape) - 1))
    sub = LowerCtx(ctx.node, [TensorType("int64", tuple(ctx.out_types[0].shape[:axis]) +
                                         tuple(ctx.out_types[0].shape[axis + 1:]))], ctx.env)
    r = te.reduce_axis((0, x.shape[axis]), "r")
    acc = _acc_dtype(x.dtype)

    def fcombine(a, b):
        take = tirx.Or(b[1] > a[1], tirx.And(b[1] == a[1], b[0] < a[0]))
        return tirx.Select(take, b[0], a[0]), tirx.Select(take, b[1], a[1])

    red = te.comm_reducer(fcombine, lambda t0, t1: (tirx.const(-1, t0), tirx.min_value(t1)),
                          name="argmax")
    am = te.compute(sub.out_shape(), lambda *i: red(
        (r.var.astype("int64"), _ld(x, *i[:axis], r, *i[axis:]).astype(acc)), axis=r),
        name="argmax")[0]
    dt = ctx.out_dtype()
    return [te.compute(ctx.out_shape(), lambda *i: tirx.Select(
        _ld(am, *i[:axis], *i[axis + 1:]) == i[axis], _c(1, dt), _c(0, dt)), name="hardmax")]


@lower("gather_nd")
def _gather_nd(ins, attrs, ctx):
    """ONNX GatherND: the last index axis picks k leading (post-batch) data axes."""
    data, ind = ins
    b = int(attrs.get("batch_dims", 0))
    k = int(ind.shape[-1])
    ri = len(ind.shape)

    def body(*o):
        o = list(o)
        lead = o[:ri - 1]  # batch dims then index positions
        pos = []
        for a in range(k):
            iv = _ld(ind, *lead, tirx.IntImm("int64", a)).astype("int64")
            pos.append(tirx.Select(iv < 0, iv + data.shape[b + a], iv))
        return _ld(data, *o[:b], *pos, *o[ri - 1:])
    return [te.compute(ctx.out_shape(), body, name="T_gather_nd")]


def _norm_indices(ind: te.Tensor, dims: Callable) -> te.Tensor:
    """int64 indices with negatives wrapped (``dims(idx)`` is the extent they index)."""
    def body(*i):
        v = _ld(ind, *i).astype("int64")
        return tirx.Select(v < 0, v + dims(i), v)
    return te.compute(ind.shape, body, name="T_indices")


_SCATTER_MODE = {"none": "update", "add": "add", "mul": "mul", "max": "max", "min": "min"}


@lower("scatter_elements", kind="opaque")
def _scatter_elements(ins, attrs, ctx):
    data, ind, upd = ins
    axis = int(attrs.get("axis", 0))
    ind = _norm_indices(ind, lambda i: data.shape[axis])
    return [topi.scatter_elements(data, ind, upd, axis,
                                  _SCATTER_MODE[attrs.get("reduction", "none")])]


@lower("scatter_nd", kind="opaque")
def _scatter_nd(ins, attrs, ctx):
    data, ind, upd = ins
    r = len(ind.shape)
    ind = _norm_indices(ind, lambda i: _select_dim(data, i[-1]))
    ind_t = topi.transpose(ind, [r - 1] + list(range(r - 1)))  # TVM wants the index axis first
    return [topi.scatter_nd(data, ind_t, upd, _SCATTER_MODE[attrs.get("reduction", "none")])]


def _select_dim(data: te.Tensor, axis_expr) -> tirx.PrimExpr:
    """data.shape[axis_expr] for a run-time axis number (a Select chain over the dims)."""
    out = data.shape[-1]
    for a in range(len(data.shape) - 2, -1, -1):
        out = tirx.Select(axis_expr == a, data.shape[a], out)
    return out


# ----------------------------------------------------------------------------- fused groups
def _unflatten_rows(mm: te.Tensor, oshape: list, name: str = "mm_rows") -> te.Tensor:
    """[prod(lead), N] -> [*lead, N] (row-major): the packed matmul's result in the op's shape."""
    lead = oshape[:-1]

    def body(*i):
        row = None
        for ax, d in zip(i[:-1], lead):
            row = ax if row is None else row * d + ax
        return mm[row if row is not None else tirx.IntImm("int64", 0), i[-1]]
    return te.compute(oshape, body, name=name)


def lower_fused(body, tensors: dict, env: DimEnv,
                packed: dict | None = None) -> list:
    """TE of a ``fused`` node's body: the body ops' lowerings composed on shared tensors.

    ``tensors`` maps body input names to TE tensors; ``packed`` maps the name of a body matmul
    node to ``(a2d, packed_weight, n)`` when the builder pre-packed its weight (the matmul then
    runs as :func:`matmul_packed` and its rows are unflattened back to the op's shape). The
    result is one PrimFunc's worth of stages, which the target schedules as a single kernel.
    """
    vals = dict(tensors)
    packed = packed or {}
    for node in body.nodes:
        out_types = [body.types[o] for o in node.outputs]
        if node.name in packed:
            a2, wp, n = packed[node.name]
            mm = matmul_packed(a2, wp, n)
            oshape = env.shape(out_types[0].shape)
            outs = [mm if len(oshape) == 2 else _unflatten_rows(mm, oshape)]
        else:
            low = get_lowering(node)
            ctx = LowerCtx(node, out_types, env)
            ins = [vals[i] if i else None for i in node.inputs]
            while ins and ins[-1] is None:
                ins.pop()
            outs = low.fn(ins, dict(node.attrs), ctx)
        for o, t in zip(node.outputs, outs):
            vals[o] = t
    return [vals[o] for o in body.outputs]
from . import lowering_quant  # noqa: E402,F401  (quantized ops: qlinear_int8, qlinear_int4)
from . import lowering_w8  # noqa: E402,F401  (int8 weight-only linear: qlinear_int8_wo)


@lower("rope")
def _rope(ins, attrs, ctx):
    """x * cos + rotate_half(x) * sin in one pass (docs/ops.md ``rope``).

    The partner of lane j is x[(j + E/2) mod E] with sign -1 for j < E/2: one in-bounds load
    per lane (a Select between x[j + E/2] and x[j - E/2] would load out of bounds in the
    branch not taken once vectorized)."""
    x, cos, sin = ins
    shape = ctx.out_shape()
    rank = len(shape)
    e = int(x.shape[-1])
    h = e // 2

    def body(*idx):
        xi = _bindex(x, idx, rank)
        j = xi[-1]
        v = _f32(_ld(x, *xi))
        p = _f32(_ld(x, *xi[:-1], tirx.floormod(j + tirx.IntImm(_dt(j), h),
                                                 tirx.IntImm(_dt(j), e))))
        c, s = _f32(_bload(cos, idx, rank)), _f32(_bload(sin, idx, rank))
        rot = tirx.Select(j < tirx.IntImm(_dt(j), h), -p, p)
        r = v * c + rot * s
        return r.astype(ctx.out_dtype()) if _dt(r) != ctx.out_dtype() else r
    return [te.compute(shape, body, name="T_rope")]

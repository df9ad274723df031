"""The packed functions a systolic artifact calls: TVM -> Python -> the simulator.

Why a Python callback: the simulated array is a Python/numpy model, so the Relax ``main`` of a
systolic artifact calls ``llmc.systolic.qlinear`` through ``call_dps_packed`` for every array
layer; this module registers that global function. Consequence (documented in
docs/systolic.md): running a systolic artifact needs llmc's simulator importable in the
process (``llmc.backends.systolic.runtime_hook.register()`` before loading), not only the TVM
runtime.

Every call is recorded in the current :class:`Session` (``profile()``), which gives
``llmc run --profile`` its per-layer table.
"""
from __future__ import annotations

import contextlib
import json
from functools import lru_cache

import numpy as np

from llmc.ops.quant import QMAX8

from .sim.config import SystolicConfig, load_config
from .sim.cycles import GemmStats
from .sim.simulator import Simulator

FUNC_NAME = "llmc.systolic.qlinear"
CONV_FUNC_NAME = "llmc.systolic.qconv2d"
BF16_FUNC_NAME = "llmc.systolic.linear_bf16"


class Session:
    """The records of the array calls made while it is active, and the array traces (tests)."""

    def __init__(self, keep_operands: bool = False) -> None:
        self.records: list[GemmStats] = []
        self.config: SystolicConfig | None = None
        self.keep_operands = keep_operands
        # (layer, x float32, xq int8, wq int8, acc int32, y float32) of every call
        self.operands: list[tuple] = []


_SESSIONS: list[Session] = []


@contextlib.contextmanager
def profile(keep_operands: bool = False):
    """Record every array call made inside the ``with`` block (nestable)."""
    s = Session(keep_operands)
    _SESSIONS.append(s)
    try:
        yield s
    finally:
        _SESSIONS.remove(s)


@lru_cache(maxsize=16)
def _config(text: str) -> SystolicConfig:
    return load_config(json.loads(text))


def quantize_activation(x: np.ndarray, x_scale: float) -> np.ndarray:
    """int8 activation: clip(round_half_even(x / x_scale), -127, 127), as ``qlinear_int8``."""
    q = np.round(x.astype(np.float32) / np.float32(x_scale))
    return np.clip(q, -QMAX8, QMAX8).astype(np.int8)


def qlinear(x: np.ndarray, wq: np.ndarray, w_scale: np.ndarray, x_scale: float,
            bias: np.ndarray | None, name: str, cfg: SystolicConfig) -> np.ndarray:
    """x float32 [M, K] -> quantize -> array GEMM with int8 wq [K, N] -> dequantize (+bias).

    The quantize and dequantize steps are fused around the array call; the arithmetic is the
    one of the ``qlinear_int8`` op's numpy reference, so the result matches it bit for bit.
    """
    xq = quantize_activation(x, x_scale)
    sim = Simulator(cfg)
    acc = sim.gemm(xq, wq, name)
    y = acc.astype(np.float32) * (np.float32(x_scale) * w_scale.astype(np.float32))
    if bias is not None:
        y = y + bias.astype(np.float32)
    y = y.astype(np.float32)
    for s in _SESSIONS:
        s.records.extend(sim.records)
        s.config = cfg
        if s.keep_operands:
            s.operands.append((name, x, xq, wq, acc, y))
    return y


def _packed(x, wq, w_scale, x_scale, bias, name, cfg_json, out) -> None:
    """The registered function: DPS, ``out`` is the preallocated float32 [M, N] result."""
    cfg = _config(str(cfg_json))
    b = bias.numpy()
    y = qlinear(x.numpy(), wq.numpy(), w_scale.numpy(), float(x_scale.numpy().reshape(-1)[0]),
                b if b.size else None, str(name), cfg)
    out.copyfrom(y)


def qconv2d(x: np.ndarray, wq: np.ndarray, w_scale: np.ndarray, x_scale: float,
            bias: np.ndarray | None, attrs: dict, name: str, cfg: SystolicConfig) -> np.ndarray:
    """A conv as one im2col GEMM on the array (see :mod:`.qconv`), recorded like a linear."""
    from .qconv import qconv_forward

    sim = Simulator(cfg)
    seen = {}

    def gemm(p, w):
        seen["xq"], seen["acc"] = p, sim.gemm(p, w, name)
        return seen["acc"]
    y = qconv_forward(x, wq, w_scale, x_scale, bias, attrs, gemm)
    for s in _SESSIONS:
        s.records.extend(sim.records)
        s.config = cfg
        if s.keep_operands:
            s.operands.append((name, x, seen["xq"], wq, seen["acc"], y))
    return y


def _packed_conv(x, wq, w_scale, x_scale, bias, name, cfg_json, attrs_json, out) -> None:
    """The registered conv function (DPS): ``out`` is the float32 [N, O, OH, OW] result."""
    cfg = _config(str(cfg_json))
    b = bias.numpy()
    y = qconv2d(x.numpy(), wq.numpy(), w_scale.numpy(), float(x_scale.numpy().reshape(-1)[0]),
                b if b.size else None, json.loads(str(attrs_json)), str(name), cfg)
    out.copyfrom(y)


def _packed_bf16(x, w, bias, name, cfg_json, out) -> None:
    """The registered bf16 linear (DPS): x float32 [M, K] -> out float32 [M, N]."""
    from .bf16 import linear_bf16

    cfg = _config(str(cfg_json))
    sim = Simulator(cfg)
    b = bias.numpy()
    xa, wa = x.numpy(), w.numpy()
    y = linear_bf16(xa, wa, b if b.size else None, cfg, lambda p, q: sim.gemm(p, q, str(name)))
    for s in _SESSIONS:
        s.records.extend(sim.records)
        s.config = cfg
        if s.keep_operands:
            s.operands.append((str(name), xa, None, wa, None, y))
    out.copyfrom(y)


_REGISTERED = False


def register() -> None:
    """Register ``llmc.systolic.qlinear`` with TVM (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    import tvm_ffi

    tvm_ffi.register_global_func(FUNC_NAME, _packed, override=True)
    tvm_ffi.register_global_func(CONV_FUNC_NAME, _packed_conv, override=True)
    tvm_ffi.register_global_func(BF16_FUNC_NAME, _packed_bf16, override=True)
    _REGISTERED = True


register()

"""The simulator's entry point: run one GEMM on the array, return its result and its stats.

Why one object with a list of records: a model run calls the array once per matmul; the
profiler (``llmc run --profile``) needs every call, in order, with its layer name.
"""
from __future__ import annotations

import numpy as np

from .config import SystolicConfig, load_config
from .cycles import GemmStats, gemm_stats
from .functional import gemm_bf16, gemm_int8


class Simulator:
    """A systolic array that executes GEMMs and records what each one cost."""

    def __init__(self, config: "SystolicConfig | str | dict | None" = None) -> None:
        self.config = load_config(config)
        self.records: list[GemmStats] = []

    def gemm(self, a: np.ndarray, b: np.ndarray, name: str = "gemm") -> np.ndarray:
        """``a @ b`` on the array (int8 -> int32 or bf16 -> fp32), recording its stats."""
        m, k = a.shape
        n = b.shape[1]
        out = gemm_int8(a, b, self.config) if self.config.precision == "int8" \
            else gemm_bf16(a, b, self.config)
        self.records.append(gemm_stats(m, k, n, self.config, name))
        return out

    def reset(self) -> None:
        """Forget the recorded calls (between profiled runs)."""
        self.records.clear()

"""llmc's graph-level passes (IR -> IR) and the pass manager.

Public API: :func:`run_passes` (levels O0..O3, explicit lists, disable), :func:`register_pass`,
:data:`LEVELS`, :func:`known_passes`, :class:`PassReport`, and the memory planning analysis
:func:`plan_memory`.
"""
from __future__ import annotations

from .manager import (LEVELS, NumericMismatchError, PassReport, PassRow, UnknownPassError,
                      get_pass, known_passes, level_passes, register_pass, run_passes)
from .memory_plan import MemoryPlan, plan_memory
from . import constant_fold, cse, dce, fold_batchnorm, simplify  # noqa: E402,F401  (register)

__all__ = ["LEVELS", "MemoryPlan", "NumericMismatchError", "PassReport", "PassRow",
           "UnknownPassError", "get_pass", "known_passes", "level_passes", "plan_memory",
           "register_pass", "run_passes"]

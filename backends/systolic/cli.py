"""What llmc's pipeline and CLI call for the systolic target (kept here so they stay thin).

- ``compile --target systolic --systolic-config tpu-like|edge|FILE.json [--calib F.npz]``:
  :func:`backend_options` gives ``build``'s keyword arguments (batches from
  ``llmc.calibration.load_batches``).
- ``run --profile [--report out.json] [--plot out.svg]``: :func:`profiled_run` then
  :func:`show_profile`.
- ``dse MODEL --arrays 8x8,... --sram 64K,...``: :func:`run_dse`.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from llmc.errors import InputError

from . import runtime_hook
from .sim.config import load_config
from .sim.dse import explore, format_dse, parse_arrays, parse_sizes, pareto_svg
from .sim.report import build_report, format_table, plot_report, save_report


def backend_options(systolic_config: str | None = None, precision: str | None = None,
                    calibration: Sequence[Mapping[str, np.ndarray]] | None = None,
                    calibrator: str = "minmax") -> dict:
    """``build``'s keyword arguments from the CLI flags (validated early)."""
    return {"systolic_config": load_config(systolic_config or "edge"),
            "precision": precision if precision in ("int8", "bf16") else "int8",
            "calibration": list(calibration or []), "calibrator": calibrator}


def profiled_run(run: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, dict]:
    """Call ``run`` (e.g. a loaded model's ``run``) and return (its result, the array report)."""
    runtime_hook.register()
    with runtime_hook.profile() as s:
        result = run(*args, **kwargs)
    if s.config is None:
        raise InputError("--profile: this model made no call to the systolic array (was it "
                         "compiled with --target systolic?)")
    return result, build_report(s.records, s.config)


def show_profile(report: dict, report_path: str | None = None,
                 plot_path: str | None = None) -> str:
    """The table ``--profile`` prints; also saves ``--report`` JSON and the ``--plot`` SVG."""
    if report_path:
        save_report(report, report_path)
    if plot_path:
        plot_report(report, plot_path)
    return format_table(report)


def run_dse(graph, inputs: Mapping[str, np.ndarray], arrays: str = "8x8,16x16,32x32,64x64,128x128",
            sram: str = "64K,256K,1M", base: str | None = None,
            calibration: Sequence[Mapping[str, np.ndarray]] | None = None,
            plot_path: str | None = None) -> tuple[list[dict], str]:
    """Compile ``graph`` for the array, run it once on ``inputs`` to record its GEMMs, then
    evaluate every design point; returns (rows, printed table) and writes the Pareto SVG."""
    from ..x86 import run
    from .build import build

    res = build(graph, systolic_config=base or "edge", calibration=calibration or [inputs])
    with runtime_hook.profile() as s:
        run(res, dict(inputs))
    shapes = [(r.name, r.m, r.k, r.n) for r in s.records]
    rows = explore(shapes, parse_arrays(arrays), parse_sizes(sram), base)
    if plot_path:
        pareto_svg(rows, plot_path, f"llmc dse {graph.name}: latency vs energy (size ~ PEs)")
    return rows, format_dse(rows)

"""Reports (table, JSON, SVG), the DSE sweep and its Pareto front, the CLI helpers."""
import json

import numpy as np
import pytest

from llmc.backends.systolic import cli
from llmc.backends.systolic.sim.config import load_config
from llmc.backends.systolic.sim.cycles import gemm_stats
from llmc.backends.systolic.sim.dse import explore, parse_arrays, parse_sizes
from llmc.backends.systolic.sim.report import build_report, format_table
from llmc.errors import InputError

from .test_backend import _mlp


def test_report_totals_and_files(tmp_path):
    cfg = load_config("edge")
    recs = [gemm_stats(16, 64, 32, cfg, "a"), gemm_stats(16, 32, 8, cfg, "b"),
            gemm_stats(16, 64, 32, cfg, "a")]
    rep = build_report(recs, cfg)
    assert [d["name"] for d in rep["layers"]] == ["a", "b"]
    assert rep["layers"][0]["calls"] == 2
    assert rep["total"]["total_cycles"] == sum(r.total_cycles for r in recs)
    assert rep["total"]["time_s"] == pytest.approx(rep["total"]["total_cycles"] / 1e9)
    txt = cli.show_profile(rep, str(tmp_path / "r.json"), str(tmp_path / "p.svg"))
    assert "total" in txt and txt == format_table(rep)
    assert json.loads((tmp_path / "r.json").read_text())["total"]["macs"] == rep["total"]["macs"]
    assert (tmp_path / "p.svg").read_text().startswith("<svg")


def test_dse_sweep_and_pareto():
    shapes = [("l0", 128, 384, 384), ("l1", 128, 384, 1536), ("l2", 1, 768, 768)]
    rows = explore(shapes, parse_arrays("8x8,32x32,128x128"), parse_sizes("64K,1M"))
    assert len(rows) == 6
    by = {(r["array"], r["sram_kib"]): r for r in rows}
    assert by[("32x32", 64)]["cycles"] < by[("8x8", 64)]["cycles"]     # bigger array: faster
    assert by[("32x32", 1024)]["dram_kib"] <= by[("32x32", 64)]["dram_kib"]
    assert any(r["pareto"] for r in rows)
    assert any(r["pareto"] for r in rows if r["pes"] == 64)   # the smallest area has a point
    assert parse_sizes("64K,1M") == [64, 1024]
    with pytest.raises(InputError):
        parse_arrays("8by8")


def test_run_dse_and_profiled_run(tmp_path):
    from llmc.backends.systolic import build
    from llmc.backends.x86 import run

    g = _mlp()
    x = {"x": np.random.default_rng(0).standard_normal((2, 5, 40)).astype(np.float32)}
    rows, table = cli.run_dse(g, x, arrays="8x8,16x16", sram="64K",
                              plot_path=str(tmp_path / "d.svg"))
    assert len(rows) == 2 and "pareto" in table
    assert (tmp_path / "d.svg").exists()
    res = build(g, **cli.backend_options("tpu-like", calibration=[x]))
    out, rep = cli.profiled_run(run, res, x)
    assert rep["config"]["name"] == "tpu-like" and len(rep["layers"]) == 2
    with pytest.raises(InputError, match="no call"):
        cli.profiled_run(lambda: None)

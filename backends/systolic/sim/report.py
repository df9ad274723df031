"""Per-layer and total reports of a simulated run: table, JSON, plot.

Why here: ``llmc run --profile`` prints the table, ``--report out.json`` saves the dict, and the
plot shows where the cycles go and how well each layer fills the array.
"""
from __future__ import annotations

import json
from dataclasses import fields

from .config import SystolicConfig
from .cycles import GemmStats

_SUM = ("folds", "macs", "compute_cycles", "stall_cycles", "prologue_cycles", "epilogue_cycles",
        "ifmap_sram_reads", "filter_sram_reads", "ofmap_sram_writes", "sram_read_bytes",
        "sram_write_bytes", "dram_read_bytes", "dram_write_bytes", "energy_pj", "calls")


def merge_layers(records: list[GemmStats]) -> list[GemmStats]:
    """One row per layer name (a layer called several times, e.g. per run, is summed)."""
    out: dict[str, GemmStats] = {}
    for r in records:
        if r.name not in out:
            out[r.name] = GemmStats(**{f.name: getattr(r, f.name) for f in fields(r)})
            continue
        acc = out[r.name]
        for f in _SUM:
            setattr(acc, f, getattr(acc, f) + getattr(r, f))
    return list(out.values())


def build_report(records: list[GemmStats], cfg: SystolicConfig) -> dict:
    """The report as a JSON-ready dict: config, layers and totals (time at the clock)."""
    layers = merge_layers(records)
    tot = {f: sum(getattr(r, f) for r in layers) for f in _SUM}
    tot["total_cycles"] = sum(r.total_cycles for r in layers)
    busy = tot["compute_cycles"] + tot["stall_cycles"]
    pes = cfg.rows * cfg.cols
    tot["utilization"] = tot["macs"] / (pes * busy) if busy else 0.0
    tot["mapping_efficiency"] = (sum(r.mapping_efficiency * r.folds for r in layers) /
                                 tot["folds"]) if tot["folds"] else 0.0
    tot["time_s"] = tot["total_cycles"] / (cfg.clock_mhz * 1e6)
    tot["energy_uj"] = tot["energy_pj"] * 1e-6
    rows = []
    for r in layers:
        d = r.to_dict()
        d["time_s"] = r.total_cycles / (cfg.clock_mhz * 1e6)
        rows.append(d)
    return {"config": cfg.to_dict(), "layers": rows, "total": tot}


def format_table(report: dict, max_rows: int = 200) -> str:
    """A fixed-width table of the report (one line per layer plus the total)."""
    hdr = (f"{'layer':<28} {'MxKxN':>16} {'folds':>7} {'cycles':>12} {'stall':>10} "
           f"{'util%':>6} {'map%':>6} {'SRAM rd/wr KiB':>17} {'DRAM rd/wr KiB':>17} "
           f"{'energy uJ':>10}")
    lines = [f"systolic {report['config']['name']}: {report['config']['rows']}x"
             f"{report['config']['cols']} {report['config']['dataflow']} "
             f"{report['config']['precision']} @ {report['config']['clock_mhz']:g} MHz", hdr,
             "-" * len(hdr)]
    for d in report["layers"][:max_rows]:
        lines.append(
            f"{d['name'][:28]:<28} {str(d['m']) + 'x' + str(d['k']) + 'x' + str(d['n']):>16} "
            f"{d['folds']:>7} {d['total_cycles']:>12} {d['stall_cycles']:>10} "
            f"{100 * d['utilization']:>6.1f} {100 * d['mapping_efficiency']:>6.1f} "
            f"{d['sram_read_bytes'] / 1024:>8.0f}/{d['sram_write_bytes'] / 1024:<8.0f} "
            f"{d['dram_read_bytes'] / 1024:>8.0f}/{d['dram_write_bytes'] / 1024:<8.0f} "
            f"{d['energy_pj'] * 1e-6:>10.2f}")
    t = report["total"]
    lines.append("-" * len(hdr))
    lines.append(
        f"{'total':<28} {'':>16} {t['folds']:>7} {t['total_cycles']:>12} {t['stall_cycles']:>10} "
        f"{100 * t['utilization']:>6.1f} {100 * t['mapping_efficiency']:>6.1f} "
        f"{t['sram_read_bytes'] / 1024:>8.0f}/{t['sram_write_bytes'] / 1024:<8.0f} "
        f"{t['dram_read_bytes'] / 1024:>8.0f}/{t['dram_write_bytes'] / 1024:<8.0f} "
        f"{t['energy_uj']:>10.2f}")
    lines.append(f"time at {report['config']['clock_mhz']:g} MHz: {t['time_s'] * 1e3:.3f} ms")
    return "\n".join(lines)


def save_report(report: dict, path: str) -> None:
    """Write the report as JSON (``llmc run --report out.json``)."""
    with open(path, "w") as fh:
        json.dump(report, fh, indent=1)


def plot_report(report: dict, path: str) -> None:
    """SVG bars of cycles per layer with the PE utilization as a line (no plotting library)."""
    layers = report["layers"]
    n = max(len(layers), 1)
    w, h, pad = max(480, 40 + 14 * n), 360, 50
    top = max([d["total_cycles"] for d in layers] + [1])
    bw = (w - 2 * pad) / n
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           'font-family="sans-serif" font-size="9">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="16" text-anchor="middle" font-size="13">systolic '
           f'{report["config"]["name"]}: cycles (bars, max {top}) and PE utilization % '
           '(line)</text>',
           f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>']
    pts = []
    for i, d in enumerate(layers):
        bh = (h - 2 * pad) * d["total_cycles"] / top
        x = pad + i * bw
        out.append(f'<rect x="{x + 1:.1f}" y="{h - pad - bh:.1f}" width="{bw - 2:.1f}" '
                   f'height="{bh:.1f}" fill="#1f77b4"><title>{d["name"]}: {d["total_cycles"]} '
                   f'cycles, {100 * d["utilization"]:.1f}% util</title></rect>')
        pts.append(f"{x + bw / 2:.1f},{h - pad - (h - 2 * pad) * d['utilization']:.1f}")
    if pts:
        out.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="#d62728"/>')
    out.append("</svg>")
    with open(path, "w") as fh:
        fh.write("\n".join(out))

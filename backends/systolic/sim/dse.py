"""Design-space exploration: the model's array layers on every (array, SRAM) design point.

Why one functional run: the int8 results of the array do not depend on its size or buffers
(integer sums are exact), so a model is compiled and run once to record its GEMM shapes, and
the cycle/traffic/energy model is evaluated for each design point on those shapes; this is
what compiling and simulating per design point would report, at a fraction of the cost.
Area proxy: the number of PEs (rows x cols).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from llmc.errors import InputError

from .config import SystolicConfig, load_config
from .cycles import GemmStats, gemm_stats


def parse_arrays(text: str) -> list[tuple[int, int]]:
    """``"8x8,16x16"`` -> [(8, 8), (16, 16)]."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            r, c = part.lower().split("x")
            out.append((int(r), int(c)))
        except ValueError:
            raise InputError(f"--arrays: {part!r} is not ROWSxCOLS (e.g. 32x32)") from None
    return out


def parse_sizes(text: str) -> list[float]:
    """``"64K,256K,1M"`` -> KiB values [64, 256, 1024]."""
    mult = {"K": 1, "M": 1024, "G": 1024 * 1024}
    out = []
    for part in filter(None, (p.strip().upper() for p in text.split(","))):
        unit = part[-1] if part[-1] in mult else "K"
        num = part[:-1] if part[-1] in mult or part.endswith("B") else part
        try:
            out.append(float(num.rstrip("B")) * mult[unit])
        except ValueError:
            raise InputError(f"--sram: {part!r} is not a size such as 64K or 1M") from None
    return out


def sram_energy_pj_per_byte(kib: float) -> float:
    """SRAM read energy per byte for an array of ``kib``: log-log interpolation of Horowitz's
    (ISSCC 2014) 10 pJ / 64 bit at 8 KiB and 100 pJ / 64 bit at 1 MiB (bigger arrays, longer
    wires), so the sweep sees larger buffers cost energy per access."""
    import math

    slope = math.log(10.0) / math.log(128.0)
    return 1.25 * (max(kib, 1.0) / 8.0) ** slope


def explore(shapes: Sequence[tuple[str, int, int, int]], arrays: Sequence[tuple[int, int]],
            srams_kib: Sequence[float], base: "SystolicConfig | str | None" = None) -> list[dict]:
    """One row per design point: latency, energy, utilization, PEs. ``srams_kib`` sets each of
    the ifmap, filter and ofmap SRAMs (the accumulator keeps the base's ratio to ofmap; the
    SRAM energy per byte follows :func:`sram_energy_pj_per_byte`)."""
    cfg0 = load_config(base)
    rows = []
    for r, c in arrays:
        for kib in srams_kib:
            cfg = replace(cfg0, name=f"{r}x{c}/{kib:g}K", rows=r, cols=c, ifmap_sram_kib=kib,
                          filter_sram_kib=kib, ofmap_sram_kib=kib,
                          accumulator_kib=kib * cfg0.accumulator_kib / cfg0.ofmap_sram_kib,
                          energy_sram_pj_per_byte=sram_energy_pj_per_byte(kib))
            stats: list[GemmStats] = [gemm_stats(m, k, n, cfg, name) for name, m, k, n in shapes]
            cycles = sum(s.total_cycles for s in stats)
            busy = sum(s.compute_cycles + s.stall_cycles for s in stats)
            macs = sum(s.macs for s in stats)
            rows.append({"array": f"{r}x{c}", "sram_kib": kib, "pes": r * c, "cycles": cycles,
                         "stall_cycles": sum(s.stall_cycles for s in stats),
                         "latency_ms": cycles / (cfg.clock_mhz * 1e3),
                         "energy_uj": sum(s.energy_pj for s in stats) * 1e-6,
                         "utilization": macs / (r * c * busy) if busy else 0.0,
                         "dram_kib": sum(s.dram_read_bytes + s.dram_write_bytes
                                         for s in stats) / 1024})
    mark_pareto(rows)
    return rows


def mark_pareto(rows: list[dict]) -> None:
    """Flag the points no other point beats on latency, energy and area (PEs) at once."""
    for a in rows:
        a["pareto"] = not any(
            b is not a and b["latency_ms"] <= a["latency_ms"] and
            b["energy_uj"] <= a["energy_uj"] and b["pes"] <= a["pes"] and
            (b["latency_ms"], b["energy_uj"], b["pes"]) != (a["latency_ms"], a["energy_uj"],
                                                            a["pes"])
            for b in rows)


def format_dse(rows: list[dict]) -> str:
    """The DSE table (``llmc dse`` prints it)."""
    lines = [f"{'array':>9} {'SRAM KiB':>9} {'PEs':>6} {'cycles':>12} {'stall':>10} "
             f"{'latency ms':>11} {'energy uJ':>10} {'util%':>6} {'DRAM KiB':>10} pareto"]
    for r in rows:
        lines.append(f"{r['array']:>9} {r['sram_kib']:>9g} {r['pes']:>6} {r['cycles']:>12} "
                     f"{r['stall_cycles']:>10} {r['latency_ms']:>11.3f} {r['energy_uj']:>10.1f} "
                     f"{100 * r['utilization']:>6.1f} {r['dram_kib']:>10.0f} "
                     f"{'*' if r['pareto'] else ''}")
    return "\n".join(lines)


def pareto_svg(rows: list[dict], path: str, title: str = "llmc dse") -> None:
    """Latency vs energy scatter (log-log), marker area ~ PEs, Pareto points filled; plain SVG
    so the plot needs no plotting library."""
    import math

    w, h, pad = 640, 440, 60
    lx = [math.log10(max(r["latency_ms"], 1e-9)) for r in rows]
    ly = [math.log10(max(r["energy_uj"], 1e-9)) for r in rows]
    x0, x1 = min(lx), max(lx) + 1e-9
    y0, y1 = min(ly), max(ly) + 1e-9
    sx = lambda v: pad + (v - x0) / (x1 - x0) * (w - 2 * pad)      # noqa: E731
    sy = lambda v: h - pad - (v - y0) / (y1 - y0) * (h - 2 * pad)  # noqa: E731
    maxpe = max(r["pes"] for r in rows)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="10">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
           f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
           f'<text x="{w / 2}" y="{h - 15}" text-anchor="middle">latency (ms, log)  '
           f'{10 ** x0:.3g} .. {10 ** x1:.3g}</text>',
           f'<text x="15" y="{h / 2}" transform="rotate(-90 15 {h / 2})" text-anchor="middle">'
           f'energy (uJ, log) {10 ** y0:.3g} .. {10 ** y1:.3g}</text>']
    for r, a, b in zip(rows, lx, ly):
        rad = 3 + 12 * math.sqrt(r["pes"] / maxpe)
        fill = "tab:blue" if r["pareto"] else "none"
        out.append(f'<circle cx="{sx(a):.1f}" cy="{sy(b):.1f}" r="{rad:.1f}" '
                   f'fill="{"#1f77b4" if fill != "none" else "none"}" fill-opacity="0.5" '
                   f'stroke="#1f77b4"/>')
        out.append(f'<text x="{sx(a) + rad + 2:.1f}" y="{sy(b) + 3:.1f}">{r["array"]}/'
                   f'{r["sram_kib"]:g}K</text>')
    out.append("</svg>")
    with open(path, "w") as fh:
        fh.write("\n".join(out))

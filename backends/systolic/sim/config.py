"""The simulated machine's description (array, buffers, DRAM, clock, energy) and its presets.

Why a dataclass with presets and JSON: ``--systolic-config tpu-like|edge|FILE.json`` must name a
machine reproducibly, and the DSE sweeps variations of one (``dataclasses.replace``).

Energy defaults come from M. Horowitz, "Computing's energy problem (and what we can do about
it)", ISSCC 2014 (45 nm, 0.9 V): 8-bit integer multiply 0.2 pJ + 32-bit add 0.1 pJ -> an int8
MAC with int32 accumulation ~0.3 pJ; a bf16 MAC ~ fp16 multiply (1.1 pJ) + fp32 add (0.9 pJ)
~2.0 pJ; SRAM reads of 64 bits cost ~10 pJ from an 8 KiB array and ~100 pJ from a 1 MiB array
(1.25 and 12.5 pJ/byte); DRAM ~1.3-2.6 nJ per 64 bits (160-320 pJ/byte; 160 used here).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace

from llmc.errors import InputError

DATAFLOWS = ("ws", "os", "is")
DRAM_MODELS = ("scalesim", "fold")
PRECISIONS = ("int8", "bf16")
KIB = 1024


@dataclass(frozen=True)
class SystolicConfig:
    """One design point. Buffer sizes are in KiB and are double-buffered (half holds the
    fold being computed, half the one being loaded)."""

    name: str = "custom"
    rows: int = 32
    cols: int = 32
    dataflow: str = "ws"               # ws | os | is
    precision: str = "int8"            # int8 (int32 acc) | bf16 (fp32 acc)
    ifmap_sram_kib: float = 256
    filter_sram_kib: float = 256
    ofmap_sram_kib: float = 128
    accumulator_kib: float = 64
    dram_bytes_per_cycle: float = 16.0
    dram_model: str = "scalesim"       # scalesim (SCALE-Sim 3.0's buffers) | fold (llmc's)
    clock_mhz: float = 1000.0
    energy_mac_pj: float = 0.3         # Horowitz 2014: int8 mul 0.2 + int32 add 0.1
    energy_sram_pj_per_byte: float = 1.25   # 8 KiB SRAM, 10 pJ / 64 bit
    energy_dram_pj_per_byte: float = 160.0  # DRAM 1.3 nJ / 64 bit

    def __post_init__(self) -> None:
        if self.dataflow not in DATAFLOWS:
            raise InputError(f"systolic config {self.name!r}: dataflow {self.dataflow!r} is not "
                             f"one of {', '.join(DATAFLOWS)}")
        if self.dram_model not in DRAM_MODELS:
            raise InputError(f"systolic config {self.name!r}: dram_model {self.dram_model!r} is "
                             f"not one of {', '.join(DRAM_MODELS)}")
        if self.precision not in PRECISIONS:
            raise InputError(f"systolic config {self.name!r}: precision {self.precision!r} is "
                             f"not one of {', '.join(PRECISIONS)}")
        if self.rows < 1 or self.cols < 1:
            raise InputError(f"systolic config {self.name!r}: array {self.rows}x{self.cols} "
                             "must have at least one row and column")
        if self.dram_bytes_per_cycle <= 0 or self.clock_mhz <= 0:
            raise InputError(f"systolic config {self.name!r}: DRAM bandwidth and clock must "
                             "be positive")

    @property
    def elem_bytes(self) -> int:
        """Bytes of one operand element on the array (int8: 1, bf16: 2)."""
        return 1 if self.precision == "int8" else 2

    @property
    def acc_bytes(self) -> int:
        """Bytes of one accumulator / output element (int32 or fp32)."""
        return 4

    @property
    def peak_ops_per_s(self) -> float:
        """2 ops (multiply + add) per MAC per cycle."""
        return 2.0 * self.rows * self.cols * self.clock_mhz * 1e6

    def to_dict(self) -> dict:
        return asdict(self)


# TPU v1 (Jouppi et al., "In-Datacenter Performance Analysis of a Tensor Processing Unit",
# ISCA 2017): 256x256 int8 MACs, weight stationary, 700 MHz (92 TOPS), 24 MiB unified buffer
# (activations in and out), 4 MiB accumulators, weight FIFO of four 64 KiB tiles, 34 GB/s
# DRAM (34e9 / 700e6 = 48.6 bytes per cycle). Large SRAMs: ~100 pJ per 64 bits (Horowitz).
TPU_LIKE = SystolicConfig(
    name="tpu-like", rows=256, cols=256, dataflow="ws", precision="int8",
    ifmap_sram_kib=12 * KIB, filter_sram_kib=256, ofmap_sram_kib=12 * KIB,
    accumulator_kib=4 * KIB, dram_bytes_per_cycle=34e9 / 700e6, clock_mhz=700.0,
    energy_mac_pj=0.3, energy_sram_pj_per_byte=12.5, energy_dram_pj_per_byte=160.0)

# Gemmini's default configuration (Genc et al., "Gemmini: Enabling Systematic Deep-Learning
# Architecture Evaluation via Full-Stack Integration", DAC 2021): 16x16 int8 mesh, WS or OS,
# 256 KiB scratchpad (split here between inputs and weights), 64 KiB accumulator, a 128-bit
# (16 bytes per cycle) system bus, 1 GHz.
EDGE = SystolicConfig(
    name="edge", rows=16, cols=16, dataflow="ws", precision="int8",
    ifmap_sram_kib=128, filter_sram_kib=128, ofmap_sram_kib=64, accumulator_kib=64,
    dram_bytes_per_cycle=16.0, clock_mhz=1000.0,
    energy_mac_pj=0.3, energy_sram_pj_per_byte=1.25, energy_dram_pj_per_byte=160.0)

PRESETS: dict[str, SystolicConfig] = {"tpu-like": TPU_LIKE, "edge": EDGE}


def load_config(spec: "str | dict | SystolicConfig | None") -> SystolicConfig:
    """A config from a preset name, a JSON file path, a dict, or a config (returned as is).

    A JSON file may name a ``"base"`` preset and override some fields.
    """
    if spec is None:
        return EDGE
    if isinstance(spec, SystolicConfig):
        return spec
    if isinstance(spec, str):
        if spec in PRESETS:
            return PRESETS[spec]
        if not os.path.exists(spec):
            raise InputError(f"--systolic-config {spec!r}: not a preset "
                             f"({', '.join(PRESETS)}) and no such JSON file")
        try:
            with open(spec) as fh:
                spec = json.load(fh)
        except (OSError, ValueError) as exc:
            raise InputError(f"--systolic-config {spec!r}: cannot read JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise InputError("--systolic-config: expected a preset name, a JSON file or an object")
    spec = dict(spec)
    base = PRESETS.get(spec.pop("base", ""), SystolicConfig())
    known = {f.name for f in fields(SystolicConfig)}
    bad = sorted(set(spec) - known)
    if bad:
        raise InputError(f"--systolic-config: unknown field(s) {', '.join(bad)}; "
                         f"known: {', '.join(sorted(known))}")
    return replace(base, **spec)

"""Systolic-array backend: GEMMs on a simulated int8 array, everything else on the x86 host.

``build(graph, systolic_config=..., calibration=...)`` and ``target_manifest(result)`` follow the
backend contract; :mod:`.sim` is the simulator (config, functional model, cycle model, reports,
design-space exploration); :mod:`.runtime_hook` registers the packed function the artifact calls.
"""
from .build import BuildResult, build, prepare_graph, target_manifest, unfuse
from .sim.config import PRESETS, SystolicConfig, load_config

__all__ = ["BuildResult", "build", "prepare_graph", "target_manifest", "unfuse", "PRESETS",
           "SystolicConfig", "load_config"]

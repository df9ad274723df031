"""The Python API: ``llmc.compile(model, target=...)`` -> an :class:`Artifact`."""
from __future__ import annotations

import json
import os
from typing import Any

from .frontend import import_model
from .ir import Graph
from .pipeline import CompileOptions, compile_graph


class Artifact:
    """A compiled model in memory: manifest + members, ready to save or to run.

    ``save`` writes the one-file artifact; ``run`` loads it through the same runtime that
    ``llmc.load`` uses, so what a test checks here is what ships.
    """

    def __init__(self, manifest: dict, members: dict[str, bytes], graph: Graph | None = None,
                 report: Any = None, precision_info: dict | None = None) -> None:
        self.manifest = manifest
        self.members = members
        self.graph = graph
        self.report = report
        self.precision_info = precision_info  # apply_precision's info (+ the fp32 graph)
        self._model = None

    def to_bytes(self) -> bytes:
        import io

        from llmc.runtime.format import write_artifact

        buf = io.BytesIO()
        write_artifact(buf, self.manifest, self.members)
        return buf.getvalue()

    def save(self, path: str | os.PathLike) -> str:
        """Write the artifact file (atomically: a crash never leaves half a file)."""
        path = os.fspath(path)
        tmp = path + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(self.to_bytes())
        os.replace(tmp, path)
        return path

    def load(self):
        """The runnable model (loaded once, cached)."""
        if self._model is None:
            from llmc.runtime import load_bytes
            self._model = load_bytes(self.to_bytes(), where=f"<compiled {self.manifest.get('model_name')}>")
        return self._model

    def run(self, *args: Any, **kwargs: Any):
        """Run on numpy inputs (positional, a dict by name, or keywords); returns a dict."""
        return self.load().run(*args, **kwargs)

    def benchmark(self, *args: Any, **kwargs: Any) -> dict:
        return self.load().benchmark(*args, **kwargs)

    def __repr__(self) -> str:
        m = self.manifest
        return (f"Artifact({m.get('model_name')!r}, target={m['target']['name']}, "
                f"inputs={[i['name'] for i in m['inputs']]}, outputs={[o['name'] for o in m['outputs']]})")

    def accuracy_report(self, batches: Any = None, classifier: bool = False):
        """Compare this (precision-lowered) artifact against its fp32 graph on ``batches``
        (default: the calibration data it was compiled with)."""
        from .accuracy import accuracy_report
        from .calibration import load_batches

        info = self.precision_info
        if not info:
            from .errors import LlmcError
            raise LlmcError("this artifact was compiled at fp32; there is nothing to compare")
        fp32 = info["fp32_graph"]
        data = load_batches(batches if batches is not None else info.get("calib_source"), fp32)
        return accuracy_report(fp32, self.graph, data, self.manifest["precision"]["mode"],
                               run=self.run, classifier=classifier,
                               info={k: v for k, v in info.items() if k != "fp32_graph"})

    def manifest_json(self) -> str:
        return json.dumps(self.manifest, indent=1, sort_keys=True)


def compile(model: Any, target: str = "x86", example_inputs: Any = None, *,
            dynamic_shapes: Any = None, input_shapes: dict | None = None,
            mcpu: str | None = None, arch: str | None = None, opt_level: str = "O3", passes: list[str] | None = None,
            disable_passes: list[str] | None = None, plan_dims: dict[str, int] | None = None,
            precision: str = "fp32", calib: Any = None, calibrator: str = "minmax",
            smoothquant: bool = False, group_size: int = 128, prune: str | None = None,
            accuracy_budget: str | None = None, systolic_config: str | None = None,
            tuning_db: str | None = None) -> Artifact:
    """Compile a model for a target.

    ``model``: an ONNX file path, an ``onnx.ModelProto``, a ``torch.nn.Module`` (with
    ``example_inputs``, and ``dynamic_shapes`` as for ``torch.export``), a
    ``torch.export.ExportedProgram`` or an llmc ``Graph``. ``input_shapes`` fixes ONNX input
    dims (name -> list of ints/symbol names). ``mcpu`` picks the x86 CPU (default: this host's);
    ``arch`` the CUDA GPU (sm_80..sm_90; default: the local GPU's, else sm_80).
    ``opt_level`` ("O0".."O3") or an explicit ``passes`` list choose the graph passes;
    ``disable_passes`` removes some; ``plan_dims`` gives symbol values (e.g. {"seq": 128}) at
    which the memory plan is reported. ``Artifact.report`` holds what each pass did.
    ``tuning_db`` (x86): a `llmc tune` directory whose faster kernels replace the defaults.
    """
    graph = import_model(model, example_inputs, dynamic_shapes=dynamic_shapes, input_shapes=input_shapes)
    return compile_graph(graph, CompileOptions(target=target, mcpu=mcpu, arch=arch, opt_level=opt_level,
                                               passes=passes, disable_passes=list(disable_passes or []),
                                               plan_dims=plan_dims, precision=precision, calib=calib,
                                               calibrator=calibrator, smoothquant=smoothquant,
                                               group_size=group_size, prune=prune,
                                               accuracy_budget=accuracy_budget,
                                               systolic_config=systolic_config,
                                               tuning_db=tuning_db))

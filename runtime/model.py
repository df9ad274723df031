"""A loaded, runnable compiled model: TVM's Relax VM plus the weights, behind a numpy API."""
from __future__ import annotations

import os
import tempfile
import time
from typing import Any, Mapping, Sequence

import numpy as np

from llmc.errors import ArtifactError, InputError

_NUMPY_DTYPES = {"bool": np.bool_, "int8": np.int8, "int16": np.int16, "int32": np.int32,
                 "int64": np.int64, "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32,
                 "uint64": np.uint64, "float16": np.float16, "float32": np.float32,
                 "float64": np.float64}


def numpy_dtype(name: str) -> np.dtype:
    """numpy dtype for a manifest dtype name (bfloat16 through ml_dtypes if installed)."""
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    try:
        return np.dtype(_NUMPY_DTYPES[name])
    except KeyError:
        raise ArtifactError(f"manifest names unknown dtype {name!r}") from None


class TensorSpec:
    """Name, dtype and shape (ints, or symbol names / expressions as text) of one model input or output."""

    def __init__(self, entry: Mapping[str, Any]) -> None:
        try:
            self.name: str = str(entry["name"])
            self.dtype: str = str(entry["dtype"])
            self.shape: list = [d if isinstance(d, int) else str(d) for d in entry["shape"]]
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"manifest tensor entry {entry!r} is malformed ({exc})") from None
        self.np_dtype = numpy_dtype(self.dtype)

    def __repr__(self) -> str:
        return f"{self.name}: {self.dtype}[{', '.join(str(d) for d in self.shape)}]"


class CompiledModel:
    """What ``llmc.load`` returns: run a compiled model on numpy inputs.

    The VM and the weights are set up once at load; ``run`` only validates inputs, copies them
    to the device and calls ``main``.
    """

    def __init__(self, manifest: dict, library: bytes, weights: Mapping[str, np.ndarray],
                 where: str, device: str = "cpu") -> None:
        import tvm.runtime
        from tvm.runtime.vm import VirtualMachine

        self.manifest = manifest
        self.where = where
        self.inputs = [TensorSpec(e) for e in manifest.get("inputs", [])]
        self.outputs = [TensorSpec(e) for e in manifest.get("outputs", [])]
        self._device = tvm.runtime.device(device, 0)
        self._tvm = tvm.runtime
        with tempfile.TemporaryDirectory(prefix="llmc-") as tmp:
            lib_path = os.path.join(tmp, "model.so")
            with open(lib_path, "wb") as fh:
                fh.write(library)
            try:
                lib = tvm.runtime.load_module(lib_path)
            except Exception as exc:  # TVM raises its own error types
                raise ArtifactError(f"{where}: the compiled library cannot be loaded ({exc})") from None
        self._vm = VirtualMachine(lib, self._device)
        self._main = self._vm["main"]
        param_names = manifest.get("params", [])
        missing = [p for p in param_names if p not in weights]
        if missing:
            raise ArtifactError(f"{where}: weights for {missing[:5]} are missing")
        self._params = [tvm.runtime.tensor(np.require(weights[p], requirements="C"), self._device)
                        for p in param_names]

    # ------------------------------------------------------------------ inputs
    def _normalize(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[np.ndarray]:
        if len(args) == 1 and isinstance(args[0], Mapping) and not kwargs:
            named = dict(args[0])
        elif args and kwargs:
            raise InputError("pass inputs either positionally or by name, not both")
        elif args:
            if len(args) != len(self.inputs):
                raise InputError(f"the model takes {len(self.inputs)} inputs "
                                 f"({', '.join(map(repr, self.inputs))}), got {len(args)}")
            named = {spec.name: a for spec, a in zip(self.inputs, args)}
        else:
            named = dict(kwargs)
        unknown = set(named) - {s.name for s in self.inputs}
        if unknown:
            raise InputError(f"unknown input name(s) {sorted(unknown)}; the model takes "
                             f"{[s.name for s in self.inputs]}")
        arrays = []
        bindings: dict[str, int] = {}
        for spec in self.inputs:
            if spec.name not in named:
                raise InputError(f"missing input {spec.name!r} ({spec})")
            arr = named[spec.name]
            if not isinstance(arr, np.ndarray):
                arr = np.asarray(arr)
                if arr.dtype != spec.np_dtype and np.can_cast(arr.dtype, spec.np_dtype, "same_kind"):
                    arr = arr.astype(spec.np_dtype)
            if arr.dtype != spec.np_dtype:
                raise InputError(f"input {spec.name!r} has dtype {arr.dtype}, the model expects "
                                 f"{spec.dtype}")
            _check_shape(spec, arr.shape, bindings)
            arrays.append(np.require(arr, requirements="C"))
        return arrays

    # ------------------------------------------------------------------ running
    def run(self, *args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        """Run the model: positional arrays, one dict by input name, or keywords.

        Returns output name -> numpy array, in the model's output order.
        """
        arrays = self._normalize(args, kwargs)
        tensors = [self._tvm.tensor(a, self._device) for a in arrays]
        result = self._call_main(tensors)
        outs = list(result) if not hasattr(result, "numpy") else [result]
        if len(outs) != len(self.outputs):
            raise ArtifactError(f"{self.where}: the library returned {len(outs)} outputs, the "
                                f"manifest lists {len(self.outputs)}")
        return {spec.name: out.numpy() for spec, out in zip(self.outputs, outs)}

    __call__ = run

    def _call_main(self, tensors: list) -> Any:
        """Call the library's ``main``; its own checks (argument count, shapes) firing after
        the inputs passed ours means the manifest and the library disagree: an ArtifactError."""
        try:
            return self._main(*tensors, *self._params)
        except Exception as exc:  # TVM's error classes (RuntimeError, InternalError, ...)
            msg = str(exc).strip().splitlines()
            raise ArtifactError(f"{self.where}: the compiled library refused the call "
                                f"({msg[-1][:300] if msg else type(exc).__name__}): either the "
                                "inputs break a shape constraint the model imposes between dims "
                                "(see the message), or the manifest does not match the library "
                                "(an edited artifact)") from None

    def benchmark(self, *args: Any, warmup: int = 3, repeat: int = 20, **kwargs: Any) -> dict[str, float]:
        """Time ``run`` end to end (host copies included); returns median/mean/min/max in ms."""
        arrays = self._normalize(args, kwargs)
        tensors = [self._tvm.tensor(a, self._device) for a in arrays]
        for _ in range(warmup):
            self._call_main(tensors)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            self._main(*tensors, *self._params)
            self._device.sync()
            times.append((time.perf_counter() - t0) * 1e3)
        arr = np.asarray(times)
        return {"median_ms": float(np.median(arr)), "mean_ms": float(arr.mean()),
                "min_ms": float(arr.min()), "max_ms": float(arr.max()), "repeat": repeat}

    def __repr__(self) -> str:
        return (f"CompiledModel({self.where}, target={self.manifest.get('target', {}).get('name')}, "
                f"inputs={self.inputs}, outputs={self.outputs})")


def _check_shape(spec: TensorSpec, shape: tuple, bindings: dict[str, int]) -> None:
    if len(shape) != len(spec.shape):
        raise InputError(f"input {spec.name!r} has shape {list(shape)}, the model expects "
                         f"{spec.shape} (rank {len(spec.shape)})")
    for axis, (want, got) in enumerate(zip(spec.shape, shape)):
        if isinstance(want, int):
            if want != got:
                raise InputError(f"input {spec.name!r} has shape {list(shape)}, the model expects "
                                 f"{spec.shape} (axis {axis} must be {want})")
        elif want.isidentifier():
            prev = bindings.setdefault(want, int(got))
            if prev != got:
                raise InputError(f"input {spec.name!r} axis {axis} is {got}, but dim {want!r} is "
                                 f"{prev} in an earlier input")
            if got == 0:
                raise InputError(f"input {spec.name!r} axis {axis} ({want}) is 0; dims must be >= 1")

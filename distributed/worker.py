"""What runs inside a Ray actor: load one artifact, run it on named inputs.

Plain class, no Ray import: the pipeline and data-parallel drivers wrap it with
``ray.remote``; tests can use it directly. Only numpy arrays, bytes and str cross process
boundaries (Ray serializes those itself); no llmc object is pickled.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np


class ArtifactWorker:
    """Holds one loaded artifact. ``source`` is an artifact path or its bytes."""

    def __init__(self, source: str | bytes, threads: int | None = None,
                 input_names: Sequence[str] | None = None) -> None:
        if threads:
            # before the TVM runtime starts its pool: one actor per core shares the machine
            os.environ["TVM_NUM_THREADS"] = str(threads)
        from llmc.runtime import load, load_bytes

        if isinstance(source, (bytes, bytearray, memoryview)):
            self.model = load_bytes(bytes(source), where="<artifact shipped to a Ray actor>")
        else:
            self.model = load(source)
        self.input_names = list(input_names) if input_names is not None else \
            [s.name for s in self.model.inputs]

    def pid(self) -> int:
        """The worker's process id (tests kill it)."""
        return os.getpid()

    def run(self, *envs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Merge the value dicts handed in (graph inputs, earlier stages' outputs), pick this
        artifact's inputs by name and run it."""
        merged: dict[str, Any] = {}
        for env in envs:
            merged.update(env)
        return self.model.run({n: merged[n] for n in self.input_names})

    def run_item(self, item: Any) -> dict[str, np.ndarray]:
        """One data-parallel item: a dict of arrays, a list of arrays, or an ``.npz`` path."""
        if isinstance(item, (str, os.PathLike)):
            item = load_item(item)
        return _run_any(self.model, item)


def load_item(item: Any) -> dict[str, np.ndarray]:
    """An ``.npz`` shard path -> its arrays by name (no pickle)."""
    with np.load(os.fspath(item), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _run_any(model: Any, item: Any) -> dict[str, np.ndarray]:
    if isinstance(item, Mapping):
        return model.run(dict(item))
    if isinstance(item, (list, tuple)):
        return model.run(*item)
    return model.run(item)

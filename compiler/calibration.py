"""Calibration data: loading batches and observing intermediate values on them.

Why its own module: int8 activation scales, SmoothQuant factors, per-layer sensitivity and the
accuracy report all need the same thing: the model's inputs for a few representative batches
(``--calib data.npz`` or an iterable in the API) and the values inside the graph on them.
The numpy reference interpreter is the observer: it is the oracle, needs no build and sees
every intermediate value.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .dtypes import to_numpy
from .errors import InputError
from .interpreter import bind_symbols, run_reference
from .ir import Graph

Batch = dict[str, np.ndarray]


def load_batches(source: Any, graph: Graph) -> list[Batch]:
    """Calibration batches for ``graph`` from an .npz path, one dict, or an iterable of dicts.

    An .npz holds one array per graph input (by name). An array with one more dim than the
    input is a stack of batches along axis 0; otherwise it is a single batch. Dtypes are cast
    to the graph's (token ids saved as int32 still work).
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise InputError(f"calibration file {path!r} does not exist")
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        missing = [n for n in graph.inputs if n not in arrays]
        if missing:
            raise InputError(f"calibration file {path!r} lacks inputs {missing}; it has "
                             f"{sorted(arrays)} and the model takes {graph.inputs}")
        stacked = {n: arrays[n].ndim == graph.types[n].rank + 1 for n in graph.inputs}
        if any(stacked.values()) and not all(stacked.values()):
            raise InputError(f"calibration file {path!r}: stack every input along a leading "
                             "batch axis or none of them")
        if all(stacked.values()):
            count = {arrays[n].shape[0] for n in graph.inputs}
            if len(count) != 1:
                raise InputError(f"calibration file {path!r}: inputs hold different numbers "
                                 f"of batches {sorted(count)}")
            batches = [{n: arrays[n][i] for n in graph.inputs} for i in range(count.pop())]
        else:
            batches = [{n: arrays[n] for n in graph.inputs}]
    elif isinstance(source, Mapping):
        batches = [dict(source)]
    else:
        batches = [dict(b) for b in source]
    if not batches:
        raise InputError("calibration data holds no batch")
    out = []
    for b in batches:
        out.append({n: np.asarray(b[n]).astype(to_numpy(graph.types[n].dtype), copy=False)
                    for n in graph.inputs})
        bind_symbols(graph, out[-1])  # shape/dtype check with the interpreter's messages
    return out


def save_batches(path: str | os.PathLike, batches: Sequence[Batch]) -> str:
    """Write batches as the .npz layout :func:`load_batches` reads (stacked along axis 0)."""
    names = list(batches[0])
    np.savez(path, **{n: np.stack([b[n] for b in batches]) for n in names})
    return os.fspath(path)


def run_with_taps(graph: Graph, inputs: Mapping[str, np.ndarray], taps: Iterable[str]
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run the reference interpreter; returns (outputs, values of the ``taps`` names)."""
    seen: dict = dict.fromkeys(taps)
    outputs = run_reference(graph, inputs, taps=seen)
    return outputs, {k: v for k, v in seen.items() if v is not None}


class ActivationStats:
    """Per-value observations over the calibration batches: rows of the activation (sampled).

    Rows (the last axis is the channel axis of a linear layer's input) are what every
    calibrator and SmoothQuant need: per-tensor distributions and per-channel maxima.
    """

    def __init__(self, max_rows: int = 4096, seed: int = 0) -> None:
        self.max_rows = max_rows
        self.rows: dict[str, list[np.ndarray]] = {}
        self.chan_max: dict[str, np.ndarray] = {}
        self.rng = np.random.default_rng(seed)

    def observe(self, name: str, value: np.ndarray) -> None:
        v = np.asarray(value, np.float32)
        r = v.reshape(-1, v.shape[-1]) if v.ndim else v.reshape(1, 1)
        cm = np.abs(r).max(axis=0)
        self.chan_max[name] = np.maximum(self.chan_max.get(name, cm), cm)
        if r.shape[0] > self.max_rows:
            r = r[self.rng.choice(r.shape[0], self.max_rows, replace=False)]
        self.rows.setdefault(name, []).append(r)

    def samples(self, name: str) -> np.ndarray:
        """All kept rows of ``name`` ([rows, channels])."""
        return np.concatenate(self.rows[name], axis=0)


def collect(graph: Graph, batches: Sequence[Batch], names: Iterable[str]
            ) -> tuple[ActivationStats, list[dict[str, np.ndarray]]]:
    """Observe ``names`` on every batch; also returns the fp32 outputs per batch."""
    names = list(names)
    stats = ActivationStats()
    outputs = []
    for b in batches:
        out, seen = run_with_taps(graph, b, names)
        outputs.append(out)
        for n in names:
            stats.observe(n, seen[n])
    return stats, outputs

"""Lowered precision side by side: llmc fp32 / fp16 / int8 / int4 vs ONNX Runtime fp32 and its
own quantized models (quantize_dynamic, quantize_static), with size and accuracy.

Run: ``TVM_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE python -m bench.precision [--models minilm,gpt2]``.
On a loaded machine, ``TVM_NUM_THREADS=1 ... --clock cpu`` compares CPU time per run of
single-threaded peers (llmc and ONNX Runtime both on one thread): time other processes take
from the core does not count, so ratios stay stable where wall-clock ones do not.
Every figure is the median of N runs in one process, timed in interleaved rounds; each llmc
model goes through the compile pipeline's own graph passes (``-O3``: cleanup, precision
lowering, fusion), as ``llmc compile --precision MODE`` does. Accuracy is cosine / max abs
error of the model output against llmc's fp32 numpy reference on the same inputs.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.common import fair_environment, machine, ort_session  # noqa: E402

fair_environment(2)

import numpy as np  # noqa: E402


def _graph(name: str):
    """(imported fp32 llmc graph, calibration batches, eval batch, onnx path or None)."""
    import torch

    from llmc.frontend import import_model
    from tests import models as M
    calib_ex = None  # calibration inputs other than the measured ones, where we have them
    if name == "minilm":  # only the shipped sentences: calibration = evaluation batch
        ids, mask = M.minilm_tokenize()
        mod, ex = M.minilm(), (ids, mask)
    elif name == "gpt2":
        mod, ex = M.gpt2_block(), (M.gpt2_input(batch=4, seq=32),)
        calib_ex = [(M.gpt2_input(batch=4, seq=32, seed=s),) for s in (1, 2)]
    elif name == "cnn":
        mod, ex = M.resnet_cnn(), (M.resnet_input(batch=8),)
        calib_ex = [(M.resnet_input(batch=8, seed=s),) for s in (1, 2)]
    else:
        raise SystemExit(f"unknown model {name}")
    g = import_model(mod, ex)
    batch = {n: t.numpy() for n, t in zip(g.inputs, ex)}
    onnx_path = os.path.join(tempfile.gettempdir(), f"llmc_bench_{name}.onnx")
    if name == "minilm":
        onnx_path = str(M.minilm_onnx())
    elif not os.path.exists(onnx_path):
        names = list(g.inputs)
        try:
            M.export_onnx(mod, ex, onnx_path, names, ["out"])
        except Exception as exc:  # pragma: no cover
            print(f"# onnx export of {name} failed: {exc}", file=sys.stderr)
            onnx_path = None
    del torch
    calib = [{n: t.numpy() for n, t in zip(g.inputs, c)} for c in calib_ex] if calib_ex \
        else [batch]
    return g, calib, batch, onnx_path


# the options of each --modes entry ("int8-budget": int8 with the layers that break
# cosine 0.99 on the calibration data kept in fp32)
MODES = {"int8": {"calibrator": "percentile", "smoothquant": True},
         "int8-budget": {"calibrator": "percentile", "smoothquant": True,
                         "accuracy_budget": "cosine:0.99"},
         "int4": {"group_size": 32}}


def compile_graph(g, mode: str, calib, **kw):
    """``g`` through the compile pipeline's passes at -O3 with ``--precision mode``."""
    from llmc.passes.layout import layout_options
    from llmc.pipeline import CompileOptions, _optimize
    opts = CompileOptions(precision=mode, calib=calib if mode != "fp32" else None, **kw)
    with layout_options(opts.target):  # as llmc.compile does: x86 convs in NCHW16c
        return _optimize(g.copy(), opts)[0]


def _llmc_fn(g, batch):
    """A no-argument callable running the compiled graph, and its output."""
    import tvm

    from llmc.backends import x86
    r = x86.build(g)
    vm = tvm.relax.VirtualMachine(r.executable, tvm.cpu())
    params = {**g.constants, **(r.params or {})}
    args = [tvm.runtime.tensor(np.require(batch[n], requirements="C")) for n in r.input_names] + \
        [tvm.runtime.tensor(np.require(params[p], requirements="C")) for p in r.param_names]
    out = x86.run(r, batch, g.constants)[g.outputs[0]]
    return (lambda: vm["main"](*args)), out


def _ort_fn(path, batch):
    s = ort_session(path, int(os.environ.get("TVM_NUM_THREADS", "2")))
    feed = {i.name: batch[n] for i, n in zip(s.get_inputs(), batch)}
    return (lambda: s.run(None, feed)), s.run(None, feed)[0]


def interleaved_ms(fns: list, repeat: int, clock: str = "wall") -> list[float]:
    """Median ms of each callable, timed in interleaved rounds (fair under a varying load).

    ``clock="cpu"``: this process's CPU time per call instead of wall time (meaningful as a
    latency for single-threaded runs only).
    """
    import time
    now = time.process_time if clock == "cpu" else time.perf_counter
    for f in fns:
        f()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for i, f in enumerate(fns):
            t0 = now()
            f()
            times[i].append((now() - t0) * 1e3)
    return [float(np.median(t)) for t in times]


def _ort_quantized(path, calib, static: bool) -> str:
    """ORT's own int8 model: quantize_dynamic, or quantize_static calibrated on ``calib``
    (the same batches llmc calibrates on)."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantType, quantize_dynamic,
                                          quantize_static)
    out = path.replace(".onnx", "_static.onnx" if static else "_dynamic.onnx")
    if static:
        import onnx
        names = [i.name for i in onnx.load(path, load_external_data=False).graph.input]

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter(calib)

            def get_next(self):
                b = next(self.it, None)
                return None if b is None else dict(zip(names, b.values()))
        quantize_static(path, out, Reader(), weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8)
    else:
        quantize_dynamic(path, out, weight_type=QuantType.QInt8)
    return out


def _acc(ref, y):
    r, y = ref.astype(np.float64).ravel(), np.asarray(y, np.float64).ravel()
    return f"cos {np.dot(r, y) / np.linalg.norm(r) / np.linalg.norm(y):.5f} " \
           f"maxabs {np.abs(r - y).max():.3g}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="minilm,gpt2")
    ap.add_argument("--modes", default="fp32,fp16,int8,int8-budget,int4")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--no-ort", action="store_true")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: CPU time per run (use with TVM_NUM_THREADS=1 on a loaded host)")
    a = ap.parse_args(argv)
    from llmc.interpreter import run_reference
    from llmc.passes import run_passes
    print(f"# {machine()}; clock {a.clock}; load {os.getloadavg()[0]:.1f}")
    print(f"{'model':8} {'mode':16} {'ms':>9} {'vs llmc fp32':>12} {'weights MB':>10}  accuracy")
    for name in a.models.split(","):
        g, calib, batch, onnx_path = _graph(name)
        clean, _ = run_passes(g.copy(), passes=["constant_fold", "simplify", "constant_fold",
                                                "cse", "dce"])
        ref = run_reference(clean, batch)[clean.outputs[0]]
        rows = []  # (label, callable, output, weight bytes)
        for mode in a.modes.split(","):
            kw = MODES.get(mode, {})
            q = compile_graph(g, mode.split("-")[0], calib, **kw)
            fn, y = _llmc_fn(q, batch)
            rows.append(("llmc " + mode, fn, y, q.constant_bytes()))
        if not a.no_ort and onnx_path is not None:
            for label, static in [("ort fp32", None), ("ort q-dynamic", False),
                                  ("ort q-static", True)]:
                try:
                    p = onnx_path if static is None else _ort_quantized(onnx_path, calib, static)
                    fn, y = _ort_fn(p, batch)
                    rows.append((label, fn, y, os.path.getsize(p)))
                except Exception as exc:
                    print(f"{name:8} {label:16} failed: {type(exc).__name__}: {str(exc)[:120]}")
        ms = interleaved_ms([r[1] for r in rows], a.repeat, a.clock)
        base = ms[0]
        for (label, _, y, size), t in zip(rows, ms):
            print(f"{name:8} {label:16} {t:9.3f} {base / t:11.2f}x {size / 1e6:10.2f}  "
                  f"{_acc(ref, y)}", flush=True)


if __name__ == "__main__":
    main()

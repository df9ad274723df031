"""The README's main job: compile the shipped example model for x86, run it, check it.

Compiles examples/models/tiny_bert.onnx (a BERT encoder exported by torch.onnx with symbolic
batch and sequence) into one .llmc file, loads it with llmc's runtime, runs it on a tokenized
batch at two shapes, and compares every output with ONNX Runtime (fp32: rtol 1e-3, atol 1e-4).
Exits non-zero if anything disagrees.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODEL = os.path.join(HERE, "models", "tiny_bert.onnx")
RTOL, ATOL = 1e-3, 1e-4


def make_inputs(batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 1000, (batch, seq), dtype=np.int64)
    mask = np.ones((batch, seq), np.int64)
    mask[0, seq - seq // 4:] = 0  # the first sequence is padded
    return {"input_ids": ids, "attention_mask": mask}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--output", default=os.path.join("out", "tiny_bert.llmc"))
    args = ap.parse_args()

    import onnxruntime as ort

    import llmc

    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    t0 = time.perf_counter()
    art = llmc.compile(args.model, target="x86")
    art.save(args.output)
    compile_s = time.perf_counter() - t0
    print(f"compiled {os.path.basename(args.model)} for x86 in {compile_s:.1f} s -> {args.output} "
          f"({os.path.getsize(args.output) / 1e6:.2f} MB, {len(art.manifest['kernels'])} kernels)")

    model = llmc.load(args.output)
    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    ok = True
    for batch, seq in [(1, 16), (4, 64)]:
        inputs = make_inputs(batch, seq, seed=batch)
        got = model.run(inputs)
        want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, inputs)))
        for name, ref in want.items():
            err = float(np.max(np.abs(got[name] - ref)))
            close = np.allclose(got[name], ref, rtol=RTOL, atol=ATOL)
            ok &= close
            print(f"  batch={batch} seq={seq} {name}{list(got[name].shape)}: max abs err vs ONNX Runtime "
                  f"{err:.2e} ({'OK' if close else 'MISMATCH'}, rtol {RTOL}, atol {ATOL})")
        llmc_ms = model.benchmark(inputs, repeat=20)["median_ms"]
        times = []
        for _ in range(20):
            t = time.perf_counter()
            sess.run(None, inputs)
            times.append((time.perf_counter() - t) * 1e3)
        ort_ms = float(np.median(times))
        print(f"  latency median: llmc {llmc_ms:.2f} ms, ONNX Runtime {ort_ms:.2f} ms "
              f"(llmc/ORT {llmc_ms / ort_ms:.2f}x)")
    print("result:", "all outputs match ONNX Runtime" if ok else "MISMATCH against ONNX Runtime")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

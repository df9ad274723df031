"""Fuzz for a while with the hypothesis strategies and print the counts (the on-demand run).

    python fuzz/run_hypothesis.py --seconds 600 [--target onnx_model onnx_bytes artifact_bytes artifact_edits]

Each finding (a non-llmc exception, a hang, memory over the limit) is printed once per
signature with the input that caused it saved under fuzz/findings/. Exit status 1 if any.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis.errors import NonInteractiveExampleWarning

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402
import strategies as S  # noqa: E402


def seeds(kind: str) -> list[bytes]:
    ext = {"onnx": "*.onnx", "artifact": "*.artifact"}[kind]
    files = sorted((HERE / "corpus" / kind).glob(ext))
    if not files:
        raise SystemExit(f"no seeds in fuzz/corpus/{kind}; run python fuzz/make_corpus.py")
    return [p.read_bytes() for p in files]


def targets() -> dict:
    """target name -> (strategy, oracle call, how to save an input)."""
    return {
        "onnx_model": (S.onnx_models(), harness.onnx_model, lambda m: m.SerializeToString()),
        "onnx_bytes": (S.mutated(seeds("onnx")), harness.onnx_bytes, bytes),
        "artifact_bytes": (S.mutated(seeds("artifact")), harness.artifact_bytes, bytes),
        "artifact_edits": (S.artifact_edits(seeds("artifact")), harness.artifact_bytes, bytes),
    }


def fuzz(name: str, seconds: float, batch: int = 200, raise_findings: bool = False) -> harness.Stats:
    """Run one target for about ``seconds``; returns its stats (findings recorded, not raised)."""
    strategy, call, dump = targets()[name]
    harness.warm_up()
    harness.STATS = stats = harness.Stats()
    out_dir = HERE / "findings"

    @settings(max_examples=batch, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=["generate"])
    @given(strategy)
    def one(value):
        try:
            harness.check(call, value)
        except harness.FuzzFinding:
            data = dump(value)
            out_dir.mkdir(exist_ok=True)
            (out_dir / f"{name}-{hashlib.sha1(data).hexdigest()[:12]}").write_bytes(data)
            if raise_findings:
                raise

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        one()
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60, help="per target")
    ap.add_argument("--target", nargs="*", default=list(targets()))
    args = ap.parse_args()
    warnings.simplefilter("ignore", NonInteractiveExampleWarning)
    bad = 0
    for name in args.target:
        t0 = time.monotonic()
        stats = fuzz(name, args.seconds)
        print(f"{name}: {stats.summary()} in {time.monotonic() - t0:.0f} s", flush=True)
        for sig, msg in stats.findings.items():
            print(f"  FINDING {sig}: {msg}", flush=True)
        bad += len(stats.findings)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""atheris (libFuzzer) entry points for long, coverage-guided runs on demand.

    pip install atheris
    python fuzz/atheris_targets.py onnx     fuzz/corpus/onnx     -max_total_time=3600
    python fuzz/atheris_targets.py artifact fuzz/corpus/artifact -max_total_time=3600 -rss_limit_mb=4096

Arguments after the target name go to libFuzzer (corpus folders, -runs, -max_total_time,
-timeout, -rss_limit_mb, ...). libFuzzer enforces the time and memory limits per input as well;
the shared oracle (harness.check) turns anything but an llmc error into a crash it reports.
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    import atheris

    if len(sys.argv) < 2 or sys.argv[1] not in ("onnx", "artifact"):
        raise SystemExit("usage: atheris_targets.py {onnx|artifact} [libFuzzer args...]")
    target = sys.argv.pop(1)
    with atheris.instrument_imports(include=["llmc"]):  # coverage of llmc's own code
        import harness
        harness.warm_up()
    call = harness.onnx_bytes if target == "onnx" else harness.artifact_bytes

    def test_one_input(data: bytes) -> None:
        harness.check(call, data)
        if harness.STATS.executions % 2000 == 0:
            print(f"#{harness.STATS.executions} {harness.STATS.summary()}", file=sys.stderr)

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

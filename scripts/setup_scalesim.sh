#!/usr/bin/env bash
# Create .venv-scalesim with SCALE-Sim 3.0.0 (the systolic backend's reference cycle model).
# SCALE-Sim needs numpy<2 and pandas<2.3, so it cannot live in llmc's own environment;
# tests/systolic/test_scalesim.py and bench/scalesim_compare.py run it as a subprocess.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${LLMC_SCALESIM_VENV:-$ROOT/.venv-scalesim}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q "scalesim==3.0.0" "numpy==1.26.4" "pandas<2.3"
"$VENV/bin/python" -c "import scalesim.scale_sim; print('SCALE-Sim ready in $VENV')"

#!/usr/bin/env bash
# The README's test command: set up from scratch, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
export OMP_WAIT_POLICY=PASSIVE
python -m pytest tests -q -m "not conformance_full" --timeout=1800 "$@"

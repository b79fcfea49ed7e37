#!/usr/bin/env bash
# The test command of the README: sets up .venv-test (fresh) and runs the default suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MCJEPA_TEST_VENV:-.venv-test}"
python3 -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e '.[test]'
# Two workers, one test file each at a time (module fixtures such as the 8-device run stay
# single): 1,128 -> 1,001 s of pytest on the 2-core CI machine (docs/benchmarks.md).
python -m pytest -q -n "${MCJEPA_TEST_WORKERS:-2}" --dist loadfile --durations=15 tests "$@"

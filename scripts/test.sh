#!/usr/bin/env bash
# The test command of the README: sets up .venv-test (fresh) and runs the default suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MCJEPA_TEST_VENV:-.venv-test}"
python3 -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e '.[test]'
python -m pytest -q --durations=15 tests "$@"

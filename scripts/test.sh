#!/usr/bin/env bash
# Set up (or reuse) .venv, lint and format-check, then run the whole test suite. Extra
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/bootstrap.sh
ruff check --output-format concise .
ruff format --check .
python -m pytest "$@"

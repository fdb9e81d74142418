#!/usr/bin/env bash
# Set up (or reuse) .venv, then run the main job on embedded data.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/bootstrap.sh
skocl demo "$@"

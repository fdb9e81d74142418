#!/usr/bin/env bash
# Create or reuse .venv and install skocl with what its commands need. Sourced by
# scripts/demo.sh and scripts/test.sh; safe to run again (it reinstalls only when
# pyproject.toml or constraints.txt changed).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SKOCL_VENV:-$root/.venv}"
extras="${SKOCL_EXTRAS:-dev}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
stamp="$venv/.skocl-installed"
want="$(cat "$root/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -c1-16) $extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
    # torch first, pinned: an unpinned resolve would pull a multi-GB CUDA build.
    "${pip[@]}" install -c "$root/constraints.txt" torch
    "${pip[@]}" install -c "$root/constraints.txt" -e "$root[$extras]"
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"

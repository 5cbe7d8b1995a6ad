#!/usr/bin/env bash
# Set up a development environment for berg and run the main job as a smoke test.
#
# Usage: scripts/dev-install.sh [VENV_DIR]        (default: .venv at the repository root)
#
# Creates a virtual environment with python3 (3.11; override with PYTHON=...), installs
# torch==2.14.1 and torchvision==0.29.1 first (pinned, so no other plugin's requirement can pull
# in another build), then, editable, in one pip call: berg-core with its `test` extra, every
# plugin under plugins/ that has a pyproject.toml (except plugins/berg-brainscore, which needs an
# environment of its own, and folders starting with "_", such as the copy-me plugins/_template),
# and the test plugin tests/plugins/berg-testplugin. Finally runs `berg plugins`, `berg list` and
# `berg demo` (a simulated subject trained and encoded end to end, offline, about 2 minutes).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv}"
case "$VENV" in
    /*) ;;
    *) VENV="$PWD/$VENV" ;;
esac

if [ -z "${PYTHON:-}" ]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"berg needs Python >= 3.10; {sys.executable} is {sys.version.split()[0]}")
PY

echo "== creating $VENV with $("$PYTHON" --version 2>&1)"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --upgrade pip

echo "== installing torch and torchvision (pinned)"
PINS=("torch==2.14.1" "torchvision==0.29.1")
"${PIP[@]}" install "${PINS[@]}"
# the same pins constrain the next install, so no plugin's requirement can replace them
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
printf '%s\n' "${PINS[@]}" >"$CONSTRAINTS"

cd "$ROOT"
packages=(-e ".[test]")
for dir in plugins/*/; do
    dir="${dir%/}"
    [ -f "$dir/pyproject.toml" ] || continue
    case "$(basename "$dir")" in
        _*) echo "== skipping $dir (a template, not a family)"; continue ;;
    esac
    if [ "$(basename "$dir")" = "berg-brainscore" ]; then
        echo "== skipping $dir (it needs its own environment)"
        continue
    fi
    if grep -q '^test *=' "$dir/pyproject.toml"; then
        packages+=(-e "$dir[test]")  # the plugin's test extra (scikit-learn for reference checks)
    else
        packages+=(-e "$dir")
    fi
done
packages+=(-e tests/plugins/berg-testplugin)

echo "== installing berg-core, plugins and the test plugin: ${packages[*]}"
"${PIP[@]}" install -c "$CONSTRAINTS" "${packages[@]}"
"$VENV/bin/python" - "${PINS[@]}" <<'PY'
import sys
from importlib.metadata import version

for pin in sys.argv[1:]:
    name, wanted = pin.split("==")
    if version(name) != wanted:
        sys.exit(f"dev-install: {name} {version(name)} is installed, expected {wanted}")
PY

echo "== berg plugins"
"$VENV/bin/berg" plugins
echo "== berg list"
"$VENV/bin/berg" list
if [ -d plugins/berg-train ]; then
    # offline end-to-end check: simulate a small NSD subject (SIMULATED data), train, encode
    DEMO_OUT="$(mktemp -d)"
    echo "== berg demo (into $DEMO_OUT)"
    "$VENV/bin/berg" demo --out "$DEMO_OUT/berg-demo" --quiet
fi
echo "== done: activate with 'source $VENV/bin/activate', test with '$VENV/bin/python -m pytest'"

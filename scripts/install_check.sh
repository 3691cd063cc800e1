#!/usr/bin/env bash
# `make install-check`: follow the README's core install in a fresh virtualenv and check that it
# runs, and that a command needing an extra fails with the one-line message that names the extra.
# A non-editable install of this checkout stands in for `pip install geosynth-toolkit` from PyPI.
set -euo pipefail

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/geosynth-install-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

echo "install-check: fresh venv in $work"
"$PYTHON" -m venv "$work/venv"
bin="$work/venv/bin"
"$bin/python" -m pip install --quiet --upgrade pip
# README, "CUDA workstations": torch first (here the Makefile's pins), then geosynth.
# shellcheck disable=SC2086
"$bin/python" -m pip install --quiet $TORCH_SPEC
# Build from a copy, so that the checkout gets no build/ or egg-info from the build.
mkdir "$work/src"
cp -r "$root/pyproject.toml" "$root/README.md" "$root/src" "$work/src/"
"$bin/python" -m pip install --quiet -c "$root/constraints.txt" "$work/src"
echo "install-check: installed in $(($(date +%s) - start)) s"

cd "$work"  # away from the checkout: `import geosynth` must find the installed package
"$bin/geosynth" --version
"$bin/geosynth" toy data --out "$work/toy" --per-class 2
test -f "$work/toy/metadata.jsonl"

# The core install has none of the extras' packages.
"$bin/python" - <<'PY'
import importlib.util

from geosynth.extras import OPTIONAL

present = [m for m in OPTIONAL if importlib.util.find_spec(m) is not None]
assert not present, f"the core install pulled in optional packages: {present}"
print(f"install-check: none of the optional packages is installed ({', '.join(OPTIONAL)})")
PY

# A command that needs an extra: exit 2 and one line naming the extra.
expect_extra() {  # extra, then the command
    local extra=$1 rc=0
    shift
    "$@" >"$work/out.txt" 2>&1 || rc=$?
    if [ "$rc" != 2 ] || [ "$(wc -l <"$work/out.txt")" != 1 ] \
        || ! grep -qF "pip install 'geosynth-toolkit[$extra]'" "$work/out.txt"; then
        echo "install-check FAILED: '$*' exited $rc with:" >&2
        cat "$work/out.txt" >&2
        exit 1
    fi
    echo "install-check: $* -> exit 2: $(cat "$work/out.txt")"
}
expect_extra eval "$bin/geosynth" toy model --kind clip --out "$work/clip"
expect_extra geo "$bin/geosynth" toy sar --out "$work/sar" --per-class 1

echo "install-check: passed in $(($(date +%s) - start)) s"

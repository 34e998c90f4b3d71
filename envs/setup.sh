#!/usr/bin/env bash
# Create or update the project environment in .venv (override with HNSEG_VENV=/path).
#
#   bash envs/setup.sh            install once; a second run with unchanged pins returns in about a second
#   bash envs/setup.sh --relock   re-resolve envs/requirements.in and rewrite envs/requirements.lock
#
# Order matters: torch==2.13.0 is installed first and alone (a CPU build here; on a CUDA workstation pip takes
# the default CUDA build, or set PIP_INDEX_URL / PIP_EXTRA_INDEX_URL to your site's torch index), then the lock
# under envs/constraints.txt so nothing can upgrade torch, then hnseg itself, then the torchvision shim
# (envs/torchvision_cpu_shim.py; see its docstring). Needs Python 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HNSEG_VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
relock=0
[ "${1:-}" = "--relock" ] && relock=1

"$PYTHON" - <<'PY' || { echo "hnseg needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)
PY

stamp="$VENV/.hnseg-env-stamp"
want=$(cat envs/constraints.txt envs/requirements.lock envs/torchvision_cpu_shim.py pyproject.toml | sha256sum | cut -d' ' -f1)
if [ $relock = 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  echo "environment $VENV is up to date"
  exit 0
fi

start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet torch==2.13.0
if [ $relock = 1 ]; then
  "${pip[@]}" install --quiet -c envs/constraints.txt -r envs/requirements.in
  {
    echo "# Full resolution of envs/requirements.in with envs/constraints.txt (torch is installed first, separately)."
    echo "# Python 3.11, Linux x86_64. Regenerate: bash envs/setup.sh --relock"
    "${pip[@]}" freeze --exclude-editable | grep -viE '^(torch|hnseg)=='
  } > envs/requirements.lock
  want=$(cat envs/constraints.txt envs/requirements.lock envs/torchvision_cpu_shim.py pyproject.toml | sha256sum | cut -d' ' -f1)
else
  "${pip[@]}" install --quiet -c envs/constraints.txt -r envs/requirements.lock
fi
"${pip[@]}" install --quiet --no-deps --no-build-isolation -e .
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp envs/torchvision_cpu_shim.py "$site/_hnseg_torchvision_cpu_shim.py"
echo "import _hnseg_torchvision_cpu_shim" > "$site/_hnseg_torchvision_cpu_shim.pth"
"${pip[@]}" check
"$VENV/bin/hnseg" check-env
echo "$want" > "$stamp"
echo "environment $VENV ready in $(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1)"

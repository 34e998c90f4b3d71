#!/usr/bin/env bash
# Debian packages the tests need beyond the Python environment: Chromium, for tests/test_report_browser.py (the
# report opened in a real headless browser); plastimatch (an independent RTSTRUCT rasteriser) and dcmtk (storescp,
# a DICOM node to C-STORE to), for tests/test_dicom_export.py. Idempotent: when every package is installed it
# returns at once without touching apt; otherwise `apt-get update` once, then installs only what is missing.
#
#   bash envs/system-packages.sh       as root (CI containers), or with sudo available
#
# These tests fail (never skip) when a package is missing, so run this before `make test`.
set -euo pipefail

packages=(chromium plastimatch dcmtk)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages present: ${packages[*]}"
  exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "installing ${missing[*]} needs root or sudo" >&2; exit 1; }
  as_root=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update
"${as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
echo "installed: ${missing[*]}"

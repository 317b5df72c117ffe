#!/usr/bin/env bash
# Create .venv and install a requirements file into it, again only when the file changed.
set -euo pipefail
requirements=${1:?usage: scripts/venv.sh REQUIREMENTS_FILE}
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=".venv/.installed-$(basename "$requirements")"
if [ ! -f "$stamp" ] || [ -n "$(find requirements*.txt -newer "$stamp")" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r "$requirements"
  touch "$stamp"
fi

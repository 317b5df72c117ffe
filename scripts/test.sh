#!/usr/bin/env bash
# `make test`: the whole suite against real PostgreSQL, Redis and (for the state layer) Prefect.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh requirements-dev.txt
scripts/ensure-services.sh
if [ -f package-lock.json ]; then
  [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund --loglevel=error
fi
# tests/test_browser.py drives Debian's chromium; Playwright downloads no browser here.
command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
export DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
export REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379/0}
# Two workers (TEST_WORKERS=0 runs in this process): tests/parallel.py keeps them apart.
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" --dist worksteal "$@"

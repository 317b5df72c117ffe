#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis the tests use answer, starting the local ones when they are
# installed but stopped (the commands are the machines' own start commands).
set -euo pipefail
pg_host=${PGHOST:-127.0.0.1}
redis_port=${TEST_REDIS_PORT:-6379}

redis_answers() {
  .venv/bin/python -c "import redis, sys; redis.Redis(port=int(sys.argv[1]), socket_connect_timeout=1).ping()" "$redis_port"
}

wait_for() {  # description, command...
  local what=$1; shift
  for _ in $(seq 60); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "$what does not answer." >&2
  return 1
}

if ! pg_isready -q -h "$pg_host" -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "Starting the local PostgreSQL."
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  wait_for "PostgreSQL on $pg_host:5432" pg_isready -h "$pg_host" -p 5432
fi

if ! redis_answers >/dev/null 2>&1; then
  if command -v redis-server >/dev/null; then
    echo "Starting the local Redis."
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$redis_port" --save "" \
      --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  fi
  wait_for "Redis on 127.0.0.1:$redis_port" redis_answers
fi

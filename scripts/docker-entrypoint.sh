#!/usr/bin/env bash
# The container's role is its command: web, worker, beat, ingest, relay, or any other command.
set -euo pipefail
case "${1:-web}" in
  web)    python manage.py migrate --noinput
          exec daphne -b 0.0.0.0 -p 8000 --proxy-headers pipelinehub.asgi:application ;;
  worker) exec celery -A pipelinehub worker --loglevel INFO ;;
  beat)   exec celery -A pipelinehub beat --loglevel INFO \
            --scheduler django_celery_beat.schedulers:DatabaseScheduler ;;
  ingest) exec python manage.py ingest ;;
  relay)  exec python manage.py relay ;;
  *)      exec "$@" ;;
esac

"""`/healthz`: can this process reach its database and its Redis?

Load balancers and `make run` ask it. It answers 503 with the reason, never a traceback, so the
process must not need either service to start.
"""

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


def database_status():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return f"unavailable: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
    return "ok"


def redis_status():
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=settings.REDIS_HEALTH_TIMEOUT,
        socket_timeout=settings.REDIS_HEALTH_TIMEOUT,
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"unavailable: {type(exc).__name__}: {str(exc)[:200]}"
    finally:
        client.close()
    return "ok"


@never_cache
@require_GET
def healthz(request):
    checks = {"database": database_status(), "redis": redis_status()}
    healthy = all(status == "ok" for status in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )

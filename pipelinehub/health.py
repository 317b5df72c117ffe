"""`/healthz`: can this process reach its database and its Redis?

Load balancers and `make run` ask it. It answers 503 with the failed check, never a traceback,
so the process must not need either service to start. Anyone sees which check failed; why it
failed (the error, which names hosts, ports and database roles) only staff and callers with the
`HEALTHZ_TOKEN` (header `Authorization: Bearer <token>`) see.
"""

import hmac

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

UNAVAILABLE = "unavailable"


def database_status():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return f"{UNAVAILABLE}: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
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
        return f"{UNAVAILABLE}: {type(exc).__name__}: {str(exc)[:200]}"
    finally:
        client.close()
    return "ok"


def may_see_details(request, database_ok):
    """A caller with the token, or a staff user (whom only a working database can tell)."""
    if _has_token(request):
        return True
    if not database_ok:
        return False
    try:
        return request.user.is_staff
    except DatabaseError:  # the database went away since its check
        return False


def _has_token(request):
    token = settings.HEALTHZ_TOKEN
    given = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


@never_cache
@require_GET
def healthz(request):
    checks = {"database": database_status(), "redis": redis_status()}
    healthy = all(status == "ok" for status in checks.values())
    if not may_see_details(request, checks["database"] == "ok"):
        checks = {name: status.partition(":")[0] for name, status in checks.items()}
    return JsonResponse(
        {"status": "ok" if healthy else UNAVAILABLE, "checks": checks},
        status=200 if healthy else 503,
    )

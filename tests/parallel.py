"""Loaded before Django reads its settings (`-p tests.parallel` in pytest's addopts), so that
the suite can run in pytest-xdist workers (`make test` runs two): each worker gets a Redis
database of its own, REDIS_URL's database plus the worker's number, and with it its own Celery
queue, channel layer, cache and keys. PostgreSQL needs nothing here: pytest-django gives each
worker its own test database (`conftest.django_db_setup` gives it its own primary keys)."""

import os
from urllib.parse import urlsplit, urlunsplit


def worker_index():
    """The pytest-xdist worker's number (gw0 is 0), or 0 outside xdist."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))


def _own_redis_database():
    url = os.environ.get("REDIS_URL")
    if not url or not worker_index():
        return
    parts = urlsplit(url)
    database = int(parts.path.strip("/") or 0) + worker_index()
    os.environ["REDIS_URL"] = urlunsplit(parts._replace(path=f"/{database}"))


_own_redis_database()

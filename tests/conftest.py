import os
import uuid

import pytest
import redis
from cryptography.fernet import Fernet
from django.db import connection

from pipelinehub.state.store import EnvironmentState

from .parallel import worker_index

# A fixtures module whose checks the tests also import: pytest rewrites its asserts only if told
# before the first import.
pytest.register_assert_rewrite("tests.rotation_fixtures")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Each pytest-xdist worker numbers its rows from a range of its own, so that names made
    from primary keys on the shared Redis server (ACL users `ph-env-<pk>`) never meet another
    worker's."""
    if index := worker_index():
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("SELECT schemaname, sequencename FROM pg_sequences")
            for schema, name in cursor.fetchall():
                cursor.execute("SELECT setval(%s, %s)", [f'"{schema}"."{name}"', index * 10**7])


@pytest.fixture(scope="session", autouse=True)
def no_stale_celery_messages():
    """Start with an empty Celery queue in the suite's Redis database. A worker the suite
    killed leaves its task unacknowledged there, and a worker of a later run delivers it again
    after the visibility timeout (an hour): to a row of that run that has the same primary key."""
    client = redis_for_tests()
    client.delete("celery", "unacked", "unacked_index")
    client.close()


@pytest.fixture
def fernet_keys(settings):
    """A fresh encryption key list for one test."""
    settings.SECRET_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    return settings.SECRET_ENCRYPTION_KEYS


def redis_for_tests():
    """A client of the real test Redis (127.0.0.1:6379 unless TEST_REDIS_URL says otherwise)."""
    return redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


@pytest.fixture
def eager():
    """Queued Celery tasks run at once, in the test's process."""
    from celery._state import _set_task_join_will_block

    from pipelinehub.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False
    # An eager task marks the process as one that must not wait for results (Celery's
    # "Never call result.get() within a task"); a later test waiting for a real worker's
    # result was refused for it in a full run. The test process is no worker: clear it.
    _set_task_join_will_block(False)


@pytest.fixture
def redis_client():
    client = redis_for_tests()
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client):
    """A fresh environment prefix; its keys are deleted afterwards."""
    value = f"ph:{{test-{uuid.uuid4().hex[:12]}}}:"
    yield value
    delete_prefix(redis_client, value)


def delete_prefix(client, value):
    keys = list(client.scan_iter(match=f"{value}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def state(redis_client, prefix):
    return EnvironmentState(redis_client, prefix, finished_ttl_seconds=3600, stream_maxlen=1000)


from .prefect.fixtures import (  # noqa: E402, F401
    ingest,
    prefect_environment,
    prefect_server,
    private_redis,
)
from .secret_servers import (  # noqa: E402, F401
    aws_secrets,
    moto_server,
    openbao_server,
    vault_secrets,
)

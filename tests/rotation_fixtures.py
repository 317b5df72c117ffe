"""Fixtures of the rotation tests (tests/test_rotation.py, tests/test_rotation_worker.py):
a primary and its replica with aclfiles, each writable secret backend, a target whose own user
administers both nodes with an environment's ACL user on it, and the checks of a rotation's
outcome. Loaded with `pytest_plugins = ["tests.rotation_fixtures"]`."""

import uuid

import pytest

from pipelinehub.credentials.models import SecretRef
from pipelinehub.state.acl import ensure_acl_user
from pipelinehub.state.connections import login_works, reset_pools

from . import factories
from .redis_server import PrivateRedis
from .rotation_clients import ADMIN_USER, node_addresses, users
from .secret_servers import unique_name

WRITABLE = {"database": "fernet_keys", "aws": "aws_secrets", "vault": "vault_secrets"}


@pytest.fixture
def nodes(tmp_path):
    """A primary and its replica, both with an aclfile."""
    primary = PrivateRedis(tmp_path, aclfile=True)
    primary.start()
    primary.client.config_set("repl-diskless-sync-delay", 0)  # the replica syncs at once
    replica = PrivateRedis(tmp_path, aclfile=True, replica_of=primary)
    replica.start()
    replica.wait_in_sync()
    yield primary, replica
    reset_pools()
    replica.stop()
    primary.stop()


@pytest.fixture(params=list(WRITABLE))
def backend(request, settings):
    """Each backend the hub writes to, its server running; new secrets (the environments'
    ACL passwords) go there, under names of the test's own."""
    request.getfixturevalue(WRITABLE[request.param])
    settings.SECRET_DEFAULT_BACKEND = request.param
    settings.SECRET_NAME_PREFIX = f"rot-{uuid.uuid4().hex[:8]}/"
    return request.param


@pytest.fixture
def database_backend(fernet_keys, settings):
    settings.SECRET_DEFAULT_BACKEND = "database"
    return "database"


def hub_target(nodes, backend):
    """A target whose own user administers both nodes, and an environment with its ACL user."""
    primary, replica = nodes
    password = SecretRef.objects.create(name=unique_name("redis-admin"), backend=backend)
    password.store(uuid.uuid4().hex)
    for server in nodes:
        server.client.execute_command(
            "ACL", "SETUSER", ADMIN_USER, "on", f">{password.reveal()}", "~*", "&*", "+@all"
        )
    target = factories.redis_target(
        port=primary.port,
        db=0,
        username=ADMIN_USER,
        password=password,
        replicas=f"127.0.0.1:{replica.port}",
    )
    environment = factories.environment(target=target)
    ensure_acl_user(environment)
    environment.refresh_from_db()
    return target, environment


@pytest.fixture
def hub(nodes, backend):
    return hub_target(nodes, backend)


@pytest.fixture
def database_hub(nodes, database_backend):
    return hub_target(nodes, database_backend)


def every_version(target, environment):
    """Every password any secret of the target ever held (to look for them where none may be)."""
    values = []
    for _, ref_id in users(target, environment):
        ref = SecretRef.objects.get(pk=ref_id)
        values += [ref.reveal()] + ([ref.previous().value] if ref.previous() else [])
    return values


def assert_rotated(target, environment, old_passwords):
    """The old passwords are refused and the current ones log in, on the primary and replica."""
    for (username, ref_id), old in zip(users(target, environment), old_passwords, strict=True):
        current = SecretRef.objects.get(pk=ref_id).reveal()
        assert current != old
        for host, port in node_addresses(target):
            assert login_works(target, host, port, username, current), (username, port)
            assert not login_works(target, host, port, username, old), (username, port)


def current_passwords(target, environment):
    return [SecretRef.objects.get(pk=ref_id).reveal() for _, ref_id in users(target, environment)]

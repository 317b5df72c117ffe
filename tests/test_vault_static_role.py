"""The `vault-static-role` backend against a real OpenBao dev server whose database engine
(`redis-database-plugin`) owns a Redis ACL user's password on a redis-server of the test's own:
OpenBao rotates it, and the hub's next connection (blocking and asyncio) logs in with the new
one, without a restart; the hub itself may not rotate it."""

import asyncio
import os
import subprocess
import uuid
from typing import NamedTuple

import pytest
from django.core.exceptions import ValidationError

from pipelinehub.credentials.backends import SecretReadOnly, SecretUnavailable
from pipelinehub.credentials.models import SecretRef
from pipelinehub.rotation import service
from pipelinehub.rotation.models import PasswordRotation
from pipelinehub.state.connections import (
    async_target_client,
    login_works,
    reset_pools,
    target_client,
)

from . import factories
from .redis_server import PrivateRedis
from .secret_servers import BIN, ROOT_TOKEN, unique_name

# The asyncio provider reads the secret in a thread of its own, with its own connection.
pytestmark = pytest.mark.django_db(transaction=True)

APP_USER = "ph-app"  # the user whose password OpenBao owns
ENGINE_USER = "openbao"  # the user OpenBao's plugin connects as: ACL GETUSER and SETUSER only
ROLE = "hub"


class StaticRole(NamedTuple):
    mount: str
    role: str
    node: PrivateRedis
    bao_addr: str

    def bao(self, *args):
        """OpenBao's own CLI, as its operator runs it (not the hub's client)."""
        env = {**os.environ, "BAO_ADDR": self.bao_addr, "BAO_TOKEN": ROOT_TOKEN}
        answer = subprocess.run(
            [str(BIN / "bao"), *args], env=env, capture_output=True, text=True, check=False
        )
        assert answer.returncode == 0, answer.stderr
        return answer.stdout.strip()

    def password(self):
        return self.bao("read", "-field=password", f"{self.mount}/static-creds/{self.role}")

    def rotate(self):
        self.bao("write", "-f", f"{self.mount}/rotate-role/{self.role}")


@pytest.fixture
def node(tmp_path):
    server = PrivateRedis(tmp_path, aclfile=True)
    server.start()
    yield server
    reset_pools()
    server.stop()


@pytest.fixture
def static_role(vault_secrets, openbao_server, node):
    """A database engine of the test's own mount, connected to `node` as ENGINE_USER, with a
    static role that owns APP_USER's password."""
    engine_password = uuid.uuid4().hex
    engine_acl = ["resetkeys", "resetchannels", "-@all", "+acl|getuser", "+acl|setuser"]
    node.client.execute_command(
        "ACL", "SETUSER", ENGINE_USER, "on", f">{engine_password}", *engine_acl
    )
    node.client.execute_command("ACL", "SETUSER", APP_USER, "on", ">set-by-hand", "~*", "+@all")
    role = StaticRole(f"db-{uuid.uuid4().hex[:8]}", ROLE, node, openbao_server.url)
    role.bao("secrets", "enable", f"-path={role.mount}", "database")
    role.bao(
        "write",
        f"{role.mount}/config/redis",
        "plugin_name=redis-database-plugin",
        "host=127.0.0.1",
        f"port={node.port}",
        f"username={ENGINE_USER}",
        f"password={engine_password}",
        f"allowed_roles={ROLE}",
    )
    role.bao(
        "write",
        f"{role.mount}/static-roles/{ROLE}",
        "db_name=redis",
        f"username={APP_USER}",
        "rotation_period=24h",
    )
    return role


def target_of(static_role, location):
    password = SecretRef.objects.create(
        name=unique_name("static-role"), backend="vault-static-role", location=location
    )
    return factories.redis_target(
        port=static_role.node.port, db=0, username=APP_USER, password=password
    )


def logs_in(target, password):
    return login_works(target, target.host, target.port, APP_USER, password)


def test_the_hub_follows_a_rotation_by_openbaos_database_engine(static_role):
    target = target_of(static_role, f"{static_role.mount}/{ROLE}")
    # Creating the static role already rotated the password that was set by hand.
    assert not logs_in(target, "set-by-hand")
    assert target.password.reveal() == static_role.password()
    client = target_client(target)
    assert client.ping()  # the provider now holds the password, for 30 s
    old = target.password.reveal()

    static_role.rotate()
    new = target.password.reveal()
    assert new != old and new == static_role.password()
    assert logs_in(target, new) and not logs_in(target, old)
    assert client.ping()  # the connection already open stays logged in
    client.connection_pool.disconnect()
    assert client.set("after-rotation", "1")  # a new connection, without a restart

    async def ping():
        async_client = async_target_client(target)
        try:
            return await async_client.ping()
        finally:
            await async_client.aclose()

    static_role.rotate()  # the provider still holds the password of the first rotation
    assert asyncio.run(ping())
    assert not logs_in(target, new)


def test_a_role_under_the_default_mount_that_the_hub_may_not_rotate(static_role, settings):
    settings.VAULT_DATABASE_MOUNT = static_role.mount
    target = target_of(static_role, ROLE)
    assert target.password.reveal() == static_role.password()
    assert target_client(target).ping()
    before = static_role.node.client.execute_command("ACL", "LIST")

    with pytest.raises(service.RotationRefused, match="read-only backend"):
        service.rotate(target)
    with pytest.raises(SecretReadOnly, match="rotated by OpenBao's database engine; rotate there"):
        target.password.store("chosen-by-the-hub")
    assert static_role.node.client.execute_command("ACL", "LIST") == before
    assert target.password.reveal() == static_role.password()
    assert not PasswordRotation.objects.exists()


def test_a_location_must_name_a_role_and_an_unknown_role_is_a_clear_error(static_role):
    for location in ["", f"{static_role.mount}/", "a/b c"]:
        with pytest.raises(ValidationError, match="Name the static role"):
            SecretRef(name="bad", backend="vault-static-role", location=location).clean()
    SecretRef(name="good", backend="vault-static-role", location=ROLE).clean()

    missing = SecretRef.objects.create(
        name=unique_name(), backend="vault-static-role", location=f"{static_role.mount}/nobody"
    )
    with pytest.raises(SecretUnavailable, match="unknown role: nobody"):
        missing.reveal()

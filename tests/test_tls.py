"""TLS to Redis, for real: a redis-server that listens on TLS only, with a CA and a server
certificate (SAN IP:127.0.0.1) the test makes. Every connection of the hub verifies them: the
environments' targets (sync and asyncio state, ACL users) and the hub's own Redis through a
rediss:// REDIS_URL (the Celery broker of a worker started as deployed, the channel layer and
the cache of a process started as deployed, /healthz). A CA the server's certificate is not from,
or a host name it is not for, is refused with the TLS reason in the error."""

from urllib.parse import urlencode

import pytest
import redis

from pipelinehub.celery import app
from pipelinehub.environments.models import Environment
from pipelinehub.state.acl import ensure_acl_user
from pipelinehub.state.connections import reset_pools
from pipelinehub.state.records import RunChange
from pipelinehub.state.store import AsyncEnvironmentState, EnvironmentState

from . import factories
from .processes import DeployedProcess, wait_until
from .redis_server import PrivateRedis
from .tls import make_ca, make_server_cert

pytestmark = pytest.mark.django_db

RUN = "0b7e3c1a-5d2f-4a8e-9c61-3f2e1d0c9b8a"
T0 = 1_764_000_000_000_000
UNTRUSTED = "certificate verify failed: self-signed certificate in certificate chain"
WRONG_NAME = "certificate verify failed: Hostname mismatch, certificate is not valid for"

# Run in a process started as deployed, with REDIS_URL set to the TLS server: the channel layer
# and the cache exactly as settings build them from that URL.
HUB_REDIS_PROBE = """
import asyncio
from channels.layers import get_channel_layer
from django.core.cache import cache

async def round_trip():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("tls-probe", channel)
    await layer.group_send("tls-probe", {"type": "probe.message", "text": "over tls"})
    message = await asyncio.wait_for(layer.receive(channel), 10)
    await layer.flush()
    return message["text"]

print("channel layer:", asyncio.run(round_trip()))
cache.set("tls-probe", "cached", 30)
print("cache:", cache.get("tls-probe"))
"""


@pytest.fixture
def tls_redis(tmp_path):
    """A TLS-only Redis whose certificate is valid for 127.0.0.1 alone, from a CA of its own."""
    ca = make_ca(tmp_path)
    server = PrivateRedis(tmp_path, aclfile=True, tls=make_server_cert(ca, tmp_path))
    server.start()
    yield server
    reset_pools()
    server.stop()


@pytest.fixture
def impostor_ca(tmp_path):
    """A CA that did not sign the server's certificate."""
    return make_ca(tmp_path, "Impostor CA")


def environment_on(server, host="127.0.0.1", ca_path=None):
    """An environment whose target requires a verified certificate and host name, loaded as
    event-loop code needs it (`with_connections`)."""
    target = factories.redis_target(
        host=host,
        port=server.port,
        tls=True,
        tls_ca_path=str(ca_path or server.tls.ca_path),
        tls_verify="required",
    )
    environment = factories.environment(target=target)
    return Environment.objects.with_connections().get(pk=environment.pk)


@pytest.fixture
def environment(tls_redis):
    return environment_on(tls_redis)


REFUSALS = ["untrusted CA", "wrong host name"]


@pytest.fixture
def refused(tls_redis, impostor_ca, refusal):
    """An environment whose target the server's certificate cannot satisfy (`refusal`, a
    parameter of the test: one of REFUSALS), and the reason the TLS handshake gives."""
    if refusal == "untrusted CA":
        return environment_on(tls_redis, ca_path=impostor_ca.path), UNTRUSTED
    return environment_on(tls_redis, host="localhost"), WRONG_NAME


def hub_url(server, ca_path=None, host="127.0.0.1"):
    """REDIS_URL in the form .env.example documents."""
    query = urlencode(
        {"ssl_cert_reqs": "required", "ssl_ca_certs": str(ca_path or server.tls.ca_path)},
        safe="/",
    )
    return f"rediss://{host}:{server.port}/0?{query}"


def running():
    return RunChange("flow", RUN, T0, "RUNNING", "Running")


# Environment targets.


def test_state_applies_and_reads_over_verified_tls(tls_redis, environment):
    state = EnvironmentState.for_environment(environment)
    assert state.apply(running())
    assert [run.id for run in state.board().runs] == [RUN]
    assert tls_redis.client.hexists(f"{environment.key_prefix}flowruns", RUN)


async def test_async_state_applies_and_reads_over_verified_tls(environment):
    state = AsyncEnvironmentState.for_environment(environment)
    try:
        assert await state.apply(running())
        assert [run.id for run in (await state.board()).runs] == [RUN]
    finally:
        await state.aclose()


def test_an_acl_user_is_set_over_tls_and_its_traffic_uses_it(tls_redis, environment, fernet_keys):
    assert ensure_acl_user(environment) == []  # saved to the server's aclfile
    environment.refresh_from_db()
    state = EnvironmentState.for_environment(environment)
    assert state.apply(running())
    assert [run.id for run in state.board().runs] == [RUN]
    users = {client["user"] for client in tls_redis.client.client_list()}
    assert environment.acl_username in users


@pytest.mark.parametrize("refusal", REFUSALS)
def test_state_refuses_a_server_it_cannot_verify(tls_redis, refused):
    environment, reason = refused
    with pytest.raises(redis.ConnectionError, match=reason):
        EnvironmentState.for_environment(environment).apply(running())
    assert not tls_redis.client.exists(f"{environment.key_prefix}flowruns")


@pytest.mark.parametrize("refusal", REFUSALS)
async def test_async_state_refuses_a_server_it_cannot_verify(refused):
    environment, reason = refused
    state = AsyncEnvironmentState.for_environment(environment)
    try:
        with pytest.raises(redis.ConnectionError, match=reason):
            await state.apply(running())
    finally:
        await state.aclose()


@pytest.mark.parametrize("refusal", REFUSALS)
def test_the_acl_action_reports_the_verification_failure(
    tls_redis, refused, admin_client, fernet_keys
):
    environment, reason = refused
    with pytest.raises(redis.ConnectionError, match=reason):
        ensure_acl_user(environment)
    response = admin_client.post(
        "/admin/environments/environment/",
        {"action": "create_or_update_acl_user", "_selected_action": [environment.pk]},
        follow=True,
    )
    host = environment.redis_target.host
    assert (
        f"ACL user not set: Error 1 connecting to {host}:{tls_redis.port}. "
        f"[SSL: CERTIFICATE_VERIFY_FAILED] {reason}"
    ) in response.content.decode()
    environment.refresh_from_db()
    assert environment.acl_username == ""
    assert tls_redis.client.acl_users() == ["default"]


# The hub's own Redis through rediss://.


def test_a_worker_runs_a_task_sent_through_a_verified_rediss_broker(tls_redis, tmp_path):
    url = hub_url(tls_redis)
    worker = DeployedProcess("worker", tmp_path, {"REDIS_URL": url})
    worker.start()
    try:
        worker.wait_ready()
        with app.connection_for_write(url) as connection:
            task = app.send_task(
                "pipelinehub.sync.reconcile_environment", args=[0], connection=connection
            )
        worker.wait_for_log(f"[{task.id}] succeeded")
    finally:
        worker.stop()
    assert "insecure SSL" not in worker.log()


@pytest.mark.parametrize("ca", ["system CAs", "impostor CA"])
def test_a_worker_refuses_a_rediss_broker_it_cannot_verify(tls_redis, impostor_ca, tmp_path, ca):
    """Also without ssl_* parameters in the URL, where kombu alone would not verify at all."""
    url = f"rediss://127.0.0.1:{tls_redis.port}/0"
    if ca == "impostor CA":
        url = hub_url(tls_redis, impostor_ca.path)
    worker = DeployedProcess("worker", tmp_path, {"REDIS_URL": url})
    worker.start()
    try:
        wait_until(lambda: UNTRUSTED in worker.log() or " ready." in worker.log(), 60, worker.tail)
    finally:
        worker.stop()
    assert UNTRUSTED in worker.log()
    assert " ready." not in worker.log()


def test_the_channel_layer_and_cache_work_over_a_verified_rediss_url(tls_redis, tmp_path):
    probe = DeployedProcess(
        "manage", tmp_path, {"REDIS_URL": hub_url(tls_redis)}, ("shell", "-c", HUB_REDIS_PROBE)
    )
    assert probe.run() == 0, probe.tail()
    assert "channel layer: over tls" in probe.log()
    assert "cache: cached" in probe.log()


def test_the_channel_layer_refuses_a_rediss_server_it_cannot_verify(
    tls_redis, impostor_ca, tmp_path
):
    url = hub_url(tls_redis, impostor_ca.path)
    probe = DeployedProcess(
        "manage", tmp_path, {"REDIS_URL": url}, ("shell", "-c", HUB_REDIS_PROBE)
    )
    assert probe.run() != 0
    assert UNTRUSTED in probe.log()
    assert "channel layer:" not in probe.log()


def test_healthz_checks_redis_over_a_verified_rediss_url(tls_redis, client, settings):
    settings.REDIS_URL = hub_url(tls_redis)
    response = client.get("/healthz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"]["redis"] == "ok"


@pytest.mark.parametrize("refusal", REFUSALS)
def test_healthz_reports_a_rediss_server_it_cannot_verify(
    tls_redis, impostor_ca, client, settings, refusal
):
    settings.HEALTHZ_TOKEN = "tls-test-token"
    if refusal == "untrusted CA":
        settings.REDIS_URL, reason = hub_url(tls_redis, impostor_ca.path), UNTRUSTED
    else:
        settings.REDIS_URL, reason = hub_url(tls_redis, host="localhost"), WRONG_NAME
    response = client.get("/healthz", headers={"Authorization": "Bearer tls-test-token"})
    assert response.status_code == 503
    assert reason in response.json()["checks"]["redis"]

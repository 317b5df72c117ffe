"""Password rotation against real Redis servers of the test's own (a primary and its replica,
each with an aclfile) and each writable secret backend's real server: no command of a client
under load fails, a rotation stopped after any step finishes when run again, one rotation per
target, a password changed elsewhere is followed, and no secret leaks anywhere."""

import asyncio
import json
import logging
import threading
import time
import uuid

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.contrib.auth import get_user_model
from django_celery_beat.models import PeriodicTask

from pipelinehub.audit.models import AuditEvent
from pipelinehub.celery import app as celery_app
from pipelinehub.credentials.backends.aws import secret_id
from pipelinehub.credentials.models import SecretRef
from pipelinehub.rotation import service
from pipelinehub.rotation.models import PasswordRotation
from pipelinehub.rotation.schedules import TASK
from pipelinehub.rotation.tasks import rotate_target
from pipelinehub.state.acl import ensure_acl_user
from pipelinehub.state.connections import (
    async_environment_client,
    environment_client,
    login_works,
    reset_pools,
    target_node_clients,
)
from pipelinehub.state.rotation import LOCK_KEY

from . import factories
from .processes import DeployedProcess, wait_until
from .redis_server import PrivateRedis
from .rotation_clients import (
    ADMIN_USER,
    Checker,
    Load,
    node_addresses,
    redis_contents,
    users,
)
from .secret_servers import unique_name

# Threads of the test read secrets through their own database connections.
pytestmark = pytest.mark.django_db(transaction=True)

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


def test_rotation_under_load_fails_no_command(hub, nodes, caplog):
    caplog.set_level(logging.DEBUG)
    target, environment = hub
    old = current_passwords(target, environment)
    load = Load(target, environment)
    load.start()
    time.sleep(0.5)
    rotations = service.rotate(target)
    assert [r.status for r in rotations] == ["waiting", "waiting"]
    service.retire(target)
    time.sleep(0.5)
    load.stop()

    assert load.failures == [] and load.done >= 1000
    assert_rotated(target, environment, old)
    assert {(r.step, r.status) for r in PasswordRotation.objects.all()} == {
        ("persisted", "finished")
    }
    secrets = old + every_version(target, environment)
    for server in nodes:
        contents = redis_contents(server)
        assert not [s for s in secrets if s.encode() in contents]
    assert not [s for s in secrets if s in caplog.text]
    audited = json.dumps(list(AuditEvent.objects.values("after", "message")))
    assert not [s for s in secrets if s in audited]


@pytest.mark.parametrize("stopped_after", [1, 2, 3, 4, 5])
def test_a_rotation_stopped_after_any_step_finishes_when_run_again(database_hub, stopped_after):
    target, environment = database_hub
    old = current_passwords(target, environment)
    checker = Checker(target, environment)
    checker.start()
    stopped = PasswordRotation.objects.create(
        target=target,
        environment=environment,
        username=environment.acl_username,
        secret=environment.acl_password,
        old_version=environment.acl_password.version,
    )
    for _ in range(stopped_after):
        service.advance(stopped)
    checker.wait_for_checks(2)  # the stopped rotation stays stopped a while
    reset_pools()  # what a new process starts with

    service.rotate(target)
    service.retire(target)
    checker.stop()

    stopped.refresh_from_db()
    assert (stopped.step, stopped.status, stopped.pending_ciphertext) == (
        "persisted",
        "finished",
        None,
    )
    assert not PasswordRotation.objects.exclude(status="finished").exists()
    assert checker.checks > 0 and checker.failures == []
    assert_rotated(target, environment, old)


def test_a_second_rotation_during_the_grace_period_leaves_the_first_waiting(database_hub):
    target, environment = database_hub
    old = current_passwords(target, environment)
    first = service.rotate(target)
    again = service.rotate(target)  # a redelivered task, a second click
    assert [r.pk for r in again] == [r.pk for r in first]
    assert [r.status for r in again] == ["waiting", "waiting"]
    for (username, _), password in zip(users(target, environment), old, strict=True):
        for host, port in node_addresses(target):
            assert login_works(target, host, port, username, password), "removed early"

    service.retire(target)
    assert_rotated(target, environment, old)
    assert set(target.rotations.values_list("status", flat=True)) == {"finished"}


def test_two_rotations_at_once_one_runs_the_other_skips_with_a_message(database_hub, nodes, caplog):
    target, environment = database_hub
    primary, replica = nodes
    # The replica holds the first rotation's commands a while, so that the second starts during it.
    replica.client.execute_command("CLIENT", "PAUSE", 3000, "ALL")
    first = []

    def rotate():
        from django.db import connection

        first.extend(service.rotate(target))
        connection.close()

    running = threading.Thread(target=rotate)
    running.start()
    wait_until(lambda: primary.client.exists(LOCK_KEY.format(pk=target.pk)), 10)

    with pytest.raises(service.RotationBusy, match=f"a rotation of {target} is already running"):
        service.rotate(target)
    rotate_target(target.pk)  # the beat task: logs the skip
    running.join(30)

    assert f"a rotation of {target} is already running" in caplog.text
    assert [r.status for r in first] == ["waiting", "waiting"]
    assert PasswordRotation.objects.count() == 2


def store_elsewhere(backend, ref, value, request):
    """A new version written by someone else than the hub, with that backend's own client."""
    if backend == "aws":
        request.getfixturevalue("aws_secrets").put_secret_value(
            SecretId=secret_id(ref), SecretString=value
        )
    elif backend == "vault":
        request.getfixturevalue("vault_secrets").secrets.kv.v2.create_or_update_secret(
            settings.SECRET_NAME_PREFIX + ref.name, secret={"value": value}
        )
    else:
        ref.store(value)


def change_elsewhere(backend, environment, nodes, request):
    """What a secret manager rotating on its own does: a new version, set on every node, the
    old password removed."""
    old, new = environment.acl_password.reveal(), uuid.uuid4().hex
    store_elsewhere(backend, environment.acl_password, new, request)
    for server in nodes:
        server.client.execute_command("ACL", "SETUSER", environment.acl_username, f">{new}")
        server.client.execute_command("ACL", "SETUSER", environment.acl_username, f"<{old}")


def test_a_password_changed_in_the_secret_manager_works_at_the_next_connection(
    hub, nodes, backend, request
):
    target, environment = hub
    client = environment_client(environment)
    assert client.ping()  # the provider now holds the password, for 30 s
    change_elsewhere(backend, environment, nodes, request)
    client.connection_pool.disconnect()
    assert client.set(f"{environment.key_prefix}after", "1")

    async def ping():
        async_client = async_environment_client(environment)
        try:
            return await async_client.ping()
        finally:
            await async_client.aclose()

    change_elsewhere(backend, environment, nodes, request)  # the provider holds the first one
    assert asyncio.run(ping())


def test_a_failed_step_keeps_a_working_password_alerts_and_completes_later(
    database_hub, nodes, caplog
):
    target, environment = database_hub
    old = current_passwords(target, environment)
    nodes[1].stop()  # the replica: the new password cannot be added there

    rotations = service.rotate(target)
    assert {(r.step, r.status) for r in rotations} == {("pending", "failed")}
    assert "New password added on every node" in rotations[0].error
    assert set(service.failed_rotations(target)) == set(rotations)
    assert current_passwords(target, environment) == old
    assert environment_client(environment).ping()
    assert [r.levelname for r in caplog.records if "rotation" in r.getMessage()] == ["ERROR"] * 2
    assert AuditEvent.objects.filter(action="redistarget.rotate_password").count() == 2

    nodes[1].start()  # it loads the users from its aclfile
    nodes[1].wait_in_sync()
    assert [r.pk for r in service.rotate(target)] == [r.pk for r in rotations]
    service.retire(target)
    assert not service.failed_rotations(target).exists()
    assert_rotated(target, environment, old)


def test_a_read_only_secret_is_refused_and_nothing_changes(database_hub, settings, monkeypatch):
    target, environment = database_hub
    settings.SECRET_ENV_PREFIX = "PH_SECRET_"
    monkeypatch.setenv("PH_SECRET_ADMIN", target.password.reveal())
    target.password = SecretRef.objects.create(
        name=unique_name(), backend="env", location="PH_SECRET_ADMIN"
    )
    target.save()
    before = [server_acl(node, target) for node in target_node_clients(target)]

    with pytest.raises(service.RotationRefused, match="read-only backend"):
        service.rotate(target)
    assert [server_acl(node, target) for node in target_node_clients(target)] == before
    assert not PasswordRotation.objects.exists()


def server_acl(client, target):
    return sorted(client.execute_command("ACL", "LIST"))


def test_each_target_gets_a_rotation_schedule_of_30_days(database_backend):
    target = factories.redis_target()
    schedule = PeriodicTask.objects.get(task=TASK, args=json.dumps([target.pk]))
    assert (schedule.interval.every, schedule.interval.period, schedule.enabled) == (
        30,
        "days",
        True,
    )
    target.delete()
    assert not PeriodicTask.objects.filter(task=TASK).exists()


@pytest.fixture
def eager_celery():
    """Queued tasks (the removal after the grace period) run at once, in the test's process."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def test_the_admin_action_rotates_and_shows_the_history(database_hub, client, eager_celery):
    target, environment = database_hub
    old = current_passwords(target, environment)
    superuser = get_user_model().objects.create_superuser("root", "root@example.com", "x")
    client.force_login(superuser)
    changelist = "/admin/environments/redistarget/"
    assert "rotate_password_now" in client.get(changelist).content.decode()

    response = client.post(
        changelist, {"action": "rotate_password_now", "_selected_action": [target.pk]}, follow=True
    )
    assert "new password in use" in response.content.decode()
    assert_rotated(target, environment, old)
    rotations = PasswordRotation.objects.all()
    assert {(r.status, r.started_by_id, r.trigger) for r in rotations} == {
        ("finished", superuser.pk, "admin")
    }

    targets = client.get(changelist).content.decode()
    history_url = f"/admin/rotation/passwordrotation/?target__id__exact={target.pk}"
    assert history_url in targets
    history = client.get(history_url)
    row = client.get(f"/admin/rotation/passwordrotation/{rotations[0].pk}/change/")
    pages = [response.content.decode(), targets, history.content.decode(), row.content.decode()]
    assert environment.acl_username in pages[2] and "finished" in pages[2].lower()
    secrets = old + every_version(target, environment)
    assert not [s for page in pages for s in secrets if s in page]


def test_the_deployed_worker_rotates_then_removes_the_old_passwords_after_the_grace(
    database_hub, tmp_path
):
    target, environment = database_hub
    old = current_passwords(target, environment)
    worker = DeployedProcess("worker", tmp_path, env_overrides={"ROTATION_GRACE_SECONDS": "2"})
    worker.start()
    try:
        worker.wait_ready()
        with celery_app.connection_for_write(settings.CELERY_BROKER_URL) as connection:
            celery_app.send_task(TASK, args=[target.pk], connection=connection)
        finished = target.rotations.filter(status="finished")
        wait_until(lambda: finished.count() == 2, 90, lambda: worker.tail())
    finally:
        worker.stop()
    assert_rotated(target, environment, old)
    rotations = list(target.rotations.all())
    assert len(rotations) == 2, rotations
    assert all((r.finished_at - r.started_at).total_seconds() >= 2 for r in rotations)
    secrets = old + every_version(target, environment)
    assert not [s for s in secrets if s in worker.log()]


class WriteGate:
    """Holds the primary's write commands (`CLIENT PAUSE WRITE`): the rotation lock's SET and
    scripts wait there, while ACL SETUSER, ACL SAVE and logins go on. A worker rotating the
    target thus stops at its lock's renewal right after recording a step."""

    def __init__(self, node):
        self.client = node.client

    def close(self):
        self.client.execute_command("CLIENT", "PAUSE", 120_000, "WRITE")

    def open(self):
        self.client.execute_command("CLIENT", "UNPAUSE")

    def holds_a_command(self):
        return self.client.info("clients")["blocked_clients"] > 0

    def let_through_until(self, reached, timeout=60):
        """One held command at a time, until `reached()`."""
        deadline = time.monotonic() + timeout
        while not reached():
            wait_until(lambda: self.holds_a_command() or reached(), deadline - time.monotonic())
            if not reached():
                self.open()
                self.close()


def deployed_worker(workdir):
    """A fresh deployed worker, ready (grace period 1 s)."""
    workdir.mkdir(exist_ok=True)
    worker = DeployedProcess("worker", workdir, env_overrides={"ROTATION_GRACE_SECONDS": "1"})
    worker.start()
    worker.wait_ready()
    return worker


def send(task, target):
    with celery_app.connection_for_write(settings.CELERY_BROKER_URL) as connection:
        celery_app.send_task(task, args=[target.pk], connection=connection)


@pytest.fixture(scope="module")
def spare_workers():
    """The worker that finished the last killed-worker test, kept for the next one to kill: each
    worker serves twice, so the tests start half as many. Its key is the module's."""
    workers = []
    yield workers
    for worker in workers:
        worker.stop()


@pytest.fixture(scope="module")
def module_key():
    return Fernet.generate_key().decode()


@pytest.fixture
def kill_hub(nodes, module_key, settings):
    """`database_hub` with the module's encryption key, which the spare worker holds."""
    settings.SECRET_ENCRYPTION_KEYS = [module_key]
    settings.SECRET_DEFAULT_BACKEND = "database"
    return hub_target(nodes, "database")


RETIRE = "pipelinehub.rotation.retire_old_passwords"


@pytest.mark.parametrize("killed_after", list(PasswordRotation.Step)[1:])
def test_a_worker_killed_after_each_step_then_run_again_completes(
    kill_hub, nodes, tmp_path, spare_workers, killed_after
):
    """A deployed worker runs the beat's task and is SIGKILLed as soon as the target's own
    user's rotation records `killed_after` (the gate holds it there). Its lock expires (brought
    forward from 300 s), a fresh worker runs the killed task again, and every rotation
    finishes; meanwhile the checker proves that the stored password always logs in everywhere."""
    target, environment = kill_hub
    old = current_passwords(target, environment)
    first, rotations = (
        PasswordRotation.objects.filter(username=ADMIN_USER),
        PasswordRotation.objects,
    )
    gate, checker = WriteGate(nodes[0]), Checker(target, environment)
    checker.start()
    try:
        killed = spare_workers.pop() if spare_workers else deployed_worker(tmp_path / "killed")
        gate.close()
        try:
            send(TASK, target)
            gate.let_through_until(lambda: first.filter(step=killed_after).exists())
        finally:
            killed.kill()
            gate.open()
        assert [(r.step, r.status) for r in first] == [(killed_after, "running")]
        nodes[0].client.pexpire(LOCK_KEY.format(pk=target.pk), 1)
        checker.wait_for_checks(2)  # the killed rotation stays as it is a while

        spare_workers.append(rerun := deployed_worker(tmp_path))
        send(RETIRE if killed_after in ("removed", "persisted") else TASK, target)
        wait_until(
            lambda: rotations.count() >= 2 and not rotations.exclude(status="finished").exists(),
            60,
            lambda: f"{list(rotations.all())}\n{rerun.tail()}",
        )
    finally:
        checker.stop()
    assert checker.checks > 0 and checker.failures == []
    assert_rotated(target, environment, old)

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
from django.conf import settings
from django.contrib.auth import get_user_model
from django_celery_beat.models import PeriodicTask

from pipelinehub.audit.models import AuditEvent
from pipelinehub.credentials.backends.aws import secret_id
from pipelinehub.credentials.models import SecretRef
from pipelinehub.rotation import service
from pipelinehub.rotation.models import PasswordRotation
from pipelinehub.rotation.schedules import TASK
from pipelinehub.rotation.tasks import rotate_target
from pipelinehub.state.connections import (
    async_environment_client,
    environment_client,
    login_works,
    reset_pools,
    target_node_clients,
)
from pipelinehub.state.rotation import LOCK_KEY

from . import factories
from .processes import wait_until
from .rotation_clients import (
    Checker,
    Load,
    node_addresses,
    redis_contents,
    users,
)
from .rotation_fixtures import assert_rotated, current_passwords, every_version
from .secret_servers import unique_name

# Threads of the test read secrets through their own database connections.
pytestmark = pytest.mark.django_db(transaction=True)
pytest_plugins = ["tests.rotation_fixtures"]


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


def test_the_admin_action_rotates_and_shows_the_history(database_hub, client, eager):
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

"""Password rotation by a worker started as deployed: the old passwords removed after the grace
period, and a worker killed after each step in turn whose task a fresh worker runs again to the
end, while a checker logs in with the stored password on every node throughout."""

import time

import pytest
from cryptography.fernet import Fernet
from django.conf import settings

from pipelinehub.celery import app as celery_app
from pipelinehub.rotation.models import PasswordRotation
from pipelinehub.rotation.schedules import TASK
from pipelinehub.state.rotation import LOCK_KEY

from .processes import DeployedProcess, wait_until
from .rotation_clients import ADMIN_USER, Checker
from .rotation_fixtures import assert_rotated, current_passwords, every_version, hub_target

pytestmark = pytest.mark.django_db(transaction=True)
pytest_plugins = ["tests.rotation_fixtures"]


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

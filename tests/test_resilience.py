"""Web, worker, beat, ingest and the relay ride out a restart of PostgreSQL and of the hub's
Redis: each process is started as deployed (tests/processes.py) against a private PostgreSQL and
a private Redis, which the test stops for a while and starts again under them. /healthz must say
503 during and 200 after, and every process must do its work again afterwards without being
restarted. (Ingest through restarts of Prefect and of an environment's Redis:
tests/test_sync_prefect.py.)
"""

import json
import time

import pytest

from pipelinehub.celery import app

from .postgres_server import PrivatePostgres
from .processes import DeployedProcess, wait_until
from .redis_server import PrivateRedis

ROLES = ("web", "worker", "beat", "ingest", "relay")
OUTAGE_SECONDS = 10
# A real task of ours that reads the database: an environment id that does not exist is skipped.
TASK = "pipelinehub.sync.reconcile_environment"
# What a query on a connection opened before a (fast) PostgreSQL shutdown gets.
STALE_CONNECTION = "terminating connection due to administrator command"
POLLED = {"ingest": "ingest: no enabled environment", "relay": "relay: no enabled environment"}
SCHEDULE_EVERY_SECOND = """
from django_celery_beat.models import IntervalSchedule, PeriodicTask
every, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
PeriodicTask.objects.create(name={name!r}, task={task!r}, interval=every, args="[0]")
"""


class Deployment:
    """The processes, their environment, and what a test does to them."""

    def __init__(self, tmp_path, postgres, redis):
        self.tmp_path = tmp_path
        self.broker_url = f"redis://127.0.0.1:{redis.port}/0"
        self.env = {
            "DATABASE_URL": postgres.url,
            "REDIS_URL": self.broker_url,
            # Persistent connections, as a production deployment keeps them: they outlive a
            # PostgreSQL restart, and must be checked before reuse.
            "DATABASE_CONN_MAX_AGE": "60",
            # Ingest reads the configuration every second, so that it does during the outage.
            "CONFIG_POLL_SECONDS": "1",
        }
        self.processes = {role: DeployedProcess(role, tmp_path, self.env) for role in ROLES}

    def __getitem__(self, role):
        return self.processes[role]

    def manage(self, *args):
        assert DeployedProcess("manage", self.tmp_path, self.env, args).run() == 0

    def schedule(self, name):
        """A periodic task due every second, added to the database beat reads its schedule from."""
        self.manage("shell", "-c", SCHEDULE_EVERY_SECOND.format(name=name, task=TASK))

    def send_task(self):
        """Sent by the test itself through the broker, so the worker is checked apart from beat."""
        with app.connection_for_write(self.broker_url) as connection:
            return app.send_task(TASK, args=[0], connection=connection).id


@pytest.fixture
def services(tmp_path):
    postgres, redis = PrivatePostgres(), PrivateRedis(tmp_path)
    try:
        postgres.create()
        redis.start()
        yield postgres, redis
    finally:
        redis.stop()
        postgres.destroy()


@pytest.fixture
def deployment(tmp_path, services):
    deployment = Deployment(tmp_path, *services)
    deployment.manage("migrate", "--noinput")
    try:
        for process in deployment.processes.values():
            process.start()
        for process in deployment.processes.values():
            process.wait_ready()
        yield deployment
    finally:
        for process in deployment.processes.values():
            process.stop()


def test_every_process_rides_out_restarts_of_postgres_and_redis(deployment, services):
    postgres, redis = services
    assert deployment["web"].get("/healthz").status == 200

    outage(postgres, deployment, down="database", up="redis")
    deployment["beat"].wait_for_log("Database gave error")  # beat noticed, and carried on
    for role in ("ingest", "relay"):
        assert_reads_the_configuration_again(deployment[role])
    for process in deployment.processes.values():
        assert STALE_CONNECTION not in process.log(), f"{process.role} used a dead connection"
    assert_everything_works(deployment, "after-postgres-restart")

    outage(redis, deployment, down="redis", up="database")
    deployment["worker"].wait_for_log("Connection to broker lost")
    deployment["beat"].wait_for_log("Couldn't apply scheduled task after-postgres-restart")
    assert_everything_works(deployment, "after-redis-restart")

    for process in deployment.processes.values():
        assert process.process.poll() is None, f"{process.role} ended:\n{process.tail()}"


def outage(server, deployment, down, up):
    """Stop `server` for OUTAGE_SECONDS; /healthz names it during and is healthy after."""
    web = deployment["web"]
    server.stop()
    stopped = time.monotonic()
    response = web.get("/healthz")
    assert response.status == 503, response
    checks = json.loads(response.body)["checks"]
    assert checks[down] == "unavailable" and checks[up] == "ok", checks
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
    server.start()
    wait_until(lambda: web.get("/healthz").status == 200, 30, lambda: web.get("/healthz"))


def assert_reads_the_configuration_again(process):
    """Ingest and the relay: they said the database was gone, and read it again after."""
    process.wait_for_log(f"{process.role}: configuration unavailable")
    wait_until(
        lambda: POLLED[process.role] in process.log().rpartition("configuration unavailable")[2],
        30,
        lambda: f"{process.role} did not read its configuration again:\n{process.tail()}",
    )


def assert_everything_works(deployment, name):
    assert deployment["web"].get("/admin/login/").status == 200
    task_id = deployment.send_task()
    deployment["worker"].wait_for_log(f"{TASK}[{task_id}] succeeded", timeout=60)
    deployment.schedule(name)
    deployment["beat"].wait_for_log(f"Sending due task {name} ", timeout=30)

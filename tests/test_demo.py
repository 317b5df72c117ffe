"""The demo of `make run`: `demo_setup` points the environment demo/dev at the local Prefect
server and the hub's Redis, and demo/flows.py defines the deployments it serves. The whole
`make run` (a Prefect server, the flows, ingest) is too slow for the suite: it is checked by hand.
"""

import io
import json
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django_celery_beat.models import PeriodicTask

from demo import flows
from pipelinehub.detection.schedules import TASK as DETECT_TASK
from pipelinehub.environments.models import Environment, PrefectWorkspace, RedisTarget, Team
from pipelinehub.sync.schedules import TASKS as SYNC_TASKS

from . import factories

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
PREFECT_URL = "http://127.0.0.1:4200/api"
REDIS_URL = "redis://127.0.0.1:6379/5"


def demo_setup(*args):
    out = io.StringIO()
    call_command("demo_setup", *args, stdout=out)
    return out.getvalue()


def set_up(prefect_url=PREFECT_URL, redis_url=REDIS_URL):
    return demo_setup("--prefect-url", prefect_url, "--redis-url", redis_url)


def rows():
    """Every configuration row, as values: what a second run must leave as it is."""
    models = (Team, PrefectWorkspace, RedisTarget, Environment)
    return {model.__name__: list(model.objects.values()) for model in models}


def test_demo_setup_creates_the_demo_environment_on_the_urls_given():
    output = set_up()

    environment = Environment.objects.get(team__slug="demo", slug="dev")
    assert environment.workspace.api_url == PREFECT_URL
    assert environment.workspace.api_key is None
    target = environment.redis_target
    assert (target.host, target.port, target.db, target.tls) == ("127.0.0.1", 6379, 5, False)
    assert target.password is None
    assert environment.key_prefix == "ph:{demo.dev}:"
    assert environment.finished_run_ttl == timedelta(hours=2)
    assert environment.enabled
    assert output.count(": created") == 4


def test_demo_setup_twice_gives_the_same_rows():
    set_up()
    before = rows()

    output = set_up()

    assert rows() == before
    assert output.count(": unchanged") == 4


def test_demo_setup_follows_new_urls_on_the_same_rows():
    set_up()
    environment = Environment.objects.get(team__slug="demo")

    output = set_up("http://127.0.0.1:4321/api", "redis://localhost:6390/2")

    environment.refresh_from_db()
    assert environment.workspace.api_url == "http://127.0.0.1:4321/api"
    target = environment.redis_target
    assert (target.host, target.port, target.db) == ("localhost", 6390, 2)
    assert (Environment.objects.count(), RedisTarget.objects.count()) == (1, 1)
    assert "updated (api_url)" in output
    assert "updated (host, port, db)" in output


def test_demo_setup_stores_the_redis_password_of_the_url(fernet_keys):
    set_up(redis_url="rediss://hub:s3cret@10.0.0.5:6380/1")

    target = RedisTarget.objects.get()
    assert (target.host, target.port, target.db, target.tls) == ("10.0.0.5", 6380, 1, True)
    assert target.username == "hub"
    assert target.password.reveal() == "s3cret"


def test_demo_setup_refuses_what_the_admin_would_refuse():
    with pytest.raises(CommandError, match="ends in /api"):
        set_up(prefect_url="http://127.0.0.1:4200")

    assert not Team.objects.exists()  # one transaction: nothing half made


def test_check_says_demo_until_another_environment_exists():
    assert demo_setup("--check").strip() == "demo"
    set_up()
    assert demo_setup("--check").strip() == "demo"  # the demo's own does not count

    factories.environment(factories.team("data"))

    assert demo_setup("--check").strip() == "configured"


def test_disable_turns_the_demo_environment_and_its_schedules_off():
    set_up()
    other = factories.environment(factories.team("data"))

    output = demo_setup("--disable")

    demo = Environment.objects.get(team__slug="demo")
    assert not demo.enabled
    # The environment's own schedules (not those of other objects with the same primary key,
    # such as its Redis target's rotation).
    per_environment = [*SYNC_TASKS, DETECT_TASK]
    schedules = PeriodicTask.objects.filter(args=json.dumps([demo.pk]), task__in=per_environment)
    assert [task.enabled for task in schedules] == [False, False, False]
    other.refresh_from_db()
    assert other.enabled
    assert "disabled" in output
    assert demo_setup("--disable") == ""  # nothing left to do
    set_up()
    demo.refresh_from_db()
    assert demo.enabled  # the next demo run turns it on again


def test_the_demo_serves_one_deployment_per_flow_every_30_to_120_seconds(monkeypatch):
    monkeypatch.chdir(ROOT)  # serve runs from the checkout: entrypoints are relative to it

    deployments = {d.flow_name: d for d in flows.deployments()}

    assert set(deployments) == {
        "orders-etl",
        "payments-sync",
        "crm-import",
        "warehouse-refresh",
        "image-thumbnails",
        "inventory-snapshot",
    }
    for deployment in deployments.values():
        assert deployment.name == "demo"
        assert deployment.tags == ["demo"]
        [schedule] = deployment.schedules
        assert schedule.active
        assert timedelta(seconds=30) <= schedule.schedule.interval <= timedelta(seconds=120)
        path, function = deployment.entrypoint.split(":")
        assert path == "demo/flows.py"
        assert callable(getattr(flows, function))


def test_the_runaway_is_every_sixth_run_of_its_schedule(monkeypatch):
    monkeypatch.chdir(ROOT)
    [deployment] = [d for d in flows.deployments() if d.flow_name == "inventory-snapshot"]
    schedule = deployment.schedules[0].schedule
    starts = [schedule.anchor_date + n * schedule.interval for n in range(60)]

    long_runs = [n for n, start in enumerate(starts) if flows.is_runaway(start)]

    assert len(long_runs) == 10
    assert {b - a for a, b in pairwise(long_runs)} == {6}


def test_the_runaway_runs_well_past_the_detectors_default_threshold():
    from pipelinehub.detection.rules import MICROS, Thresholds

    defaults = Thresholds()
    threshold = max(defaults.multiple * flows.USUAL_SECONDS * MICROS, defaults.floor)
    assert 2 * threshold <= flows.RUNAWAY_SECONDS * MICROS

"""The health watch against real redis-servers of the tests' own (a replica and TLS included):
each alert raised by what Redis really does (an eviction policy, evictions, memory, a replica
whose link goes down, a certificate about to expire, an environment not reconciled), the
snapshots' schedule and retention, the task run by a worker started as deployed, the admin's
pages, and the home page of the right team only. Rules that need a state Redis cannot be put in
on demand (a replica lagging by megabytes, a public host) are tested as the pure functions they
are."""

import json
from datetime import datetime, timedelta

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from pipelinehub.accounts.models import Membership
from pipelinehub.audit.models import AuditEvent
from pipelinehub.celery import app
from pipelinehub.credentials.models import SecretRef
from pipelinehub.rotation.models import PasswordRotation
from pipelinehub.state import health
from pipelinehub.state.connections import reset_pools
from pipelinehub.state.records import RunChange
from pipelinehub.state.store import EnvironmentState
from pipelinehub.watch import alerts
from pipelinehub.watch.models import HealthSnapshot
from pipelinehub.watch.schedules import TASK
from pipelinehub.watch.snapshots import RECONCILE_TASK, take_snapshot

from . import factories
from .processes import DeployedProcess
from .redis_server import PrivateRedis
from .tls import make_ca, make_server_cert

pytestmark = pytest.mark.django_db

RUN = "0b7e3c1a-5d2f-4a8e-9c61-3f2e1d0c9b8a"
SSO_BACKEND = "pipelinehub.accounts.backends.SingleSignOnBackend"


def codes(snapshot):
    return [alert["code"] for alert in snapshot.alerts]


@pytest.fixture
def server(tmp_path):
    """A redis-server of the test's own (the watch reads server-wide INFO: nothing shared)."""
    instance = PrivateRedis(tmp_path)
    instance.start()
    yield instance
    reset_pools()
    instance.stop()


def target_on(instance, **fields):
    return factories.redis_target(port=instance.port, db=0, **fields)


def environment_on(target, team="alpha", slug="prod"):
    return factories.environment(factories.team(team), slug, target=target)


def run_in_flight(environment, run_id=RUN):
    EnvironmentState.for_environment(environment).apply(
        RunChange("flow", run_id, 1_764_000_000_000_000, "RUNNING", "Running")
    )


def fill(client, count, size=1000, prefix="filler"):
    """Write `count` keys of `size` bytes; stop at the first write Redis refuses (OOM)."""
    for start in range(0, count, 100):
        with client.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + 100, count)):
                pipe.set(f"{prefix}:{i}", b"x" * size)
            try:
                pipe.execute()
            except redis.ResponseError:
                return


# Eviction policy, evictions, memory


def test_allkeys_policy_with_runs_in_flight_raises_its_alert(server):
    target = target_on(server)
    environment = environment_on(target)
    run_in_flight(environment)

    server.client.config_set("maxmemory-policy", "volatile-lru")
    assert "allkeys_policy" not in codes(take_snapshot(target))

    server.client.config_set("maxmemory-policy", "allkeys-lru")
    snapshot = take_snapshot(target)
    assert "allkeys_policy" in codes(snapshot)
    assert snapshot.policy == "allkeys-lru"
    assert snapshot.probe["environments"][str(environment.pk)]["inflight_flow"] == 1


def test_allkeys_policy_without_runs_in_flight_is_no_alert(server):
    environment_on(target := target_on(server))
    server.client.config_set("maxmemory-policy", "allkeys-lru")
    assert "allkeys_policy" not in codes(take_snapshot(target))


def test_forced_evictions_raise_the_eviction_alert(server):
    target = target_on(server)
    first = take_snapshot(target)
    assert "evictions" not in codes(first)

    server.client.config_set("maxmemory-policy", "allkeys-random")
    server.client.config_set("maxmemory", server.client.info("memory")["used_memory"] + 500_000)
    fill(server.client, 3000)
    evicted = server.client.info("stats")["evicted_keys"]
    assert evicted > 0

    second = take_snapshot(target, now=first.taken_at + timedelta(minutes=1))
    assert "evictions" in codes(second)
    assert second.evictions >= evicted  # the probe's own connections may evict a few more
    server.client.config_set("maxmemory", 0)
    third = take_snapshot(target, now=second.taken_at + timedelta(minutes=1))
    assert "evictions" not in codes(third)  # none since the previous snapshot


def test_memory_above_80_percent_raises_its_alert(server):
    target = target_on(server)
    server.client.config_set("maxmemory-policy", "volatile-lru")
    used = server.client.info("memory")["used_memory"]
    server.client.config_set("maxmemory", used * 4)
    assert "memory_high" not in codes(take_snapshot(target))

    server.client.config_set("maxmemory", int(used / 0.88))
    snapshot = take_snapshot(target)
    assert "memory_high" in codes(snapshot)
    assert snapshot.memory_share > 0.8


def test_noeviction_with_memory_full_says_writes_will_fail(server):
    target = target_on(server)
    server.client.config_set("maxmemory-policy", "noeviction")
    server.client.config_set("maxmemory", server.client.info("memory")["used_memory"] + 300_000)
    fill(server.client, 3000)  # until Redis refuses a write
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        server.client.set("one-more", b"x" * 1000)

    found = codes(take_snapshot(target))
    assert "memory_full" in found and "memory_high" not in found


# Reachability, replicas, CONFIG


def test_an_unreachable_target_is_a_snapshot_that_says_so(server):
    target = target_on(server, replicas="127.0.0.1:1")
    environment_on(target)
    server.stop()

    snapshot = take_snapshot(target)

    assert not snapshot.reachable
    assert codes(snapshot)[0] == "unreachable"
    assert "unreachable (ConnectionError: Connection refused)" in snapshot.alerts[0]["message"]
    assert [node["reachable"] for node in snapshot.probe["nodes"]] == [False, False]


@pytest.fixture
def replica(server, tmp_path):
    instance = PrivateRedis(tmp_path, replica_of=server)
    instance.start()
    instance.wait_in_sync()
    yield instance
    instance.stop()


def test_a_replica_whose_link_is_down_or_that_is_down_raises_its_alert(server, replica):
    target = target_on(server, replicas=f"127.0.0.1:{replica.port}")
    assert not {"replica_down", "replica_lagging"} & set(codes(take_snapshot(target)))

    replica.client.replicaof("127.0.0.1", 1)  # a primary that does not answer: the link is down
    snapshot = take_snapshot(target)
    assert "replica_down" in codes(snapshot)
    assert "link to the primary is down" in _message(snapshot, "replica_down")

    replica.stop()
    snapshot = take_snapshot(target)
    assert "unreachable" in _message(snapshot, "replica_down")
    assert snapshot.reachable  # the primary still answers


def _message(snapshot, code):
    return next(alert["message"] for alert in snapshot.alerts if alert["code"] == code)


def test_a_replica_behind_the_primary_is_lagging():
    """Pure rule: megabytes of replication lag cannot be put in a replica on demand."""
    primary = {"reachable": True, "replication": {"master_repl_offset": 5_000_000, "replicas": []}}
    replica = {
        "address": "10.0.0.2:6379",
        "reachable": True,
        "replication": {"role": "slave", "master_link_status": "up", "slave_repl_offset": 0},
    }
    assert alerts.replica_problem(replica, primary)[0] == "replica_lagging"
    replica["replication"]["slave_repl_offset"] = 4_999_000
    assert alerts.replica_problem(replica, primary) is None
    primary["replication"]["replicas"] = [{"address": "10.0.0.2:6379", "lag": 30}]
    assert alerts.replica_problem(replica, primary) == (
        "replica_lagging",
        "last acknowledged 30 s ago",
    )


def test_config_refused_to_the_targets_user_is_said_not_raised(server, fernet_keys):
    server.client.execute_command(
        "ACL", "SETUSER", "watcher", "on", ">watcher-pass", "~*", "&*", "+@all", "-config"
    )
    password = SecretRef.objects.create(name="redis/watcher")
    password.store("watcher-pass")
    target = target_on(server, username="watcher", password=password)

    snapshot = take_snapshot(target)

    assert snapshot.reachable and snapshot.policy == "noeviction"  # from INFO
    assert "config_denied" in codes(snapshot)
    assert snapshot.probe["nodes"][0]["config_error"] == "NoPermissionError"


# TLS


@pytest.mark.parametrize(
    ("host", "tls", "flagged"),
    [
        ("redis.example.com", False, True),
        ("8.8.8.8", False, True),
        ("redis.example.com", True, False),
        ("localhost", False, False),
        ("127.0.0.1", False, False),
        ("::1", False, False),
        ("10.1.2.3", False, False),
        ("192.168.0.7", False, False),
        ("redis.internal", False, True),  # names are not resolved: not known to be private
    ],
)
def test_tls_off_is_flagged_for_hosts_that_are_not_loopback_or_private(host, tls, flagged):
    assert alerts.tls_off_on_public_host(host, tls) is flagged
    facts = alerts.TargetFacts(hosts=("127.0.0.1", host), tls=tls)
    assert [alert.code for alert in alerts.tls_alerts(facts)] == (["tls_off"] if flagged else [])


def test_a_failed_rotation_is_an_alert_until_it_completes(server):
    """The rotation's own failure (tests/test_rotation.py) reaches the target's snapshot."""
    target = target_on(server)
    rotation = PasswordRotation.objects.create(
        target=target, username="ph-admin", step="added", status="failed"
    )
    assert "rotation_failed" in codes(take_snapshot(target))
    rotation.status = "finished"
    rotation.save()
    assert "rotation_failed" not in codes(take_snapshot(target))


def tls_server(tmp_path, days):
    ca = make_ca(tmp_path)
    files = make_server_cert(ca, tmp_path, validity=timedelta(days=days))
    instance = PrivateRedis(tmp_path, tls=files)
    instance.start()
    return instance


@pytest.mark.parametrize(("days", "expiring"), [(10, True), (90, False)])
def test_a_certificate_expiring_within_21_days_raises_its_alert(tmp_path, days, expiring):
    instance = tls_server(tmp_path, days)
    try:
        target = target_on(
            instance, tls=True, tls_ca_path=str(instance.tls.ca_path), tls_verify="required"
        )
        snapshot = take_snapshot(target)
    finally:
        reset_pools()
        instance.stop()
    assert snapshot.reachable
    not_after = datetime.fromisoformat(snapshot.probe["nodes"][0]["tls"]["not_after"])
    assert abs(not_after - (timezone.now() + timedelta(days=days))) < timedelta(hours=1)
    assert ("certificate_expiring" in codes(snapshot)) is expiring
    if expiring:
        assert "expires in 9 days" in _message(snapshot, "certificate_expiring")


# Reconcile


def test_an_environment_not_reconciled_for_three_intervals_raises_its_alert(server):
    """As when beat is stopped: last_reconcile stays where it was."""
    target = target_on(server)
    late, fresh = environment_on(target, slug="late"), environment_on(target, slug="fresh")
    now = timezone.now()
    EnvironmentState.for_environment(late).set_meta(
        last_reconcile=(now - timedelta(minutes=16)).isoformat()
    )
    EnvironmentState.for_environment(fresh).set_meta(
        last_reconcile=(now - timedelta(minutes=4)).isoformat()
    )

    snapshot = take_snapshot(target, now=now)

    assert [a["environment"] for a in snapshot.alerts if a["code"] == "reconcile_late"] == [
        str(late.pk)
    ]
    assert "for 16 minutes" in _message(snapshot, "reconcile_late")

    # Its schedule edited to every hour: 16 minutes is not late.
    task = PeriodicTask.objects.get(task=RECONCILE_TASK, args=json.dumps([late.pk]))
    task.interval = task.interval.__class__.objects.create(every=1, period="hours")
    task.save()
    assert "reconcile_late" not in codes(take_snapshot(target, now=now + timedelta(seconds=1)))


def test_an_environment_never_reconciled_is_late_once_watched_for_three_intervals(server):
    target = target_on(server)
    environment = environment_on(target)
    start = timezone.now()

    assert "reconcile_late" not in codes(take_snapshot(target, now=start))
    later = take_snapshot(target, now=start + timedelta(minutes=10))
    assert "reconcile_late" not in codes(later)
    late = take_snapshot(target, now=start + timedelta(minutes=16))
    assert "reconcile_late" in codes(late)
    assert "has never run" in _message(late, "reconcile_late")

    environment.enabled = False
    environment.save()
    assert "reconcile_late" not in codes(take_snapshot(target, now=start + timedelta(minutes=17)))


# Usage per environment


def test_key_counts_and_memory_per_environment(server):
    target = target_on(server)
    small, big = environment_on(target, slug="small"), environment_on(target, slug="big")
    run_in_flight(small)
    fill(server.client, 300, size=2000, prefix=f"{big.key_prefix}task")

    usage = take_snapshot(target).probe["environments"]

    small_usage, big_usage = usage[str(small.pk)], usage[str(big.pk)]
    assert big_usage["keys"] == 300 and big_usage["keys_exact"]
    assert big_usage["memory"] > 300 * 2000
    assert 0 < small_usage["keys"] < 20 and 0 < small_usage["memory"] < big_usage["memory"]


def test_key_counts_past_the_scan_bound_are_estimated(server, monkeypatch):
    target = target_on(server)
    environment = environment_on(target)
    fill(server.client, 2000, size=10, prefix=f"{environment.key_prefix}task")
    fill(server.client, 2000, size=10, prefix="someone-else")
    monkeypatch.setattr(health, "SCAN_CALLS", 2)
    monkeypatch.setattr(health, "SCAN_COUNT", 100)

    usage = take_snapshot(target).probe["environments"][str(environment.pk)]

    assert not usage["keys_exact"]
    assert 1000 <= usage["keys"] <= 3000  # about half of the 4,000 keys


# Schedule, task as deployed, retention


def test_every_target_gets_a_schedule_every_minute_removed_with_it():
    target = factories.redis_target()
    task = PeriodicTask.objects.get(task=TASK)
    assert json.loads(task.kwargs) == {"target_pk": target.pk} and json.loads(task.args) == []
    assert (task.interval.every, task.interval.period, task.enabled) == (60, "seconds", True)

    target.name = "renamed"
    target.save()
    assert PeriodicTask.objects.filter(task=TASK).count() == 1

    target.delete()
    assert not PeriodicTask.objects.filter(task=TASK).exists()


@pytest.mark.django_db(transaction=True)
def test_a_worker_started_as_deployed_runs_the_watch(server, tmp_path):
    target = target_on(server)
    server.client.config_set("maxmemory-policy", "allkeys-lru")
    run_in_flight(environment_on(target))
    worker = DeployedProcess("worker", tmp_path)
    worker.start()
    try:
        worker.wait_ready()
        with app.connection_for_write(settings.CELERY_BROKER_URL) as connection:
            task = app.send_task(TASK, kwargs={"target_pk": target.pk}, connection=connection)
        worker.wait_for_log(f"[{task.id}] succeeded", timeout=120)
    finally:
        worker.stop()
    snapshot = HealthSnapshot.objects.get(target=target)
    assert "allkeys_policy" in codes(snapshot)


def test_snapshots_older_than_the_retention_are_deleted(server, settings):
    settings.HEALTH_SNAPSHOT_RETENTION = timedelta(hours=2)
    target, other = target_on(server), target_on(server)
    now = timezone.now()
    for minutes in (30, 119, 121, 60 * 30):
        for owner in (target, other):
            HealthSnapshot.objects.create(
                target=owner, taken_at=now - timedelta(minutes=minutes), reachable=False, probe={}
            )

    take_snapshot(target, now=now)

    kept = HealthSnapshot.objects.filter(target=target).values_list("taken_at", flat=True)
    assert sorted(now - at for at in kept) == [
        timedelta(0),
        timedelta(minutes=30),
        timedelta(minutes=119),
    ]
    assert HealthSnapshot.objects.filter(target=other).count() == 4  # its own task cleans it


# Admin and home pages


@pytest.fixture
def watched(server, fernet_keys):
    """A target with a user and a password, an environment with a run in flight under an
    allkeys policy, and a day of snapshots with evictions in one of them."""
    secret = "very-secret-redis-password-1234"
    server.client.execute_command("ACL", "SETUSER", "hub", "on", f">{secret}", "~*", "&*", "+@all")
    password = SecretRef.objects.create(name="redis/hub")
    password.store(secret)
    target = target_on(server, username="hub", password=password)
    environment = environment_on(target)
    run_in_flight(environment)
    server.client.config_set("maxmemory-policy", "allkeys-lru")
    now = timezone.now()
    probed = take_snapshot(target, now=now - timedelta(hours=21)).probe
    for hours in (20, 10, 2):
        HealthSnapshot.objects.create(
            target=target,
            taken_at=now - timedelta(hours=hours),
            reachable=True,
            used_memory=1_000_000 * hours,
            maxmemory=30_000_000,
            evictions=5 if hours == 10 else 0,
            probe=probed,
        )
    take_snapshot(target, now=now)
    return target, environment, secret


def test_the_admin_shows_a_targets_health_with_its_chart_and_no_secret(admin_client, watched):
    target, environment, secret = watched
    page = admin_client.get(f"/admin/watch/healthsnapshot/target/{target.pk}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert 'data-alert="allkeys_policy"' in body
    assert "<svg" in body and "<polyline" in body and 'class="health-bar"' in body
    assert 'class="health-point"' in body  # a lone snapshot still shows
    assert "5 in 24 hours" in body
    assert f'data-environment="{environment}"' in body
    assert secret not in body

    change = admin_client.get(f"/admin/environments/redistarget/{target.pk}/change/")
    assert change.status_code == 200
    text = change.content.decode()
    assert f"/admin/watch/healthsnapshot/target/{target.pk}/" in text
    assert "may evict keys without a TTL" in text and secret not in text

    add = admin_client.get("/admin/environments/redistarget/add/").content.decode()
    assert "Watched every minute once saved." in add

    for url in ("/admin/watch/healthsnapshot/", _snapshot_url(target)):
        response = admin_client.get(url)
        assert response.status_code == 200 and secret not in response.content.decode()


def _snapshot_url(target):
    newest = HealthSnapshot.objects.filter(target=target).first()
    return f"/admin/watch/healthsnapshot/{newest.pk}/change/"


def test_check_health_now_takes_a_snapshot_and_is_audited(admin_client, watched):
    target, _, _ = watched
    before = HealthSnapshot.objects.filter(target=target).count()
    response = admin_client.post(
        "/admin/environments/redistarget/",
        {"action": "check_health_now", "_selected_action": [target.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert HealthSnapshot.objects.filter(target=target).count() == before + 1
    event = AuditEvent.objects.get(action="redistarget.check_health")
    assert "allkeys_policy" in event.after["alerts"]


def sign_in(client, team_slug):
    user = get_user_model().objects.create_user(username=f"lead-{team_slug}")
    Membership.objects.create(user=user, team=factories.team(team_slug), role="viewer")
    client.force_login(user, backend=SSO_BACKEND)
    return client


def test_the_home_page_shows_a_targets_alerts_to_the_teams_on_it_only(client, server):
    shared, healthy = target_on(server), factories.redis_target()
    alpha = environment_on(shared, team="alpha", slug="prod")
    beta = environment_on(shared, team="beta", slug="prod")
    environment_on(healthy, team="gamma", slug="prod")
    run_in_flight(alpha)
    server.client.config_set("maxmemory-policy", "allkeys-lru")
    EnvironmentState.for_environment(beta).set_meta(
        last_reconcile=(timezone.now() - timedelta(hours=1)).isoformat()
    )
    take_snapshot(shared)

    alpha_page = sign_in(client, "alpha").get("/").content.decode()
    assert "Redis for prod: its eviction policy can drop runs in flight" in alpha_page
    assert "reconcile has not run" not in alpha_page  # beta's own alert
    assert str(server.port) not in alpha_page and "127.0.0.1" not in alpha_page

    beta_page = sign_in(client, "beta").get("/").content.decode()
    assert "Redis for prod: its eviction policy can drop runs in flight" in beta_page
    assert "Redis for prod: reconcile has not run for 60 minutes" in beta_page

    gamma_page = sign_in(client, "gamma").get("/").content.decode()
    assert "data-health-alert" not in gamma_page


def test_the_home_page_ignores_a_snapshot_the_watch_did_not_renew(client, server):
    target = target_on(server)
    run_in_flight(environment_on(target, team="alpha"))
    server.client.config_set("maxmemory-policy", "allkeys-lru")
    take_snapshot(target, now=timezone.now() - timedelta(minutes=30))
    assert "data-health-alert" not in sign_in(client, "alpha").get("/").content.decode()


def test_probe_errors_name_the_class_never_the_message():
    try:
        redis.Redis(port=1, password="never-shown").ping()
    except redis.ConnectionError as exc:
        text = health.error_text(exc)
    assert text == "ConnectionError: Connection refused"

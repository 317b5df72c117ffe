"""Alerts and notifications: what `reconcile_alerts` (called by the detectors every 30 s) sends,
to whom, how often, and what operators and team admins do with it. Messages reach a real
webhook receiver on loopback (tests/webhook_receiver.py) that checks each signature; e-mail goes
to Django's test outbox. Queued tasks run in the test process (as tests/test_sync_reconcile.py
does) except in the test that runs a real worker started as the Procfile starts it."""

import logging
import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from pipelinehub.accounts.models import Membership
from pipelinehub.alerts import service
from pipelinehub.alerts.models import Alert, Delivery, Event, NotificationTarget
from pipelinehub.alerts.service import FLUSH_MARKER, reconcile_alerts
from pipelinehub.audit.models import AuditEvent
from pipelinehub.state.flags import FAILED, RUNAWAY, STUCK, RunFlag
from tests import factories

from .prefect.server import free_port
from .processes import DeployedProcess, wait_until
from .webhook_receiver import Receiver

SECRET = "s3cr3t-signing-value-for-tests-0123456789"
SSO_BACKEND = "pipelinehub.accounts.backends.SingleSignOnBackend"
SINCE = 1_764_000_000_000_000


def flag(number, kind=RUNAWAY, reason="running 41 min, usually 6 min"):
    return RunFlag(
        run_id=f"00000000-0000-4000-8000-{number:012d}",
        kind=kind,
        reason=reason,
        since_micros=SINCE + number,
        run_name=f"calm-fox-{number}",
        flow_name="etl-nightly",
    )


@pytest.fixture
def receiver():
    server = Receiver(SECRET).start()
    yield server
    server.stop()


def webhook(team, url, body_format="generic", name="hook"):
    return factories.webhook_target(team, url, SECRET, body_format=body_format, name=name)


@pytest.fixture
def prod(db, fernet_keys):
    environment = factories.environment(factories.team("alpha"), "prod")
    cache.delete(FLUSH_MARKER.format(team_id=environment.team_id))
    return environment


@pytest.fixture
def passes(django_capture_on_commit_callbacks):
    """`reconcile_alerts`, committed: what the detection task does every 30 s."""

    def run(environment, flags=(), failed=()):
        with django_capture_on_commit_callbacks(execute=True):
            reconcile_alerts(environment, list(flags), failed=list(failed))

    return run


def test_one_signed_message_when_an_alert_starts_and_one_when_it_clears(
    prod, receiver, eager, passes
):
    webhook(prod.team, receiver.url)
    for _ in range(3):
        passes(prod, [flag(1)])
    passes(prod, [flag(1, reason="running 50 min, usually 6 min")])
    assert len(receiver.received) == 1
    started = receiver.received[0]
    assert started.signed
    body = started.json
    assert (body["team"], body["count"], body["omitted"]) == ("alpha", 1, 0)
    event = body["events"][0]
    assert (event["event"], event["kind"], event["environment"]) == (
        "started",
        RUNAWAY,
        "alpha/prod",
    )
    assert event["run_id"] == flag(1).run_id and event["cleared_at"] is None
    assert event["run_url"].endswith(f"/runs/flow-run/{flag(1).run_id}")
    assert Alert.objects.get().reason == "running 50 min, usually 6 min"  # updated, not sent

    passes(prod, [])
    passes(prod, [])
    assert len(receiver.received) == 2
    cleared = receiver.received[1]
    assert cleared.signed and cleared.json["events"][0]["event"] == "cleared"
    assert Delivery.objects.filter(status="sent").count() == 2


def test_a_changed_signature_or_secret_does_not_verify(prod, receiver, eager, passes):
    other = Receiver("another secret").start()
    try:
        webhook(prod.team, other.url)
        passes(prod, [flag(1)])
        assert len(other.received) == 1 and not other.received[0].signed
    finally:
        other.stop()


def test_a_failure_is_announced_once_and_never_cleared(prod, receiver, eager, passes):
    webhook(prod.team, receiver.url)
    failure = flag(7, kind=FAILED, reason="Failed: ValueError")
    passes(prod, failed=[failure])
    passes(prod, failed=[failure])  # the next pass still lists it: nothing new
    passes(prod)
    assert len(receiver.received) == 1
    assert receiver.received[0].json["summary"].startswith("Failed: calm-fox-7")


def test_fifty_failures_in_a_burst_are_one_grouped_message_from_a_real_worker(
    transactional_db, fernet_keys, tmp_path
):
    """Through the worker as deployed: the flush waits ALERT_GROUP_SECONDS (its documented
    default), then one Slack message lists a bounded part of the burst. The receiver refuses
    the first attempt, and gets the message on Celery's retry."""
    environment = factories.environment(factories.team("alpha"), "prod")
    cache.delete(FLUSH_MARKER.format(team_id=environment.team_id))
    hook = Receiver(SECRET, statuses=[503]).start()
    webhook(environment.team, hook.url, body_format="slack")
    worker = DeployedProcess("worker", tmp_path)
    worker.start()
    try:
        worker.wait_ready()
        for first in range(0, 50, 10):  # five detection passes in a burst
            failed = [flag(n, kind=FAILED, reason="Failed") for n in range(first, first + 10)]
            reconcile_alerts(environment, [], failed=failed)
        hook.wait_for(1, timeout=90)
        wait_until(lambda: Delivery.objects.filter(status="sent").exists(), timeout=30)
    finally:
        worker.stop()
        hook.stop()
    assert hook.refused == 1 and len(hook.received) == 1 and hook.received[0].signed
    message = hook.received[0].json
    assert message["text"] == "50 runs failed in alpha/prod"
    listed = message["blocks"][1]["text"]["text"]
    assert (
        listed.count("\n") == 19 and message["blocks"][2]["elements"][0]["text"] == "…and 30 more"
    )
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.events.count()) == ("sent", 2, 50)


def test_a_receiver_down_leaves_a_failed_delivery_that_the_admin_shows_and_retries(
    prod, eager, passes, admin_client, caplog
):
    port = free_port()
    target = webhook(prod.team, f"http://127.0.0.1:{port}/hook")
    with caplog.at_level(logging.INFO):  # LOG_LEVEL's documented value
        passes(prod, [flag(1)])
    delivery = Delivery.objects.get()
    assert delivery.status == "failed"
    assert delivery.attempts == settings.ALERT_DELIVERY_RETRIES + 1
    assert delivery.last_error == "the receiver could not be reached"
    assert list(delivery.events.values_list("type", flat=True)) == ["started"]  # kept, not lost
    assert "could not be reached" in caplog.text
    assert str(port) not in delivery.last_error and str(port) not in caplog.text

    failed_list = admin_client.get("/admin/alerts/delivery/?status__exact=failed").content.decode()
    assert "the receiver could not be reached" in failed_list and str(target) in failed_list

    back = Receiver(SECRET, port=port).start()
    try:
        response = admin_client.post(
            "/admin/alerts/delivery/",
            {"action": "retry_deliveries", "_selected_action": [delivery.pk]},
        )
        assert response.status_code == 302
        assert len(back.received) == 1 and back.received[0].signed
    finally:
        back.stop()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == ("sent", "")
    assert AuditEvent.objects.filter(action="delivery.retry", object_id=str(delivery.pk)).exists()


def test_a_delivery_its_flush_never_queued_goes_at_a_later_pass(prod, receiver, eager, passes):
    """The flush's worker died between its commit and queueing the delivery: the delivery is
    pending and never tried; a pass five minutes later queues it."""
    webhook(prod.team, receiver.url)
    reconcile_alerts(prod, [flag(1)])  # its on-commit flush never runs
    (stranded,) = service.flush(prod.team_id)  # made, never queued
    passes(prod, [flag(1)])
    assert receiver.received == []  # not yet: it may still be in the queue
    Delivery.objects.filter(pk=stranded).update(created_at=timezone.now() - timedelta(minutes=6))
    passes(prod, [flag(1)])
    assert [message.json["events"][0]["event"] for message in receiver.received] == ["started"]
    assert Delivery.objects.get(pk=stranded).status == Delivery.Status.SENT


def test_another_team_never_receives_this_teams_alerts(prod, receiver, eager, passes):
    other = Receiver(SECRET).start()
    try:
        beta = factories.environment(factories.team("beta"), "prod")
        webhook(prod.team, receiver.url)
        webhook(beta.team, other.url)
        factories.notification_target(beta.team, emails="beta@example.com")
        passes(prod, [flag(1), flag(2, kind=STUCK)])
        assert len(receiver.received) == 1 and receiver.received[0].json["count"] == 2
        assert other.received == [] and mail.outbox == []
        passes(beta, [flag(3)])
        assert len(other.received) == 1 and len(receiver.received) == 1
        assert [m.to for m in mail.outbox] == [["beta@example.com"]]
    finally:
        other.stop()


def test_an_email_target_gets_one_mail_per_group(prod, eager, passes):
    factories.notification_target(prod.team, emails="oncall@example.com, lead@example.com")
    passes(prod, [flag(1), flag(2)])
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["oncall@example.com", "lead@example.com"]
    assert sent.subject == "[PipelineHub] 2 runs runaway in alpha/prod"
    assert "calm-fox-1 (etl-nightly)" in sent.body and "calm-fox-2" in sent.body


def member(team, role, client):
    user = get_user_model().objects.create_user(username=f"{team.slug}-{role}")
    Membership.objects.create(user=user, team=team, role=role)
    client.force_login(user, backend=SSO_BACKEND)
    return user


def test_acknowledge_and_silence_are_audited_and_a_silence_is_honoured(
    prod, receiver, eager, passes, client
):
    webhook(prod.team, receiver.url)
    passes(prod, [flag(1)])
    alert = Alert.objects.get()
    base = f"/environments/alpha/prod/alerts/{alert.pk}"
    member(prod.team, "viewer", client)
    assert client.post(f"{base}/acknowledge/").status_code == 403
    operator = member(prod.team, "operator", client)
    page = client.get("/environments/alpha/prod/alerts/").content.decode()
    assert "calm-fox-1" in page and f"{base}/silence/" in page
    assert client.post(f"{base}/acknowledge/").status_code == 302
    assert client.post(f"{base}/silence/", {"minutes": "60"}).status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged_by == operator and alert.silenced
    actions = AuditEvent.objects.filter(actor=operator).values_list("action", flat=True)
    assert sorted(actions) == ["alert.acknowledge", "alert.silence"]

    passes(prod, [])  # it clears while silenced: nothing is sent
    assert len(receiver.received) == 1
    assert Event.objects.get(type="cleared").suppressed


def test_the_admin_acknowledges_and_silences_with_an_audit(prod, eager, passes, admin_client):
    passes(prod, [flag(1)])
    alert = Alert.objects.get()
    for action in ("acknowledge", "silence_hour"):
        response = admin_client.post(
            "/admin/alerts/alert/", {"action": action, "_selected_action": [alert.pk]}
        )
        assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged_at and alert.silenced
    assert AuditEvent.objects.filter(action__in=["alert.acknowledge", "alert.silence"]).count() == 2


def test_the_signing_secret_is_shown_once_and_never_again(prod, client, caplog, receiver):
    member(prod.team, "admin", client)
    with caplog.at_level(logging.DEBUG):
        form = {"name": "slack", "channel": "webhook", "url": receiver.url, "body_format": "slack"}
        created = client.post("/teams/alpha/notifications/add/", form)
        assert created.status_code == 200
        target = NotificationTarget.objects.get()
        secret = target.signing_secret.reveal()
        assert secret in created.content.decode()
        assert client.post(f"/teams/alpha/notifications/{target.pk}/test/").status_code == 302
        pages = [
            client.get("/teams/alpha/notifications/"),
            client.get(f"/teams/alpha/notifications/{target.pk}/"),
        ]
    assert len(receiver.received) == 1 and receiver.received[0].json["text"].startswith("Test")
    assert all(page.status_code == 200 and secret not in page.content.decode() for page in pages)
    renewed = client.post(
        f"/teams/alpha/notifications/{target.pk}/",
        {**form, "enabled": "on", "new_secret": "on"},
    )
    target.refresh_from_db()
    assert target.signing_secret.reveal() != secret
    assert target.signing_secret.reveal() in renewed.content.decode()
    assert secret not in caplog.text
    audit = [str((e.before, e.after, e.message)) for e in AuditEvent.objects.all()]
    assert {"notificationtarget.add", "notificationtarget.test"} <= set(
        AuditEvent.objects.values_list("action", flat=True)
    )
    assert audit and not any(secret in row for row in audit)


def test_team_admins_manage_only_their_own_teams_targets(prod, client):
    beta_target = factories.notification_target(factories.team("beta"))
    member(prod.team, "admin", client)
    assert "/teams/alpha/notifications/" in client.get("/").content.decode()
    assert "/environments/alpha/prod/alerts/" in client.get("/environments/alpha/prod/").text
    assert client.get(f"/teams/beta/notifications/{beta_target.pk}/").status_code == 404
    assert client.post(f"/teams/alpha/notifications/{beta_target.pk}/delete/").status_code == 404
    mine = factories.notification_target(prod.team, name="mine")
    assert client.post(f"/teams/alpha/notifications/{mine.pk}/delete/").status_code == 302
    assert list(NotificationTarget.objects.all()) == [beta_target]
    assert AuditEvent.objects.filter(action="notificationtarget.delete").count() == 1


def test_a_webhook_url_must_be_http_or_https(prod, client):
    member(prod.team, "admin", client)
    for url in ("file:///etc/passwd", "ftp://example.com/x", "//example.com/x"):
        page = client.post(
            "/teams/alpha/notifications/add/", {"name": "x", "channel": "webhook", "url": url}
        )
        assert page.status_code == 200 and "Enter a valid URL" in page.content.decode()
    assert not NotificationTarget.objects.exists()


def test_overlapping_passes_open_one_alert_and_one_event(transactional_db, eager):
    environment = factories.environment(factories.team("alpha"), "prod")
    barrier = threading.Barrier(4)
    errors = []

    def detection_pass():
        try:
            barrier.wait()
            reconcile_alerts(environment, [flag(1), flag(2, kind=STUCK)])
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=detection_pass) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Alert.objects.count() == 2 and Event.objects.count() == 2

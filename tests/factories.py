"""Small builders for configuration rows; each test states only what matters to it."""

import itertools
import os
from urllib.parse import urlsplit

from pipelinehub.environments.models import Environment, PrefectWorkspace, RedisTarget, Team

_seq = itertools.count()


def team(slug=None):
    slug = slug or f"team{next(_seq)}"
    return Team.objects.get_or_create(slug=slug, defaults={"name": slug.title()})[0]


def workspace(api_url=None, name=None):
    """A workspace of its own (its own URL): teams sharing one must choose work pools."""
    number = next(_seq)
    api_url = api_url or f"http://prefect-{number}.test:4200/api"
    return PrefectWorkspace.objects.create(name=name or f"ws{number}", api_url=api_url)


def test_redis_db():
    """The database of the suite's Redis (REDIS_URL's path), so that runs of the suite that use
    different databases never see each other's keys. Private servers (another port) use 0."""
    path = urlsplit(os.environ.get("REDIS_URL", "")).path.strip("/")
    return int(path) if path.isdigit() else 0


def redis_target(host="127.0.0.1", port=6379, db=None, name=None, **fields):
    if db is None:
        db = test_redis_db() if (host, port) == ("127.0.0.1", 6379) else 0
    return RedisTarget.objects.create(
        name=name or f"redis{next(_seq)}", host=host, port=port, db=db, **fields
    )


def environment(team_obj=None, slug="dev", target=None, ws=None, **fields):
    env = Environment(
        team=team_obj or team(),
        slug=slug,
        workspace=ws or workspace(),
        redis_target=target or redis_target(),
        **fields,
    )
    env.full_clean()
    env.save()
    return env


def notification_target(team_obj, name="ops", **fields):
    """A notification target of `team_obj`: by default an enabled e-mail target (sent to
    Django's test outbox), so that building one needs no receiver."""
    from pipelinehub.alerts.models import NotificationTarget

    fields.setdefault("channel", NotificationTarget.Channel.EMAIL)
    fields.setdefault("emails", f"{team_obj.slug}-oncall@example.com")
    return NotificationTarget.objects.create(team=team_obj, name=name, **fields)


def webhook_target(team_obj, url, secret, body_format="generic", name="hook"):
    """A webhook target of `team_obj` signing with `secret` (tests/webhook_receiver.py checks)."""
    from pipelinehub.alerts.models import NotificationTarget
    from pipelinehub.credentials.admin import new_secret_ref

    target = NotificationTarget.objects.create(
        team=team_obj, name=name, channel="webhook", url=url, body_format=body_format
    )
    target.signing_secret = new_secret_ref(f"alerts-test/{team_obj.slug}/{name}")
    target.signing_secret.store(secret)
    target.save()
    return target


def alert(environment_obj, run_id="6f3c5a3e-8d0e-4b7e-9f43-2d1c7a9b0e11", **fields):
    """An open runaway alert of `environment_obj`."""
    from django.utils import timezone

    from pipelinehub.alerts.models import Alert

    fields.setdefault("kind", "runaway")
    fields.setdefault("reason", "running 41 min, usually 6 min")
    fields.setdefault("started_at", timezone.now())
    return Alert.objects.create(environment=environment_obj, run_id=run_id, **fields)

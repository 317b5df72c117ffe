from datetime import timedelta
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from pipelinehub.credentials.models import SecretRef
from pipelinehub.environments.models import Environment, PrefectWorkspace, RedisTarget, Team

TEAM = "demo"
ENVIRONMENT = "dev"
WORKSPACE = "Demo (local Prefect server)"
TARGET = "Demo (the hub's Redis)"
REDIS_AUTH = "Demo Redis password"
# Long enough to watch an afternoon of demo runs, short enough that the demo's few thousand runs
# an hour do not pile up in Redis or in each reconcile's window.
TTL = timedelta(hours=2)


def configured():
    """Whether the database holds environments of its own, beyond the demo's: `make run` then
    starts the hub only."""
    return Environment.objects.exclude(team__slug=TEAM).exists()


class Command(BaseCommand):
    help = (
        "Create or update the demo of `make run`: team 'demo', its environment demo/dev on the "
        "local Prefect server (--prefect-url) and the hub's Redis (--redis-url). Running it "
        "again changes only what differs. --check prints 'demo' when the database holds no "
        "environment but the demo's, 'configured' otherwise; --disable disables the demo "
        "environment (when `make run` does not start the demo)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--prefect-url", help="e.g. http://127.0.0.1:4200/api")
        parser.add_argument("--redis-url", help="e.g. redis://127.0.0.1:6379/0")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--check", action="store_true")
        mode.add_argument("--disable", action="store_true")

    def handle(self, *args, prefect_url, redis_url, check, disable, **options):
        if check:
            self.stdout.write("configured" if configured() else "demo")
            return
        if disable:
            self.disable()
            return
        if not (prefect_url and redis_url):
            raise CommandError("Give --prefect-url and --redis-url (or --check, or --disable).")
        try:
            with transaction.atomic():
                self.set_up(prefect_url, redis_url)
        except ValidationError as exc:
            raise CommandError(f"The demo cannot be set up: {' '.join(exc.messages)}") from exc

    def set_up(self, prefect_url, redis_url):
        team = self.put(Team, {"slug": TEAM}, name="Demo")
        workspace = self.put(
            PrefectWorkspace, {"name": WORKSPACE}, api_url=prefect_url, api_key_id=None
        )
        target = self.put(RedisTarget, {"name": TARGET}, **self.redis_fields(redis_url))
        self.put(
            Environment,
            {"team_id": team.pk, "slug": ENVIRONMENT},
            workspace_id=workspace.pk,
            redis_target_id=target.pk,
            finished_run_ttl=TTL,
            enabled=True,
        )

    def disable(self):
        """Without its Prefect server, the demo environment would have ingest and reconcile
        fail against a port nobody answers on. Saved one by one: the save disables its
        schedules too."""
        for environment in Environment.objects.filter(team__slug=TEAM, enabled=True):
            environment.enabled = False
            environment.save(update_fields=["enabled"])
            self.stdout.write(f"Environment '{environment}': disabled (the demo is not running)")

    def redis_fields(self, redis_url):
        """The target's fields for a redis:// or rediss:// URL; its password, if any, goes to a
        secret (stored again each time: a secret is never read back to compare)."""
        url = urlsplit(redis_url)
        fields = {
            "host": url.hostname or "127.0.0.1",
            "port": url.port or 6379,
            "db": int(url.path.strip("/") or 0),
            "tls": url.scheme == "rediss",
            "username": unquote(url.username or ""),
            "password_id": None,
        }
        if url.password:
            secret, _ = SecretRef.objects.get_or_create(name=REDIS_AUTH)
            secret.store(unquote(url.password))
            fields["password_id"] = secret.pk
        return fields

    def put(self, model, lookup, **values):
        """The row matching `lookup`, created or changed to hold `values`, validated like the
        admin validates it; says what it did."""
        row = model.objects.filter(**lookup).first() or model(**lookup)
        changed = [name for name, value in values.items() if getattr(row, name) != value]
        if row.pk and not changed:
            verb = "unchanged"
        else:
            verb = f"updated ({', '.join(changed)})" if row.pk else "created"
            for name, value in values.items():
                setattr(row, name, value)
            row.full_clean()
            row.save()
        self.stdout.write(f"{model._meta.verbose_name.capitalize()} '{row}': {verb}")
        return row

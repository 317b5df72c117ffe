from django.core.management.base import BaseCommand, CommandError

from pipelinehub.environments.models import Environment
from pipelinehub.sync.reconcile import reconcile


class Command(BaseCommand):
    help = (
        "Make Redis match the Prefect API for one environment (team/env) or every enabled one: "
        "what changed since the last reconcile, by default (the whole window when Redis has "
        "no last reconcile), one sweep slice, or the whole window."
    )

    def add_arguments(self, parser):
        parser.add_argument("environment", nargs="?", help="team/env, e.g. data/prod")
        modes = parser.add_mutually_exclusive_group()
        modes.add_argument(
            "--full",
            dest="mode",
            action="store_const",
            const="full",
            default="changes",
            help="Read the whole window: every run not finished or finished within the TTL.",
        )
        modes.add_argument(
            "--sweep",
            dest="mode",
            action="store_const",
            const="sweep",
            help="Read the next slice of the window, as the sweep schedule does.",
        )

    def handle(self, *args, environment=None, mode="changes", **options):
        environments = Environment.objects.with_connections()
        if environment:
            team, _, slug = environment.partition("/")
            environments = environments.filter(team__slug=team, slug=slug)
            if not environments:
                raise CommandError(f"No environment {environment!r} (write it team/env).")
        else:
            environments = environments.filter(enabled=True)
        failed = 0
        for env in environments:  # one environment's failure never stops the others
            report = reconcile(env, trigger="command", mode=mode)
            self.stdout.write(str(report))
            failed += bool(report.error)
        if failed:
            raise CommandError(f"{failed} reconcile(s) failed; see the reports above.")

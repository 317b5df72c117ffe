from django.core.management.base import BaseCommand, CommandError

from pipelinehub.environments.models import Environment
from pipelinehub.sync.reconcile import reconcile


class Command(BaseCommand):
    help = "Make Redis match the Prefect API for one environment (team/env) or every enabled one."

    def add_arguments(self, parser):
        parser.add_argument("environment", nargs="?", help="team/env, e.g. data/prod")

    def handle(self, *args, environment=None, **options):
        environments = Environment.objects.with_connections()
        if environment:
            team, _, slug = environment.partition("/")
            environments = environments.filter(team__slug=team, slug=slug)
            if not environments:
                raise CommandError(f"No environment {environment!r} (write it team/env).")
        else:
            environments = environments.filter(enabled=True)
        failed = 0
        for env in environments:
            report = reconcile(env, trigger="command")
            self.stdout.write(str(report))
            failed += bool(report.error)
        if failed:
            raise CommandError(f"{failed} reconcile(s) failed; see the reports above.")

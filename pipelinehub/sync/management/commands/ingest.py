import asyncio

from django.core.management.base import BaseCommand

from pipelinehub.sync.ingest import run_ingest


class Command(BaseCommand):
    help = (
        "Mirror the live Prefect events of every enabled environment into Redis. Runs until "
        "stopped; survives Prefect and Redis restarts; restartable anywhere (it resumes from "
        "its watermark)."
    )

    def handle(self, *args, **options):
        try:
            asyncio.run(run_ingest())
        except KeyboardInterrupt:
            self.stdout.write("ingest stopped")

import asyncio

from django.core.management.base import BaseCommand

from pipelinehub.live.relay import run_relay


class Command(BaseCommand):
    help = (
        "Send every enabled environment's run-state changes to the browsers watching it. Run "
        "exactly one; restartable anywhere (watchers catch up from Redis)."
    )

    def handle(self, *args, **options):
        try:
            asyncio.run(run_relay())
        except KeyboardInterrupt:
            self.stdout.write("relay stopped")

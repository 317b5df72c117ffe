"""The relay: every environment's change stream, read once, sent to its watchers once.

One process (`manage.py relay`) reads the change streams with blocking XREADs, one per Redis
connection (environments on one target and user share it), and sends each batch to the
environment's channel-layer group as one message, whatever the number of watchers. Each message
carries the stream id it follows (`after`): a consumer that sees a gap (it missed messages, or
the relay restarted) reads what it missed from Redis itself, so nothing a watcher is shown is
ever silently skipped.
"""

import asyncio
import logging

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError

from pipelinehub.background import outside_requests
from pipelinehub.environments.models import Environment
from pipelinehub.state.connections import async_environment_client, environment_connection_shape
from pipelinehub.state.streams import ChangeStreams

from . import protocol

log = logging.getLogger(__name__)
MAX_BACKOFF = 30.0
# After a read that brought changes, wait this long before the next: what comes meanwhile goes
# in one message. A change after a quiet spell still goes at once; under load an environment
# gets at most 1/SEND_INTERVAL messages a second, whatever the rate of changes, because each
# message costs every watching socket the same whatever it carries (docs/benchmarks.md).
SEND_INTERVAL = 0.05


def group_name(environment_id):
    return f"live.environment.{environment_id}"


class StreamRelay:
    """The environments of one Redis connection shape."""

    def __init__(self, environments):
        self.environments = {env.key_prefix: env for env in environments}
        self.layer = get_channel_layer()

    async def run_forever(self):
        backoff = 1.0
        while True:
            streams = ChangeStreams(
                async_environment_client(next(iter(self.environments.values()))),
                self.environments,
            )
            try:
                positions = await streams.latest()
                backoff = 1.0
                while True:
                    batches = await streams.read(positions)
                    for prefix, entries in batches.items():
                        await self._send(prefix, positions[prefix], entries)
                        positions[prefix] = entries[-1].stream_id
                    if batches:
                        await asyncio.sleep(SEND_INTERVAL)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("relay %s: %s; retrying in %.0fs", self, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            finally:
                await streams.aclose()

    async def _send(self, prefix, after, entries):
        environment = self.environments[prefix]
        message = {
            "type": "changes.batch",
            "after": after,
            "cursor": entries[-1].stream_id,
            "changes": [
                {**protocol.change(entry), "stream_id": entry.stream_id} for entry in entries
            ],
        }
        await self.layer.group_send(group_name(environment.pk), message)

    def __str__(self):
        return ",".join(str(env) for env in self.environments.values())


def environments_by_connection():
    """{(connection shape, environment ids): [environments]} of the enabled environments."""
    groups = {}
    for env in Environment.objects.filter(enabled=True).with_connections():
        groups.setdefault(environment_connection_shape(env), []).append(env)
    return {
        (shape, tuple((env.pk, env.key_prefix) for env in envs)): envs
        for shape, envs in groups.items()
    }


async def run_relay():
    """Relay every enabled environment; follow configuration changes."""
    poll = settings.CONFIG_POLL_SECONDS
    running = {}
    while True:
        try:
            wanted = await outside_requests(environments_by_connection)()
        except DatabaseError as exc:
            log.error("relay: configuration unavailable (%s); retrying in %.0fs", exc, poll)
            await asyncio.sleep(poll)
            continue
        for key in list(running):
            if key not in wanted:
                running.pop(key).cancel()
        for key, environments in wanted.items():
            if key not in running:
                relay = StreamRelay(environments)
                log.info("relay: reading %s", relay)
                running[key] = asyncio.create_task(relay.run_forever())
        if not running:
            log.info("relay: no enabled environment; checking again in %.0fs", poll)
        await asyncio.sleep(poll)

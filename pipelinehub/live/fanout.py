"""One channel-layer member per web process and environment, handing each relay message to the
process's sockets itself.

With a group member per socket, channels_redis stores a copy of every relay message per socket
and wakes each consumer's receive loop for it: with hundreds of sockets that, not the sending,
was most of a web process's time (docs/benchmarks.md). Here a process joins an environment's
group once, while it has sockets watching it, and gives every message to those sockets in one
loop. Messages that queued while it was sending go out together as one batch, so a busy process
sends fewer, larger frames instead of falling behind.
"""

import asyncio
import logging
import weakref

from .relay import group_name

log = logging.getLogger(__name__)
# channels_redis forgets a group member after its group_expiry (a day by default): a member that
# lives longer joins again well before.
REJOIN_SECONDS = 3600
MAX_BACKOFF = 30.0

_fanouts = weakref.WeakKeyDictionary()  # event loop -> {environment id: EnvironmentFanout}


async def watch(layer, environment_id, consumer):
    """Add a socket to its environment's fan-out; return once the process is a group member, so
    that whatever the socket reads from Redis afterwards is followed by every later message."""
    fanouts = _fanouts.setdefault(asyncio.get_running_loop(), {})
    fanout = fanouts.get(environment_id)
    if fanout is None:
        fanout = fanouts[environment_id] = EnvironmentFanout(layer, environment_id)
    fanout.watchers[consumer] = None
    try:
        await asyncio.shield(fanout.joined)
    except Exception:
        if fanouts.get(environment_id) is fanout:  # the first join failed: the next socket retries
            del fanouts[environment_id]
            await fanout.close()
        raise


async def unwatch(environment_id, consumer):
    fanouts = _fanouts.get(asyncio.get_running_loop(), {})
    fanout = fanouts.get(environment_id)
    if fanout is None:
        return
    fanout.watchers.pop(consumer, None)
    if not fanout.watchers:
        del fanouts[environment_id]
        await fanout.close()


def contiguous_batches(messages):
    """Relay messages merged where each follows the previous (its `after` is the previous one's
    `cursor`); a message after a gap starts a new batch, so a consumer still sees the gap."""
    batches = []
    for message in messages:
        if batches and batches[-1]["cursor"] == message["after"]:
            last = batches[-1]
            batches[-1] = {
                **last,
                "cursor": message["cursor"],
                "changes": last["changes"] + message["changes"],
            }
        else:
            batches.append(message)
    return batches


class EnvironmentFanout:
    def __init__(self, layer, environment_id):
        self.layer = layer
        self.group = group_name(environment_id)
        self.watchers = {}  # consumer -> None: an ordered set
        self.pending = []
        self.arrived = asyncio.Event()
        self.channel = None
        self.joined = asyncio.get_running_loop().create_future()
        self.tasks = [asyncio.create_task(self._receive()), asyncio.create_task(self._deliver())]

    async def close(self):
        for task in self.tasks:
            task.cancel()
        if self.channel is not None:
            await self.layer.group_discard(self.group, self.channel)

    async def _receive(self):
        backoff = 1.0
        while True:
            try:
                await self._join()
                while True:
                    message = await self.layer.receive(self.channel)
                    self.pending.append(message)  # not before the await: _deliver swaps the list
                    self.arrived.set()
                    backoff = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self.joined.done():
                    self.joined.set_exception(exc)
                    return
                # The channel layer's Redis is away: the sockets stay open, and each fills
                # from the change stream what it missed when the relay's next message comes.
                log.error("live: %s unreachable (%s); again in %.0fs", self.group, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _join(self):
        if self.channel is None:
            self.channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, self.channel)
        if not self.joined.done():
            self.joined.set_result(None)
            self.tasks.append(asyncio.create_task(self._rejoin_forever()))

    async def _rejoin_forever(self):
        while True:
            await asyncio.sleep(REJOIN_SECONDS)
            await self.layer.group_add(self.group, self.channel)

    async def _deliver(self):
        while True:
            await self.arrived.wait()
            self.arrived.clear()
            messages, self.pending = self.pending, []
            for batch in contiguous_batches(messages):
                for consumer in list(self.watchers):
                    await self._hand(consumer, batch)

    async def _hand(self, consumer, batch):
        try:
            await consumer.changes_batch(batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            # One socket's failure (closing, its Redis read for a gap) is its own: the others
            # still get the batch, and the socket fills any gap from Redis at its next batch.
            log.exception("live: a socket of %s could not take a batch", self.group)

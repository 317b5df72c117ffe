"""Blocking reads of many environments' change streams over one connection: the live relay's
source. One XREAD serves every environment of a Redis target and user, so the cost of a change
does not depend on how many environments or watchers there are."""

from .keyspace import Keyspace
from .store import EMPTY_CURSOR, as_text, stream_entry


class ChangeStreams:
    def __init__(self, client, prefixes):
        self.client = client
        self.streams = {Keyspace(prefix).changes: prefix for prefix in prefixes}

    async def latest(self):
        """{prefix: the id of its newest entry}: where a reader that starts now begins."""
        async with self.client.pipeline(transaction=False) as pipe:
            for stream in self.streams:
                pipe.xrevrange(stream, count=1)
            newest = await pipe.execute()
        return {
            prefix: as_text(entries[0][0]) if entries else EMPTY_CURSOR
            for prefix, entries in zip(self.streams.values(), newest, strict=True)
        }

    async def read(self, positions, block_ms=4000, count=500):
        """{prefix: [StreamEntry]} of the entries after `positions` ({prefix: id}), waiting up
        to `block_ms` for the first; {} when none came."""
        replies = await self.client.xread(
            {stream: positions[prefix] for stream, prefix in self.streams.items()},
            count=count,
            block=block_ms,
        )
        return {
            self.streams[as_text(stream)]: [
                stream_entry(entry_id, fields) for entry_id, fields in entries
            ]
            for stream, entries in (replies or [])
        }

    async def aclose(self):
        await self.client.aclose(close_connection_pool=True)

"""The client side of the live board's benchmark (bench/live.py): one process holding the
websockets, so that their reading does not share the web process, run as
`python -m bench.live_clients clients|snapshot ...` by the coordinator.

It timestamps each frame's arrival per socket (parsing each distinct frame once: `Frames`) and,
after the drain, joins each change's first arrival per socket with the coordinator's apply
times, which it reads from stdin.
"""

import asyncio
import json
import statistics
import sys
import time

DRAIN_SECONDS = 15  # after the last write, how long the clients may take to receive it
CONNECTING = 10  # sockets opened at once
SNAPSHOT_REPEATS = 30


def seq_of(run_id, number):
    """The change's sequence number, or None for a run of another run (or the seeded ones)."""
    if int(run_id[:8], 16) != number:
        return None
    return int(run_id[24:], 16)


def percentiles(latencies, expected):
    """p50 and p99 in milliseconds over `expected` arrivals, those that never came counted as
    slower than any (so a p99 with more than 1% missing is None)."""
    ordered = sorted(latencies)
    missing = expected - len(ordered)

    def at(fraction):
        index = min(expected - 1, int(fraction * expected))
        return ordered[index] * 1000 if index < len(ordered) else None

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": at(1.0), "missing": missing}


def clients(url, cookie, count, total, number):
    """Open `count` sockets (each gets its snapshot), say "ready", record every change's first
    arrival per socket until stdin brings the apply times, then print the joined figures."""
    asyncio.run(_clients(url, cookie, int(count), int(total), int(number)))


async def _clients(url, cookie, count, total, number):
    gate = asyncio.Semaphore(CONNECTING)
    watchers = await asyncio.gather(*(Watcher.open(url, cookie, gate) for _ in range(count)))
    print("ready", flush=True)
    frames = Frames(number)
    receiving = [asyncio.create_task(w.receive(frames)) for w in watchers]
    applied = json.loads(await asyncio.to_thread(sys.stdin.read))
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline and not all(w.newest == total - 1 for w in watchers):
        await asyncio.sleep(0.1)
    for task in receiving:
        task.cancel()
    await asyncio.gather(*(w.close(gate) for w in watchers))
    print(json.dumps(_joined(watchers, applied)))


def _joined(watchers, applied):
    latencies = [
        arrived - sent
        for watcher in watchers
        for arrived, sent in zip(watcher.arrivals(len(applied)), applied, strict=True)
        if arrived
    ]
    frames = sum(w.frames.get("delta", 0) for w in watchers) / len(watchers)
    return {
        **percentiles(latencies, len(applied) * len(watchers)),
        "delta_frames_per_socket": frames,
        "other_frames": sum(sum(w.frames.values()) for w in watchers) - frames * len(watchers),
        "closed": sum(w.closed for w in watchers),
    }


class Watcher:
    """One browser: a websocket with the viewer's session cookie."""

    def __init__(self, socket):
        self.socket = socket
        self.received = []  # (arrival time, the sequence numbers of the frame's changes)
        self.newest = -1
        self.frames = {}
        self.closed = False

    @classmethod
    async def open(cls, url, cookie, gate):
        from websockets.asyncio.client import connect

        async with gate:
            socket = await connect(
                url,
                origin="http://127.0.0.1",
                additional_headers={"Cookie": cookie},
                max_size=None,
                ping_interval=None,
            )
            frame = json.loads(await socket.recv())
        if frame["type"] != "snapshot":
            raise RuntimeError(f"expected a snapshot, got {frame['type']}")
        return cls(socket)

    async def receive(self, frames):
        from websockets.exceptions import ConnectionClosed

        try:
            async for text in self.socket:
                at = time.time()
                kind, seqs, newest = frames.of(text)
                self.received.append((at, seqs))
                self.frames[kind] = self.frames.get(kind, 0) + 1
                self.newest = max(self.newest, newest)
        except ConnectionClosed:
            self.closed = True

    async def close(self, gate):
        """Closed CONNECTING at a time, as they were opened: hundreds of sockets closing at once
        make as many consumers leave their group at once, beyond the channel layer's pool of
        100 Redis connections (redis-py 8 then raises instead of waiting)."""
        async with gate:
            await self.socket.close()

    def arrivals(self, total):
        """When each change first arrived (0.0: never), from the frames kept while receiving."""
        arrived = [0.0] * total
        for at, seqs in self.received:
            for seq in seqs:
                if seq is not None and not arrived[seq]:
                    arrived[seq] = at
        return arrived


class Frames:
    """Each distinct frame, parsed once. Every socket of one web process and filter gets the
    same text, and parsing it again for each of 500 sockets, change by change, took the client
    process's whole core and delayed its own timestamps: a socket keeps its frames' arrival
    times and the changes are joined after the drain."""

    def __init__(self, number):
        self.number = number
        self.parsed = {}  # text -> (frame type, [sequence number or None], newest one or -1)

    def of(self, text):
        found = self.parsed.get(text)
        if found is None:
            import orjson

            frame = orjson.loads(text)
            # Changes of deltas and replays, and rows of a snapshot after a resync, all count.
            changes = frame.get("changes", frame.get("rows", ()))
            seqs = [seq_of(change["id"], self.number) for change in changes]
            newest = max((seq for seq in seqs if seq is not None), default=-1)
            found = self.parsed[text] = (frame["type"], seqs, newest)
        return found


def snapshots(url, cookie):
    """Open a socket SNAPSHOT_REPEATS times, one after the other: seconds from connecting (and
    from the handshake's end) to the snapshot frame, medians and the slowest."""
    print(json.dumps(asyncio.run(_snapshots(url, cookie))))


async def _snapshots(url, cookie):
    from websockets.asyncio.client import connect

    total, after_handshake, size = [], [], 0
    for _ in range(SNAPSHOT_REPEATS):
        started = time.perf_counter()
        async with connect(
            url, origin="http://127.0.0.1", additional_headers={"Cookie": cookie}, max_size=None
        ) as socket:
            opened = time.perf_counter()
            text = await socket.recv()
            arrived = time.perf_counter()
        if json.loads(text)["type"] != "snapshot":
            raise RuntimeError("expected a snapshot")
        total.append(arrived - started)
        after_handshake.append(arrived - opened)
        size = len(text)
    return {
        "connect_median": statistics.median(total),
        "connect_max": max(total),
        "handshake_median": statistics.median(after_handshake),
        "bytes": size,
    }


if __name__ == "__main__":
    role, *arguments = sys.argv[1:]
    {"clients": clients, "snapshot": snapshots}[role](*arguments)

"""The live board's websocket against the real Redis and the real channel layer: snapshot and
cursor, deltas through the relay, resume, resync, refusals, bad frames, revoked access."""

import asyncio
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from pipelinehub.accounts.models import Membership
from pipelinehub.live import consumer, fanout, protocol
from pipelinehub.live.relay import StreamRelay, group_name
from pipelinehub.state.records import RunChange
from pipelinehub.state.store import EnvironmentState
from tests import factories
from tests.conftest import delete_prefix, redis_for_tests

pytestmark = pytest.mark.django_db(transaction=True)
T0 = 1_764_000_000_000_000
SSO_BACKEND = "pipelinehub.accounts.backends.SingleSignOnBackend"


def flow(state_type="RUNNING", version=T0, run_id=None, name="calm-fox"):
    return RunChange(
        "flow", run_id or str(uuid.uuid4()), version, state_type, state_type.title(), name=name
    )


@pytest.fixture
def board(transactional_db):
    """Team alpha's environment, its blocking state, and a viewer of alpha."""
    environment = factories.environment(factories.team("alpha"), "dev")
    factories.environment(factories.team("beta"), "dev")
    user = get_user_model().objects.create_user(username=f"viewer-{uuid.uuid4().hex[:6]}")
    membership = Membership.objects.create(user=user, team=environment.team, role="viewer")
    yield environment, EnvironmentState.for_environment(environment), membership
    delete_prefix(redis_for_tests(), environment.key_prefix)


async def connect(user, path, origin=b"http://127.0.0.1"):
    from pipelinehub.asgi import application

    headers = [(b"origin", origin)]
    if user is not None:
        client = Client()
        await sync_to_async(client.force_login)(user, backend=SSO_BACKEND)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME]
        headers.append((b"cookie", f"{cookie.key}={cookie.value}".encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect()
    return communicator, connected


PATH = "/ws/environments/alpha/dev/"


async def test_snapshot_carries_the_cursor_it_is_consistent_with(board):
    environment, state, membership = board
    first, second = flow(), flow(version=T0 + 1)
    await sync_to_async(state.apply_batch)([first, second])
    ws, connected = await connect(membership.user, PATH)
    frame = await ws.receive_json_from()
    assert connected and frame["type"] == "snapshot"
    assert [row["id"] for row in frame["rows"]] == [second.id, first.id]
    assert frame["cursor"] == await sync_to_async(state.cursor)()
    assert frame["counts"] == {"RUNNING": 2}
    await ws.disconnect()


async def test_changes_arrive_as_deltas_through_the_relay(board):
    environment, state, membership = board
    relay = asyncio.create_task(StreamRelay([environment]).run_forever())
    try:
        ws, _ = await connect(membership.user, PATH)
        snapshot = await ws.receive_json_from()
        await asyncio.sleep(0.5)  # the relay has read where the stream ends
        changes = [flow(), flow(version=T0 + 1)]
        await sync_to_async(state.apply_batch)(changes)
        received = []
        while len(received) < 2:
            frame = await ws.receive_json_from(timeout=10)
            assert frame["type"] == "delta"
            received += frame["changes"]
        assert [c["id"] for c in received] == [c.id for c in changes]
        assert frame["cursor"] == await sync_to_async(state.cursor)() != snapshot["cursor"]
        await ws.disconnect()
    finally:
        relay.cancel()


async def test_a_quiet_socket_stays_open_and_still_gets_changes(board):
    """Nothing to send for longer than the channel layer's blocking wait (5 s) is normal for
    a board: the socket must stay open and deliver the next change."""
    environment, state, membership = board
    relay = asyncio.create_task(StreamRelay([environment]).run_forever())
    try:
        ws, _ = await connect(membership.user, PATH)
        await ws.receive_json_from()
        assert await ws.receive_nothing(timeout=7)
        change = flow()
        await sync_to_async(state.apply)(change)
        frame = await ws.receive_json_from(timeout=10)
        assert (frame["type"], frame["changes"][0]["id"]) == ("delta", change.id)
        await ws.disconnect()
    finally:
        relay.cancel()


async def test_a_client_resumes_after_its_cursor(board):
    environment, state, membership = board
    await sync_to_async(state.apply)(flow())
    cursor = await sync_to_async(state.cursor)()
    later = flow(version=T0 + 5)
    await sync_to_async(state.apply)(later)
    ws, _ = await connect(membership.user, f"{PATH}?after={cursor}")
    frame = await ws.receive_json_from()
    assert frame["type"] == "replay"
    assert [c["id"] for c in frame["changes"]] == [later.id]
    assert frame["cursor"] == await sync_to_async(state.cursor)()
    await ws.disconnect()


async def test_a_client_behind_the_trimmed_stream_gets_resync_and_a_snapshot(board, settings):
    environment, state, membership = board
    settings.STATE_STREAM_MAXLEN = 10
    small = EnvironmentState(state.client, environment.key_prefix, 3600)
    await sync_to_async(small.apply)(flow())
    cursor = await sync_to_async(small.cursor)()
    await sync_to_async(small.apply_batch)([flow(version=T0 + i) for i in range(1, 300)])
    ws, _ = await connect(membership.user, f"{PATH}?after={cursor}")
    assert (await ws.receive_json_from())["type"] == "resync"
    frame = await ws.receive_json_from()
    assert frame["type"] == "snapshot" and len(frame["rows"]) == protocol.SNAPSHOT_ROWS
    await ws.disconnect()


async def test_a_gap_in_relay_messages_is_filled_from_redis(board):
    """A message that does not follow the consumer's cursor (one was dropped): the consumer
    replays from Redis what it missed before it sends anything newer."""
    environment, state, membership = board
    ws, _ = await connect(membership.user, PATH)
    await ws.receive_json_from()
    missed, seen = flow(), flow(version=T0 + 1)
    await sync_to_async(state.apply_batch)([missed, seen])
    entries = (await sync_to_async(state.changes_since)("0-0")).entries
    await get_channel_layer().group_send(
        group_name(environment.pk),
        {
            "type": "changes.batch",
            "after": entries[0].stream_id,
            "cursor": entries[1].stream_id,
            "changes": [{**protocol.change(entries[1]), "stream_id": entries[1].stream_id}],
        },
    )
    replay = await ws.receive_json_from(timeout=5)
    assert replay["type"] == "replay"
    assert [c["id"] for c in replay["changes"]] == [missed.id, seen.id]
    assert await ws.receive_nothing(timeout=0.5)  # the batch's change was in the replay
    await ws.disconnect()


async def test_a_process_joins_an_environments_group_once_for_all_its_sockets(board):
    """The fan-out: one channel-layer member per process and environment, whatever the number
    of sockets; every socket gets each relay message; the member leaves with the last socket."""
    environment, state, membership = board
    layer, group = get_channel_layer(), group_name(environment.pk)
    members = f"{layer.prefix}:group:{group}"
    sockets = [(await connect(membership.user, PATH))[0] for _ in range(5)]
    for ws in sockets:
        await ws.receive_json_from()
    assert await sync_to_async(redis_for_tests().zcard)(members) == 1
    change = flow()
    await sync_to_async(state.apply)(change)
    entry = (await sync_to_async(state.changes_since)("0-0")).entries[-1]
    await layer.group_send(group, relay_message("0-0", [entry]))
    for ws in sockets:
        frame = await ws.receive_json_from(timeout=5)
        assert [c["id"] for c in frame["changes"]] == [change.id]
    for ws in sockets[:-1]:
        await ws.disconnect()
    assert await sync_to_async(redis_for_tests().zcard)(members) == 1
    await sockets[-1].disconnect()
    assert await sync_to_async(redis_for_tests().zcard)(members) == 0


async def test_sockets_opening_while_changes_flow_get_their_snapshot_first_then_what_follows(
    board,
):
    """The fan-out hands a socket batches as soon as its process is a group member, while the
    socket is still reading its snapshot: those batches come after the snapshot, and each
    socket's frames follow one another without a gap or a repeat."""
    environment, state, membership = board
    relay = asyncio.create_task(StreamRelay([environment]).run_forever())
    writing = True

    async def write():
        version = T0
        while writing:
            version += 1
            await sync_to_async(state.apply)(flow(version=version))
            await asyncio.sleep(0.003)

    writer = asyncio.create_task(write())
    try:
        await asyncio.sleep(0.5)
        sockets = []
        for _ in range(3):  # many at once: their snapshots are read while batches come
            opened = await asyncio.gather(*(connect(membership.user, PATH) for _ in range(12)))
            sockets += [ws for ws, _ in opened]
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)
        writing = False
        await writer
        for ws in sockets:
            frames = []
            while not await ws.receive_nothing(timeout=0.15):
                frames.append(await ws.receive_json_from())
            assert frames[0]["type"] == "snapshot", [f["type"] for f in frames[:3]]
            for previous, frame in zip(frames, frames[1:], strict=False):
                assert frame["type"] == "delta"
                first = frame["changes"][0]["id"]
                assert first not in {c["id"] for c in previous.get("changes", ())}
            await ws.disconnect()
    finally:
        writing = False
        relay.cancel()


def relay_message(after, entries):
    return {
        "type": "changes.batch",
        "after": after,
        "cursor": entries[-1].stream_id,
        "changes": [{**protocol.change(e), "stream_id": e.stream_id} for e in entries],
    }


def test_queued_relay_messages_merge_only_where_they_follow_each_other():
    first = {"after": "1-0", "cursor": "2-0", "changes": ["a"]}
    second = {"after": "2-0", "cursor": "3-0", "changes": ["b"]}
    after_a_gap = {"after": "5-0", "cursor": "6-0", "changes": ["c"]}
    assert fanout.contiguous_batches([first, second, after_a_gap]) == [
        {"after": "1-0", "cursor": "3-0", "changes": ["a", "b"]},
        after_a_gap,
    ]


async def test_a_run_that_stops_matching_a_filtered_socket_leaves_it(board):
    environment, state, membership = board
    running = flow("RUNNING")
    await sync_to_async(state.apply)(running)
    cursor = await sync_to_async(state.cursor)()
    ws, _ = await connect(membership.user, f"{PATH}?state=running")
    assert [r["id"] for r in (await ws.receive_json_from())["rows"]] == [running.id]
    await sync_to_async(state.apply)(flow("COMPLETED", T0 + 1, run_id=running.id))
    entry = (await sync_to_async(state.changes_since)(cursor)).entries[-1]
    await get_channel_layer().group_send(group_name(environment.pk), relay_message(cursor, [entry]))
    frame = await ws.receive_json_from(timeout=5)
    assert frame["changes"] == [{"id": running.id, "kind": "flow", "run": None}]
    await ws.disconnect()


async def test_filters_shape_the_snapshot(board):
    environment, state, membership = board
    running, failed = flow("RUNNING", name="alpha-load"), flow("FAILED", T0 + 1, name="beta")
    await sync_to_async(state.apply_batch)([running, failed])
    ws, _ = await connect(membership.user, f"{PATH}?state=failed")
    assert [r["id"] for r in (await ws.receive_json_from())["rows"]] == [failed.id]
    await ws.disconnect()
    ws, _ = await connect(membership.user, f"{PATH}?q=LOAD")
    assert [r["id"] for r in (await ws.receive_json_from())["rows"]] == [running.id]
    await ws.disconnect()


@pytest.mark.parametrize(
    ("path", "code"),
    [("/ws/environments/beta/dev/", protocol.NOT_ALLOWED), ("/ws/environments/x/y/", 4404)],
)
async def test_another_teams_and_unknown_environments_are_closed(board, path, code):
    ws, _ = await connect(board[2].user, path)
    assert await ws.receive_output() == {"type": "websocket.close", "code": code}


async def test_anonymous_is_not_allowed(board):
    ws, _ = await connect(None, PATH)
    assert (await ws.receive_output())["code"] == protocol.NOT_ALLOWED


async def test_a_foreign_origin_is_refused(board):
    _, connected = await connect(board[2].user, PATH, origin=b"https://evil.example")
    assert not connected


async def test_bad_frames_get_an_error_and_the_socket_lives_on(board):
    ws, _ = await connect(board[2].user, PATH)
    await ws.receive_json_from()
    for frame in ("not json", '{"type": "subscribe"}', "[1, 2]"):
        await ws.send_to(text_data=frame)
        assert (await ws.receive_json_from())["type"] == "error"
    await ws.send_json_to({"type": "ping"})
    assert (await ws.receive_json_from())["type"] == "pong"
    await ws.disconnect()


async def test_an_oversized_frame_closes_the_socket(board):
    ws, _ = await connect(board[2].user, PATH)
    await ws.receive_json_from()
    await ws.send_to(text_data="x" * (consumer.MAX_FRAME_BYTES + 1))
    assert (await ws.receive_output())["code"] == protocol.TOO_LARGE


async def test_a_flooding_client_is_closed(board):
    ws, _ = await connect(board[2].user, PATH)
    await ws.receive_json_from()
    for _ in range(consumer.MAX_FRAMES):
        await ws.send_json_to({"type": "ping"})
    outputs = [await ws.receive_output() for _ in range(consumer.MAX_FRAMES)]
    assert outputs[-1] == {"type": "websocket.close", "code": protocol.FLOODING}


async def test_a_member_whose_role_is_removed_is_disconnected(board, monkeypatch):
    monkeypatch.setattr(consumer, "RECHECK_SECONDS", 0.5)
    ws, _ = await connect(board[2].user, PATH)
    await ws.receive_json_from()
    await sync_to_async(board[2].delete)()
    assert await ws.receive_output(timeout=5) == {
        "type": "websocket.close",
        "code": protocol.NOT_ALLOWED,
    }

"""Ingest never stops on an event, whatever it holds, and never stores a value out of bounds:
arbitrary events through the real `apply_events` path into the real Redis."""

import asyncio
import os
import uuid

import msgpack
import redis
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelinehub.environments.models import Environment, PrefectWorkspace, Team
from pipelinehub.state.records import (
    EARLIEST_MICROS,
    MAX_RUN_COUNT,
    MAX_TEXT_LENGTH,
    STATE_TYPES,
    latest_micros,
)
from pipelinehub.state.scripts import LAYOUT
from pipelinehub.state.store import AsyncEnvironmentState
from pipelinehub.sync.ingest import EnvironmentIngest

from .conftest import delete_prefix
from .strategies import run_events

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
UUID_FIELDS = {"deployment", "flow_run_id"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(run_events, max_size=25))
def test_any_batch_is_applied_without_stopping_and_within_bounds(batch):
    prefix = f"ph:{{poison-{uuid.uuid4().hex[:10]}}}:"
    environment = Environment(
        team=Team(slug="t"), slug="poison", key_prefix=prefix, workspace=PrefectWorkspace()
    )
    ingest = EnvironmentIngest(environment)
    try:
        asyncio.run(_apply(ingest, prefix, batch))
        for raw in _stored_records(prefix):
            _assert_within_bounds(dict(zip(LAYOUT, msgpack.unpackb(raw), strict=True)))
    finally:
        delete_prefix(redis.Redis.from_url(REDIS_URL), prefix)


async def _apply(ingest, prefix, batch):
    state = AsyncEnvironmentState(redis.asyncio.Redis.from_url(REDIS_URL), prefix, 3600, 100)
    try:
        await ingest.apply_events(batch, state, source="live")
    finally:
        await state.aclose()


def _stored_records(prefix):
    client = redis.Redis.from_url(REDIS_URL)
    records = list(client.hgetall(f"{prefix}flowruns").values())
    records += [client.get(key) for key in client.scan_iter(match=f"{prefix}task:*")]
    return records


def _assert_within_bounds(record):
    assert record["state_type"] in STATE_TYPES
    assert EARLIEST_MICROS <= record["version"] <= latest_micros()
    for name in ("start", "end"):
        assert record[name] == 0 or EARLIEST_MICROS <= record[name] <= latest_micros()
    assert 0 <= record["run_count"] <= MAX_RUN_COUNT
    for name in ("state_name", "name", "flow"):
        assert isinstance(record[name], str) and len(record[name]) <= MAX_TEXT_LENGTH
    for name in UUID_FIELDS:
        assert record[name] == "" or str(uuid.UUID(record[name])) == record[name]

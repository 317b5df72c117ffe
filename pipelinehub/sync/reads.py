"""Reads of the Prefect API that ingest and reconcile make, paged within Prefect's limits.

Each takes an open PrefectClient (`prefect.rest_client`) and returns Prefect objects; mapping
them to changes is `mapping`'s business.
"""

from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterId,
    FlowRunFilter,
    FlowRunFilterId,
    Operator,
    TaskRunFilter,
    TaskRunFilterEndTime,
    TaskRunFilterFlowRunId,
    TaskRunFilterId,
    TaskRunFilterState,
    TaskRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventOrder

PAGE = 200  # the most read_flow_runs / read_task_runs accept
EVENT_PAGE = 50  # the most read_events accepts on the open-source server
TERMINAL = [StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED]


async def all_pages(read_page):
    """Every item of an offset-paged listing: `read_page(offset)` returns up to PAGE items."""
    items, offset = [], 0
    while True:
        page = await read_page(offset)
        items += page
        if len(page) < PAGE:
            return items
        offset += PAGE


def _chunks(ids):
    ids = sorted(ids, key=str)
    return [ids[i : i + PAGE] for i in range(0, len(ids), PAGE)]


async def flow_runs_by_id(client, flow_run_ids):
    runs = []
    for chunk in _chunks(flow_run_ids):
        runs += await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=PAGE
        )
    return runs


async def task_runs_by_id(client, task_run_ids):
    runs = []
    for chunk in _chunks(task_run_ids):
        runs += await client.read_task_runs(
            task_run_filter=TaskRunFilter(id=TaskRunFilterId(any_=chunk)), limit=PAGE
        )
    return runs


async def flow_runs_where(client, flow_run_filter, work_pools=()):
    """Every flow run a filter matches, in the given work pools when any are named."""
    pools = WorkPoolFilter(name=WorkPoolFilterName(any_=sorted(work_pools))) if work_pools else None
    return await all_pages(
        lambda offset: client.read_flow_runs(
            flow_run_filter=flow_run_filter,
            work_pool_filter=pools,
            sort=FlowRunSort.ID_DESC,
            limit=PAGE,
            offset=offset,
        )
    )


async def task_runs_of(client, flow_run_ids):
    """Every task run of the given flow runs."""
    runs = []
    for chunk in _chunks(flow_run_ids):
        task_filter = TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=chunk))
        runs += await all_pages(
            lambda offset, f=task_filter: client.read_task_runs(
                task_run_filter=f, sort=TaskRunSort.ID_DESC, limit=PAGE, offset=offset
            )
        )
    return runs


async def flow_names(client, flow_ids):
    """{flow id: name} of the given flows."""
    names = {}
    for chunk in _chunks(flow_ids):
        flows = await client.read_flows(
            flow_filter=FlowFilter(id=FlowFilterId(any_=chunk)), limit=PAGE
        )
        names.update({flow.id: flow.name for flow in flows})
    return names


async def changed_task_runs(client, flow_run_ids, ended_after):
    """Task runs of the given flow runs that are unfinished or ended after `ended_after`: what
    can have changed, whatever the number of tasks that finished long before."""
    task_filter = TaskRunFilter(
        operator=Operator.or_,
        state=TaskRunFilterState(type=TaskRunFilterStateType(not_any_=TERMINAL)),
        end_time=TaskRunFilterEndTime(after_=ended_after),
    )
    runs = []
    for chunk in _chunks(flow_run_ids):
        runs += await all_pages(
            lambda offset, c=chunk: client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=c)),
                task_run_filter=task_filter,
                sort=TaskRunSort.ID_DESC,
                limit=PAGE,
                offset=offset,
            )
        )
    return runs


async def events(client, since, until, prefixes):
    """Persisted events of the given name prefixes that occurred in [since, until], oldest
    first, a page at a time (an async iterator of lists)."""
    event_filter = EventFilter(
        occurred=EventOccurredFilter(since=since, until=until),
        event=EventNameFilter(prefix=prefixes),
        order=EventOrder.ASC,
    )
    page = await client.read_events(filter=event_filter, limit=EVENT_PAGE)
    yield page.events
    while page.next_page:
        page = await client.read_events_page(str(page.next_page))
        yield page.events

"""The live pages: an environment's board of recent flow runs, and one flow run's page.

Both are rendered complete on the server (they work before, and without, the script), together
with the change-stream cursor the rows are consistent with; `static/dashboard/live.js` then
opens the environment's websocket with `?after=<cursor>`, so it receives exactly the changes
made since the page was rendered, and every change after.
"""

from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from uuid import UUID

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone

from pipelinehub.accounts.policy import Action, can, environment_or_404
from pipelinehub.environments.models import Environment
from pipelinehub.live.protocol import SNAPSHOT_ROWS, SNAPSHOT_SCAN, RunFilter

from . import chart, reads
from .links import prefect_ui_url
from .overview import freshness, with_newest_report
from .presentation import FINISHED, IN_FLIGHT, STATE_ICONS

FLAGGED_SHOWN = 100  # flagged runs listed under "Needs attention"; the count is of them all
PLACEHOLDER = UUID(int=0)  # stands for a run id in the URLs of the script's row template
# What the script's row template is rendered from: a run with nothing known yet.
TEMPLATE_RUN = SimpleNamespace(
    id=PLACEHOLDER,
    version=0,
    state_type="",
    state_name="",
    name="",
    flow="",
    deployment="",
    flow_run_id="",
    start=None,
    end=None,
    run_count=0,
    flag=None,
)


@dataclass
class BoardRead:
    runs: list  # the newest flow runs that match the filter, at most SNAPSHOT_ROWS
    cursor: str
    flows: list  # the flows among the newest runs, for the filter
    meta: dict
    chart: chart.Chart | None  # None when the stream no longer reaches back far enough
    flagged: list  # the flagged flow runs of the environment (longest flagged first), any filter
    flagged_total: int


@dataclass
class RunRead:
    cursor: str
    found: tuple | None  # (flow run, [task runs]) as `EnvironmentState.flow_run` returns it
    meta: dict


def board_filter(query):
    """The board's filter, in the websocket's vocabulary: `state` (repeated or comma-separated),
    `flow`, `q` (a part of the run's name)."""
    states = ",".join(query.getlist("state"))
    return RunFilter.from_query(
        {"state": states, "flow": query.get("flow", ""), "q": query.get("q", "")}
    )


async def read_board(state, run_filter, now_micros):
    """The board as the websocket's snapshot would show it (same scan, same filter), plus what
    the page adds: the flows to filter by, the freshness, the chart."""
    board = await state.board(limit=SNAPSHOT_SCAN)
    meta = await state.meta()
    # Approximate trimming keeps a little more than MAXLEN entries; reading twice as many
    # and getting them all means the window was not read to its end. Entries trimmed before
    # the window's start are older than the chart and do not matter to it.
    limit = 2 * settings.STATE_STREAM_MAXLEN
    entries = await state.recent_changes(chart.stream_start_id(now_micros), count=limit)
    complete = len(entries) < limit
    flagged = await state.flagged()
    return BoardRead(
        runs=[run for run in board.runs if run_filter.shows("flow", run)][:SNAPSHOT_ROWS],
        cursor=board.cursor,
        flows=sorted({run.flow for run in board.runs if run.flow}),
        meta=meta,
        chart=chart.state_chart(entries, now_micros) if complete else None,
        flagged=flagged[:FLAGGED_SHOWN],
        flagged_total=len(flagged),
    )


async def read_run(state, run_id):
    """One flow run with its task runs, and the cursor to follow it from."""
    cursor = await state.cursor()  # first: every later change is on the stream after it
    return RunRead(cursor, await state.flow_run(run_id), await state.meta())


def _environment(request, team, env):
    """The environment if the user may view it (404/403 otherwise), with its connections and
    newest reconcile report."""
    environment = environment_or_404(request.user, Action.VIEW, team, env)
    return with_newest_report(Environment.objects.with_connections()).get(pk=environment.pk)


@login_required
def board(request, team, env):
    """The newest flow runs of an environment, filtered, live."""
    environment = _environment(request, team, env)
    run_filter = board_filter(request.GET)
    now = timezone.now()
    now_micros = int(now.timestamp() * 1_000_000)
    result = reads.read_one(
        environment, partial(read_board, run_filter=run_filter, now_micros=now_micros)
    )
    unavailable = isinstance(result, reads.Unavailable)
    context = {
        **_live_context(request, environment, now_micros),
        "filter": run_filter,
        "states": IN_FLIGHT + FINISHED,
        "read": None if unavailable else result,
        "unavailable": result if unavailable else None,
        "freshness": freshness(environment, None if unavailable else result.meta, now),
        "max_rows": SNAPSHOT_ROWS,
    }
    return render(request, "dashboard/board.html", context)


@login_required
def run(request, team, env, run_id):
    """One flow run with its task runs, live; a link to it in the Prefect UI."""
    environment = _environment(request, team, env)
    now = timezone.now()
    result = reads.read_one(environment, partial(read_run, run_id=str(run_id)))
    unavailable = isinstance(result, reads.Unavailable)
    if not unavailable and result.found is None:
        raise Http404(f"{environment} holds no flow run {run_id}.")
    context = {
        **_live_context(request, environment, int(now.timestamp() * 1_000_000)),
        "run_id": run_id,
        "read": None if unavailable else result,
        "unavailable": result if unavailable else None,
        "freshness": freshness(environment, None if unavailable else result.meta, now),
        "prefect_url": prefect_ui_url(environment.workspace.api_url, run_id),
    }
    return render(request, "dashboard/run.html", context, status=503 if unavailable else 200)


def _live_context(request, environment, now_micros):
    """What both live pages and their script need: where the socket is, whether the user may
    act, the run the script's row template is made of, the icons."""
    return {
        "environment": environment,
        "now_micros": now_micros,
        "can_operate": can(request.user, Action.OPERATE, environment),
        "ws_path": f"/ws/environments/{environment.team.slug}/{environment.slug}/",
        "placeholder": PLACEHOLDER,
        "template_run": TEMPLATE_RUN,
        "state_icons": STATE_ICONS,
        "here": request.get_full_path(),
    }

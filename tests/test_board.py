"""The live pages as the server renders them (the script's side: tests/test_browser.py): an
environment's board and a flow run's page, against the real Redis, through the test client."""

import re
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from pipelinehub.accounts.models import Membership
from pipelinehub.dashboard import chart
from pipelinehub.dashboard.links import prefect_ui_url
from pipelinehub.dashboard.presentation import STATE_ICONS, format_duration
from pipelinehub.state.records import STATE_TYPES, RunChange
from pipelinehub.state.store import EnvironmentState
from pipelinehub.sync.models import ReconcileReport
from tests import factories
from tests.conftest import delete_prefix

pytestmark = pytest.mark.django_db
SSO_BACKEND = "pipelinehub.accounts.backends.SingleSignOnBackend"
NOW = time.time_ns() // 1000
SECOND = 1_000_000


@pytest.fixture
def environment(redis_client):
    """An environment of its own team (unique prefix: others' tests share this Redis), whose
    Prefect workspace does not answer."""
    env = factories.environment(
        factories.team(f"b{uuid.uuid4().hex[:8]}"),
        "dev",
        ws=factories.workspace("http://127.0.0.1:9/api"),
    )
    yield env
    delete_prefix(redis_client, env.key_prefix)


@pytest.fixture
def state(environment):
    return EnvironmentState.for_environment(environment)


def sign_in(client, environment, role):
    user = get_user_model().objects.create_user(username=f"{role}-{uuid.uuid4().hex[:6]}")
    Membership.objects.create(user=user, team=environment.team, role=role)
    client.force_login(user, backend=SSO_BACKEND)
    return user


def flow_run(state_type="RUNNING", name="calm-fox", flow="etl", version=NOW - 60 * SECOND, **kw):
    return RunChange(
        "flow",
        kw.pop("id", None) or str(uuid.uuid4()),
        version,
        state_type,
        kw.pop("state_name", state_type.title()),
        name=name,
        flow=flow,
        start=kw.pop("start", version - 5 * SECOND),
        **kw,
    )


def board_url(environment, query=""):
    return reverse("board", kwargs={"team": environment.team.slug, "env": "dev"}) + query


def run_url(environment, run_id):
    kwargs = {"team": environment.team.slug, "env": "dev", "run_id": run_id}
    return reverse("run", kwargs=kwargs)


def shown_runs(page):
    """Ids of the rows in the page's table, in order (not those of the script's template)."""
    tbody = page.split("<tbody data-rows>")[1].split("</tbody>")[0]
    return re.findall(r'<tr data-run-id="([0-9a-f-]+)"', tbody)


# The board


def test_the_board_shows_the_newest_runs_with_their_cursor(client, environment, state):
    older = flow_run("COMPLETED", name="done-run", end=NOW - 61 * SECOND, version=NOW - 61 * SECOND)
    newer = flow_run("FAILED", name="broken-run", state_name="Failed")
    state.apply_batch([older, newer])
    sign_in(client, environment, "viewer")

    page = client.get(board_url(environment)).content.decode()

    assert shown_runs(page) == [newer.id, older.id]
    assert f'data-cursor="{state.cursor()}"' in page
    assert f'data-ws-path="/ws/environments/{environment.team.slug}/dev/"' in page
    # Colour is not the only signal: each state has its icon and its name.
    assert re.search(r'class="state state-failed"[^>]*>.*?✕.*?Failed', page, re.S)
    assert "done-run" in page and "broken-run" in page and "etl" in page
    assert 'id="state-icons" type="application/json"' in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?state=FAILED", ["failed"]),
        ("?flow=load", ["loader"]),
        ("?q=LOAD", ["loader"]),
        ("?state=RUNNING&state=FAILED", ["loader", "failed"]),
        ("?state=COMPLETED", []),
    ],
)
def test_filters_shape_the_rows(client, environment, state, query, expected):
    runs = {
        "failed": flow_run("FAILED", name="nightly-fail", version=NOW - 2 * SECOND),
        "loader": flow_run("RUNNING", name="big-load", flow="load", version=NOW - 3 * SECOND),
    }
    state.apply_batch(list(runs.values()))
    sign_in(client, environment, "viewer")

    page = client.get(board_url(environment, query)).content.decode()

    assert shown_runs(page) == [runs[key].id for key in ("failed", "loader") if key in expected]
    if not expected:
        assert "No flow runs match these filters" in page


def test_operators_get_confirmed_actions_and_viewers_none(client, environment, state):
    running, finished = flow_run("RUNNING"), flow_run("COMPLETED", end=NOW - SECOND)
    state.apply_batch([running, finished])
    sign_in(client, environment, "viewer")
    assert "data-action=" not in client.get(board_url(environment)).content.decode()

    sign_in(client, environment, "operator")
    page = client.get(board_url(environment)).content.decode()
    cancel = reverse(
        "run_action",
        kwargs={
            "team": environment.team.slug,
            "env": "dev",
            "run_id": running.id,
            "action": "cancel",
        },
    )
    assert f'action="{cancel}"' in page
    row = page.split(f'data-run-id="{running.id}"')[1].split("</tr>")[0]
    # A confirm step: the button that posts is inside a <details>, behind its summary.
    assert re.search(r'<details class="confirm" data-action="cancel">\s*<summary', row)
    assert re.search(r'<details class="confirm" data-action="retry" hidden>', row)
    assert f'name="next" value="{board_url(environment)}"' in row


def test_a_board_whose_redis_does_not_answer_says_unavailable(client):
    environment = factories.environment(
        factories.team(f"u{uuid.uuid4().hex[:8]}"), "dev", target=factories.redis_target(port=1)
    )
    sign_in(client, environment, "viewer")
    response = client.get(board_url(environment))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Unavailable." in page and "No runs can be read right now" in page
    assert 'data-cursor=""' in page  # the script starts from a snapshot


def test_the_board_warns_when_ingest_is_silent_or_reconcile_failed(client, environment, state):
    sign_in(client, environment, "viewer")
    state.set_meta(ingest_watermark=datetime.now(UTC).isoformat())
    assert "Stale." not in client.get(board_url(environment)).content.decode()

    state.set_meta(ingest_watermark=(datetime.now(UTC) - timedelta(minutes=5)).isoformat())
    assert "Ingest has been silent since" in client.get(board_url(environment)).content.decode()

    state.set_meta(ingest_watermark=datetime.now(UTC).isoformat())
    ReconcileReport.objects.create(environment=environment, error="ConnectError: refused")
    page = client.get(board_url(environment)).content.decode()
    assert "The last reconcile failed: ConnectError: refused" in page


# The chart


def test_the_chart_counts_state_changes_per_hour_from_the_stream(environment, state):
    hour = chart.HOUR_MICROS
    last_hour = chart.window_start(NOW) + 11 * hour
    run = str(uuid.uuid4())
    state.apply_batch(
        [
            flow_run("RUNNING", id=run, version=last_hour - 2 * hour + 10),  # two hours ago
            flow_run("COMPLETED", id=run, version=last_hour + 20),  # this hour
            flow_run("FAILED", version=last_hour + 30),  # this hour
            flow_run("FAILED", version=chart.window_start(NOW) - 1),  # before the window
            flow_run("RUNNING", version=last_hour - 2 * hour + 5),  # another run
        ]
    )
    state.apply(
        RunChange("task", str(uuid.uuid4()), last_hour + 40, "FAILED", "Failed", flow_run_id=run)
    )  # task runs are not charted
    late = flow_run("CRASHED", version=last_hour - hour + 1)
    state.apply(late)
    state.apply(late)  # a duplicate is not written twice, nor counted twice

    entries = state.changes_since(chart.stream_start_id(NOW), count=100).entries
    counts = chart.hourly_counts(entries, NOW)

    assert [dict(bucket) for bucket in counts[-3:]] == [
        {"RUNNING": 2},
        {"CRASHED": 1},
        {"COMPLETED": 1, "FAILED": 1},
    ]
    assert sum(sum(bucket.values()) for bucket in counts) == 5


def test_the_chart_is_svg_with_classes_and_a_table(client, environment, state):
    state.apply_batch([flow_run("FAILED"), flow_run("COMPLETED", end=NOW - SECOND)])
    sign_in(client, environment, "viewer")
    page = client.get(board_url(environment)).content.decode()
    svg = page.split("<svg")[1].split("</svg>")[0]
    assert 'class="fill-failed"' in svg and 'class="fill-completed"' in svg
    assert "style=" not in svg  # the Content Security Policy blocks inline styles
    assert "1 failed" in svg  # each bar's title says what it holds, in words
    assert re.search(r"Failed <strong>1</strong>", page)  # and the legend


def test_nice_ceiling():
    assert [chart.nice_ceiling(v) for v in (0, 1, 3, 7, 12, 51, 999)] == [
        1,
        1,
        5,
        10,
        20,
        100,
        1000,
    ]


# The run page


def test_the_run_page_shows_the_flow_run_and_its_task_runs(client, environment, state):
    parent = flow_run("RUNNING", name="nightly-42", run_count=1)
    tasks = [
        RunChange(
            "task",
            str(uuid.uuid4()),
            NOW - 9 * SECOND,
            "COMPLETED",
            "Completed",
            name="extract-0",
            flow_run_id=parent.id,
            start=NOW - 12 * SECOND,
            end=NOW - 9 * SECOND,
            run_count=1,
        ),
        RunChange(
            "task",
            str(uuid.uuid4()),
            NOW - 8 * SECOND,
            "RUNNING",
            "Running",
            name="load-0",
            flow_run_id=parent.id,
            start=NOW - 8 * SECOND,
            run_count=1,
        ),
    ]
    state.apply_batch([parent, *tasks])
    sign_in(client, environment, "viewer")

    page = client.get(run_url(environment, parent.id)).content.decode()

    assert "nightly-42" in page and "extract-0" in page and "load-0" in page
    assert shown_runs(page) == [task.id for task in tasks]  # oldest start first
    assert re.search(r'extract-0.*?class="state state-completed".*?Completed', page, re.S)
    assert f'data-run-id="{parent.id}"' in page and "data-action=" not in page
    assert f'href="http://127.0.0.1:9/runs/flow-run/{parent.id}"' in page
    assert "3.0s" in page  # extract-0 took 3 seconds


def test_operators_cancel_from_the_run_page_and_come_back_to_it(client, environment, state):
    run = flow_run("RUNNING")
    state.apply(run)
    sign_in(client, environment, "operator")
    page = client.get(run_url(environment, run.id)).content.decode()
    assert 'data-action="cancel">' in page and f'value="{run_url(environment, run.id)}"' in page

    action = reverse(
        "run_action",
        kwargs={"team": environment.team.slug, "env": "dev", "run_id": run.id, "action": "cancel"},
    )
    response = client.post(action, {"next": run_url(environment, run.id)}, follow=True)

    assert response.redirect_chain == [(run_url(environment, run.id), 302)]
    # Prefect's refusal (here: it cannot be reached) is shown on the page.
    assert re.search(r'class="message error".*could not be asked', response.content.decode(), re.S)


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/",
        "//evil.example/x",
        "///evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
        "",
        "evil.example/relative",
    ],
)
def test_actions_never_redirect_off_site(client, environment, state, next_url):
    run = flow_run("RUNNING")
    state.apply(run)
    sign_in(client, environment, "operator")
    action = reverse(
        "run_action",
        kwargs={"team": environment.team.slug, "env": "dev", "run_id": run.id, "action": "cancel"},
    )
    response = client.post(action, {"next": next_url})
    assert response.status_code == 302 and response["Location"] == board_url(environment)


def test_a_run_the_environment_does_not_hold_is_404(client, environment, state):
    sign_in(client, environment, "viewer")
    assert client.get(run_url(environment, uuid.uuid4())).status_code == 404


def test_a_run_page_whose_redis_does_not_answer_is_503(client):
    environment = factories.environment(
        factories.team(f"u{uuid.uuid4().hex[:8]}"), "dev", target=factories.redis_target(port=1)
    )
    sign_in(client, environment, "viewer")
    response = client.get(run_url(environment, uuid.uuid4()))
    assert response.status_code == 503 and "Unavailable." in response.content.decode()


# Presentation


@pytest.mark.parametrize(
    ("api_url", "expected"),
    [
        ("http://prefect.internal:4200/api", "http://prefect.internal:4200/runs/flow-run/{id}"),
        ("http://127.0.0.1:4200/api/", "http://127.0.0.1:4200/runs/flow-run/{id}"),
        (
            "https://tools.example.com/prefect/api",
            "https://tools.example.com/prefect/runs/flow-run/{id}",
        ),
        (
            "https://api.prefect.cloud/api/accounts/a1b2/workspaces/c3d4",
            "https://app.prefect.cloud/account/a1b2/workspace/c3d4/runs/flow-run/{id}",
        ),
        (
            "https://api.prefect.cloud/api/accounts/a1b2/workspaces/c3d4/",
            "https://app.prefect.cloud/account/a1b2/workspace/c3d4/runs/flow-run/{id}",
        ),
    ],
)
def test_prefect_ui_links(api_url, expected):
    run_id = "6f3c5a3e-8d0e-4b7e-9f43-2d1c7a9b0e11"
    assert prefect_ui_url(api_url, run_id) == expected.format(id=run_id)


def test_every_state_has_an_icon():
    assert set(STATE_ICONS) == STATE_TYPES


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (None, "—"),
        (0, "0.0s"),
        (439_999, "0.4s"),
        (9_999_999, "9.9s"),
        (12 * SECOND, "12s"),
        (185 * SECOND, "3m 05s"),
        (3720 * SECOND, "1h 02m"),
    ],
)
def test_durations(micros, text):
    assert format_duration(micros) == text

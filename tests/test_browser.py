"""The live pages in a real browser: headless Chromium (Debian's, driven by Playwright) against
the processes as they are deployed (tests/processes.py: `web` is daphne, `relay`, `ingest`),
the real Prefect server, the real OIDC issuer, Redis and PostgreSQL.

The hub's own Redis (channel layer) is a private one, so that other test runs' relays on the
shared Redis cannot talk to these web processes. Waits are bounded (WAIT), never asserted.
Screenshots go to $SCREENSHOT_DIR when it is set (docs/ for the README), else to tmp_path.
"""

import json
import os
import random
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client
from playwright.sync_api import expect, sync_playwright

from pipelinehub.accounts.models import Membership, RoleMapping
from pipelinehub.state.records import RunChange
from pipelinehub.state.store import EnvironmentState
from tests import factories
from tests.conftest import delete_prefix, redis_for_tests
from tests.oidc.issuer import CLIENT_ID, CLIENT_SECRET, LOGIN_PATH, Issuer
from tests.processes import DeployedProcess

CHROMIUM = "/usr/bin/chromium"  # Debian's package: no browser downloads here
WAIT = 60_000  # ms a page may take to show a change on a busy two-core machine
FLOWS = Path(__file__).with_name("prefect")
SSO_BACKEND = "pipelinehub.accounts.backends.SingleSignOnBackend"


@pytest.fixture(scope="module")
def browser():
    """Playwright's sync API keeps an event loop running in this thread, which Django's ORM
    takes for async code: the test's own queries (setup, sessions) are plain sync ones."""
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


class Site:
    """The web role with SSO through the test issuer, and the relay, on a private hub Redis."""

    def __init__(self, tmp_path, hub_redis_port):
        hub = {"REDIS_URL": f"redis://127.0.0.1:{hub_redis_port}/0"}
        self.web = DeployedProcess("web", tmp_path, hub)
        (tmp_path / "oidc").mkdir()
        self.issuer = Issuer(tmp_path / "oidc", f"{self.web.base_url}{LOGIN_PATH}callback/")
        self.web.env_overrides.update(
            OKTA_SERVER_URL=self.issuer.url,
            OKTA_CLIENT_ID=CLIENT_ID,
            OKTA_CLIENT_SECRET=CLIENT_SECRET,
        )
        self.relay = DeployedProcess("relay", tmp_path, hub)

    def start(self):
        for process in (self.web, self.relay):
            process.start()
        for process in (self.web, self.relay):
            process.wait_ready()

    def stop(self):
        self.web.stop()
        self.relay.stop()
        self.issuer.stop()

    def url(self, path):
        return self.web.base_url + path


@pytest.fixture
def site(tmp_path, private_redis):
    running = Site(tmp_path, private_redis.port)
    yield running
    running.stop()


class Socket:
    """A websocket the page opened: its URL and the types of the frames it received."""

    def __init__(self, websocket):
        self.url = websocket.url
        self.frames = []
        websocket.on("framereceived", lambda payload: self.frames.append(json.loads(payload)))

    @property
    def first_frame(self):
        return self.frames[0]["type"] if self.frames else None


@pytest.fixture
def page(browser, site):
    """A fresh browser context; console errors are collected in `page.errors`, websockets in
    `page.sockets`."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    tab.errors, tab.sockets = [], []
    tab.on("console", lambda msg: msg.type == "error" and tab.errors.append(msg.text))
    tab.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    tab.on("websocket", lambda websocket: tab.sockets.append(Socket(websocket)))
    yield tab
    context.close()


def assert_resumed(page):
    """The newest socket resumed after the page's cursor: a replay, not a fresh snapshot."""
    socket = page.sockets[-1]
    assert "after=" in socket.url and socket.first_frame == "replay", socket.url


def sign_in_through_sso(page, site, login):
    page.goto(site.url("/accounts/login/"))
    page.get_by_role("button", name="Sign in with Okta").click()
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any")
    page.get_by_role("button", name="Sign-in").click()
    expect(page.locator("input[name=login]")).to_have_count(0)
    page.locator("button[type=submit]").click()  # the issuer's consent
    page.wait_for_url(site.url("/"))


def connection(page):
    return page.locator("[data-connection]")


def row(page, text):
    return page.locator("tbody[data-rows] tr", has_text=text)


def mark_document(page):
    """A mark that a reload would wipe: the page must change without one."""
    page.evaluate("() => { window.notReloaded = true; }")


def still_marked(page):
    return page.evaluate("() => window.notReloaded === true")


def set_hidden(page, hidden):
    """What the browser does when the tab is hidden or shown (headless tabs never are)."""
    page.evaluate(
        """(hidden) => {
            Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


def start_long_flow(prefect_server, tmp_path):
    """The `long` test flow with enough steps to be cancelled while it runs."""
    log = open(tmp_path / "long-flow.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "-c", "from flows import long_flow; long_flow(steps=1500)"],
        cwd=FLOWS,
        env=prefect_server.client_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return process


@pytest.mark.prefect
def test_a_lead_watches_runs_live_and_an_operator_cancels_one(
    prefect_environment, prefect_server, ingest, site, page, tmp_path
):
    environment = prefect_environment
    group = f"pipelinehub-{environment.team.slug}-operator"
    RoleMapping.objects.create(group=group, team=environment.team, role="operator")
    site.issuer.set_users({"dana": {"name": "Dana Lead", "groups": [group]}})
    ingest.start()
    ingest.wait_for_log("live environments=")
    site.start()
    board = site.url(f"/environments/{environment.team.slug}/dev/")

    sign_in_through_sso(page, site, "dana")
    expect(page.get_by_role("link", name="dev")).to_be_visible()
    page.get_by_role("link", name="dev").click()
    page.wait_for_url(board)
    expect(connection(page)).to_have_attribute("data-state", "live", timeout=WAIT)
    mark_document(page)

    # A flow runs: its row appears and reaches its final state, without a reload.
    prefect_server.run_flows("ok")
    expect(row(page, "ph-ok").locator(".state-name")).to_have_text("Completed", timeout=WAIT)
    assert still_marked(page)

    # The operator opens a running flow from the board, sees its task runs arrive, cancels it.
    flow = start_long_flow(prefect_server, tmp_path)
    try:
        running = row(page, "ph-long")
        expect(running.locator(".state-name")).to_have_text("Running", timeout=WAIT)
        running.get_by_role("link").click()
        expect(page.locator("h1 .state-name")).to_have_text("Running", timeout=WAIT)
        mark_document(page)
        tasks = page.locator("tbody[data-rows] tr")
        expect(tasks.nth(0)).to_be_visible(timeout=WAIT)
        expect(tasks.nth(tasks.count())).to_be_visible(timeout=WAIT)  # one more, live
        assert still_marked(page)
        prefect_link = page.get_by_role("link", name="Open in Prefect")
        expected_link = prefect_server.api_url.removesuffix("/api") + "/runs/flow-run/"
        assert prefect_link.get_attribute("href").startswith(expected_link)

        page.locator("summary", has_text="Cancel…").click()
        page.get_by_role("button", name="Yes, cancel it").click()
        expect(page.locator(".message")).to_contain_text("is being cancelled", timeout=WAIT)
        assert "/runs/" in page.url  # back on the run page
        state = page.locator("h1 .state-name")
        expect(state).to_have_text(re.compile("Cancell"), timeout=WAIT)
    finally:
        flow.kill()
        flow.wait()

    # The web process restarts: the page says so, reconnects and catches up with what changed
    # while it was down; a hidden tab pauses and catches up when shown.
    page.goto(board)
    expect(connection(page)).to_have_attribute("data-state", "live", timeout=WAIT)
    mark_document(page)
    site.web.stop()
    expect(connection(page)).to_have_attribute(
        "data-state", re.compile("reconnecting|stale"), timeout=WAIT
    )
    prefect_server.run_flows("fail")
    site.web.start()
    site.web.wait_ready()
    expect(connection(page)).to_have_attribute("data-state", "live", timeout=WAIT)
    expect(row(page, "ph-fail").locator(".state-name")).to_have_text("Failed", timeout=WAIT)
    assert_resumed(page)

    set_hidden(page, True)
    expect(connection(page)).to_have_attribute("data-state", "paused")
    prefect_server.run_flows("ok")
    set_hidden(page, False)
    expect(row(page, "ph-ok")).to_have_count(2, timeout=WAIT)
    assert_resumed(page)
    assert still_marked(page)
    assert not [error for error in page.errors if "Content Security Policy" in error]


# Screenshots of a realistic environment, and the pages at phone width


FLOWS_SEEN = ["ingest-orders", "build-marts", "sync-crm", "score-churn", "export-finance"]
ADJECTIVES = ["amber", "brisk", "calm", "daring", "eager", "fuzzy", "gentle", "hidden", "ivory"]
ANIMALS = ["heron", "lynx", "otter", "falcon", "badger", "marmot", "ibis", "gecko", "puffin"]


def run_id(rng):
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def seed(environment, runs, rng, now):
    """`runs` flow runs over the last 12 hours, most finished, the newest three still running;
    returns the newest, given five task runs."""
    deployments = [run_id(rng) for _ in FLOWS_SEEN]
    changes = [flow_change(i, runs, rng, now, deployments) for i in range(runs)]
    state = EnvironmentState.for_environment(environment)
    state.apply_batch(sorted(changes, key=lambda change: change.version))
    running, step = changes[0], 7_000_000
    state.apply_batch(
        [
            RunChange(
                "task", run_id(rng), running.start + (k + 1) * step,
                *(("COMPLETED", "Completed") if k < 4 else ("RUNNING", "Running")),
                name=f"{name}-{k}", flow_run_id=running.id, start=running.start + k * step,
                end=running.start + (k + 1) * step if k < 4 else None, run_count=1,
            )
            for k, name in enumerate(["extract", "validate", "transform", "load", "publish"])
        ]
    )  # fmt: skip
    return running


def flow_change(i, runs, rng, now, deployments):
    start = now - int(i / runs * 11.5 * 3600e6) - rng.randint(0, 600) * 1_000_000
    end = start + rng.randint(4, 900) * 1_000_000
    finals = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]
    state_type = {0: "RUNNING", 1: "RUNNING", 2: "RUNNING", 3: "SCHEDULED"}.get(i) or rng.choices(
        finals, [88, 8, 2, 2]
    )[0]
    finished, flow = state_type in finals, rng.randrange(len(FLOWS_SEEN))
    return RunChange(
        "flow", run_id(rng), min(end, now) if finished else start, state_type,
        state_type.title(), name=f"{rng.choice(ADJECTIVES)}-{rng.choice(ANIMALS)}",
        flow=FLOWS_SEEN[flow], deployment=deployments[flow] if flow != 2 else "",
        start=None if state_type == "SCHEDULED" else start, end=end if finished else None,
        run_count=0 if state_type == "SCHEDULED" else 1,
    )  # fmt: skip


@pytest.fixture
def showcase(transactional_db):
    """Two teams with environments in various health, seeded through the state's write path."""
    rng, now = random.Random(7), time.time_ns() // 1000
    platform, analytics = factories.team("data-platform"), factories.team("analytics")
    platform.name, analytics.name = "Data Platform", "Analytics"
    platform.save()
    analytics.save()
    tag = uuid.uuid4().hex[:6]
    envs = {
        name: factories.environment(team, slug, key_prefix=f"ph:{{shot-{tag}-{name}}}:")
        for name, team, slug in [
            ("prod", platform, "prod"),
            ("staging", platform, "staging"),
            ("dev", platform, "dev"),
            ("reports", analytics, "prod"),
        ]
    }
    envs["sandbox"] = factories.environment(
        analytics, "sandbox", target=factories.redis_target(port=1)
    )
    fresh = datetime.now(UTC).isoformat()
    reconciled = (datetime.now(UTC) - timedelta(minutes=3)).isoformat()
    for name, runs in [("prod", 60), ("staging", 14), ("dev", 6), ("reports", 20)]:
        running = seed(envs[name], runs, rng, now)
        silent = (datetime.now(UTC) - timedelta(minutes=9)).isoformat()
        EnvironmentState.for_environment(envs[name]).set_meta(
            ingest_watermark=silent if name == "staging" else fresh, last_reconcile=reconciled
        )
        envs[name].running = running
    yield envs
    for env in envs.values():
        delete_prefix(redis_for_tests(), env.key_prefix)


def sign_in_with_session(page, site, user):
    client = Client()
    client.force_login(user, backend=SSO_BACKEND)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": site.web.base_url}]
    )


def test_screenshots_and_phone_width(showcase, site, page, tmp_path):
    out = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    user = get_user_model().objects.create_user(
        username="dana", first_name="Dana", last_name="Lead"
    )
    for team in ("data-platform", "analytics"):
        Membership.objects.create(user=user, team=factories.team(team), role="operator")
    site.start()
    sign_in_with_session(page, site, user)
    prod = showcase["prod"]

    page.goto(site.url("/"))
    expect(page.locator("[data-environment]")).to_have_count(5)
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "skip-link"
    page.evaluate("() => document.activeElement.blur()")
    page.screenshot(path=out / "screenshot-home.png", full_page=True)

    page.goto(site.url("/environments/data-platform/prod/"))
    expect(connection(page)).to_have_attribute("data-state", "live", timeout=WAIT)
    page.screenshot(path=out / "screenshot-board.png")

    page.goto(site.url(f"/environments/data-platform/prod/runs/{prod.running.id}/"))
    expect(connection(page)).to_have_attribute("data-state", "live", timeout=WAIT)
    expect(page.locator("tbody[data-rows] tr")).to_have_count(5)
    page.locator("summary", has_text="Cancel…").click()
    page.screenshot(path=out / "screenshot-run.png", full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    for path in ("/", "/environments/data-platform/prod/", page.url.removeprefix(site.url(""))):
        page.goto(site.url(path))
        assert page.evaluate("() => document.documentElement.scrollWidth <= innerWidth"), path
    page.goto(site.url("/environments/data-platform/prod/"))
    page.screenshot(path=out / "screenshot-board-phone.png")
    assert page.errors == []  # no script errors, no Content Security Policy violations


def test_a_page_whose_session_ended_says_so_and_stops(transactional_db, site, page):
    environment = factories.environment(factories.team(f"s{uuid.uuid4().hex[:8]}"), "dev")
    user = get_user_model().objects.create_user(username="lee")
    Membership.objects.create(user=user, team=environment.team, role="viewer")
    site.start()
    sign_in_with_session(page, site, user)
    page.goto(site.url(f"/environments/{environment.team.slug}/dev/"))
    expect(connection(page)).to_have_attribute("data-state", "live", timeout=WAIT)

    Session.objects.all().delete()  # signed out elsewhere, or expired
    site.web.stop()
    site.web.start()
    site.web.wait_ready()

    expect(connection(page)).to_have_attribute("data-state", "closed", timeout=WAIT)
    expect(connection(page)).to_contain_text("Reload the page")


def test_a_flag_shows_live_on_the_board_and_the_run_page(transactional_db, site, page):
    from pipelinehub.state.flags import RUNAWAY, RunFlag

    environment = factories.environment(factories.team(f"f{uuid.uuid4().hex[:8]}"), "dev")
    state = EnvironmentState.for_environment(environment)
    user = get_user_model().objects.create_user(username="flo")
    Membership.objects.create(user=user, team=environment.team, role="viewer")
    now = time.time_ns() // 1000
    run = RunChange(
        "flow", str(uuid.uuid4()), now - 60_000_000, "RUNNING", "Running",
        name="slow-heron", flow="etl", start=now - 60_000_000,
    )  # fmt: skip
    state.apply(run)
    site.start()
    sign_in_with_session(page, site, user)
    try:
        page.goto(site.url(f"/environments/{environment.team.slug}/dev/"))
        expect(connection(page)).to_have_attribute("data-state", "live", timeout=WAIT)
        attention = page.locator("[data-flagged]")
        expect(attention).to_be_hidden()
        flag = RunFlag(run.id, RUNAWAY, "running 41 min, usually 6 min", now)
        state.set_flags([(flag, "RUNNING")])
        expect(row(page, "slow-heron")).to_contain_text(
            "Runaway: running 41 min, usually 6 min", timeout=WAIT
        )
        expect(attention).to_contain_text("slow-heron", timeout=WAIT)
        state.set_flags([])
        expect(row(page, "slow-heron").locator("[data-field=flag]")).to_be_hidden(timeout=WAIT)
        expect(attention).to_be_hidden(timeout=WAIT)

        page.goto(site.url(f"/environments/{environment.team.slug}/dev/runs/{run.id}/"))
        expect(connection(page)).to_have_attribute("data-state", "live", timeout=WAIT)
        state.set_flags([(flag, "RUNNING")])
        summary = page.locator("[data-run-summary] [data-field=flag]")
        expect(summary).to_contain_text("Runaway: running 41 min", timeout=WAIT)
        assert page.errors == []  # no script errors, no Content Security Policy violations
    finally:
        delete_prefix(redis_for_tests(), environment.key_prefix)

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from django.contrib.auth import get_user_model

pytestmark = pytest.mark.django_db

TOKEN = "healthz-test-token-0123456789"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_healthz_ok_with_real_database_and_redis(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_healthz_503_when_redis_is_down_names_the_check_not_the_address(client, settings):
    port = free_port()
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "unavailable"},
    }
    assert str(port) not in response.content.decode()


@pytest.mark.parametrize("header", ["", f"Bearer {TOKEN}x", f"bearer {TOKEN}", TOKEN])
def test_a_wrong_token_gets_no_details(client, settings, header):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    settings.HEALTHZ_TOKEN = TOKEN
    response = client.get("/healthz", HTTP_AUTHORIZATION=header)
    assert response.json()["checks"]["redis"] == "unavailable"


def test_no_token_configured_accepts_none(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    settings.HEALTHZ_TOKEN = ""
    response = client.get("/healthz", HTTP_AUTHORIZATION="Bearer ")
    assert response.json()["checks"]["redis"] == "unavailable"


def test_the_token_or_staff_see_why(client, settings):
    port = free_port()
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    settings.HEALTHZ_TOKEN = TOKEN
    with_token = client.get("/healthz", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").json()
    assert with_token["checks"]["redis"].startswith("unavailable: ConnectionError")
    assert str(port) in with_token["checks"]["redis"]

    staff = get_user_model().objects.create_user(username="ops", is_staff=True)
    client.force_login(staff, backend="pipelinehub.accounts.backends.SingleSignOnBackend")
    assert client.get("/healthz").json()["checks"]["redis"].startswith("unavailable: Connection")


def test_server_starts_and_answers_503_when_database_and_redis_are_down(tmp_path):
    """A real ASGI server process, pointed at services that do not answer. Anonymous callers
    learn which check failed; the token's holder also why."""
    port = free_port()
    database_port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{database_port}/test",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "HEALTHZ_TOKEN": TOKEN,
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "pipelinehub.asgi:application",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        anonymous, status = _get_when_up(url)
        detailed, _ = _get_when_up(url, {"Authorization": f"Bearer {TOKEN}"})
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert status == 503
    assert anonymous == (
        '{"status": "unavailable", "checks": {"database": "unavailable", "redis": "unavailable"}}'
    )
    assert '"database": "unavailable: OperationalError' in detailed
    assert str(database_port) in detailed
    assert '"redis": "unavailable: ConnectionError' in detailed
    assert "Traceback" not in anonymous + detailed


def _get_when_up(url, headers=None, timeout=30):
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
                return response.read().decode(), response.status
        except urllib.error.HTTPError as error:
            return error.read().decode(), error.code
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def start_up(session_hours):
    """Settings read in a fresh process, as a deployment reads them."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings; print(settings.SESSION_COOKIE_AGE)",
        ],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "pipelinehub.settings",
            "SESSION_HOURS": session_hours,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_session_hours_take_decimals():
    assert start_up("0.5").stdout.strip() == "1800"


@pytest.mark.parametrize("hours", ["0", "-1", "nan", "half"])
def test_session_hours_not_above_zero_stop_start_up_saying_why(hours):
    result = start_up(hours)
    assert result.returncode != 0
    assert f"ImproperlyConfigured: SESSION_HOURS={hours!r}: give the session lifetime in hours" in (
        result.stderr
    )

"""The demo's processes (Procfile.demo): `python -m demo server` runs a local Prefect server,
`python -m demo flows` serves demo/flows.py's deployments on it, and `python -m demo ingest`
starts the hub's ingest once the server answers.

Both read the server's API URL from DEMO_PREFECT_URL, set by scripts/run.sh, which points the demo
environment at the same URL. They share one PREFECT_HOME (SQLite database, UI build) in .venv,
apart from any other Prefect on the machine, and drop inherited PREFECT_* settings (a Cloud key,
say). Prefect reads its settings when first imported, so each process is exec'd with them in its
environment rather than imported here.
"""

import os
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".venv" / "demo-prefect"
STARTUP_TIMEOUT = 180  # seconds; a cold start of the server takes about 25 s

# The flows' logs, their failures on purpose included, still go to the server (its UI shows them
# per run); on the console they would bury the hub's own lines.
FLOWS_SETTINGS = {"PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL"}

SERVER_SETTINGS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # Three runs ahead per deployment instead of Prefect's 100: the board then shows the next
    # runs rather than a wall of Scheduled ones.
    "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": "3",
    # Marking the runs missed while the demo was stopped "Late", all at once on restart, locks
    # SQLite against the runner's writes and logs hundreds of lines of tracebacks. They run anyway.
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
}


def prefect_env(**settings):
    """This process's environment without PREFECT_* variables, plus the demo's home and
    `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PREFECT_HOME": str(HOME), **settings}


def server(api_url):
    """Replace this process with `prefect server start` on the URL's loopback port, without auth:
    it answers only on this machine."""
    port = str(urlsplit(api_url).port)
    command = ["prefect", "server", "start", "--host", "127.0.0.1", "--port", port]
    argv = [sys.executable, "-m", *command]
    os.execve(sys.executable, argv, prefect_env(**SERVER_SETTINGS))  # noqa: S606 - fixed argv


def flows(api_url):
    """Wait until the server answers, then replace this process with the flows' `serve`: it
    registers the deployments, so it can only start once the server is up."""
    wait_until_healthy(api_url)
    script = str(ROOT / "demo" / "flows.py")
    argv = [sys.executable, script]
    env = prefect_env(PREFECT_API_URL=api_url, **FLOWS_SETTINGS)
    os.execve(sys.executable, argv, env)  # noqa: S606 - fixed argv


def ingest(api_url):
    """Wait until the server answers, then replace this process with the hub's ingest as the
    Procfile starts it: started together with the server, it would log failed catch-ups until
    the server is up, the first lines a newcomer reads."""
    wait_until_healthy(api_url)
    argv = [sys.executable, str(ROOT / "manage.py"), "ingest"]
    os.execv(sys.executable, argv)  # noqa: S606 - fixed argv


def wait_until_healthy(api_url):
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not healthy(api_url):
        if time.monotonic() > deadline:
            sys.exit(f"The demo's Prefect server at {api_url} did not answer within 3 minutes.")
        time.sleep(1)


def healthy(api_url):
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:  # noqa: S310
            return response.status == 200
    except OSError:
        return False


if __name__ == "__main__":
    COMMANDS = {"server": server, "flows": flows, "ingest": ingest}
    if len(sys.argv) != 2 or sys.argv[1] not in COMMANDS:
        sys.exit("usage: python -m demo server|flows|ingest  (with DEMO_PREFECT_URL set)")
    COMMANDS[sys.argv[1]](os.environ["DEMO_PREFECT_URL"])

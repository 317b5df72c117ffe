"""Real flows for the state-layer tests, run in their own process by PrefectServer.run_flows:
completed and failed ones, task retries, a subflow, concurrent and mapped tasks."""

import os
import sys
import time

assert os.environ.get("PREFECT_API_URL"), "set PREFECT_API_URL before importing prefect"

from prefect import flow, task  # noqa: E402

ATTEMPTS = {"flaky": 0}


@task
def add(x, y):
    time.sleep(0.05)
    return x + y


@task
def square(x):
    return x * x


@task(retries=2, retry_delay_seconds=0.5)
def flaky():
    ATTEMPTS["flaky"] += 1
    if ATTEMPTS["flaky"] < 3:
        raise RuntimeError(f"flaky attempt {ATTEMPTS['flaky']}")
    return "ok"


@task
def boom():
    raise ValueError("task failed on purpose")


@flow(name="ph-ok")
def ok_flow():
    return add(1, 2)


@flow(name="ph-fail")
def fail_flow():
    raise RuntimeError("flow failed on purpose")


@flow(name="ph-task-fail")
def task_fail_flow():
    boom()


@flow(name="ph-retries")
def retries_flow():
    return flaky()


@flow(name="ph-child")
def child_flow(k):
    return add(k, k)


@flow(name="ph-parent")
def parent_flow():
    return child_flow(5) + add(1, 2)


@flow(name="ph-concurrent")
def concurrent_flow():
    futures = [add.submit(i, i) for i in range(4)]
    mapped = square.map([1, 2, 3, 4])
    return [f.result() for f in futures] + mapped.result()


@flow(name="ph-long")
def long_flow(steps=30):
    for i in range(steps):
        add(i, 0)
        time.sleep(0.1)


@flow(name="ph-burst")
def burst_flow(width=300):
    """Hundreds of task runs in seconds: several of these at once overflow the 256-event
    backlog that Prefect's server keeps per live subscriber."""
    return sum(square.map(range(width)).result())


RUNS = {
    "ok": ok_flow,
    "fail": lambda: fail_flow(return_state=True),
    "task_fail": lambda: task_fail_flow(return_state=True),
    "retries": retries_flow,
    "parent": parent_flow,
    "concurrent": concurrent_flow,
    "long": long_flow,
    "burst": burst_flow,
}

if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    slow = ("long", "burst")
    names = [name for name in RUNS if name not in slow] if which == "all" else which.split(",")
    for name in names:
        RUNS[name]()
        print(name, "done", flush=True)

"""Write flow runs (and task runs) straight into a Prefect server's SQLite database: creating
them one API call (or one server-model call) at a time takes far longer than the reads the
benchmarks measure (about 20 runs a second). Rows are inserted in bulk, each run with its
current state row, as Prefect's own models would leave them. Run with the server's
PREFECT_HOME in the environment; the server may be stopped or running (its database is in WAL
mode with a busy timeout, so a running server waits for the one short transaction).

    seed_prefect.py COUNT [--days D] [--tasks N] [--running N] [--flow NAME] [--run-count N]

COUNT completed flow runs ending one second apart, or spread evenly over the last D days;
N task runs each; plus N flow runs still running (their task runs running too). `--run-count`
sets every run's count, e.g. past what PipelineHub accepts, to make runs it must skip.
"""

import argparse
import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from prefect.server import models, schemas
from prefect.server.database import provide_database_interface

NEWEST_END = timedelta(minutes=10)  # with --days, the newest run ends this long before now
RUN_TIME = timedelta(seconds=5)


async def seed(args):
    db = provide_database_interface()
    async with db.session_context(begin_transaction=True) as session:
        # A run points at its current state and the state at its run: check both at commit.
        await session.execute(sa.text("PRAGMA defer_foreign_keys = ON"))
        flow = await models.flows.create_flow(
            session=session, flow=schemas.core.Flow(name=args.flow)
        )
        rows = _Rows(flow.id, args)
        now = datetime.now(UTC)
        for i in range(args.count):
            rows.add(f"{args.flow}-{i}", _end_time(now, i, args))
        for i in range(args.running):
            rows.add(f"{args.flow}-running-{i}", None, started=now)
        await rows.insert(session, db)


def _end_time(now, i, args):
    if args.days is None:
        return now - timedelta(seconds=i)
    step = (timedelta(days=args.days) - NEWEST_END) / max(args.count, 1)
    return now - NEWEST_END - i * step


class _Rows:
    """The rows of four tables: flow runs, task runs and the current state of each."""

    def __init__(self, flow_id, args):
        self.flow_id = flow_id
        self.args = args
        self.flow_runs, self.flow_states, self.task_runs, self.task_states = [], [], [], []

    def add(self, name, ended, started=None):
        """A completed flow run ending at `ended`, or a running one (`ended` None)."""
        started = started or ended - RUN_TIME
        run, state = self._run_and_state(name, started, ended)
        self.flow_runs.append({"flow_id": self.flow_id, **run})
        self.flow_states.append({"flow_run_id": run["id"], **state})
        for t in range(self.args.tasks):
            task, task_state = self._run_and_state(f"task-{t}", started, ended)
            self.task_runs.append(
                {"flow_run_id": run["id"], "task_key": f"task-{t}", "dynamic_key": str(t), **task}
            )
            self.task_states.append({"task_run_id": task["id"], **task_state})

    def _run_and_state(self, name, started, ended):
        if ended is None:
            state_type, state_name, timestamp = "RUNNING", "Running", started
        else:
            state_type, state_name, timestamp = "COMPLETED", "Completed", ended
        state = {
            "id": uuid.uuid4(),
            "type": schemas.states.StateType(state_type),
            "name": state_name,
            "timestamp": timestamp,
        }
        run = {
            "id": uuid.uuid4(),
            "name": name,
            "state_id": state["id"],
            "state_type": state["type"],
            "state_name": state_name,
            "state_timestamp": timestamp,
            "run_count": self.args.run_count,
            "expected_start_time": started,
            "start_time": started,
            "end_time": ended,
            "total_run_time": (ended - started) if ended else timedelta(0),
        }
        return run, state

    async def insert(self, session, db):
        for table, rows in (
            (db.FlowRun, self.flow_runs),
            (db.FlowRunState, self.flow_states),
            (db.TaskRun, self.task_runs),
            (db.TaskRunState, self.task_states),
        ):
            if rows:
                await session.execute(sa.insert(table), rows)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", type=int)
    parser.add_argument("--days", type=float, default=None)
    parser.add_argument("--tasks", type=int, default=0)
    parser.add_argument("--running", type=int, default=0)
    parser.add_argument("--flow", default="bench")
    parser.add_argument("--run-count", type=int, default=1)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(seed(parse_args()))

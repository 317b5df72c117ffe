"""One detection pass over an environment: read Redis, judge, write the flags through `state`,
hand them to the alerts.

A pass reads Redis only (the in-flight index, records, heartbeats, flags and baselines: a few
round trips whatever the number of runs) and never asks Prefect: it runs every 30 seconds per
environment and must stay cheap with 10,000 runs in flight (bench/detection.py).
"""

import logging
import time
from dataclasses import dataclass

from pipelinehub.alerts.service import reconcile_alerts
from pipelinehub.state.flags import FAILED, RunFlag
from pipelinehub.state.store import EnvironmentState

from . import rules
from .models import DetectionSettings

log = logging.getLogger(__name__)
# Failures older than this when a pass takes them (a Redis rebuilt by a full reconcile brings
# back a week of them) are not news: they are not notified.
FAILED_NEWS_MICROS = 3600 * rules.MICROS


@dataclass
class PassResult:
    runs: int  # flow runs in flight judged
    flags: list  # RunFlag of the runaway, stuck and late runs
    failed: list  # RunFlag of the runs that failed since the previous pass (opted in only)
    changed: int  # flags set or cleared in Redis
    ms: float


def detect(environment, now=None):
    """Judge every run in flight of `environment` (loaded `with_connections()`), write the
    flags, notify; returns the `PassResult`."""
    started = time.monotonic()
    settings = DetectionSettings.of(environment)
    now = now or time.time_ns() // 1000
    state = EnvironmentState.for_environment(environment)
    runs, judged, changed = judge_and_flag(state, rules.Thresholds.of(settings), now)
    newly_failed, upto = state.newly_failed()
    failed = failed_flags(newly_failed, now) if settings.notify_failed else []
    flags = [flag for flag, _ in judged]
    reconcile_alerts(environment, flags, failed)
    state.forget_failed(upto)
    result = PassResult(runs, flags, failed, changed, _ms_since(started))
    log.info(
        "detect environment=%s runs=%d flags=%d changed=%d failed=%d ms=%.0f",
        environment,
        result.runs,
        len(flags),
        changed,
        len(failed),
        result.ms,
    )
    return result


def judge_and_flag(state, thresholds, now):
    """The Redis part of a pass (what bench/detection.py measures): read, judge, write the
    flags. Returns (runs judged, [(RunFlag, state type)], flags changed)."""
    unfinished = state.unfinished()
    judged = rules.judge(unfinished, thresholds, now)
    return len(unfinished.runs), judged, state.set_flags(judged)


def failed_flags(records, now):
    """FAILED flags of the newly failed flow runs that failed within the last hour."""
    return [
        RunFlag(
            run.id,
            FAILED,
            f"{run.state_name or run.state_type.title()} {_ran(run)}",
            run.version,
            run.name,
            run.flow,
            run.deployment,
        )
        for run in records
        if now - run.version <= FAILED_NEWS_MICROS
    ]


def _ran(run):
    return (
        f"after {rules.humane(run.end - run.start)}" if run.start and run.end else "before it ran"
    )


def _ms_since(started):
    return (time.monotonic() - started) * 1000

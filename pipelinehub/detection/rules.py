"""How a run in flight is judged: pure functions of what Redis holds and the thresholds.

One flag per run, the first that applies:
- a Scheduled run whose expected start is more than `late_after` ago is LATE;
- a Running or Pending run that has sent heartbeats but none (nor a state change) for
  `heartbeat_silence` is STUCK: its process is gone;
- a Running run past max(multiple x its baseline, floor), or past its absolute limit (its
  flow's, else the environment's), is RUNAWAY;
- a Running or Pending run that sends no heartbeats and whose state has not changed for
  `silence_limit` is STUCK (a longer default: without heartbeats silence proves less).
Paused and Cancelling runs are left alone: a person or Prefect is already on them.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from pipelinehub.state.flags import LATE, RUNAWAY, STUCK, RunFlag
from pipelinehub.state.records import state_type_of

MICROS = 1_000_000
ACTIVE = (b"RUNNING", b"PENDING")


def micros(delta):
    return None if delta is None else delta // timedelta(microseconds=1)


@dataclass(frozen=True)
class Thresholds:
    """An environment's thresholds, in microseconds; the defaults are DetectionSettings'."""

    multiple: float = 3.0
    floor: int = 5 * 60 * MICROS
    limit: int | None = None
    flow_limits: dict = field(default_factory=dict)  # flow name -> microseconds
    heartbeat_silence: int = 10 * 60 * MICROS
    silence_limit: int = 60 * 60 * MICROS
    late_after: int = 5 * 60 * MICROS

    @classmethod
    def of(cls, settings):
        """From a `DetectionSettings` row."""
        return cls(
            multiple=float(settings.runaway_multiple),
            floor=micros(settings.runaway_floor),
            limit=micros(settings.runaway_limit),
            flow_limits={flow: micros(limit) for flow, limit in settings.limits().items()},
            heartbeat_silence=micros(settings.heartbeat_silence),
            silence_limit=micros(settings.silence_limit),
            late_after=micros(settings.late_after),
        )

    def limit_of(self, flow):
        return self.flow_limits.get(flow, self.limit)


def judge(unfinished, thresholds, now):
    """[(RunFlag, the state type it judged)] of the runs of an `InFlight` at `now`."""
    judged = []
    for run in unfinished.runs:
        state = state_type_of(run.raw)
        if state == b"SCHEDULED":
            flag = late(run, thresholds, now)
        elif state in ACTIVE:
            flag = active(run, unfinished, thresholds, now)
        else:
            continue
        if flag is not None:
            judged.append((flag, state.decode()))
    return judged


def late(run, thresholds, now):
    expected = run.expected_start
    if not expected or now - expected <= thresholds.late_after:
        return None
    waited = humane(now - expected)
    return _flag(
        run,
        LATE,
        f"not started {waited} after its scheduled time",
        expected + thresholds.late_after,
    )


def active(run, unfinished, thresholds, now):
    beat = unfinished.heartbeats.get(run.id)
    if beat is not None:
        last = max(beat, run.version)
        if now - last > thresholds.heartbeat_silence:
            reason = f"no heartbeat for {humane(now - beat)}"
            return _flag(run, STUCK, reason, last + thresholds.heartbeat_silence)
    if run.state_type == "RUNNING" and (flag := runaway(run, unfinished, thresholds, now)):
        return flag
    if beat is None and now - run.version > thresholds.silence_limit:
        reason = f"no heartbeat and no state change for {humane(now - run.version)}"
        return _flag(run, STUCK, reason, run.version + thresholds.silence_limit)
    return None


def runaway(run, unfinished, thresholds, now):
    if not run.start:
        return None
    running = now - run.start
    baseline = unfinished.baseline_of(run)
    if baseline is not None:
        past = max(int(thresholds.multiple * baseline.p95), thresholds.floor)
        if running > past:
            reason = f"running {humane(running)}, usually {humane(baseline.p95)}"
            return _flag(run, RUNAWAY, reason, run.start + past)
    limit = thresholds.limit_of(run.flow)
    if limit is not None and running > limit:
        reason = f"running {humane(running)}, past its limit of {humane(limit)}"
        return _flag(run, RUNAWAY, reason, run.start + limit)
    return None


def _flag(run, kind, reason, since):
    return RunFlag(run.id, kind, reason, since, run.name, run.flow, run.deployment)


def humane(span):
    """A span for people, coarser as it grows ("40 s", "41 min", "2 h 10 min", "26 h"): a
    flag's reason is written again only when its text changes."""
    seconds = max(span, 0) // MICROS
    if seconds < 90:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 10:
        return f"{hours} h {minutes - minutes % 10} min" if minutes >= 10 else f"{hours} h"
    return f"{hours} h"

"""What a detection pass reads from an environment's Redis, and how the replies are decoded.

A pass reads the unfinished flow runs (the in-flight index and their records), their heartbeats,
and the baselines of the flows and deployments among them: a few round trips,
however many runs are in flight, and no per-run key (see docs/detection.md)."""

import math
from dataclasses import dataclass

from .flags import from_stored
from .records import RunRecord

RECORDS_CHUNK = 1000  # records fetched per HMGET
BASELINE_PERCENTILE = 95


@dataclass(frozen=True)
class Baseline:
    """The 95th percentile of a flow's (or deployment's) newest completed durations."""

    p95: int  # microseconds
    runs: int  # how many durations it was taken from


@dataclass
class InFlight:
    runs: list  # RunRecord of every flow run held unfinished
    heartbeats: dict  # flow run id -> microseconds of its newest heartbeat
    baselines: dict  # ("flow", name) or ("deployment", id) -> Baseline

    def baseline_of(self, run):
        """The deployment's baseline when it has one, else the flow's, else None."""
        if run.deployment and (found := self.baselines.get(("deployment", run.deployment))):
            return found
        return self.baselines.get(("flow", run.flow))


def chunks(values, size=RECORDS_CHUNK):
    return [values[i : i + size] for i in range(0, len(values), size)]


def decode_runs(ids, raw_chunks):
    raws = [raw for chunk in raw_chunks for raw in chunk]
    return [RunRecord(run_id, raw) for run_id, raw in zip(ids, raws, strict=True) if raw]


def scopes_of(runs):
    """The baseline keys' (scope, name) of the flows and deployments of `runs`."""
    scopes = {("flow", run.flow) for run in runs if run.flow}
    return sorted(scopes | {("deployment", run.deployment) for run in runs if run.deployment})


def decode_baselines(scopes, members):
    """Each scope's Baseline from its durations' members ("<duration> <run id>"): the
    nearest-rank percentile, taken here rather than by apply on every completion."""
    baselines = {}
    for scope, found in zip(scopes, members, strict=True):
        if found:
            durations = sorted(int(member.split(maxsplit=1)[0]) for member in found)
            rank = max(1, math.ceil(len(durations) * BASELINE_PERCENTILE / 100))
            baselines[scope] = Baseline(durations[rank - 1], len(durations))
    return baselines


def decode_heartbeats(raw):
    return {key.decode(): int(value) for key, value in raw.items()}


def decode_flags(raw):
    return {key.decode(): from_stored(value) for key, value in raw.items()}

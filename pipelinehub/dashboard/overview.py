"""What the home page says about each environment: exact run counts, the last reconcile, and
whether the numbers can be trusted (the UI says "stale" when it cannot vouch for what it shows).

Queries stay flat however many environments a user sees: the environments come in one query
with their connections and their newest reconcile report as annotations; Redis is read once per
environment, concurrently (see `reads`).
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import OuterRef, Subquery

from pipelinehub.state.vocabulary import meta_time
from pipelinehub.sync.models import ReconcileReport

from . import reads
from .presentation import FINISHED, IN_FLIGHT

# Ingest moves the watermark every few seconds while it follows an environment: two minutes
# without a move means it is not following it.
INGEST_SILENT_AFTER = timedelta(minutes=2)


@dataclass
class Freshness:
    """When an environment's state was last confirmed, and why it may be out of date."""

    last_reconcile: datetime | None = None
    warnings: list = field(default_factory=list)

    @property
    def stale(self):
        return bool(self.warnings)


@dataclass
class Summary:
    environment: object
    counts: object = None  # state.store.Counts; None when unavailable
    freshness: Freshness = field(default_factory=Freshness)
    unavailable: reads.Unavailable | None = None
    flagged: dict = field(default_factory=dict)  # detector flag kind -> runs flagged

    @property
    def flagged_total(self):
        return sum(self.flagged.values())

    @property
    def in_flight(self):
        """[(state, count)] of the states with runs in flight, in display order."""
        return _ordered(self.counts.in_flight, IN_FLIGHT)

    @property
    def finished(self):
        return _ordered(self.counts.finished_24h, FINISHED)

    @property
    def in_flight_total(self):
        return sum(self.counts.in_flight.values())

    @property
    def finished_total(self):
        return sum(self.counts.finished_24h.values())


def _ordered(counts, order):
    return [(state, counts[state]) for state in order if counts.get(state)]


def with_newest_report(environments):
    """Annotate each environment with its newest reconcile report's time and error."""
    newest = ReconcileReport.objects.filter(environment=OuterRef("pk")).order_by("-started_at")
    return environments.annotate(
        last_report_at=Subquery(newest.values("started_at")[:1]),
        last_report_error=Subquery(newest.values("error")[:1]),
    )


def summaries(environments, now):
    """A Summary per environment (annotated by `with_newest_report`, with connections)."""
    environments = list(environments)
    now_micros = int(now.timestamp() * 1_000_000)

    async def counts_and_meta(state):
        return await state.counts(now_micros), await state.meta(), await state.flags()

    results = reads.read_each(environments, counts_and_meta)
    return [_summary(env, result, now) for env, result in zip(environments, results, strict=True)]


def _summary(environment, result, now):
    if isinstance(result, reads.Unavailable):
        return Summary(environment, freshness=freshness(environment, None, now), unavailable=result)
    counts, meta, flags = result
    flagged = dict(Counter(flag["kind"] for flag in flags.values()))
    return Summary(environment, counts, freshness(environment, meta, now), flagged=flagged)


def freshness(environment, meta, now):
    """From the state's meta hash (None when Redis could not be read) and the newest reconcile
    report (annotations). Disabled environments are not followed by ingest: no warning."""
    report_at = getattr(environment, "last_report_at", None)
    report_error = getattr(environment, "last_report_error", "") or ""
    result = Freshness(meta_time((meta or {}).get("last_reconcile")) or report_at)
    if report_error:
        result.warnings.append(f"The last reconcile failed: {report_error[:300]}")
    if environment.enabled and meta is not None:
        result.warnings += _ingest_warnings(meta, now)
    return result


def _ingest_warnings(meta, now):
    watermark = meta_time(meta.get("ingest_watermark"))
    if watermark is None:
        return ["Ingest has not reached this environment yet: runs may be missing."]
    if now - watermark > INGEST_SILENT_AFTER:
        return [
            f"Ingest has been silent since {watermark:%b %d, %H:%M:%S} UTC: states may be "
            "out of date."
        ]
    return []

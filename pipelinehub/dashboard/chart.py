"""The board's chart: flow-run state changes per hour over the last hours, from the change stream.

Every entry of the stream is one applied change and carries the run's record as it became, so
each (run, version) is one state change, dated by its version (Prefect's state timestamp, not
the time it reached us). The geometry is computed here and drawn as inline SVG by a template
with classes only: the Content Security Policy refuses inline style attributes.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from .presentation import FINISHED, IN_FLIGHT, from_micros, state_label

HOURS = 12
HOUR_MICROS = 3_600_000_000
# Stacking order, bottom to top: what finished, then what is still going.
STACK = FINISHED + tuple(reversed(IN_FLIGHT))
# A state can be stamped a little before the moment it is written to the stream (clock skew
# between Prefect and Redis): read the stream from this much earlier than the window.
SKEW_MICROS = 5 * 60 * 1_000_000

WIDTH, HEIGHT = 1000, 170
LEFT, BOTTOM, TOP = 36, 22, 10
SLOT = (WIDTH - LEFT) / HOURS
BAR = SLOT * 0.7


@dataclass
class Segment:
    state: str
    count: int
    y: float
    height: float


@dataclass
class Bar:
    start: object  # the hour's start, an aware datetime
    x: float
    segments: list
    total: int
    label: str = ""  # shown under every third bar

    @property
    def middle(self):
        return round(self.x + BAR / 2, 1)

    @property
    def end(self):
        return self.start + timedelta(hours=1)

    @property
    def summary(self):
        parts = [f"{s.count} {state_label(s.state).lower()}" for s in reversed(self.segments)]
        return ", ".join(parts) or "no state changes"


@dataclass
class Chart:
    bars: list
    scale: int  # the value at the top of the y axis
    legend: list = field(default_factory=list)  # (state, total) of the states that occur
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    baseline: float = HEIGHT - BOTTOM
    top: int = TOP
    hours: int = HOURS
    bar_width: float = round(BAR, 1)

    @property
    def middle(self):
        return (self.baseline + self.top) / 2

    @property
    def half(self):
        """The middle gridline's value, when it is a whole number."""
        return self.scale // 2 if self.scale % 2 == 0 else None

    @property
    def plot_height(self):
        return self.baseline - self.top

    @property
    def axis_x(self):
        return self.left - 6

    @property
    def total(self):
        return sum(bar.total for bar in self.bars)


def window_start(now_micros, hours=HOURS):
    """The start of the chart's first hour: the current hour is the last bar."""
    return now_micros - now_micros % HOUR_MICROS - (hours - 1) * HOUR_MICROS


def stream_start_id(now_micros):
    """The change-stream id to read from: entries are ids of the millisecond they were written."""
    return f"{(window_start(now_micros) - SKEW_MICROS) // 1000}-0"


def hourly_counts(entries, now_micros, hours=HOURS):
    """[Counter(state type -> changes)] per hour of the window, oldest first."""
    start = window_start(now_micros, hours)
    buckets = [Counter() for _ in range(hours)]
    seen = set()
    for entry in entries:
        run = entry.run
        if entry.kind != "flow" or run is None or (run.id, run.version) in seen:
            continue
        seen.add((run.id, run.version))
        hour = (run.version - start) // HOUR_MICROS
        if 0 <= hour < hours:
            buckets[hour][run.state_type] += 1
    return buckets


def state_chart(entries, now_micros):
    """The chart of `entries` (stream entries) over the HOURS ending with the current one."""
    buckets = hourly_counts(entries, now_micros)
    scale = nice_ceiling(max((sum(b.values()) for b in buckets), default=0))
    start = from_micros(window_start(now_micros))
    bars = [
        _bar(start + timedelta(hours=i), i, bucket, scale, show_label=(HOURS - 1 - i) % 3 == 0)
        for i, bucket in enumerate(buckets)
    ]
    totals = sum(buckets, Counter())
    legend = [(state, totals[state]) for state in STACK if totals[state]]
    return Chart(bars, scale, legend)


def _bar(hour_start, index, bucket, scale, show_label):
    segments, y = [], HEIGHT - BOTTOM
    for state in STACK:
        if bucket[state]:
            height = bucket[state] / scale * (HEIGHT - BOTTOM - TOP)
            y -= height
            segments.append(Segment(state, bucket[state], round(y, 1), round(height, 1)))
    x = round(LEFT + index * SLOT + (SLOT - BAR) / 2, 1)
    label = f"{hour_start:%H}:00" if show_label else ""
    return Bar(hour_start, x, segments, sum(bucket.values()), label)


def nice_ceiling(value):
    """The smallest of 1, 2, 5, 10, 20, 50, ... not below `value` (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10

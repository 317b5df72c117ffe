"""The admin's chart of one target over the last day: the primary's used memory (a line, with
maxmemory when set) and the keys evicted (bars), per SLOT_MINUTES. The geometry is computed here
and drawn as inline SVG by a template with classes only, as the board's chart is (the Content
Security Policy refuses inline style attributes)."""

from dataclasses import dataclass, field
from datetime import timedelta

from django.template.defaultfilters import filesizeformat

from pipelinehub.dashboard.chart import nice_ceiling

SLOT_MINUTES = 15
WINDOW = timedelta(days=1)
SLOTS = int(WINDOW / timedelta(minutes=SLOT_MINUTES))
WIDTH, HEIGHT = 960, 110
LEFT, TOP, BOTTOM = 70, 8, 18
STEP = (WIDTH - LEFT) / SLOTS


@dataclass
class Panel:
    """One plot: `lines` are polylines ("x,y x,y ..."; a slot without a snapshot breaks the
    line), `points` their (x, y, title) markers (a lone slot is a point, not a line), `bars`
    are (x, y, height, title) rectangles, `limit` a horizontal line's y."""

    title: str
    scale: int
    is_memory: bool = False
    lines: list = field(default_factory=list)
    points: list = field(default_factory=list)
    bars: list = field(default_factory=list)
    limit: float | None = None
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    baseline: int = HEIGHT - BOTTOM
    bar_width: float = round(STEP * 0.8, 1)

    @property
    def axis_x(self):
        return self.left - 6


@dataclass
class HealthChart:
    memory: Panel
    evictions: Panel
    total_evicted: int
    labels: list  # (x, "HH:MM") every six hours

    @property
    def panels(self):
        return [self.memory, self.evictions]


def health_chart(rows, now):
    """`rows`: (taken_at, used_memory, maxmemory, evictions) of the snapshots of the window."""
    start = now - WINDOW
    used, limits, evicted = [None] * SLOTS, [], [0] * SLOTS
    for taken_at, used_memory, maxmemory, evictions in rows:
        slot = min(int((taken_at - start) / timedelta(minutes=SLOT_MINUTES)), SLOTS - 1)
        if slot < 0 or used_memory is None:
            continue
        used[slot] = max(used[slot] or 0, used_memory)
        evicted[slot] += evictions or 0
        if maxmemory:
            limits.append(maxmemory)
    return HealthChart(
        _memory_panel(used, max(limits, default=0), start),
        _evictions_panel(evicted, start),
        sum(evicted),
        [
            (round(LEFT + i * STEP, 1), f"{start + i * timedelta(minutes=SLOT_MINUTES):%H:%M}")
            for i in range(0, SLOTS, SLOTS // 4)
        ],
    )


def _memory_panel(used, maxmemory, start):
    scale = nice_ceiling(max([maxmemory, *(value or 0 for value in used)]))
    panel = Panel("used memory", scale, is_memory=True)
    segment = []
    for slot, value in enumerate(used):
        if value is None:
            panel.lines += [" ".join(segment)] if segment else []
            segment = []
            continue
        x, y = round(_x(slot) + STEP / 2, 1), round(_y(value, scale), 1)
        segment.append(f"{x},{y}")
        when = start + slot * timedelta(minutes=SLOT_MINUTES)
        panel.points.append((x, y, f"{when:%H:%M} UTC: {filesizeformat(value)} used"))
    panel.lines += [" ".join(segment)] if segment else []
    panel.limit = round(_y(maxmemory, scale), 1) if maxmemory else None
    return panel


def _evictions_panel(evicted, start):
    scale = nice_ceiling(max(evicted))
    panel = Panel("keys evicted", scale)
    for slot, count in enumerate(evicted):
        if count:
            y = _y(count, scale)
            when = start + slot * timedelta(minutes=SLOT_MINUTES)
            title = f"{when:%H:%M} UTC: {count} keys evicted"
            panel.bars.append(
                (round(_x(slot), 1), round(y, 1), round(HEIGHT - BOTTOM - y, 1), title)
            )
    return panel


def _x(slot):
    return LEFT + slot * STEP


def _y(value, scale):
    return HEIGHT - BOTTOM - value / scale * (HEIGHT - BOTTOM - TOP)

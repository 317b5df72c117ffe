"""How runs are shown: the order of states, their icons, times and durations.

The page is rendered here first and then updated by `static/dashboard/live.js`, so both must
show a run the same way: the icons go to the script through `json_script`, and the time and
duration formats below are mirrored there (integer arithmetic only, so they cannot round apart).
Colour is never the only signal: every state shows an icon and its name.
"""

from datetime import UTC, datetime, timedelta

from pipelinehub.state.records import TERMINAL_STATES

IN_FLIGHT = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING")
FINISHED = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
STATE_ICONS = {
    "SCHEDULED": "◷",
    "PENDING": "…",
    "RUNNING": "▶",
    "PAUSED": "⏸",
    "CANCELLING": "⊘",
    "COMPLETED": "✓",
    "FAILED": "✕",
    "CRASHED": "⚠",
    "CANCELLED": "⊘",
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def state_label(state_type):
    """What a state type is called where no state name is known: RUNNING is "Running"."""
    return state_type.title()


def from_micros(micros):
    """A stored time (integer microseconds since the epoch) as an aware datetime; None for
    an absent one (stored as 0)."""
    return EPOCH + timedelta(microseconds=micros) if micros else None


def format_time(micros):
    """A time as live.js writes it: "Nov 26, 21:40:03" (UTC)."""
    moment = from_micros(micros)
    return f"{moment:%b %d, %H:%M:%S}" if moment else "—"


def run_duration(run, now_micros):
    """How long a run took, or has been taking if it is still going; None before it started
    or when a finished run has no end."""
    if not run.start:
        return None
    if run.end:
        return max(run.end - run.start, 0)
    if run.state_type in TERMINAL_STATES:
        return None
    return max(now_micros - run.start, 0)


def format_duration(micros):
    """A duration as live.js writes it: "0.4s", "12s", "3m 05s", "1h 02m"."""
    if micros is None:
        return "—"
    seconds = micros // 1_000_000
    if seconds < 10:
        tenths = micros // 100_000
        return f"{tenths // 10}.{tenths % 10}s"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"

"""Template filters that show runs the way `presentation` (and live.js) define."""

from django import template

from pipelinehub.dashboard import presentation

register = template.Library()


@register.filter
def state_icon(state_type):
    return presentation.STATE_ICONS.get(state_type, "•")


@register.filter
def state_label(state_type):
    return presentation.state_label(state_type)


@register.filter
def micros_time(micros):
    return presentation.format_time(micros)


@register.filter
def micros_iso(micros):
    moment = presentation.from_micros(micros)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z") if moment else ""


@register.filter
def duration(run, now_micros):
    return presentation.format_duration(presentation.run_duration(run, now_micros))


@register.filter
def terminal(state_type):
    return state_type in presentation.TERMINAL_STATES

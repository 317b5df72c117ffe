"""What a delivery says: one message for a group of events, in the three forms a target takes
(a Slack-compatible body, a generic JSON body, an e-mail). Bounded whatever the group's size:
a burst of 500 failures is one summary line and the first `MAX_LISTED` runs."""

from collections import Counter

from django.conf import settings
from django.urls import reverse

from pipelinehub.dashboard.links import prefect_ui_url

from .models import Event

MAX_LISTED = 20  # runs listed in a Slack message or an e-mail
MAX_JSON_EVENTS = 500  # events in a generic JSON body; the rest are counted in "omitted"
SLACK_TEXT_LIMIT = 2900  # Slack cuts a section's text at 3,000 characters


def load(events):
    """The events of a queryset with what their messages read, in order, in one query."""
    return list(
        events.select_related(
            "team",
            "alert__environment__team",
            "alert__environment__workspace",
            "alert__acknowledged_by",
        ).order_by("created_at", "id")
    )


def _label(event):
    kind = event.alert.get_kind_display()
    return f"{kind} cleared" if event.type == Event.Type.CLEARED else kind


def summary(events):
    """One line: "50 runs failed in alpha/prod", "Runaway: calm-fox (etl) in alpha/prod: ...",
    or counts per label for a mixed group."""
    environments = ", ".join(sorted({str(event.alert.environment) for event in events}))
    if len(events) == 1:
        event = events[0]
        return (
            f"{_label(event).capitalize()}: {_run_title(event)} in {environments}: {_detail(event)}"
        )
    counts = Counter(_label(event) for event in events)
    if len(counts) == 1:
        return f"{len(events)} runs {next(iter(counts))} in {environments}"
    parts = ", ".join(f"{count} {label}" for label, count in counts.most_common())
    return f"{len(events)} alerts in {environments}: {parts}"


def _run_title(event):
    alert = event.alert
    title = alert.run_name or alert.run_id
    return f"{title} ({alert.flow_name})" if alert.flow_name else title


def _detail(event):
    alert = event.alert
    detail = alert.reason
    if event.type == Event.Type.CLEARED:
        minutes = max(1, round((alert.cleared_at - alert.started_at).total_seconds() / 60))
        detail = f"cleared after {minutes} min (was: {alert.reason})"
    if alert.acknowledged_by is not None:
        detail += f"; acknowledged by {alert.acknowledged_by.get_username()}"
    return detail


def links(event):
    """The run in Prefect's UI, and on the hub when PIPELINEHUB_URL says where the hub is."""
    alert = event.alert
    environment = alert.environment
    hub = ""
    if settings.PIPELINEHUB_URL:
        path = reverse(
            "run",
            kwargs={"team": environment.team.slug, "env": environment.slug, "run_id": alert.run_id},
        )
        hub = settings.PIPELINEHUB_URL.rstrip("/") + path
    return prefect_ui_url(environment.workspace.api_url, alert.run_id), hub


def event_data(event):
    alert = event.alert
    run_url, hub_url = links(event)
    return {
        "event": event.type,
        "kind": alert.kind,
        "reason": alert.reason,
        "environment": str(alert.environment),
        "team": alert.environment.team.slug,
        "alert_id": alert.pk,
        "run_id": alert.run_id,
        "run_name": alert.run_name,
        "flow": alert.flow_name,
        "deployment": alert.deployment,
        "run_url": run_url,
        "hub_url": hub_url or None,
        "started_at": alert.started_at.isoformat(),
        "cleared_at": alert.cleared_at.isoformat()
        if event.type == Event.Type.CLEARED and alert.cleared_at
        else None,
        "acknowledged_by": alert.acknowledged_by.get_username() if alert.acknowledged_by else None,
    }


def generic_body(delivery_id, events):
    return {
        "delivery_id": delivery_id,
        "team": events[0].team.slug if events else "",
        "summary": summary(events),
        "count": len(events),
        "events": [event_data(event) for event in events[:MAX_JSON_EVENTS]],
        "omitted": max(0, len(events) - MAX_JSON_EVENTS),
    }


def _slack_escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(events):
    headline = summary(events)
    lines = []
    for event in events[:MAX_LISTED]:
        run_url, hub_url = links(event)
        title = _slack_escape(_run_title(event))
        lines.append(
            f"• *{_label(event)}* <{hub_url or run_url}|{title}> in {event.alert.environment}: "
            f"{_slack_escape(_detail(event))}"
        )
    text = "\n".join(lines)[:SLACK_TEXT_LIMIT]
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_slack_escape(headline)}*"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
    ]
    if len(events) > MAX_LISTED:
        more = f"…and {len(events) - MAX_LISTED} more"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    return {"text": headline, "blocks": blocks}


def email_text(events):
    """(subject, body) of the e-mail for `events`."""
    headline = summary(events)
    lines = [headline, ""]
    for event in events[:MAX_LISTED]:
        run_url, hub_url = links(event)
        lines.append(f"- {_label(event)}: {_run_title(event)} in {event.alert.environment}")
        lines.append(f"  {_detail(event)}")
        lines.append(f"  {hub_url or run_url}")
    if len(events) > MAX_LISTED:
        lines.append(f"...and {len(events) - MAX_LISTED} more.")
    return f"[PipelineHub] {headline}"[:200], "\n".join(lines) + "\n"

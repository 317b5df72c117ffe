"""Alerts, the events people are told about, where they are told, and each delivery.

An `Alert` is one run needing attention for one reason (runaway, stuck, late: open until the
detectors stop flagging it; failed: a one-shot). Each start and end of an alert is an `Event`;
events of one team are grouped into one `Delivery` per `NotificationTarget`, which is retried
until the receiver answers 2xx (docs/alerts.md).
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import models
from django.utils import timezone

from pipelinehub.credentials.models import SecretRef
from pipelinehub.environments.models import Environment, Team
from pipelinehub.state import flags


class Kind(models.TextChoices):
    RUNAWAY = flags.RUNAWAY, "runaway"
    STUCK = flags.STUCK, "stuck"
    LATE = flags.LATE, "late"
    FAILED = flags.FAILED, "failed"


class Alert(models.Model):
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="alerts")
    run_id = models.CharField("flow run id", max_length=64)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    reason = models.CharField(max_length=300)
    run_name = models.CharField(max_length=200, blank=True)
    flow_name = models.CharField(max_length=200, blank=True)
    deployment = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(help_text="When the run crossed its threshold (or failed).")
    cleared_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    silenced_until = models.DateTimeField(null=True, blank=True)
    silenced_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            # One open alert per run and reason: what keeps overlapping detection passes from
            # opening (and announcing) the same alert twice.
            models.UniqueConstraint(
                fields=["environment", "run_id", "kind"],
                condition=models.Q(cleared_at__isnull=True),
                name="alert_one_open_per_run_and_kind",
            ),
            # A failure is announced once; a retried run that fails again is a new failure.
            models.UniqueConstraint(
                fields=["environment", "run_id", "started_at"],
                condition=models.Q(kind="failed"),
                name="alert_one_per_failure",
            ),
        ]
        indexes = [models.Index(fields=["environment", "cleared_at"])]

    def __str__(self):
        return f"{self.get_kind_display()} {self.run_name or self.run_id} in {self.environment}"

    def silenced_at(self, moment):
        return self.silenced_until is not None and self.silenced_until > moment

    @property
    def silenced(self):
        return self.silenced_at(timezone.now())


class Event(models.Model):
    """One thing to tell the team: an alert started, cleared, or (for failed runs) happened.

    `grouped_at` is set when a flush put the event into the deliveries of its team's targets;
    `suppressed` when its alert was silenced: it is kept, and never sent."""

    class Type(models.TextChoices):
        STARTED = "started"
        CLEARED = "cleared"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=16, choices=Type.choices)
    created_at = models.DateTimeField(default=timezone.now)
    grouped_at = models.DateTimeField(null=True, blank=True)
    suppressed = models.BooleanField(default=False)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["team", "grouped_at"])]

    def __str__(self):
        return f"{self.alert} {self.type}"


def validate_webhook_url(value):
    """http(s) only, with a host: no file:, ftp: or scheme-relative URLs for the worker to
    fetch."""
    URLValidator(schemes=["http", "https"])(value)


def email_list(value):
    return [address.strip() for address in value.replace(";", ",").split(",") if address.strip()]


def validate_email_list(value):
    for address in email_list(value):
        validate_email(address)


class NotificationTarget(models.Model):
    class Channel(models.TextChoices):
        WEBHOOK = "webhook"
        EMAIL = "email", "e-mail"

    class BodyFormat(models.TextChoices):
        SLACK = "slack", "Slack-compatible"
        GENERIC = "generic", "generic JSON"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="notification_targets")
    name = models.CharField(max_length=100)
    channel = models.CharField(max_length=16, choices=Channel.choices, default=Channel.WEBHOOK)
    url = models.CharField(
        "webhook URL", max_length=500, blank=True, validators=[validate_webhook_url]
    )
    body_format = models.CharField(
        max_length=16, choices=BodyFormat.choices, default=BodyFormat.GENERIC
    )
    signing_secret = models.ForeignKey(
        SecretRef,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Signs each webhook body (X-PipelineHub-Signature); never shown back.",
    )
    emails = models.TextField(
        "e-mail addresses",
        blank=True,
        validators=[validate_email_list],
        help_text="Comma-separated.",
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["team__slug", "name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="notificationtarget_unique_name")
        ]

    def __str__(self):
        return f"{self.team.slug}: {self.name}"

    def clean(self):
        if self.channel == self.Channel.WEBHOOK and not self.url:
            raise ValidationError({"url": "A webhook needs its URL."})
        if self.channel == self.Channel.EMAIL and not email_list(self.emails):
            raise ValidationError({"emails": "Give at least one e-mail address."})

    @property
    def recipients(self):
        return email_list(self.emails)


class Delivery(models.Model):
    """One message to one target, carrying a group of events. `sent` only once the receiver
    answered 2xx (or the mail server took the message); `failed` once the retries ran out, which
    the admin shows and can retry."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    target = models.ForeignKey(
        NotificationTarget, on_delete=models.CASCADE, related_name="deliveries"
    )
    events = models.ManyToManyField(Event, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"

    def __str__(self):
        return f"delivery {self.pk} to {self.target} ({self.status})"

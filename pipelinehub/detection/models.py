"""What the detectors of an environment flag, and when: its thresholds (docs/detection.md).

Every environment gets a `DetectionSettings` row with the defaults when it is made (see
`schedules`); a missing row means the defaults. Per-flow limits (`FlowLimit`) give flows an
absolute limit of their own, for flows with no history or whose history is no guide.
"""

from datetime import timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from pipelinehub.environments.models import Environment

SHORTEST = timedelta(seconds=1)
LONGEST = timedelta(days=30)
# Prefect sends a heartbeat at most every 30 seconds (its minimum frequency): a shorter
# silence would flag every healthy run between two heartbeats.
SHORTEST_SILENCE = timedelta(seconds=30)


def validate_span(value):
    if not SHORTEST <= value <= LONGEST:
        raise ValidationError(
            f"Give a duration between 1 second and 30 days (this is {value}).", code="span"
        )


def validate_heartbeat_silence(value):
    validate_span(value)
    if value < SHORTEST_SILENCE:
        raise ValidationError(
            "Prefect sends a heartbeat at most every 30 seconds: a shorter silence would flag "
            "every healthy run. Give at least 30 seconds (3 minutes or more with Prefect's "
            "default heartbeat of 180 seconds).",
            code="silence",
        )


class DetectionSettings(models.Model):
    environment = models.OneToOneField(
        Environment, on_delete=models.CASCADE, related_name="detection_settings"
    )
    runaway_multiple = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("3"),
        validators=[MinValueValidator(Decimal("1.5")), MaxValueValidator(Decimal("100"))],
        help_text="A run is runaway past this multiple of its baseline (the 95th percentile of "
        "its flow's or deployment's last 50 completed runs). Between 1.5 and 100.",
    )
    runaway_floor = models.DurationField(
        default=timedelta(minutes=5),
        validators=[validate_span],
        help_text="Never runaway before running this long, whatever the baseline (e.g. 00:05:00).",
    )
    runaway_limit = models.DurationField(
        null=True,
        blank=True,
        validators=[validate_span],
        help_text="Runaway past this, baseline or not (empty: no limit). A flow's own limit "
        "below replaces it.",
    )
    heartbeat_silence = models.DurationField(
        default=timedelta(minutes=10),
        validators=[validate_heartbeat_silence],
        help_text="A Running or Pending run that has sent heartbeats is stuck once none came "
        "for this long.",
    )
    silence_limit = models.DurationField(
        default=timedelta(minutes=60),
        validators=[validate_span],
        help_text="A Running or Pending run that sends no heartbeats is stuck once its state "
        "has not changed for this long.",
    )
    late_after = models.DurationField(
        default=timedelta(minutes=5),
        validators=[validate_span],
        help_text="A Scheduled run is late this long after its expected start.",
    )
    notify_failed = models.BooleanField(
        default=False, help_text="Also notify about flow runs that fail or crash."
    )

    class Meta:
        verbose_name = verbose_name_plural = "detection settings"

    def __str__(self):
        return f"Detection for {self.environment}"

    @classmethod
    def of(cls, environment):
        """The environment's settings, or the defaults when it has no row."""
        return cls.objects.filter(environment=environment).first() or cls(environment=environment)

    def limits(self):
        """{flow name: its absolute limit}."""
        if self.pk is None:
            return {}
        return dict(self.flow_limits.values_list("flow", "limit"))


class FlowLimit(models.Model):
    settings = models.ForeignKey(
        DetectionSettings, on_delete=models.CASCADE, related_name="flow_limits"
    )
    flow = models.CharField(max_length=200, help_text="The flow's name, as the board shows it.")
    limit = models.DurationField(
        validators=[validate_span], help_text="Runaway past this (e.g. 01:30:00)."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["settings", "flow"], name="one_limit_per_flow")
        ]

    def __str__(self):
        return f"{self.flow}: {self.limit}"

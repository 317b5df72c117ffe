from django.db import models
from django.utils import timezone

from pipelinehub.environments.models import Environment


class ReconcileReport(models.Model):
    """What one reconcile of an environment found and repaired."""

    MODES = [
        ("changes", "changes: what can have changed since the last reconcile"),
        ("sweep", "sweep: one slice of the finished runs' window"),
        ("full", "full: the whole window"),
    ]

    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="reconcile_reports"
    )
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    trigger = models.CharField(max_length=20, help_text="beat, command, admin or ingest")
    mode = models.CharField(max_length=10, choices=MODES, default="changes")
    duration_ms = models.PositiveIntegerField(default=0)
    requests = models.PositiveIntegerField(
        default=0, help_text="HTTP requests sent to the Prefect API (retries included)."
    )
    checked = models.PositiveIntegerField(default=0, help_text="Runs read from Prefect.")
    missing = models.PositiveIntegerField(default=0, help_text="Runs Redis did not have.")
    stale = models.PositiveIntegerField(default=0, help_text="Runs Redis had in an older state.")
    orphaned = models.PositiveIntegerField(
        default=0, help_text="Runs Redis had that Prefect no longer has (removed)."
    )
    malformed = models.PositiveIntegerField(
        default=0, help_text="Runs Prefect returned with values out of bounds (skipped)."
    )
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        get_latest_by = "started_at"

    def __str__(self):
        outcome = (
            f"error: {self.error}"
            if self.error
            else (
                f"{self.checked} checked, {self.missing} missing, {self.stale} stale, "
                f"{self.orphaned} orphaned, {self.malformed} malformed, "
                f"{self.requests} requests"
            )
        )
        return f"{self.environment} {self.started_at:%Y-%m-%d %H:%M:%S} {self.mode}: {outcome}"

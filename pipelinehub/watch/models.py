"""What the health watch keeps: a snapshot of each Redis target every minute, for a bounded
time (HEALTH_SNAPSHOT_RETENTION), with the alerts raised from it."""

from django.db import models
from django.utils import timezone

from pipelinehub.environments.models import RedisTarget


class HealthSnapshotQuerySet(models.QuerySet):
    def newest_per_target(self, target_ids):
        """The newest snapshot of each of the targets, in two queries however many."""
        newest = self.filter(target=models.OuterRef("pk")).order_by("-taken_at").values("pk")[:1]
        pks = RedisTarget.objects.filter(pk__in=target_ids).annotate(newest=models.Subquery(newest))
        return self.filter(pk__in=[pk for pk in pks.values_list("newest", flat=True) if pk])


class HealthSnapshot(models.Model):
    target = models.ForeignKey(
        RedisTarget, on_delete=models.CASCADE, related_name="health_snapshots"
    )
    taken_at = models.DateTimeField(default=timezone.now)
    reachable = models.BooleanField()
    # The primary's, as columns for the chart and the list; null when it did not answer.
    used_memory = models.BigIntegerField(null=True, blank=True)
    maxmemory = models.BigIntegerField(null=True, blank=True)
    policy = models.CharField(max_length=40, blank=True)
    evicted_keys = models.BigIntegerField(null=True, blank=True)
    evictions = models.BigIntegerField(
        null=True, blank=True, help_text="Keys evicted since the previous snapshot."
    )
    probe = models.JSONField(help_text="What the nodes and the environments' keys said.")
    alerts = models.JSONField(default=list)

    objects = HealthSnapshotQuerySet.as_manager()

    class Meta:
        ordering = ["-taken_at"]
        get_latest_by = "taken_at"
        indexes = [models.Index(fields=["target", "-taken_at"], name="snapshot_target_newest")]

    def __str__(self):
        return f"{self.target} at {self.taken_at:%Y-%m-%d %H:%M} UTC"

    @property
    def memory_share(self):
        """Used memory as a share of maxmemory, None when there is no maxmemory."""
        return self.used_memory / self.maxmemory if self.maxmemory and self.used_memory else None

    def alerts_for_teams(self):
        """Alerts that the teams on the target see: those with a message for them."""
        return [alert for alert in self.alerts if alert["team_message"]]

"""What team leads see of the health watch on their home page: the alerts of the Redis targets
their environments live on, said of their own environments ("Redis for prod: evictions
happening"), without hosts or other teams' environments."""

from collections import defaultdict

from .models import HealthSnapshot
from .report import STALE_AFTER


def alerts_by_team(environments, now):
    """{team id: [message]} for `environments` (those the user may view). Only fresh snapshots
    count: an old one may say what is no longer true (the admin says that the watch stopped)."""
    environments = list(environments)
    targets = {environment.redis_target_id for environment in environments}
    snapshots = HealthSnapshot.objects.newest_per_target(targets).filter(
        taken_at__gte=now - STALE_AFTER
    )
    by_target = {snapshot.target_id: snapshot for snapshot in snapshots}
    messages = defaultdict(list)
    for environment in environments:
        snapshot = by_target.get(environment.redis_target_id)
        for alert in snapshot.alerts_for_teams() if snapshot else []:
            if alert["environment"] in ("", str(environment.pk)):
                text = f"Redis for {environment.slug}: {alert['team_message']}"
                if text not in messages[environment.team_id]:
                    messages[environment.team_id].append(text)
    return messages

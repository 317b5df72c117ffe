"""The team-admin form: the settings of an environment that a team's admins may change.

Only `enabled` and `finished_run_ttl`: they affect the team's own environment alone. The key
prefix, Redis target and Prefect workspace decide isolation between teams and point at shared
infrastructure and secrets, so they stay with platform engineers in the admin site.
"""

from django import forms

from pipelinehub.audit.service import action_name, record, snapshot
from pipelinehub.environments.models import Environment


class EnvironmentSettingsForm(forms.ModelForm):
    class Meta:
        model = Environment
        fields = ["enabled", "finished_run_ttl"]

    def save_audited(self, request):
        """Save and record the change (before/after) in the audit log, as the admin site does."""
        before = snapshot(Environment.objects.get(pk=self.instance.pk))
        environment = self.save()
        record(
            action_name(environment, "change"),
            environment,
            request=request,
            before=before,
            after=snapshot(environment),
            message=f"Team admin page: changed {', '.join(self.changed_data)}.",
        )
        return environment

from django.contrib import admin, messages

from pipelinehub.audit.service import action_name, record
from pipelinehub.environments.admin import EnvironmentAdmin

from .models import ReconcileReport
from .tasks import reconcile_environment


@admin.register(ReconcileReport)
class ReconcileReportAdmin(admin.ModelAdmin):
    """Read-only: reports are written by reconcile runs."""

    list_display = (
        "started_at",
        "environment",
        "trigger",
        "mode",
        "requests",
        "checked",
        "missing",
        "stale",
        "orphaned",
        "malformed",
        "duration_ms",
        "error",
    )
    list_filter = ("environment", "mode", "trigger")
    date_hierarchy = "started_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.action(description="Reconcile now (full)", permissions=["change"])
def reconcile_now_full(modeladmin, request, queryset):
    """Queue a full reconcile of each selected environment: a worker runs it, as a full
    reconcile of a large environment takes longer than a request should."""
    for environment in queryset:
        level, message = _queue_full_reconcile(request, environment)
        modeladmin.message_user(request, f"{environment}: {message}", level)


def _queue_full_reconcile(request, environment):
    if not environment.enabled:
        return messages.WARNING, "disabled, not reconciled"
    try:
        reconcile_environment.delay(environment.pk, mode="full", trigger="admin")
    except Exception as exc:  # the broker is down: say so rather than fail the page
        return messages.ERROR, f"reconcile not queued: {exc}"
    record(
        action_name(environment, "reconcile"), environment, request=request, after={"mode": "full"}
    )
    return messages.SUCCESS, "full reconcile queued; its report will be under Reconcile reports."


# The Environment admin belongs to the environments app, which must not know about sync: the
# action is added to it from here (admin modules are imported by the admin's autodiscovery).
EnvironmentAdmin.actions = [*EnvironmentAdmin.actions, reconcile_now_full]

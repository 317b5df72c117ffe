from django.contrib import admin

from .models import ReconcileReport


@admin.register(ReconcileReport)
class ReconcileReportAdmin(admin.ModelAdmin):
    """Read-only: reports are written by reconcile runs."""

    list_display = (
        "started_at",
        "environment",
        "trigger",
        "checked",
        "missing",
        "stale",
        "orphaned",
        "duration_ms",
        "error",
    )
    list_filter = ("environment", "trigger")
    date_hierarchy = "started_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

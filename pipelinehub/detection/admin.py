from django.contrib import admin

from .models import DetectionSettings, FlowLimit


class FlowLimitInline(admin.TabularInline):
    model = FlowLimit
    extra = 0


@admin.register(DetectionSettings)
class DetectionSettingsAdmin(admin.ModelAdmin):
    """One row per environment, made with it; thresholds are validated on save."""

    list_display = (
        "environment",
        "runaway_multiple",
        "runaway_floor",
        "runaway_limit",
        "heartbeat_silence",
        "silence_limit",
        "late_after",
        "notify_failed",
    )
    list_select_related = ("environment__team",)
    inlines = [FlowLimitInline]

    def get_readonly_fields(self, request, obj=None):
        return ("environment",) if obj else ()


@admin.register(FlowLimit)
class FlowLimitAdmin(admin.ModelAdmin):
    list_display = ("flow", "limit", "settings")
    list_select_related = ("settings__environment__team",)
    search_fields = ("flow",)

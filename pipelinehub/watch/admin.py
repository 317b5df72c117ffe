from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from pipelinehub.audit.service import action_name, record
from pipelinehub.environments.admin import RedisTargetAdmin
from pipelinehub.environments.models import RedisTarget

from .models import HealthSnapshot
from .report import target_report
from .snapshots import take_snapshot


@admin.register(HealthSnapshot)
class HealthSnapshotAdmin(admin.ModelAdmin):
    """Read-only: snapshots are taken by the watch. Each target's health page (alerts,
    environments, the chart of the last day) is a view of this admin."""

    list_display = ("taken_at", "target_health", "reachable", "memory", "policy", "evictions")
    list_filter = ("reachable", "target")
    list_select_related = ("target",)
    date_hierarchy = "taken_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="target", ordering="target__name")
    def target_health(self, obj):
        return format_html('<a href="{}">{}</a>', health_url(obj.target_id), obj.target)

    @admin.display(description="used memory")
    def memory(self, obj):
        share = obj.memory_share
        return f"{share:.0%} of maxmemory" if share is not None else (obj.used_memory or "-")

    def get_urls(self):
        view = self.admin_site.admin_view(self.target_health_view)
        return [
            path("target/<int:target_id>/", view, name="watch_target_health"),
            *super().get_urls(),
        ]

    def target_health_view(self, request, target_id):
        if not self.has_view_permission(request):
            raise PermissionDenied
        target = get_object_or_404(RedisTarget, pk=target_id)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Health of {target}",
            "opts": self.model._meta,
            "report": target_report(target, timezone.now()),
        }
        return TemplateResponse(request, "watch/target_health.html", context)


def health_url(target_id):
    return reverse("admin:watch_target_health", args=[target_id])


@admin.display(description="health")
def health(target):
    """On the target's own page: the newest snapshot's alerts and the way to the details."""
    if target.pk is None:
        return "Watched every minute once saved."
    snapshot = HealthSnapshot.objects.filter(target=target).first()
    link = format_html('<a href="{}">Details, environments and chart</a>', health_url(target.pk))
    if snapshot is None:
        return format_html("No snapshot yet. {}", link)
    alerts = format_html_join("", "<li>{}</li>", ((a["message"],) for a in snapshot.alerts))
    return format_html(
        "As of {} UTC: {}<ul>{}</ul>{}",
        f"{snapshot.taken_at:%Y-%m-%d %H:%M}",
        f"{len(snapshot.alerts)} alert(s)" if snapshot.alerts else "no alerts",
        alerts,
        link,
    )


@admin.action(description="Check health now", permissions=["view"])
def check_health_now(modeladmin, request, queryset):
    """Probe the selected targets at once (each node answers or times out within seconds)."""
    for target in queryset:
        snapshot = take_snapshot(target)
        codes = [alert["code"] for alert in snapshot.alerts]
        record(
            action_name(target, "check_health"), target, request=request, after={"alerts": codes}
        )
        level = messages.WARNING if codes else messages.SUCCESS
        summary = ", ".join(codes) or "no alerts"
        modeladmin.message_user(request, f"{target}: {summary}.", level)


# The Redis target admin belongs to the environments app, which must not know about the watch:
# its health field and action are added from here, as sync adds its action to environments.
RedisTargetAdmin.readonly_fields = (*RedisTargetAdmin.readonly_fields, health)
RedisTargetAdmin.fieldsets = (*RedisTargetAdmin.fieldsets, ("Health", {"fields": (health,)}))
RedisTargetAdmin.actions = [*RedisTargetAdmin.actions, check_health_now]

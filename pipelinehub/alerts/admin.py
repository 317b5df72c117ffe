"""Alerts in the admin: acknowledge or silence them, see every event, the targets (with a
write-only signing secret) and the deliveries, failed ones first to look at and to retry."""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.db.models import Count

from pipelinehub.audit.service import action_name, record
from pipelinehub.credentials.admin import SecretValueAdminMixin, secret_input

from . import service
from .models import Alert, Delivery, Event, NotificationTarget
from .tasks import deliver


class ReadOnlyFieldsMixin:
    """Rows written by the service: no add, no edit of fields; the actions are the changes."""

    def has_add_permission(self, request):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields] + list(self.readonly_fields)


@admin.action(description="Acknowledge", permissions=["change"])
def acknowledge(modeladmin, request, queryset):
    for alert in queryset:
        service.acknowledge(alert, user=request.user, request=request)
    modeladmin.message_user(request, f"Acknowledged {len(queryset)} alerts.")


@admin.action(description="Silence for 1 hour", permissions=["change"])
def silence_hour(modeladmin, request, queryset):
    for alert in queryset:
        service.silence(alert, timedelta(hours=1), user=request.user, request=request)
    modeladmin.message_user(request, f"Silenced {len(queryset)} alerts for an hour.")


@admin.action(description="End the silence", permissions=["change"])
def end_silence(modeladmin, request, queryset):
    for alert in queryset.filter(silenced_until__isnull=False):
        service.silence(alert, timedelta(0), user=request.user, request=request)
    modeladmin.message_user(request, "Silences ended.")


class OpenFilter(admin.SimpleListFilter):
    title = "open"
    parameter_name = "open"

    def lookups(self, request, model_admin):
        return [("yes", "Open"), ("no", "Cleared")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(cleared_at__isnull=self.value() == "yes")
        return queryset


@admin.register(Alert)
class AlertAdmin(ReadOnlyFieldsMixin, admin.ModelAdmin):
    list_display = (
        "started_at",
        "environment",
        "kind",
        "run_name",
        "flow_name",
        "reason",
        "cleared_at",
        "acknowledged_by",
        "silenced_until",
    )
    list_filter = (OpenFilter, "kind", "environment")
    list_select_related = ("environment__team", "acknowledged_by")
    search_fields = ("run_id", "run_name", "flow_name", "reason")
    date_hierarchy = "started_at"
    actions = [acknowledge, silence_hour, end_silence]


@admin.register(Event)
class EventAdmin(ReadOnlyFieldsMixin, admin.ModelAdmin):
    list_display = ("created_at", "team", "alert", "type", "grouped_at", "suppressed")
    list_filter = ("type", "suppressed", "team")
    list_select_related = ("team", "alert__environment__team")

    def has_change_permission(self, request, obj=None):
        return False


class NotificationTargetForm(forms.ModelForm):
    new_signing_secret = secret_input(
        "new signing secret",
        "Write-only. Filled, it stores a new version of the webhook signing secret; empty "
        "keeps it.",
    )

    class Meta:
        model = NotificationTarget
        fields = ["team", "name", "channel", "url", "body_format", "emails", "enabled"]


@admin.register(NotificationTarget)
class NotificationTargetAdmin(SecretValueAdminMixin, admin.ModelAdmin):
    form = NotificationTargetForm
    secret_field = "signing_secret"
    secret_name_prefix = "alerts-target"
    list_display = ("name", "team", "channel", "body_format", "enabled", "secret_status")
    list_filter = ("channel", "enabled", "team")
    list_select_related = ("team", "signing_secret")
    readonly_fields = ("secret_status",)


@admin.action(description="Retry the selected deliveries", permissions=["change"])
def retry_deliveries(modeladmin, request, queryset):
    """Queue each delivery not yet sent again, from its first retry: the receiver is back."""
    retried = 0
    for delivery in queryset.exclude(status=Delivery.Status.SENT):
        Delivery.objects.filter(pk=delivery.pk).update(
            status=Delivery.Status.PENDING, next_attempt_at=None
        )
        try:
            deliver.delay(delivery.pk)
        except Exception as exc:  # the broker is down: say so rather than fail the page
            modeladmin.message_user(request, f"{delivery}: not queued: {exc}", messages.ERROR)
            continue
        record(action_name(delivery, "retry"), delivery, request=request)
        retried += 1
    modeladmin.message_user(request, f"Queued {retried} deliveries again.")


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyFieldsMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "target",
        "status",
        "attempts",
        "event_count",
        "last_error",
        "next_attempt_at",
        "sent_at",
    )
    list_filter = ("status", "target__team")
    list_select_related = ("target__team",)
    date_hierarchy = "created_at"
    actions = [retry_deliveries]
    exclude = ("events",)  # hundreds in a burst: counted here, listed under Events
    readonly_fields = ("event_count",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(event_total=Count("events"))

    @admin.display(description="events", ordering="event_total")
    def event_count(self, obj):
        return obj.event_total

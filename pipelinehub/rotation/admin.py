from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from pipelinehub.environments.admin import RedisTargetAdmin

from . import service
from .models import PasswordRotation
from .tasks import schedule_retire

HISTORY_FIELDS = (
    "started_at",
    "username",
    "environment",
    "step",
    "status",
    "error",
    "notes",
    "trigger",
    "started_by",
    "finished_at",
)


class ReadOnlyAdminMixin:
    """Rows written by rotations only."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PasswordRotation)
class PasswordRotationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("started_at", "target", "username", "step", "status", "error", "finished_at")
    list_filter = ("status", "step", "target")
    search_fields = ("username", "target__name")
    list_select_related = ("target",)
    fields = ("target", *HISTORY_FIELDS, "old_version", "new_version", "updated_at")


@admin.action(description="Rotate password now", permissions=["change"])
def rotate_password_now(modeladmin, request, queryset):
    """The first phase now, in the request (a few ACL commands per user); the old passwords are
    removed by a task after ROTATION_GRACE_SECONDS."""
    for target in queryset:
        try:
            rotations = service.rotate(target, actor=request.user, trigger="admin")
        except (service.RotationBusy, service.RotationRefused) as exc:
            modeladmin.message_user(request, f"{target}: {exc}", messages.WARNING)
            continue
        for rotation in rotations:
            modeladmin.message_user(request, _outcome(rotation), _level(rotation))
        try:
            schedule_retire(target, rotations)
        except Exception as exc:  # the broker is down: say so rather than fail the page
            modeladmin.message_user(
                request,
                f"{target}: removal of the old passwords not queued ({exc}); the next rotation "
                "of the target removes them.",
                messages.ERROR,
            )


def _outcome(rotation):
    text = f"{rotation.target}: {rotation.user_label} {rotation.username}: "
    if rotation.status == rotation.Status.FAILED:
        return text + f"rotation failed: {rotation.error}"
    return text + f"new password in use; {rotation.get_status_display().lower()}"


def _level(rotation):
    return messages.ERROR if rotation.status == rotation.Status.FAILED else messages.SUCCESS


@admin.display(description="password rotations")
def rotation_history(target):
    url = reverse("admin:rotation_passwordrotation_changelist")
    return format_html('<a href="{}?target__id__exact={}">history</a>', url, target.pk)


# The RedisTarget admin belongs to the environments app, which must not know about rotation:
# the action and the link to each target's history are added to it from here (as sync adds its
# reconcile action to the Environment admin). A link, not an inline: an inline's formset would
# be part of every save of the target's form.
RedisTargetAdmin.actions = [*RedisTargetAdmin.actions, rotate_password_now]
RedisTargetAdmin.list_display = [*RedisTargetAdmin.list_display, rotation_history]

from django.contrib import admin

from .models import Membership, RoleMapping


@admin.register(RoleMapping)
class RoleMappingAdmin(admin.ModelAdmin):
    list_display = ("group", "is_pattern", "team", "role")
    list_filter = ("is_pattern", "role", "team")
    search_fields = ("group", "team__slug")
    list_select_related = ("team",)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Read-only but deletable: memberships are rewritten from SSO groups at every login, so an
    edit would not last; deleting one revokes it at once (until the next login, if the groups still
    grant it)."""

    list_display = ("user", "team", "role", "updated")
    list_filter = ("role", "team")
    search_fields = ("user__username", "user__email", "team__slug")
    list_select_related = ("user", "team")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

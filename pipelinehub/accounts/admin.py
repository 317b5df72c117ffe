from allauth.account.models import EmailAddress
from allauth.socialaccount.admin import SocialAccountAdmin
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialToken
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from .identity import check_username
from .models import Membership, PlatformMapping, RoleMapping


@admin.register(RoleMapping)
class RoleMappingAdmin(admin.ModelAdmin):
    list_display = ("group", "is_pattern", "team", "role")
    list_filter = ("is_pattern", "role", "team")
    search_fields = ("group", "team__slug")
    list_select_related = ("team",)


@admin.register(PlatformMapping)
class PlatformMappingAdmin(admin.ModelAdmin):
    list_display = ("group", "is_pattern", "access", "permission_group")
    list_filter = ("is_pattern", "access", "permission_group")
    search_fields = ("group",)
    list_select_related = ("permission_group",)


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


class LocalUserCreationForm(AdminUserCreationForm):
    def clean_username(self):
        username = super().clean_username()
        check_username(username)
        return username


class LocalUserChangeForm(UserChangeForm):
    def clean_username(self):
        username = self.cleaned_data["username"]
        check_username(username, self.instance)
        return username


class LocalUserAdmin(UserAdmin):
    """Django's user admin, refusing usernames under the SSO prefix (kept for Okta identities)
    with a form error rather than the server error of the model's own refusal."""

    add_form = LocalUserCreationForm
    form = LocalUserChangeForm


class ReadOnlySocialAccountAdmin(SocialAccountAdmin):
    """Which Okta subject each user is, to look at only: the login creates these, and a changed
    or deleted one would cut its user off from their Okta identity."""

    fields = ("user", "provider", "uid", "last_login", "date_joined")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def replace_library_admins(site):
    """Called once all admin modules are loaded. allauth's admin pages for things this site does
    not use (OAuth apps in the database, stored tokens, e-mail addresses) are removed, its
    social accounts become read-only, and users may not be given SSO usernames by hand."""
    site.unregister([SocialApp, SocialToken, EmailAddress, SocialAccount, get_user_model()])
    site.register(SocialAccount, ReadOnlySocialAccountAdmin)
    site.register(get_user_model(), LocalUserAdmin)

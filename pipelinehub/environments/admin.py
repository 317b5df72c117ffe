import redis
from django import forms
from django.contrib import admin, messages

from pipelinehub.audit.service import record
from pipelinehub.credentials.admin import SecretValueAdminMixin, secret_input
from pipelinehub.credentials.backends import SecretUnavailable
from pipelinehub.state.acl import ensure_acl_user

from .models import Environment, PrefectWorkspace, RedisTarget, Team, insecure_key_transport


class RedisTargetForm(forms.ModelForm):
    new_password = secret_input(
        "new password",
        "Write-only. Filled, it stores a new version of the password; empty keeps it.",
    )

    class Meta:
        model = RedisTarget
        fields = [
            "name",
            "host",
            "port",
            "db",
            "tls",
            "tls_ca_path",
            "tls_verify",
            "username",
            "replicas",
        ]


class PrefectWorkspaceForm(forms.ModelForm):
    new_api_key = secret_input(
        "new API key", "Write-only. Filled, it stores a new version of the key; empty keeps it."
    )

    class Meta:
        model = PrefectWorkspace
        fields = ["name", "api_url"]

    def clean(self):
        cleaned = super().clean()
        url = cleaned.get("api_url")
        if url and cleaned.get("new_api_key") and (message := insecure_key_transport(url)):
            self.add_error("api_url", message)
        return cleaned


class EnvironmentInline(admin.TabularInline):
    model = Environment
    fields = ("slug", "workspace", "redis_target", "key_prefix", "enabled")
    extra = 0
    show_change_link = True


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("slug", "name")
    search_fields = ("slug", "name")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [EnvironmentInline]


@admin.register(PrefectWorkspace)
class PrefectWorkspaceAdmin(SecretValueAdminMixin, admin.ModelAdmin):
    form = PrefectWorkspaceForm
    secret_field = "api_key"
    secret_name_prefix = "prefect-workspace"
    list_display = ("name", "api_url", "secret_status")
    search_fields = ("name", "api_url")
    readonly_fields = ("secret_status",)


@admin.register(RedisTarget)
class RedisTargetAdmin(SecretValueAdminMixin, admin.ModelAdmin):
    form = RedisTargetForm
    secret_field = "password"
    secret_name_prefix = "redis-target"
    list_display = ("name", "address", "tls", "username", "secret_status")
    search_fields = ("name", "host", "username")
    readonly_fields = ("secret_status",)
    fieldsets = (
        (None, {"fields": ("name", "host", "port", "db")}),
        ("TLS", {"fields": ("tls", "tls_ca_path", "tls_verify")}),
        ("Authentication", {"fields": ("username", "new_password", "secret_status")}),
        ("Replicas", {"fields": ("replicas",)}),
    )


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ("__str__", "team", "workspace", "redis_target", "key_prefix", "enabled")
    list_filter = ("enabled", "team", "redis_target")
    search_fields = ("slug", "team__slug", "key_prefix")
    list_select_related = ("team", "workspace", "redis_target")
    readonly_fields = ("acl_username",)
    actions = ["create_or_update_acl_user"]

    @admin.action(description="Create or update the Redis ACL user of the selected environments")
    def create_or_update_acl_user(self, request, queryset):
        for environment in queryset:
            try:
                notes = ensure_acl_user(environment)
            except (redis.RedisError, SecretUnavailable) as exc:
                self.message_user(
                    request, f"{environment}: ACL user not set: {exc}", messages.ERROR
                )
                continue
            record(
                "acl_user",
                environment,
                request=request,
                after={
                    "acl_username": environment.acl_username,
                    "key_pattern": f"{environment.key_prefix}*",
                },
            )
            self.message_user(
                request,
                f"{environment}: ACL user {environment.acl_username} "
                f"confined to {environment.key_prefix}*",
                messages.SUCCESS,
            )
            for note in notes:
                self.message_user(request, f"{environment}: {note}", messages.WARNING)

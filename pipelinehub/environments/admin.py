import functools
import itertools

import redis
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from pipelinehub.audit.service import action_name, record
from pipelinehub.credentials.admin import SecretValueAdminMixin, secret_input
from pipelinehub.credentials.backends import SecretUnavailable
from pipelinehub.state.acl import (
    ensure_acl_user,
    move_acl_user,
    remove_orphan_acl_users,
    unreachable_nodes,
)

from .models import Environment, PrefectWorkspace, RedisTarget, Team, insecure_key_transport
from .validators import prefixes_collide

# What an ACL user failing at Redis, at the secret store or at our own checks raises.
ACL_ERRORS = (redis.RedisError, SecretUnavailable, ValidationError)
# Fields whose change moves an environment's ACL user (its key pattern, its server).
ACL_USER_PLACEMENT = {"key_prefix", "redis_target"}
# Fields whose change moves a target's nodes or database, and with them its environments' users.
TARGET_PLACEMENT = {"host", "port", "db", "replicas"}


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

    def clean(self):
        """The ACL users of the target's environments live on its nodes, in its database: a
        target repointed under them would leave them behind. Environments move their users when
        they are given another target, so that is the way to move them."""
        cleaned = super().clean()
        if self.instance.pk and TARGET_PLACEMENT & set(self.changed_data):
            provisioned = self.instance.environments.exclude(acl_username="")
            if names := ", ".join(str(environment) for environment in provisioned):
                raise ValidationError(
                    f"Environments {names} have Redis ACL users on this target's nodes and "
                    "database, which a change of host, port, database or replicas would leave "
                    "behind. Give those environments a target with the new address first "
                    "(saving an environment with another target moves its ACL user)."
                )
        return cleaned


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
        repointed = "api_url" in self.changed_data and self.instance.api_key_id
        if repointed and not cleaned.get("new_api_key"):
            self.add_error(
                "new_api_key",
                "The API URL changed: enter the API key again, so that the stored key is "
                "never sent to a host it was not given for.",
            )
        return cleaned


class EnvironmentInlineFormSet(forms.BaseInlineFormSet):
    """Environments edited together on a team's page: each form's own check sees only the rows
    already saved, so the forms are checked against each other here."""

    def clean(self):
        super().clean()
        moving = [form for form in self.forms if self._moves(form)]
        for form in moving:
            if form.instance.acl_username:
                form.add_error(
                    None,
                    f"{form.instance} has its own Redis ACL user: change its prefix or Redis "
                    "target on the environment's own page, which moves the user along.",
                )
        # A form that does not move holds what is saved, which the others' checks saw.
        for first, second in itertools.combinations(moving, 2):
            if message := _collision(first.instance, second.instance):
                raise ValidationError(message)

    def _moves(self, form):
        saved = form.is_valid() and form.has_changed() and not self._should_delete_form(form)
        return saved and form.instance.moves()


def _collision(first, second):
    """Why two environments may not both be saved as they are, or ""."""
    same_server = first.redis_target.server_nodes & second.redis_target.server_nodes
    if same_server and prefixes_collide(first.key_prefix, second.key_prefix):
        return (
            f"Environments {first.slug} and {second.slug}: prefixes {first.key_prefix!r} and "
            f"{second.key_prefix!r} are on one Redis server, where neither may start with the "
            "other. Choose another prefix for one of them."
        )
    return ""


class EnvironmentInline(admin.TabularInline):
    model = Environment
    formset = EnvironmentInlineFormSet
    fields = ("slug", "workspace", "work_pools", "redis_target", "key_prefix", "enabled")
    extra = 0
    show_change_link = True


class EnvironmentForm(forms.ModelForm):
    class Meta:
        model = Environment
        fields = [
            "team",
            "slug",
            "workspace",
            "redis_target",
            "key_prefix",
            "finished_run_ttl",
            "enabled",
        ]

    def moves_acl_user(self):
        """Whether the change takes the environment's ACL user to another prefix or server."""
        moved = ACL_USER_PLACEMENT & set(self.changed_data)
        return bool(self.instance.acl_username and moved)

    def clean(self):
        """Refuse a move of the ACL user that Redis cannot carry out now, rather than save a
        prefix or target that the environment's user cannot reach."""
        cleaned = super().clean()
        new_target = cleaned.get("redis_target")
        if new_target and self.moves_acl_user():
            targets = {self.instance.redis_target, new_target}
            if problems := [p for target in targets for p in unreachable_nodes(target)]:
                raise ValidationError(
                    f"This environment's Redis ACL user {self.instance.acl_username} moves with "
                    "its prefix and Redis target, and Redis does not answer "
                    f"({'; '.join(problems)}). Nothing was changed: try again when it answers."
                )
        return cleaned


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
    list_select_related = ("api_key",)
    search_fields = ("name", "api_url")
    readonly_fields = ("secret_status",)


@admin.register(RedisTarget)
class RedisTargetAdmin(SecretValueAdminMixin, admin.ModelAdmin):
    form = RedisTargetForm
    secret_field = "password"
    secret_name_prefix = "redis-target"
    list_display = ("name", "address", "tls", "username", "secret_status")
    list_select_related = ("password",)
    search_fields = ("name", "host", "username")
    readonly_fields = ("secret_status",)
    fieldsets = (
        (None, {"fields": ("name", "host", "port", "db")}),
        ("TLS", {"fields": ("tls", "tls_ca_path", "tls_verify")}),
        ("Authentication", {"fields": ("username", "new_password", "secret_status")}),
        ("Replicas", {"fields": ("replicas",)}),
    )
    actions = ["remove_orphaned_acl_users"]

    @admin.action(description="Remove orphaned ACL users", permissions=["change"])
    def remove_orphaned_acl_users(self, request, queryset):
        """Users of our naming scheme that no environment of the server owns any more."""
        for target in queryset:
            try:
                removed, notes = remove_orphan_acl_users(target)
            except ACL_ERRORS as exc:
                self.message_user(request, f"{target}: nothing removed: {exc}", messages.ERROR)
                continue
            record(
                action_name(target, "remove_orphan_acl_users"),
                target,
                request=request,
                after={"removed": removed},
            )
            summary = ", ".join(removed) or "none"
            self.message_user(request, f"{target}: orphaned ACL users removed: {summary}")
            for note in notes:
                self.message_user(request, f"{target}: {note}", messages.WARNING)


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    form = EnvironmentForm
    list_display = ("__str__", "team", "workspace", "redis_target", "key_prefix", "enabled")
    list_filter = ("enabled", "team", "redis_target")
    search_fields = ("slug", "team__slug", "key_prefix")
    readonly_fields = ("acl_username",)
    actions = ["create_or_update_acl_user"]

    def get_queryset(self, request):
        """The list's relations, loaded with its rows. Not `list_select_related`: the changelist
        skips it when the queryset already follows a relation, as the manager's does (team)."""
        return super().get_queryset(request).select_related("workspace", "redis_target")

    @admin.action(
        description="Create or update the Redis ACL user of the selected environments",
        permissions=["change"],
    )
    def create_or_update_acl_user(self, request, queryset):
        for environment in queryset:
            try:
                notes = ensure_acl_user(environment)
            except ACL_ERRORS as exc:
                self.message_user(
                    request, f"{environment}: ACL user not set: {_text(exc)}", messages.ERROR
                )
                continue
            self._report_acl_user(request, environment, "provision_acl_user", notes)

    def save_model(self, request, obj, form, change):
        """A new prefix or target takes the environment's ACL user along (the form refused
        the change if Redis did not answer)."""
        moves = change and form.moves_acl_user()
        previous_target = (
            RedisTarget.objects.get(pk=form.initial["redis_target"]) if moves else None
        )
        super().save_model(request, obj, form, change)
        if moves:
            self._move_acl_user(request, obj, previous_target)

    def _move_acl_user(self, request, environment, previous_target):
        try:
            notes = move_acl_user(environment, previous_target)
        except ACL_ERRORS as exc:
            self.message_user(
                request,
                f"{environment}: ACL user {environment.acl_username} not moved: {_text(exc)}. "
                "Its Redis traffic fails until 'Create or update the Redis ACL user' succeeds "
                f"for it; then 'Remove orphaned ACL users' on {previous_target} deletes the old "
                "user.",
                messages.ERROR,
            )
            return
        self._report_acl_user(request, environment, "move_acl_user", notes)

    def _report_acl_user(self, request, environment, verb, notes):
        record(
            action_name(environment, verb),
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


def _text(exc):
    return " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)


def require_permission(site, model, permission):
    """Re-register a library's admin of `model` with each of its actions needing `permission`:
    without `allowed_permissions` Django offers an action to anyone who may view the list."""
    registered = type(site._registry[model])
    names = [name for name in registered.actions if isinstance(name, str)]
    guarded = {
        name: _needing(permission, getattr(registered, name))
        for name in names
        if not hasattr(getattr(registered, name), "allowed_permissions")
    }
    site.unregister(model)
    site.register(model, type(registered.__name__, (registered,), guarded))


def _needing(permission, action):
    @functools.wraps(action)
    def guarded(modeladmin, request, queryset):
        return action(modeladmin, request, queryset)

    guarded.allowed_permissions = (permission,)
    return guarded

"""Login hooks: SSO logins bring the user in step with their claims; break-glass logins are
audited and reset their own lockout counter; local users may not take SSO usernames."""

from allauth.account.signals import user_logged_in as allauth_user_logged_in
from axes.utils import reset as reset_lockout
from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import pre_save
from django.dispatch import receiver

from pipelinehub.audit.service import record

from . import identity, sso
from .backends import BREAK_GLASS_BACKEND


@receiver(allauth_user_logged_in, dispatch_uid="accounts.sync_memberships")
def sync_on_sso_login(sender, request, user, sociallogin=None, **kwargs):
    if sociallogin is not None:
        sso.apply_login(request, sociallogin)


@receiver(user_logged_in, dispatch_uid="accounts.audit_break_glass")
def audit_break_glass_login(sender, request, user, **kwargs):
    """Audits the login and clears the failed attempts against this username, and only those:
    axes' own reset on success (off, AXES_RESET_ON_SUCCESS) would also run for SSO logins and
    clear a whole client address, which lets someone with a team role interleave SSO logins
    with password guesses."""
    if getattr(user, "backend", None) == BREAK_GLASS_BACKEND:
        record(
            "login.break_glass",
            user,
            request=request,
            actor=user,
            message="Local password login of a superuser (break-glass, bypasses SSO).",
        )
        reset_lockout(username=user.get_username())


@receiver(pre_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="accounts.sso_usernames")
def keep_sso_usernames_for_sso_identities(sender, instance, update_fields=None, **kwargs):
    """Refuses every local way to make a user (admin, createsuperuser, ensure_admin, shell) a
    username under the SSO prefix."""
    if update_fields is None or "username" in update_fields:
        identity.check_username(instance.username, instance)

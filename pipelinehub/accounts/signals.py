"""Login hooks: memberships follow the SSO groups at every login; break-glass logins are audited."""

from allauth.account.signals import user_logged_in as allauth_user_logged_in
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from pipelinehub.audit.service import record

from . import memberships
from .backends import BREAK_GLASS_BACKEND


@receiver(allauth_user_logged_in, dispatch_uid="accounts.sync_memberships")
def sync_memberships_on_sso_login(sender, request, user, sociallogin=None, **kwargs):
    if sociallogin is not None:
        groups = memberships.groups_from_claims(sociallogin.account.extra_data)
        memberships.sync(user, groups, request=request)


@receiver(user_logged_in, dispatch_uid="accounts.audit_break_glass")
def audit_break_glass_login(sender, request, user, **kwargs):
    if getattr(user, "backend", None) == BREAK_GLASS_BACKEND:
        record(
            "login.break_glass",
            user,
            request=request,
            actor=user,
            message="Local password login of a superuser (break-glass, bypasses SSO).",
        )

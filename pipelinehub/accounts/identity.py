"""Who an SSO user is: the IdP's subject, under a username that no local account can take.

An Okta user is identified by their subject (`sub`, stored as allauth's SocialAccount uid) alone.
Their username is derived from it under a prefix of its own, never taken from a claim the user or
an Okta admin can choose (`preferred_username`, e-mail), so an SSO login can neither take a local
account's name (`admin`, the break-glass login) nor a lookalike of one (Cyrillic `rооt`). Local
accounts, in turn, may not take a name under the prefix.
"""

import hashlib
import re

from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.core.exceptions import ValidationError

from .oidc import PROVIDER_ID

PREFIX = "okta-"
# Subjects made of these characters only are kept as they are; any other character is dropped and
# a digest of the whole subject is added after a "+", which kept subjects never contain: so two
# subjects never derive the same username.
UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
KEPT_LENGTH = 100
DIGEST_LENGTH = 16


def sso_username(subject):
    """The username of the SSO user with IdP subject `subject`."""
    kept = UNSAFE.sub("", subject)[:KEPT_LENGTH]
    if kept == subject:
        return PREFIX + subject
    digest = hashlib.sha256(subject.encode()).hexdigest()[:DIGEST_LENGTH]
    return f"{PREFIX}{kept}+{digest}"


def check_username(username, user=None):
    """Refuse a username under the SSO prefix unless it is the one derived from `user`'s own
    subject (an SSO user being created carries it as `sso_subject` until its account is saved)."""
    if username.startswith(PREFIX) and username not in _own_sso_usernames(user):
        raise ValidationError(
            f"Usernames starting with '{PREFIX}' belong to Okta identities; choose another.",
            code="sso_username",
        )


def _own_sso_usernames(user):
    subjects = set()
    if user is not None:
        if pending := getattr(user, "sso_subject", None):
            subjects.add(pending)
        if user.pk is not None:
            subjects.update(
                SocialAccount.objects.filter(user_id=user.pk, provider=PROVIDER_ID).values_list(
                    "uid", flat=True
                )
            )
    return {sso_username(subject) for subject in subjects}


def break_glass_superusers():
    """Active superusers that can log in with a local password: no SSO identity, and a password."""
    return (
        get_user_model()
        .objects.filter(is_active=True, is_superuser=True, socialaccount__isnull=True)
        .exclude(password__startswith=UNUSABLE_PASSWORD_PREFIX)
    )

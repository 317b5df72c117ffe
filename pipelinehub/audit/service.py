"""`record()`: the one way anything writes to the audit log, under names of one scheme."""

import re

from django.core import serializers
from django.db import models

from .models import AuditEvent

REDACTED = "[redacted]"
# Field names that hold secrets or their hashes, in our models and in the libraries' ones
# (auth's password hash, allauth's SocialApp secret and tokens, sessions).
SECRET_FIELD_NAMES = frozenset(
    {"password", "secret", "key", "token", "token_secret", "ciphertext", "session_data"}
)
# Every action name is `<object>.<verb>` ("environment.change", "flow_run.retry"), so that the
# log can be filtered by object or by verb alike.
ACTION_NAME = re.compile(r"^[a-z_]+\.[a-z_]+$")


def action_name(subject, verb):
    """`<object>.<verb>`, the object named by a model (instance or class) or a plain name.

    Models are named by `model_name` alone, as the event's object_type already holds the app.
    """
    name = subject if isinstance(subject, str) else subject._meta.model_name
    return _checked(f"{name}.{verb}")


def _checked(action):
    if not ACTION_NAME.match(action):
        raise ValueError(f"Audit action {action!r} is not named <object>.<verb>.")
    return action


def snapshot(instance):
    """The instance's stored fields as JSON-able data, with every secret redacted."""
    fields = serializers.serialize("python", [instance])[0]["fields"]
    for field in instance._meta.concrete_fields:
        if field.name in fields and _is_secret(field):
            fields[field.name] = REDACTED
    return fields


def _is_secret(field):
    return field.name in SECRET_FIELD_NAMES or isinstance(field, models.BinaryField)


def record(
    action,
    obj=None,
    *,
    request=None,
    actor=None,
    object_type="",
    object_id="",
    before=None,
    after=None,
    message="",
):
    """Write one audit event. `request` supplies the actor and the request id when given.

    An action named outside the `<object>.<verb>` scheme is refused, so no caller drifts from it.
    """
    _checked(action)
    if request is not None and actor is None:
        user = getattr(request, "user", None)
        actor = user if user is not None and user.is_authenticated else None
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
    return AuditEvent.objects.create(
        actor=actor,
        actor_name=actor.get_username() if actor is not None else "system",
        action=action,
        object_type=object_type,
        object_id=str(object_id or ""),
        object_repr=str(obj)[:200] if obj is not None else "",
        message=message,
        before=before,
        after=after,
        request_id=getattr(request, "request_id", "") if request is not None else "",
    )

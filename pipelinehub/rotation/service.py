"""Password rotation of a Redis target: its own user and every environment's ACL user on it.

`rotate(target)` takes each user through the first phase, one recorded step at a time:

1. *added*: a new password is generated (kept encrypted in the history row until stored) and
   added on every node next to the old one, and persisted there;
2. *stored*: it becomes the secret's current version, the old one its previous version: only
   now do new connections use it, and it already logs in everywhere;
3. *verified*: a fresh connection logs in with it on every node.

`retire(target)`, after the grace period (`ROTATION_GRACE_SECONDS`, a delayed task), does the
second phase: *removed* (the old password off every node) and *persisted* (ACL SAVE or CONFIG
REWRITE). Until then both passwords work, so clients holding the old one (connected, or with it
in their provider's cache) never fail; a connection refused later re-reads the secret.

Every step is idempotent and recorded before the next begins, so a rotation stopped after any
step continues from there when the target is rotated again (an unfinished rotation of a user is
resumed, not started anew; one waiting for its grace period stays waiting). At every moment
the secret's current version logs in on every node.
A failure leaves the row "failed" at the step reached, with the error (never a secret), logs it
at ERROR and audits it; `failed_rotations(target)` lists them for alerts. One rotation per target
at a time (a Redis lock); secrets of read-only backends are refused before anything changes.
"""

import logging
from datetime import timedelta

import redis
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from pipelinehub.audit.service import action_name, record
from pipelinehub.credentials.backends import SecretUnavailable
from pipelinehub.state import rotation as redis_rotation
from pipelinehub.state.connections import credential_provider
from pipelinehub.state.rotation import NodeRefused, RotationBusy, scrubbed

from .models import PasswordRotation

logger = logging.getLogger(__name__)

Step, Status = PasswordRotation.Step, PasswordRotation.Status
STEP_ERRORS = (redis.RedisError, SecretUnavailable, NodeRefused)
OPEN = [Status.RUNNING, Status.WAITING, Status.FAILED]
# A step takes seconds; a rotation running and unchanged this long was stopped (a killed worker).
STALLED_AFTER = timedelta(hours=1)


class RotationRefused(Exception):
    """The target's secrets cannot be rotated by the hub (read-only backend, no password)."""


__all__ = ["RotationBusy", "RotationRefused", "failed_rotations", "retire", "rotate"]


def users_of(target):
    """(environment or None, username, secret) of every user to rotate on the target: its own
    user when it has a password, and every environment's ACL user."""
    users = []
    if target.password_id:
        users.append((None, target.username, target.password))
    for environment in target.environments.exclude(acl_username="").select_related("acl_password"):
        if environment.acl_password_id:
            users.append((environment, environment.acl_username, environment.acl_password))
    return users


def refusal(target, users):
    """Why the hub may not rotate the target's passwords (`users_of(target)`), or ""."""
    if not users:
        return f"{target} has no password and no environment ACL user to rotate."
    read_only = [secret.name for _, _, secret in users if secret.read_only]
    if read_only:
        return (
            f"{target} uses secrets of a read-only backend ({', '.join(read_only)}): they are "
            "rotated where they are managed (mounted, injected, or by the secret manager's own "
            "rotation), and the hub picks the new value up at its next connection. Nothing was "
            "changed."
        )
    return ""


def rotate(target, *, actor=None, trigger="beat"):
    """The first phase for every user of the target; the rotations (some may have failed).
    RotationBusy when another rotation of the target runs; RotationRefused when it may not."""
    users = users_of(target)
    if message := refusal(target, users):
        record(action_name(target, "rotate_password"), target, actor=actor, message=message[:500])
        raise RotationRefused(message)
    lock = redis_rotation.lock_target(target)
    try:
        return [_rotate_user(target, user, lock, actor, trigger) for user in users]
    finally:
        lock.release()


def retire(target):
    """The second phase for every rotation of the target past its first: the old passwords off
    every node, the ACL persisted. RotationBusy when another rotation of the target runs."""
    lock = redis_rotation.lock_target(target)
    try:
        waiting = target.rotations.filter(status__in=OPEN, step__in=_SECOND_PHASE)
        return [_run(rotation, lock, until=Step.PERSISTED) for rotation in waiting]
    finally:
        lock.release()


def failed_rotations(target, now=None):
    """The target's rotations whose last attempt failed, or that stopped moving (a worker
    killed in the middle leaves one running): an alert until a later rotation finishes it."""
    stalled_since = (now or timezone.now()) - STALLED_AFTER
    return target.rotations.filter(
        Q(status=Status.FAILED) | Q(status=Status.RUNNING, updated_at__lt=stalled_since)
    )


def _rotate_user(target, user, lock, actor, trigger):
    """The first phase for one user: its unfinished rotation goes on. One whose first phase is
    done is left waiting while its grace period lasts (a second rotate, such as a redelivered
    task or a second click, must not remove the old password early); after the grace it is
    finished first (a new rotation would make its old password unreachable)."""
    environment, username, secret = user
    rotation = target.rotations.filter(username=username, status__in=OPEN).first()
    if rotation is not None and _in_grace(rotation):
        if rotation.status != Status.WAITING:  # a worker stopped before saying so
            _set(rotation, status=Status.WAITING)
        logger.info("Password rotation of %s on %s waits for its grace period", username, target)
        return rotation
    if rotation is not None and rotation.step in _SECOND_PHASE:
        _run(rotation, lock, until=Step.PERSISTED)
        if rotation.status == Status.FAILED:
            return rotation
        rotation = None
    if rotation is None:
        rotation = PasswordRotation.objects.create(
            target=target,
            environment=environment,
            username=username,
            secret=secret,
            trigger=trigger,
            started_by=actor,
            old_version=secret.version or "",
        )
    return _run(rotation, lock, until=Step.VERIFIED)


def _in_grace(rotation):
    """The first phase is done, and the old password's removal is not due yet."""
    grace_ends = rotation.updated_at + timedelta(seconds=settings.ROTATION_GRACE_SECONDS)
    return (
        rotation.step == Step.VERIFIED
        and rotation.status != Status.FAILED
        and timezone.now() < grace_ends
    )


def _run(rotation, lock, until):
    """Take the steps after the rotation's own up to `until`, recording each; the rotation."""
    _set(rotation, status=Status.RUNNING, error="")
    while not rotation.reached(until):
        step = _NEXT[rotation.step]
        try:
            advance(rotation)
        except STEP_ERRORS as exc:
            _fail(rotation, step, exc)
            return rotation
        lock.reacquire()
    done = rotation.reached(Step.PERSISTED)
    _set(
        rotation,
        status=Status.FINISHED if done else Status.WAITING,
        finished_at=timezone.now() if done else None,
    )
    _audit(rotation, "retire_old_password" if done else "rotate_password")
    return rotation


def advance(rotation):
    """Take the rotation's next step and record it. Each step may be taken again after a stop
    before its record: it finds its work done, or does it again to the same effect."""
    step = _NEXT[rotation.step]
    _STEPS[step](rotation)
    _set(rotation, step=step)


def _add(rotation):
    if rotation.pending_ciphertext is None:
        rotation.hold_pending(redis_rotation.generate_password())
        _set(rotation, pending_ciphertext=rotation.pending_ciphertext)
    notes = redis_rotation.add_password(
        rotation.target, rotation.username, rotation.pending_password()
    )
    _note(rotation, notes)


def _store(rotation):
    """Store the new password as the current version; a stop after the backend stored it but
    before the row says so finds it current already, and does not store it twice."""
    secret, password = rotation.secret, rotation.pending_password()
    current = secret.current() if secret.has_value else None
    if current is not None and current.version_id != rotation.old_version:
        if current.value != password:
            raise SecretUnavailable(
                f"Secret {secret.name!r} changed during the rotation; run it again."
            )
        version = current.version_id
    else:
        version = secret.store(password)
    _set(rotation, new_version=version, pending_ciphertext=None)
    # The hub's own connections move to the new password now rather than within the cache time.
    credential_provider(rotation.username, secret.pk).invalidate()


def _verify(rotation):
    secret = rotation.secret
    password = secret.reveal_version(rotation.new_version)
    redis_rotation.verify_login(rotation.target, rotation.username, password)


def _remove(rotation):
    if rotation.old_version:
        old = rotation.secret.reveal_version(rotation.old_version)
        redis_rotation.remove_password(rotation.target, rotation.username, old)


def _persist(rotation):
    _note(rotation, redis_rotation.persist(rotation.target))


_STEPS = {
    Step.ADDED: _add,
    Step.STORED: _store,
    Step.VERIFIED: _verify,
    Step.REMOVED: _remove,
    Step.PERSISTED: _persist,
}
_NEXT = dict(zip(list(Step), list(Step)[1:], strict=False))
_SECOND_PHASE = [Step.VERIFIED, Step.REMOVED, Step.PERSISTED]


def _fail(rotation, step, exc):
    secrets = []
    if rotation.pending_ciphertext is not None:
        secrets.append(rotation.pending_password())
    error = scrubbed(f"{step.label}: {exc}", *secrets)
    _set(rotation, status=Status.FAILED, error=error)
    logger.error(
        "Password rotation of %s on %s failed at %r: %s",
        rotation.username,
        rotation.target,
        step.value,
        error,
    )
    _audit(rotation, "rotate_password")


def _note(rotation, notes):
    if notes:
        _set(rotation, notes="\n".join(filter(None, [rotation.notes, *notes])))


def _set(rotation, **fields):
    for name, value in fields.items():
        setattr(rotation, name, value)
    rotation.save(update_fields=[*fields, "updated_at"])


def _audit(rotation, verb):
    record(
        action_name(rotation.target, verb),
        rotation.target,
        actor=rotation.started_by,
        after={
            "rotation": rotation.pk,
            "user": rotation.username,
            "step": rotation.step,
            "status": rotation.status,
            "error": rotation.error,
        },
    )

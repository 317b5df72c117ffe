"""The Redis side of a password rotation: the steps, each on the primary and every replica.

Redis keeps several passwords per ACL user, so a rotation is two-phase: the new password is
added next to the old one, checked on a fresh connection, and only after a grace period is the
old one removed. ACLs do not replicate, so each step runs on every node; each step is
idempotent (adding a password twice keeps one, removing one already gone is done), so a
rotation stopped anywhere is finished by running its remaining steps again. The order of the
steps and what is stored when belongs to the caller (`pipelinehub.rotation.service`).

Nothing here logs or raises a password: Redis's own error replies are passed through
`scrubbed()` before they go anywhere.
"""

import secrets

import redis

from .acl import persist_acl
from .connections import login_works, target_client, target_node_clients

# A password Redis compares in constant time; 32 random bytes, URL-safe (no spaces or quotes
# for ACL SETUSER).
PASSWORD_BYTES = 32
# Long enough for every user of a large target; the service renews it after each user.
LOCK_SECONDS = 300
LOCK_KEY = "pipelinehub:rotation:lock:{pk}"
REMOVED_ALREADY = "does not exist"


class RotationBusy(Exception):
    """Another rotation of the target holds its lock."""


class NodeRefused(Exception):
    """A node did not take a step (the message names the node, never a password)."""


def generate_password():
    return secrets.token_urlsafe(PASSWORD_BYTES)


def scrubbed(text, *values):
    """`text` with every one of `values` replaced: Redis echoes a malformed ACL rule back."""
    for value in values:
        if value:
            text = text.replace(value, "[redacted]")
    return text


def redis_username(username):
    """The ACL user behind a connection: an empty username is Redis's `default` user."""
    return username or "default"


def add_password(target, username, password):
    """`ACL SETUSER <user> ><password>` on every node, then persist it there, so that a
    restart of a node during the grace period does not take the new password away. Returns
    notes (nodes where the ACL could only change in memory)."""
    _set_on_every_node(target, username, f">{password}", password)
    return persist(target)


def remove_password(target, username, password):
    """`ACL SETUSER <user> <<password>` on every node; a password already removed is done.
    Persisting is the caller's next step (`persist`). Connections already logged in with it stay
    logged in: Redis drops them only on ACL DELUSER."""
    _set_on_every_node(target, username, f"<{password}", password, done_when=REMOVED_ALREADY)


def persist(target):
    """ACL SAVE where the node has an aclfile, else CONFIG REWRITE; notes where neither works."""
    return [note for client in target_node_clients(target) for note in persist_acl(client)]


def verify_login(target, username, password):
    """A fresh connection to every node logs in with `password`; NodeRefused names the nodes
    where it did not."""
    nodes = [_address(client) for client in target_node_clients(target)]
    refused = [
        f"{host}:{port}"
        for host, port in nodes
        if not login_works(target, host, port, username, password)
    ]
    if refused:
        raise NodeRefused(
            f"the new password of {redis_username(username)} does not log in on "
            f"{', '.join(refused)}"
        )


def lock_target(target):
    """The one-rotation-per-target lock (redis-py's Lock on the target's primary), acquired, or
    RotationBusy. A process killed while holding it frees it after LOCK_SECONDS."""
    lock = target_client(target).lock(
        LOCK_KEY.format(pk=target.pk), timeout=LOCK_SECONDS, blocking=False
    )
    if not lock.acquire():
        raise RotationBusy(f"a rotation of {target} is already running")
    return lock


def _set_on_every_node(target, username, rule, password, done_when=None):
    for client in target_node_clients(target):
        try:
            client.execute_command("ACL", "SETUSER", redis_username(username), rule)
        except redis.ResponseError as exc:
            if not (done_when and done_when in str(exc)):
                raise NodeRefused(_refusal(client, exc, password)) from None


def _address(client):
    kwargs = client.connection_pool.connection_kwargs
    return kwargs["host"], kwargs["port"]


def _refusal(client, exc, password):
    host, port = _address(client)
    return f"{host}:{port}: {scrubbed(str(exc), password)}"

"""Per-environment Redis ACL users, so that isolation between environments sharing one Redis is
enforced by Redis itself and not only by our key names."""

import re
import secrets

import redis
from django.core.exceptions import ValidationError

from pipelinehub.credentials.models import SecretRef
from pipelinehub.environments.models import Environment
from pipelinehub.environments.validators import canonical_host

from .connections import target_node_clients
from .keyspace import Keyspace

# Exactly what the hub does with an environment's keys: the board and run reads, apply.lua
# (with its baselines), the detectors' flags and heartbeats, the change stream, locks, and the
# connection handshake of redis-py and channels-redis.
# Absent on purpose: KEYS, SCAN, RANDOMKEY (they leak other environments' key names),
# FLUSHALL/FLUSHDB, FUNCTION, CONFIG, ACL, DEBUG, and EVAL and SCRIPT LOAD (any Lua at all, e.g.
# `while true do end`, blocks the whole server): scripts run by EVALSHA only, loaded by the hub
# through the target's own connection (state.store).
HUB_COMMANDS = (
    "ping",
    "echo",
    "client|setname",
    "get",
    "set",
    "mget",
    "del",
    "unlink",
    "exists",
    "type",
    "expire",
    "pexpire",
    "persist",
    "ttl",
    "pttl",
    "zadd",
    "zrem",
    "zrange",
    "zrevrange",
    "zrangebyscore",
    "zremrangebyscore",
    "zremrangebyrank",
    "zcount",
    "zcard",
    "zscore",
    "sadd",
    "srem",
    "smembers",
    "scard",
    "sismember",
    "hset",
    "hget",
    "hmget",
    "hgetall",
    "hdel",
    "hincrby",
    "hlen",
    "xadd",
    "xrange",
    "xrevrange",
    "xread",
    "xlen",
    "xinfo|stream",
    "xtrim",
    "evalsha",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    "publish",
    "subscribe",
    "unsubscribe",
)


# The user's own database only: redis-py sends SELECT at connect when the database is not 0.
# (`+select|<db>`, a first-argument rule, works on Redis 7.0.)
SELECT_OWN_DATABASE = "+select|{db}"

# Names of the users we create: derived from the environment's primary key, so unique on every
# Redis server by construction (team and environment slugs joined by "-" were not: team x-y and
# env z, team x and env y-z). Users of other names are never touched.
USERNAME = re.compile(r"^ph-env-[0-9]+$")


def acl_username(environment):
    return f"ph-env-{environment.pk}"


def acl_rules(prefix, db, password):
    """Everything the user may do, from scratch: rules left by an earlier SETUSER of that name
    (other passwords, key and channel patterns, commands, selectors) are reset first."""
    pattern = Keyspace(prefix).pattern
    return [
        "on",
        "resetpass",
        "resetkeys",
        "resetchannels",
        "clearselectors",
        "-@all",
        *(f"+{command}" for command in HUB_COMMANDS),
        SELECT_OWN_DATABASE.format(db=db),
        f"~{pattern}",
        f"&{pattern}",
        f">{password}",
    ]


def ensure_acl_user(environment):
    """Create or update the environment's ACL user on the primary and every replica.

    The password is generated once and kept in the secret store; running this again re-applies
    the rules (e.g. after the prefix changed) with the same password. A user of an older name
    is renamed: the new one is set, then the old one deleted unless another environment of the
    server still uses it. Returns human-readable notes (e.g. nodes where the ACL could not be
    persisted).
    """
    previous = environment.acl_username
    environment.acl_username = acl_username(environment)
    if errors := environment.server_errors():
        raise ValidationError(errors)
    if environment.acl_password_id is None:
        environment.acl_password = _password_secret(environment)
    rules = acl_rules(
        environment.key_prefix, environment.redis_target.db, environment.acl_password.reveal()
    )
    notes = []
    for _, client in _node_clients(environment.redis_target):
        client.execute_command("ACL", "SETUSER", environment.acl_username, *rules)
        notes.extend(persist_acl(client))
    environment.save(update_fields=["acl_username", "acl_password"])
    if previous and previous != environment.acl_username:
        notes.extend(_delete_unclaimed(environment.redis_target, previous))
    return notes


def _password_secret(environment):
    """The secret of the environment's password; one that an earlier attempt, failed at Redis,
    left behind is used. Named after the primary key, as the user is: a name made of slugs
    could be another environment's after a rename."""
    secret, _ = SecretRef.objects.get_or_create(name=f"redis-acl/env-{environment.pk}")
    if not secret.has_value:
        secret.store(secrets.token_urlsafe(32))
    return secret


def move_acl_user(environment, previous_target):
    """After the environment's prefix or target changed: set its user up where the environment
    is now, then delete the user from the nodes of `previous_target` that it left."""
    previous_name = environment.acl_username
    notes = ensure_acl_user(environment)
    left = previous_target.server_nodes - environment.redis_target.server_nodes
    if left:
        notes.extend(_delete_unclaimed(previous_target, previous_name, left))
    return notes


def _delete_unclaimed(target, username, nodes=None):
    """Delete `username` from the target's nodes (or those of `nodes`) unless an environment on
    that server still has it."""
    if username in _claimed_usernames(target):
        return []
    notes = []
    for node, client in _node_clients(target):
        if nodes is None or node in nodes:
            client.execute_command("ACL", "DELUSER", username)
            notes.extend(persist_acl(client))
    return notes


def remove_orphan_acl_users(target):
    """Delete, on every node of the target, the users of our naming scheme that no environment
    of that Redis server owns (left by a deleted environment, or by one that moved while Redis
    did not answer). Returns the removed users ("host:port: user") and persistence notes."""
    owned = _claimed_usernames(target)
    removed, notes = [], []
    for (host, port), client in _node_clients(target):
        names = [raw.decode() for raw in client.execute_command("ACL", "USERS")]
        orphans = [name for name in names if USERNAME.match(name) and name not in owned]
        for name in orphans:
            client.execute_command("ACL", "DELUSER", name)
            removed.append(f"{host}:{port}: {name}")
        if orphans:
            notes.extend(persist_acl(client))
    return removed, notes


def _claimed_usernames(target):
    """Users that environments of the target's server have, or get once provisioned."""
    targets = [t.pk for t in target.same_server_targets() if t.pk]
    environments = Environment.objects.filter(redis_target__in=targets)
    return {name for env in environments for name in (env.acl_username, acl_username(env))}


def _node_clients(target):
    """(canonical (host, port), client) of the primary and of every replica."""
    return [(_node_of(client), client) for client in target_node_clients(target)]


def _node_of(client):
    kwargs = client.connection_pool.connection_kwargs
    return canonical_host(kwargs["host"]), kwargs["port"]


def unreachable_nodes(target):
    """One line, "host:port: error", per node of the target that does not answer with the
    target's own credentials: a move of an ACL user would fail there."""
    problems = []
    for (host, port), client in _node_clients(target):
        try:
            client.ping()
        except redis.RedisError as exc:
            problems.append(f"{host}:{port}: {exc}")
    return problems


def persist_acl(client):
    """ACLs do not replicate and live in memory: save them where the server allows it."""
    node = client.connection_pool.connection_kwargs["host"]
    try:
        client.execute_command("ACL", "SAVE")
    except redis.ResponseError:
        try:
            client.config_rewrite()
        except redis.ResponseError:
            return [
                f"{node}: ACL change made in memory only (no aclfile and no config file to "
                "rewrite); a restart of that Redis undoes it."
            ]
    return []

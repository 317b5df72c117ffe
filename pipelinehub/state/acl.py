"""Per-environment Redis ACL users, so that isolation between environments sharing one Redis is
enforced by Redis itself and not only by our key names."""

import secrets

import redis

from pipelinehub.credentials.models import SecretRef

from .connections import target_node_clients
from .keyspace import Keyspace

# Exactly what the hub does with an environment's keys: the board and run reads, apply.lua,
# the change stream, locks, and the connection handshake of redis-py and channels-redis.
# Absent on purpose: KEYS, SCAN, RANDOMKEY (they leak other environments' key names),
# FLUSHALL/FLUSHDB, FUNCTION, CONFIG, ACL, DEBUG.
HUB_COMMANDS = (
    "ping",
    "echo",
    "select",
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
    "xadd",
    "xrange",
    "xrevrange",
    "xread",
    "xlen",
    "xtrim",
    "eval",
    "evalsha",
    "script|load",
    "script|exists",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    "publish",
    "subscribe",
    "unsubscribe",
)


def acl_rules(prefix, password):
    pattern = Keyspace(prefix).pattern
    return [
        "on",
        "resetkeys",
        "resetchannels",
        "-@all",
        *(f"+{command}" for command in HUB_COMMANDS),
        f"~{pattern}",
        f"&{pattern}",
        f">{password}",
    ]


def default_username(environment):
    return f"ph-{environment.team.slug}-{environment.slug}"


def ensure_acl_user(environment):
    """Create or update the environment's ACL user on the primary and every replica.

    The password is generated once and kept in the secret store; running this again re-applies
    the rules (e.g. after the prefix changed) with the same password. Returns a list of
    human-readable notes (e.g. nodes where the ACL could not be persisted).
    """
    if environment.acl_password_id is None:
        # An earlier attempt that failed at Redis left its secret behind: use it.
        secret, _ = SecretRef.objects.get_or_create(
            name=f"redis-acl/{environment.team.slug}/{environment.slug}"
        )
        if not secret.has_value:
            secret.store(secrets.token_urlsafe(32))
        environment.acl_password = secret
    environment.acl_username = environment.acl_username or default_username(environment)
    rules = acl_rules(environment.key_prefix, environment.acl_password.reveal())
    notes = []
    for client in target_node_clients(environment.redis_target):
        client.execute_command("ACL", "SETUSER", environment.acl_username, *rules)
        notes.extend(_persist(client))
    environment.save(update_fields=["acl_username", "acl_password"])
    return notes


def _persist(client):
    """ACLs do not replicate and live in memory: save them where the server allows it."""
    node = client.connection_pool.connection_kwargs["host"]
    try:
        client.execute_command("ACL", "SAVE")
    except redis.ResponseError:
        try:
            client.config_rewrite()
        except redis.ResponseError:
            return [
                f"{node}: ACL user set in memory only (no aclfile and no config file to "
                "rewrite); it is lost if that Redis restarts."
            ]
    return []

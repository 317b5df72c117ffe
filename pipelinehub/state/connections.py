"""Redis clients for the environments' Redis targets.

Passwords come from the secret store through a credential provider that redis-py asks at each
new connection. The provider caches the secret for a short time (so an event loop never waits
on the database while it holds a fresh one, and a burst of reconnects is one read); a
connection that the server refuses (WRONGPASS) drops that cache and logs in once more with the
secret read again (`ReauthRetry`), so a password rotated elsewhere works at the next
connection, without a restart or waiting for the cache. The password never sits in a URL, a
setting or a log line. Blocking pools are kept per connection shape for
the life of the process; asyncio clients belong to one event loop and are made per use.
"""

import math
import threading
import time

import redis
import redis.asyncio
import redis.asyncio.retry
from asgiref.sync import sync_to_async
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider
from redis.exceptions import AuthenticationError
from redis.retry import Retry

SOCKET_TIMEOUT = 5.0
SECRET_CACHE_SECONDS = 30.0

_pools = {}
_providers = {}
_lock = threading.RLock()  # _client takes it, then credential_provider again


class CachedSecretProvider(CredentialProvider):
    """Username and the current password of a SecretRef, cached for SECRET_CACHE_SECONDS."""

    def __init__(self, username, secret_ref_id):
        self.username = username
        self.secret_ref_id = secret_ref_id
        self._password = None
        self._read_at = 0.0

    def get_credentials(self):
        if self._stale():
            self._load()
        return self._credentials()

    async def get_credentials_async(self):
        if self._stale():
            # The ORM is blocking: read the secret in a worker thread, not in the event loop.
            await sync_to_async(self._load_in_worker, thread_sensitive=False)()
        return self._credentials()

    def invalidate(self):
        """Read the secret again at the next connection: the server refused the cached one."""
        self._read_at = -math.inf

    def _stale(self):
        return time.monotonic() - self._read_at > SECRET_CACHE_SECONDS

    def _load(self):
        from pipelinehub.credentials.models import SecretRef

        self._password = SecretRef.objects.get(pk=self.secret_ref_id).reveal()
        self._read_at = time.monotonic()

    def _load_in_worker(self):
        """`_load` in a thread of no request: its database connection is closed before and
        after, so none outlives a database restart."""
        from django.db import close_old_connections

        close_old_connections()
        try:
            self._load()
        finally:
            close_old_connections()

    def _credentials(self):
        return (self.username, self._password) if self.username else (self._password,)


class ReauthRetry(Retry):
    """redis-py's retry policy of a connection, for one error only: the server refusing the
    credentials. redis-py runs the connect (and a command that reconnects) through the
    connection's retry; on WRONGPASS this drops the provider's cached secret before redis-py
    disconnects and tries once more, so the second login uses the secret as stored now (e.g.
    rotated by the secret manager itself). Other errors are not retried, as before."""

    def __init__(self, provider):
        super().__init__(NoBackoff(), 1, supported_errors=(AuthenticationError,))
        self.provider = provider

    def __deepcopy__(self, memo):
        # Each connection deep-copies its retry: the copies must share the one provider.
        return type(self)(self.provider)

    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        def refused(error, *failure_count):
            self.provider.invalidate()
            return fail(error, *failure_count)

        return super().call_with_retry(do, refused, is_retryable, with_failure_count)


class AsyncReauthRetry(redis.asyncio.retry.Retry):
    """`ReauthRetry` for asyncio connections (whose failure callbacks are coroutines)."""

    def __init__(self, provider):
        super().__init__(NoBackoff(), 1, supported_errors=(AuthenticationError,))
        self.provider = provider

    def __deepcopy__(self, memo):
        return type(self)(self.provider)

    async def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        async def refused(error, *failure_count):
            self.provider.invalidate()
            return await fail(error, *failure_count)

        return await super().call_with_retry(do, refused, is_retryable, with_failure_count)


def credential_provider(username, secret_ref_id):
    """The one provider of a (user, secret): blocking and asyncio clients share its cache."""
    with _lock:
        key = (username, secret_ref_id)
        if key not in _providers:
            _providers[key] = CachedSecretProvider(username, secret_ref_id)
        return _providers[key]


def _connection_kwargs(target, host, port, username, secret_ref_id, asyncio=False):
    kwargs = {
        "host": host,
        "port": port,
        "db": target.db,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": SOCKET_TIMEOUT,
        "health_check_interval": 30,
    }
    if secret_ref_id:
        provider = credential_provider(username, secret_ref_id)
        kwargs["credential_provider"] = provider
        kwargs["retry"] = (AsyncReauthRetry if asyncio else ReauthRetry)(provider)
    elif username:
        kwargs["username"] = username
    if target.tls:
        kwargs.update(
            ssl_cert_reqs=target.tls_verify,
            ssl_check_hostname=target.tls_verify == "required",
            ssl_ca_certs=target.tls_ca_path or None,
        )
    return kwargs


def connection_shape(target, host, port, username, secret_ref_id):
    """Everything that shapes a connection: when any of it changes, new connections are due."""
    return (
        target.pk,
        host,
        port,
        target.db,
        target.tls,
        target.tls_verify,
        target.tls_ca_path,
        username,
        secret_ref_id,
    )


def _client(target, host, port, username, secret_ref_id):
    key = connection_shape(target, host, port, username, secret_ref_id)
    with _lock:
        pool = _pools.get(key)
        if pool is None:
            kwargs = _connection_kwargs(target, host, port, username, secret_ref_id)
            connection_class = redis.SSLConnection if target.tls else redis.Connection
            pool = redis.ConnectionPool(connection_class=connection_class, **kwargs)
            _pools[key] = pool
    return redis.Redis(connection_pool=pool)


def _user_of(environment):
    """(username, secret ref id) an environment's traffic uses: its own confined ACL user when
    it has one, else the target's."""
    if environment.acl_password_id:
        return environment.acl_username, environment.acl_password_id
    target = environment.redis_target
    return target.username, target.password_id


def target_client(target, host=None, port=None):
    """A client with the target's own credentials (used for administration, e.g. ACL users)."""
    return _client(
        target, host or target.host, port or target.port, target.username, target.password_id
    )


def target_node_clients(target):
    """Clients for the primary and every replica: ACL users must be set on each node."""
    nodes = [(target.host, target.port), *target.replica_nodes]
    return [target_client(target, host, port) for host, port in nodes]


def environment_client(environment):
    """A blocking client for one environment."""
    target = environment.redis_target
    return _client(target, target.host, target.port, *_user_of(environment))


def environment_connection_shape(environment):
    target = environment.redis_target
    return connection_shape(target, target.host, target.port, *_user_of(environment))


def async_environment_client(environment):
    """An asyncio client for one environment, for the running event loop (close it after)."""
    target = environment.redis_target
    return _async_client(target, *_user_of(environment))


def async_target_client(target):
    """An asyncio client with the target's own credentials (loading the hub's scripts)."""
    return _async_client(target, target.username, target.password_id)


def _async_client(target, username, secret_ref_id):
    kwargs = _connection_kwargs(
        target, target.host, target.port, username, secret_ref_id, asyncio=True
    )
    connection_class = redis.asyncio.SSLConnection if target.tls else redis.asyncio.Connection
    pool = redis.asyncio.ConnectionPool(connection_class=connection_class, **kwargs)
    return redis.asyncio.Redis(connection_pool=pool)


def login_works(target, host, port, username, password):
    """Whether a new connection to one node logs in as `username` with `password` (given, not
    read from the store: the rotation checks a password before anything uses it)."""
    kwargs = _connection_kwargs(target, host, port, None, None)
    # No retry: redis-py's default retries a refused login (a ConnectionError) with backoff.
    kwargs.update(ssl=target.tls, username=username or None, password=password)
    client = redis.Redis(**kwargs, retry=Retry(NoBackoff(), 0))
    try:
        return client.ping()
    except AuthenticationError:
        return False
    finally:
        client.close()


def reset_pools():
    """Disconnect every pool and forget cached secrets (tests, and after a fork)."""
    with _lock:
        for pool in _pools.values():
            pool.disconnect()
        _pools.clear()
        _providers.clear()

"""Prefect clients for a configured workspace, with its own URL and key: one process talks to
many workspaces, so nothing here relies on Prefect's process-wide settings or on the order in
which modules are imported.

A workspace's stored key is a Prefect Cloud API key (Bearer) for Cloud URLs, and the server's
`user:password` auth string (PREFECT_SERVER_API_AUTH_STRING, Basic) for a self-hosted server.
"""

from contextlib import AsyncExitStack, asynccontextmanager, suppress

from asgiref.sync import sync_to_async
from prefect.client.orchestration import PrefectClient
from prefect.events.clients import PrefectCloudEventSubscriber, PrefectEventSubscriber
from prefect.events.filters import EventFilter, EventNameFilter
from prefect.settings import (
    PREFECT_API_AUTH_STRING,
    PREFECT_API_URL,
    PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED,
    temporary_settings,
)

from pipelinehub.credentials.backends import SecretUnavailable

RUN_EVENT_PREFIXES = ["prefect.flow-run.", "prefect.task-run."]
RUN_EVENTS = EventFilter(event=EventNameFilter(prefix=RUN_EVENT_PREFIXES))


class WorkspaceUnavailable(Exception):
    """The workspace could not be reached or refused us; the message says which and why."""


def is_cloud(api_url):
    return "/api/accounts/" in api_url


def _key(workspace):
    if workspace.api_key_id is None:
        return None
    try:
        return workspace.api_key.reveal()
    except SecretUnavailable as exc:
        raise WorkspaceUnavailable(f"workspace {workspace}: {exc}") from None


@asynccontextmanager
async def rest_client(workspace, on_request=None):
    """An open async PrefectClient for the workspace; `on_request`, an async httpx hook, sees
    every HTTP request it sends (retries included). The key is read outside the event loop: a
    secret backend may query the database or a secret manager."""
    key = await sync_to_async(_key)(workspace)
    hooks = {"event_hooks": {"request": [on_request]}} if on_request else {}
    if is_cloud(workspace.api_url):
        client = PrefectClient(workspace.api_url, api_key=key, httpx_settings=hooks)
    else:
        client = PrefectClient(workspace.api_url, auth_string=key, httpx_settings=hooks)
    async with client:
        yield client


class KeptClient:
    """One rest client for a series of calls (a connection kept open, and Prefect's client
    asks once, not at every call, whether the server wants CSRF tokens), opened when first
    needed. `discard` after a failure: the next call opens a new client, reading the key again
    (it may have been rotated)."""

    def __init__(self, workspace, on_request=None):
        self.workspace = workspace
        self.on_request = on_request  # as rest_client's
        self._client = None
        self._stack = None

    async def get(self):
        if self._client is None:
            stack = AsyncExitStack()
            opened = rest_client(self.workspace, self.on_request)
            self._client = await stack.enter_async_context(opened)
            self._stack = stack
        return self._client

    async def discard(self):
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with suppress(Exception):  # a broken client is dropped all the same
                await stack.aclose()


@asynccontextmanager
async def event_subscriber(workspace, reconnection_attempts=2):
    """A connected subscriber to the workspace's flow-run and task-run events.

    Prefect's subscriber reads the auth string and its version check's switch from the settings
    current when it is made and entered, not from its arguments: it is made and entered inside a
    settings context of this workspace's own, which lives in the calling task only (a context
    variable), so workspaces ingested side by side never see each other's keys. The version check
    is off because it authenticates with process-wide settings, not this workspace's key.
    """
    key = await sync_to_async(_key)(workspace)
    updates = {
        PREFECT_API_URL: workspace.api_url,
        PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED: False,
    }
    if is_cloud(workspace.api_url):
        subscriber_class, arguments = PrefectCloudEventSubscriber, {"api_key": key}
    else:
        subscriber_class, arguments = PrefectEventSubscriber, {}
        updates[PREFECT_API_AUTH_STRING] = key
    with temporary_settings(updates=updates):
        subscriber = subscriber_class(
            api_url=workspace.api_url,
            filter=RUN_EVENTS,
            reconnection_attempts=reconnection_attempts,
            **arguments,
        )
        async with subscriber:
            yield subscriber

"""Prefect clients for a configured workspace, with its own URL and key: one process talks to
many workspaces, so nothing here reads Prefect's process-wide settings.

A workspace's stored key is a Prefect Cloud API key (Bearer) for Cloud URLs, and the server's
`user:password` auth string (PREFECT_SERVER_API_AUTH_STRING, Basic) for a self-hosted server.
"""

import os

# The version check on connect reads the process-wide key, not the workspace's, and fails with
# 401 against a server with auth. It must be off before prefect is first imported.
os.environ.setdefault("PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED", "false")

from prefect.client.orchestration import PrefectClient  # noqa: E402
from prefect.events.clients import (  # noqa: E402
    PrefectCloudEventSubscriber,
    PrefectEventSubscriber,
)
from prefect.events.filters import EventFilter, EventNameFilter  # noqa: E402

from pipelinehub.credentials.backends import SecretUnavailable  # noqa: E402

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


def rest_client(workspace):
    """An async PrefectClient for the workspace (use as `async with`)."""
    key = _key(workspace)
    if is_cloud(workspace.api_url):
        return PrefectClient(workspace.api_url, api_key=key)
    return PrefectClient(workspace.api_url, auth_string=key)


def event_subscriber(workspace, reconnection_attempts=2):
    """A subscriber to the workspace's flow-run and task-run events (use as `async with`)."""
    key = _key(workspace)
    if is_cloud(workspace.api_url):
        return PrefectCloudEventSubscriber(
            api_url=workspace.api_url,
            api_key=key,
            filter=RUN_EVENTS,
            reconnection_attempts=reconnection_attempts,
        )
    subscriber = PrefectEventSubscriber(
        api_url=workspace.api_url, filter=RUN_EVENTS, reconnection_attempts=reconnection_attempts
    )
    # The constructor takes the auth string only from process-wide settings; this workspace's
    # own goes where the handshake reads it.
    subscriber._auth_token = key
    return subscriber

"""Helpers for the long-running processes (ingest, the relay) that are not request-driven."""

from asgiref.sync import sync_to_async
from django.db import close_old_connections


def outside_requests(read):
    """`read` for a long-running process, which has no requests to close its database
    connections: a connection left by a database restart is closed before it is used again."""

    def read_with_fresh_connection():
        close_old_connections()
        try:
            return read()
        finally:
            close_old_connections()

    return sync_to_async(read_with_fresh_connection)

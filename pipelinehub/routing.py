"""Websocket routes."""

from django.urls import path

from pipelinehub.live.consumer import EnvironmentConsumer

websocket_urlpatterns = [
    path(
        "ws/environments/<slug:team>/<slug:env>/",
        EnvironmentConsumer.as_asgi(),
        name="live_environment",
    ),
]

"""Websocket routes. The live board adds its consumer here."""

websocket_urlpatterns = []

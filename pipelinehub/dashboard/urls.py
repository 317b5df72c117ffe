from django.urls import path, register_converter

from . import board, views


class RunActionConverter:
    regex = "retry|cancel"

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value


register_converter(RunActionConverter, "run_action")

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "environments/<slug:team>/<slug:env>/settings/",
        views.environment_settings,
        name="environment_settings",
    ),
    path("environments/<slug:team>/<slug:env>/", board.board, name="board"),
    path("environments/<slug:team>/<slug:env>/runs/<uuid:run_id>/", board.run, name="run"),
    path(
        "environments/<slug:team>/<slug:env>/runs/<uuid:run_id>/<run_action:action>/",
        views.run_action,
        name="run_action",
    ),
]

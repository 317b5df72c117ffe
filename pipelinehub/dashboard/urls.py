from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "environments/<slug:team>/<slug:env>/settings/",
        views.environment_settings,
        name="environment_settings",
    ),
]

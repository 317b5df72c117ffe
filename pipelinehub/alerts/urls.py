from django.urls import path

from . import views

urlpatterns = [
    path("environments/<slug:team>/<slug:env>/alerts/", views.alerts, name="alerts"),
    path(
        "environments/<slug:team>/<slug:env>/alerts/<int:alert_id>/acknowledge/",
        views.alert_acknowledge,
        name="alert_acknowledge",
    ),
    path(
        "environments/<slug:team>/<slug:env>/alerts/<int:alert_id>/silence/",
        views.alert_silence,
        name="alert_silence",
    ),
    path("teams/<slug:team>/notifications/", views.targets, name="notification_targets"),
    path(
        "teams/<slug:team>/notifications/add/",
        views.target_form,
        name="notification_target_add",
    ),
    path(
        "teams/<slug:team>/notifications/<int:target_id>/",
        views.target_form,
        name="notification_target_edit",
    ),
    path(
        "teams/<slug:team>/notifications/<int:target_id>/delete/",
        views.target_delete,
        name="notification_target_delete",
    ),
    path(
        "teams/<slug:team>/notifications/<int:target_id>/test/",
        views.target_test,
        name="notification_target_test",
    ),
]

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "pipelinehub.alerts"
    verbose_name = "Alerts and notifications"

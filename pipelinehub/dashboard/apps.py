from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "pipelinehub.dashboard"
    verbose_name = "Dashboard"

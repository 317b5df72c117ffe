from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AuditConfig(AppConfig):
    name = "pipelinehub.audit"
    verbose_name = "Audit log"


class AuditedAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin, with the default site replaced by the audited one."""

    default = False

    default_site = "pipelinehub.audit.sites.AuditedAdminSite"

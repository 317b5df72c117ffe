"""The admin site, with every add, change and delete recorded in the audit log.

Recording hooks into the ModelAdmin logging methods that Django's admin already calls for each
change, and `AuditedAdminSite.register` mixes them into every admin class, including those that
libraries (auth, allauth, django-celery-beat) register. So no admin change goes unrecorded.
Events are named after the model: "environment.change", "periodictask.add", "user.delete".
"""

from django.contrib import admin

from .service import action_name, record, snapshot


class AuditMixin:
    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            # The change form loads the stored object before applying the form: the "before".
            request._audit_before = snapshot(obj)
        return obj

    def log_addition(self, request, obj, message):
        entry = super().log_addition(request, obj, message)
        record(
            action_name(obj, "add"), obj, request=request, after=snapshot(obj), message=_text(entry)
        )
        return entry

    def log_change(self, request, obj, message):
        entry = super().log_change(request, obj, message)
        before = getattr(request, "_audit_before", None)
        record(
            action_name(obj, "change"),
            obj,
            request=request,
            before=before,
            after=snapshot(obj),
            message=_text(entry),
        )
        return entry

    def log_deletions(self, request, queryset):
        for obj in queryset:
            record(action_name(obj, "delete"), obj, request=request, before=snapshot(obj))
        return super().log_deletions(request, queryset)


def _text(entry):
    entry = entry[0] if isinstance(entry, list) else entry
    return entry.get_change_message() if entry is not None else ""


class AuditedAdminSite(admin.AdminSite):
    site_header = "PipelineHub administration"
    site_title = "PipelineHub"
    index_title = "Platform configuration"

    def register(self, model_or_iterable, admin_class=None, **options):
        admin_class = admin_class or admin.ModelAdmin
        if not issubclass(admin_class, AuditMixin):
            admin_class = type(
                admin_class.__name__,
                (AuditMixin, admin_class),
                {"__module__": admin_class.__module__},
            )
        return super().register(model_or_iterable, admin_class, **options)

    def get_app_list(self, request, app_label=None):
        from pipelinehub.accounts.admin_order import ordered  # what platform engineers use first

        return ordered(super().get_app_list(request, app_label))

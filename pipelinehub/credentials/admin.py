"""Write-only secret inputs for the admin: a value goes in, and nothing ever comes back out."""

from django import forms
from django.contrib import admin
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from .models import SecretRef


def secret_input(label, help_text):
    return forms.CharField(
        label=label,
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=help_text,
    )


class SensitivePostMixin:
    """Keep the posted form out of error reports: it may carry a secret."""

    @method_decorator(sensitive_post_parameters())
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(request, object_id, form_url, extra_context)


class SecretValueAdminMixin(SensitivePostMixin):
    """For an admin whose model has a ForeignKey to SecretRef named `secret_field`.

    The form gets a write-only input `new_<secret_field>`: filled, it stores a new version of the
    secret (creating the SecretRef named `<secret_name_prefix>/<object name>` if needed); empty, it
    keeps the current one.
    """

    secret_field = ""
    secret_name_prefix = ""

    @property
    def secret_input_name(self):
        return f"new_{self.secret_field}"

    @admin.display(description="stored secret")
    def secret_status(self, obj):
        ref = getattr(obj, self.secret_field, None) if obj else None
        if ref is None or not ref.has_value:
            return "not set"
        return (
            f"set ({ref.name}, version {ref.version}, updated {ref.updated_at:%Y-%m-%d %H:%M} UTC)"
        )

    def save_model(self, request, obj, form, change):
        value = form.cleaned_data.get(self.secret_input_name)
        if value:
            ref = getattr(obj, self.secret_field) or SecretRef.objects.create(
                name=f"{self.secret_name_prefix}/{obj.name}"
            )
            ref.store(value)
            setattr(obj, self.secret_field, ref)
        super().save_model(request, obj, form, change)


class SecretRefForm(forms.ModelForm):
    value = secret_input("value", "Write-only. Filled, it stores a new version; empty keeps it.")

    class Meta:
        model = SecretRef
        fields = ["name", "backend"]

    def clean(self):
        cleaned = super().clean()
        if not self.instance.pk and not cleaned.get("value"):
            self.add_error("value", "A new secret needs a value.")
        return cleaned


@admin.register(SecretRef)
class SecretRefAdmin(SensitivePostMixin, admin.ModelAdmin):
    form = SecretRefForm
    list_display = ("name", "backend", "version", "updated_at")
    search_fields = ("name",)
    readonly_fields = ("version", "updated_at")

    def save_model(self, request, obj, form, change):
        value = form.cleaned_data.get("value")
        if value:
            obj.store(value)
        else:
            super().save_model(request, obj, form, change)

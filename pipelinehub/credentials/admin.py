"""Write-only secret inputs for the admin: a value goes in, and nothing ever comes back out.

List pages show what the rows themselves say (the database backend's current version number,
read in the list's own query; the backend and location of the others): a page of a few hundred
secrets asks no secret manager anything. A secret's own page asks its backend.
"""

import itertools

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters

from .backends import SecretUnavailable, backend_choices
from .models import SecretRef, SecretVersion, default_backend

CURRENT_NUMBER = "current_version_number"


def secret_input(label, help_text):
    return forms.CharField(
        label=label,
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=help_text,
    )


def current_number(ref_path):
    """The current version number of the database-held secret at `ref_path`, as a subquery."""
    versions = SecretVersion.objects.filter(ref=OuterRef(ref_path), stage="current")
    return Subquery(versions.values("number")[:1])


def stored_summary(ref, number):
    """What a list says of a secret without asking its backend (`number`: CURRENT_NUMBER)."""
    try:
        backend = ref.secret_backend
    except SecretUnavailable as exc:
        return str(exc)
    if backend.name != "database":
        return f"in {backend.describe(ref)}"
    if number is None:
        return "not set"
    return f"version {number}, updated {ref.updated_at:%Y-%m-%d %H:%M} UTC"


class SensitivePostMixin:
    """Keep the posted form out of error reports: it may carry a secret."""

    @method_decorator(sensitive_post_parameters())
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(request, object_id, form_url, extra_context)


class SecretValueAdminMixin(SensitivePostMixin):
    """For an admin whose model has a ForeignKey to SecretRef named `secret_field`.

    The form gets a write-only input `new_<secret_field>`: filled, it stores a new version of the
    secret (creating a SecretRef named `<secret_name_prefix>/<object name>` if needed); empty, it
    keeps the current one. A secret the hub only reads (a mounted file, an environment variable)
    gets the input disabled, with where to change it instead.
    """

    secret_field = ""
    secret_name_prefix = ""

    @property
    def secret_input_name(self):
        return f"new_{self.secret_field}"

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(**{CURRENT_NUMBER: current_number(self.secret_field)})
        )

    @admin.display(description="stored secret")
    def secret_status(self, obj):
        ref = getattr(obj, self.secret_field, None) if obj else None
        if ref is None:
            return "not set"
        return f"{ref.name}: {stored_summary(ref, getattr(obj, CURRENT_NUMBER, None))}"

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        ref = getattr(obj, self.secret_field, None) if obj else None
        try:
            backend = ref.secret_backend if ref else None
        except SecretUnavailable:
            return form  # the secret's own page says what is wrong with it
        if backend is None or not backend.read_only:
            return form
        # Help texts are rendered as HTML: the location is escaped.
        reason = format_html("Read-only here: {} is read from {}.", ref.name, backend.describe(ref))
        return _with_disabled_input(form, self.secret_input_name, reason)

    def save_model(self, request, obj, form, change):
        value = form.cleaned_data.get(self.secret_input_name)
        if value:
            ref = getattr(obj, self.secret_field) or new_secret_ref(
                f"{self.secret_name_prefix}/{obj.name}"
            )
            ref.store(value)
            setattr(obj, self.secret_field, ref)
        super().save_model(request, obj, form, change)


def _with_disabled_input(form_class, input_name, reason):
    class ReadOnlySecretForm(form_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.fields[input_name].disabled = True
            self.fields[input_name].help_text = reason

    return ReadOnlySecretForm


def new_secret_ref(name):
    """A new SecretRef named `name`, or `name-2`, `name-3`, ... when that is taken.

    A taken name is never reused: its secret belongs to another object (one renamed since, or
    one whose name this object now has). Names are cut to fit the column.
    """
    base = name[: SecretRef._meta.get_field("name").max_length - 8]  # room for "-<number>"
    for number in itertools.count(1):
        candidate = base if number == 1 else f"{base}-{number}"
        try:
            with transaction.atomic():
                return SecretRef.objects.create(name=candidate)
        except IntegrityError:
            continue


class SecretRefForm(forms.ModelForm):
    backend = forms.ChoiceField(choices=backend_choices, initial=default_backend)
    value = secret_input("value", "Write-only. Filled, it stores a new version; empty keeps it.")

    class Meta:
        model = SecretRef
        fields = ["name", "backend", "location"]

    def clean(self):
        cleaned = super().clean()
        candidate = SecretRef(
            pk=self.instance.pk,
            name=cleaned.get("name") or "",
            backend=cleaned.get("backend") or "",
            location=cleaned.get("location") or "",
        )
        try:
            candidate.clean()
        except ValidationError:
            return cleaned  # the model's own validation reports it on the field
        if cleaned.get("value"):
            self._check_writable(candidate)
        elif not self.instance.pk or {"backend", "location"} & set(self.changed_data):
            self._check_has_value(candidate)
        return cleaned

    def _check_writable(self, candidate):
        if candidate.read_only:
            self.add_error(
                "value",
                f"The {candidate.backend} backend only reads: leave the value empty, and store "
                "it where the secret is mounted or injected.",
            )

    def _check_has_value(self, candidate):
        """A secret that points somewhere must find a value there, or be given one."""
        try:
            found = candidate.has_value
        except SecretUnavailable as exc:
            self.add_error(None, str(exc))
            return
        if not found:
            self.add_error("value", "This secret has no value there yet: enter one.")


@admin.register(SecretRef)
class SecretRefAdmin(SensitivePostMixin, admin.ModelAdmin):
    form = SecretRefForm
    list_display = ("name", "backend", "stored", "updated_at")
    list_filter = ("backend",)
    search_fields = ("name", "location")
    readonly_fields = ("current_state", "updated_at")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(**{CURRENT_NUMBER: current_number("pk")})

    @admin.display(description="stored")
    def stored(self, obj):
        return stored_summary(obj, getattr(obj, CURRENT_NUMBER, None))

    @admin.display(description="current version")
    def current_state(self, obj):
        """Asked of the backend: what connections would get now (the id, never the value)."""
        if obj.pk is None:
            return "-"
        try:
            return obj.version or "no value"
        except SecretUnavailable as exc:
            return f"unavailable: {exc}"

    def save_model(self, request, obj, form, change):
        value = form.cleaned_data.get("value")
        if value:
            obj.store(value)
        else:
            super().save_model(request, obj, form, change)

"""Forms of the team pages: a notification target, and the length of a silence."""

import secrets

from django import forms

from pipelinehub.audit.service import action_name, record, snapshot
from pipelinehub.credentials.admin import new_secret_ref

from .models import NotificationTarget
from .service import MAX_SILENCE


class SilenceForm(forms.Form):
    minutes = forms.IntegerField(
        min_value=1, max_value=int(MAX_SILENCE.total_seconds() // 60), initial=60
    )


class TargetForm(forms.ModelForm):
    """A team admin's target. The signing secret is not a field: the hub generates it, and the
    page shows it once, right after it is made (`new_secret`)."""

    new_secret = forms.BooleanField(
        required=False,
        label="Generate a new signing secret",
        help_text="The current one stops working; the new one is shown once.",
    )

    class Meta:
        model = NotificationTarget
        fields = ["name", "channel", "url", "body_format", "emails", "enabled"]

    def __init__(self, *args, team, **kwargs):
        super().__init__(*args, **kwargs)
        self.instance.team = team
        if not self.instance.pk:
            del self.fields["new_secret"]  # a new webhook always gets one

    def clean_name(self):
        name = self.cleaned_data["name"]
        taken = NotificationTarget.objects.filter(team=self.instance.team, name=name)
        if taken.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("This team already has a target of that name.")
        return name

    def save_audited(self, request):
        """Save, make a signing secret when a webhook needs one, and record the change; the new
        secret (to show once) or None."""
        adding = self.instance.pk is None
        before = None if adding else snapshot(NotificationTarget.objects.get(pk=self.instance.pk))
        target = self.save(commit=False)
        secret = None
        wants_secret = adding or self.cleaned_data.get("new_secret")
        if target.channel == NotificationTarget.Channel.WEBHOOK and (
            wants_secret or target.signing_secret_id is None
        ):
            secret = secrets.token_urlsafe(32)
            ref = target.signing_secret or new_secret_ref(
                f"alerts-target/{target.team.slug}/{target.name}"
            )
            ref.store(secret)
            target.signing_secret = ref
        target.save()
        changed = ", ".join(self.changed_data) or "nothing"
        record(
            action_name(target, "add" if adding else "change"),
            target,
            request=request,
            before=before,
            after=snapshot(target),
            message=f"Team admin page: {'added' if adding else 'changed ' + changed}"
            + ("; new signing secret" if secret else ""),
        )
        return secret

"""Pages of the alerts: an environment's alerts (operators acknowledge and silence them) and a
team's notification targets (team admins add, edit, remove and test them). Thin: the access
policy decides, the service acts and audits."""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from pipelinehub.accounts.policy import Action, can, environment_or_404, teams_for
from pipelinehub.audit.service import action_name, record, snapshot
from pipelinehub.dashboard.views import back_to

from . import sending, service
from .forms import SilenceForm, TargetForm
from .models import Alert, NotificationTarget

RECENTLY_CLEARED = 50


@login_required
def alerts(request, team, env):
    environment = environment_or_404(request.user, Action.VIEW, team, env)
    listed = Alert.objects.filter(environment=environment).select_related(
        "acknowledged_by", "silenced_by"
    )
    return render(
        request,
        "alerts/alerts.html",
        {
            "environment": environment,
            "open_alerts": listed.filter(cleared_at__isnull=True),
            "cleared": listed.filter(cleared_at__isnull=False)[:RECENTLY_CLEARED],
            "can_operate": can(request.user, Action.OPERATE, environment),
            "silence_form": SilenceForm(),
        },
    )


def _operated_alert(request, team, env, alert_id):
    environment = environment_or_404(request.user, Action.OPERATE, team, env)
    alert = get_object_or_404(Alert, pk=alert_id, environment=environment)
    return alert, reverse("alerts", kwargs={"team": team, "env": env})


@login_required
@require_POST
def alert_acknowledge(request, team, env, alert_id):
    alert, page = _operated_alert(request, team, env, alert_id)
    service.acknowledge(alert, user=request.user, request=request)
    messages.success(request, f"Acknowledged: {alert}.")
    return redirect(back_to(request, page))


@login_required
@require_POST
def alert_silence(request, team, env, alert_id):
    alert, page = _operated_alert(request, team, env, alert_id)
    form = SilenceForm(request.POST)
    if form.is_valid():
        minutes = form.cleaned_data["minutes"]
        service.silence(alert, timedelta(minutes=minutes), user=request.user, request=request)
        messages.success(request, f"Silenced for {minutes} min: {alert}.")
    else:
        messages.error(request, "Give the silence in minutes, from 1 to 10080 (a week).")
    return redirect(back_to(request, page))


# Notification targets: the team-admin pages


def administered_team(user, slug):
    """The team for a team-admin page: 404 unless the user may see it (other teams look like
    missing ones), 403 when they may see it but not administer it."""
    team = teams_for(user, Action.VIEW).filter(slug=slug).first()
    if team is None:
        raise Http404("No such team.")
    if not teams_for(user, Action.ADMINISTER).filter(pk=team.pk).exists():
        raise PermissionDenied(f"Your role does not allow administering {team}.")
    return team


def _target(team, target_id):
    """The team's notification target `target_id` (the team already checked), or 404."""
    return get_object_or_404(
        NotificationTarget.objects.select_related("team"), pk=target_id, team=team
    )


def _targets_page(team):
    return reverse("notification_targets", kwargs={"team": team.slug})


@login_required
def targets(request, team):
    team = administered_team(request.user, team)
    return render(
        request,
        "alerts/targets.html",
        {"team": team, "targets": NotificationTarget.objects.filter(team=team)},
    )


@never_cache
@login_required
def target_form(request, team, target_id=None):
    """Add a target, or edit one; a new signing secret is shown on the answer to the POST that
    made it, and never again (never_cache: not from a cache either)."""
    team = administered_team(request.user, team)
    target = _target(team, target_id) if target_id else None
    form = TargetForm(request.POST or None, instance=target, team=team)
    if request.method == "POST" and form.is_valid():
        secret = form.save_audited(request)
        if secret:
            return render(
                request,
                "alerts/target_secret.html",
                {"team": team, "target": form.instance, "secret": secret},
            )
        messages.success(request, f"Saved {form.instance.name}.")
        return redirect(_targets_page(team))
    return render(
        request, "alerts/target_form.html", {"team": team, "form": form, "target": target}
    )


@login_required
@require_POST
def target_delete(request, team, target_id):
    target = _target(administered_team(request.user, team), target_id)
    record(action_name(target, "delete"), target, request=request, before=snapshot(target))
    ref = target.signing_secret
    target.delete()
    if ref is not None:
        ref.delete()
    messages.success(request, f"Removed {target.name}.")
    return redirect(_targets_page(target.team))


@login_required
@require_POST
def target_test(request, team, target_id):
    """Send a test message now, and say what the receiver answered."""
    target = _target(administered_team(request.user, team), target_id)
    try:
        sending.send_test(target)
    except sending.DeliveryFailed as exc:
        outcome = f"failed: {exc}"
        messages.error(request, f"Test of {target.name} {outcome}.")
    else:
        outcome = "delivered"
        messages.success(request, f"Test of {target.name} delivered.")
    record(action_name(target, "test"), target, request=request, message=outcome)
    return redirect(_targets_page(target.team))

"""Pages for team leads. Every page asks the access policy; none decides access itself.

The live pages (board, run) are in `board.py`.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from pipelinehub.accounts.adapter import no_team_response
from pipelinehub.accounts.policy import Action, environment_or_404, environments_for, teams_for
from pipelinehub.sync import runs
from pipelinehub.watch.teams import alerts_by_team

from . import overview
from .forms import EnvironmentSettingsForm
from .presentation import FINISHED, IN_FLIGHT


@login_required
def home(request):
    """The environments the user may view, by team, with exact run counts and whether they
    are fresh; the no-team page when there are none."""
    teams = list(teams_for(request.user, Action.VIEW))
    if not teams:
        return no_team_response(request)
    environments = overview.with_newest_report(
        environments_for(request.user, Action.VIEW).with_connections()
    )
    summaries = overview.summaries(environments, timezone.now())
    health_alerts = alerts_by_team([s.environment for s in summaries], timezone.now())
    administered = set(teams_for(request.user, Action.ADMINISTER).values_list("pk", flat=True))
    return render(
        request,
        "dashboard/home.html",
        {
            "teams": [
                {
                    "team": team,
                    "summaries": [s for s in summaries if s.environment.team_id == team.pk],
                    "administered": team.pk in administered,
                    "health_alerts": health_alerts.get(team.pk, []),
                }
                for team in teams
            ],
            "in_flight": IN_FLIGHT,
            "finished": FINISHED,
        },
    )


@login_required
def environment_settings(request, team, env):
    """Team admins edit their environment's non-secret settings (see `EnvironmentSettingsForm`)."""
    environment = environment_or_404(request.user, Action.ADMINISTER, team, env)
    form = EnvironmentSettingsForm(request.POST or None, instance=environment)
    if request.method == "POST" and form.is_valid():
        if form.has_changed():
            form.save_audited(request)
            messages.success(request, f"Saved the settings of {environment}.")
        return redirect("home")
    return render(
        request, "dashboard/environment_settings.html", {"environment": environment, "form": form}
    )


@login_required
@require_POST
def run_action(request, team, env, run_id, action):
    """Operators retry or cancel a flow run of their environment (the run service checks and
    audits); Prefect's answer, a refusal included, comes back as the message on the page the
    action was taken from."""
    environment = environment_or_404(request.user, Action.OPERATE, team, env)
    try:
        result = runs.perform(action, environment, run_id, user=request.user, request=request)
    except runs.NoSuchRun as exc:
        raise Http404(str(exc)) from None
    (messages.success if result.ok else messages.error)(request, result.message)
    return redirect(back_to(request, reverse("board", kwargs={"team": team, "env": env})))


def back_to(request, default):
    """The `next` path the form names if it is a path of this site (no scheme, no host: an
    open redirect would send users anywhere with our name on the link), else `default`."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts=None) and target.startswith("/"):
        return target
    return default

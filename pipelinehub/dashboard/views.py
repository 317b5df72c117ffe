"""Pages for team leads. Every page asks the access policy; none decides access itself."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from pipelinehub.accounts.adapter import no_team_response
from pipelinehub.accounts.policy import Action, environment_or_404, environments_for, teams_for
from pipelinehub.state.store import EnvironmentState
from pipelinehub.sync.actions import cancel_flow_run, retry_flow_run

from .forms import EnvironmentSettingsForm

RUN_ACTIONS = {"retry": retry_flow_run, "cancel": cancel_flow_run}


@login_required
def home(request):
    """The environments the user may view, by team; the no-team page when there are none."""
    teams = list(teams_for(request.user, Action.VIEW))
    if not teams:
        return no_team_response(request)
    environments = environments_for(request.user, Action.VIEW).select_related("team")
    administered = set(teams_for(request.user, Action.ADMINISTER).values_list("pk", flat=True))
    return render(
        request,
        "dashboard/home.html",
        {
            "teams": [
                {
                    "team": team,
                    "environments": [e for e in environments if e.team_id == team.pk],
                    "administered": team.pk in administered,
                }
                for team in teams
            ]
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
    """Operators retry or cancel a flow run of their environment; Prefect's answer, a refusal
    included, comes back as the message."""
    environment = environment_or_404(request.user, Action.OPERATE, team, env)
    # A run id is only acted on in the environment whose state holds it.
    if not EnvironmentState.for_environment(environment).records("flow", [str(run_id)]):
        raise Http404("No such run in this environment.")
    result = RUN_ACTIONS[action](environment, run_id, actor=request.user)
    (messages.success if result.ok else messages.error)(request, result.message)
    return redirect("home")

"""Which runs of its Prefect workspace an environment takes: its run selection.

Teams commonly share one self-hosted Prefect server, so an environment names the work pools its
runs come from (a flow run has exactly one) and, optionally, tags every one of its runs carries.
Task runs follow their flow run. Ingest, its follow-up and reconcile apply the same selection;
the model refuses a workspace shared between teams unless every environment on it names its
work pools and no two teams name the same one (`sharing_errors`).
"""

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_SEPARATORS = re.compile(r"[,\s]+")


def names(text):
    """A comma- or space-separated list of names, as a sorted tuple without duplicates."""
    return tuple(sorted({name for name in _SEPARATORS.split(text or "") if name}))


@dataclass(frozen=True)
class RunSelection:
    work_pools: frozenset = frozenset()
    tags: frozenset = frozenset()

    @classmethod
    def of(cls, environment):
        return cls(frozenset(names(environment.work_pools)), frozenset(names(environment.tags)))

    @property
    def everything(self):
        return not self.work_pools and not self.tags

    def admits(self, work_pool, tags):
        """Whether a flow run in `work_pool` (a name, or None) with `tags` belongs here."""
        if self.work_pools and work_pool not in self.work_pools:
            return False
        return self.tags <= set(tags or ())


def workspace_identity(api_url):
    """One Prefect workspace however its URL is spelled (case of scheme and host, a trailing
    slash): two rows with the same identity are one workspace."""
    parts = urlsplit(api_url.strip())
    return f"{parts.scheme.lower()}://{(parts.netloc or '').lower()}{parts.path.rstrip('/')}"


def sharing_errors(environment, others):
    """Why `environment` may not take runs from its workspace beside `others` (the other
    environments on the same workspace), or "" when it may."""
    foreign = [other for other in others if other.team_id != environment.team_id]
    if not foreign:
        return ""
    mine = set(names(environment.work_pools))
    if not mine or any(not names(other.work_pools) for other in foreign):
        listed = ", ".join(str(other) for other in foreign)
        return (
            f"The Prefect workspace is shared with environments of other teams ({listed}): every "
            "environment on it must name its work pools, or each would see the others' runs."
        )
    for other in foreign:
        if shared := mine & set(names(other.work_pools)):
            return (
                f"Work pool {', '.join(sorted(shared))} is already taken by environment {other} "
                "of another team on the same Prefect workspace: teams sharing a workspace need "
                "work pools of their own."
            )
    return ""

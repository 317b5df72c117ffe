"""Small builders for configuration rows; each test states only what matters to it."""

import itertools

from pipelinehub.environments.models import Environment, PrefectWorkspace, RedisTarget, Team

_seq = itertools.count()


def team(slug=None):
    slug = slug or f"team{next(_seq)}"
    return Team.objects.get_or_create(slug=slug, defaults={"name": slug.title()})[0]


def workspace(api_url=None, name=None):
    """A workspace of its own (its own URL): teams sharing one must choose work pools."""
    number = next(_seq)
    api_url = api_url or f"http://prefect-{number}.test:4200/api"
    return PrefectWorkspace.objects.create(name=name or f"ws{number}", api_url=api_url)


def redis_target(host="127.0.0.1", port=6379, db=0, **fields):
    return RedisTarget.objects.create(
        name=f"redis{next(_seq)}", host=host, port=port, db=db, **fields
    )


def environment(team_obj=None, slug="dev", target=None, ws=None, **fields):
    env = Environment(
        team=team_obj or team(),
        slug=slug,
        workspace=ws or workspace(),
        redis_target=target or redis_target(),
        **fields,
    )
    env.full_clean()
    env.save()
    return env

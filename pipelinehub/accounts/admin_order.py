"""The order of the admin index: what platform engineers use first, library internals last.

Django lists apps and models alphabetically, which puts Axes and Celery's schedule tables before
the hub's environments. `AuditedAdminSite.get_app_list` passes its list through `ordered`.
"""

# Apps by app label, in the order shown; apps not named here follow, alphabetically.
APP_ORDER = [
    "environments",
    "accounts",
    "sync",
    "audit",
    "credentials",
    "django_celery_beat",
    "auth",
    "socialaccount",
    "axes",
]
# Models by object name within their app, in the order shown; others follow, alphabetically.
MODEL_ORDER = {
    "environments": ["Environment", "RedisTarget", "PrefectWorkspace", "Team"],
    "accounts": ["RoleMapping", "PlatformMapping", "Membership"],
    "django_celery_beat": ["PeriodicTask"],
}


def ordered(app_list):
    """`app_list` (as `AdminSite.get_app_list` builds it, sorted by name) in the hub's order."""
    app_list = sorted(app_list, key=lambda app: _rank(APP_ORDER, app["app_label"]))
    for app in app_list:
        models = MODEL_ORDER.get(app["app_label"], [])
        app["models"].sort(key=lambda model: _rank(models, model["object_name"]))
    return app_list


def _rank(order, name):
    """Named ones by their place; the others after them, keeping their (alphabetical) order."""
    return order.index(name) if name in order else len(order)

"""Beat schedules kept per object: every environment and every Redis target has its periodic
tasks in django-celery-beat (reconcile, sweep, detection; health, rotation), made when the
object is saved and otherwise edited in the admin like any schedule (an edited interval or a
disabled schedule is kept). The apps that own the tasks say which; this module makes them.

The model classes are parameters so that a data migration can pass its historical ones."""

NAME_LENGTH = 200  # PeriodicTask.name


def ensure_periodic_task(
    periodic_task, interval, *, task, identity, name, every, enabled=None, **fields
):
    """Create the object's schedule for `task` when it has none; with `enabled` given, make an
    existing one follow it. `identity` finds the object's schedule (`{"args": ...}` or
    `{"kwargs": ...}`), `every` is `(count, period)` as IntervalSchedule spells it."""
    existing = periodic_task.objects.filter(task=task, **identity).first()
    if existing is None:
        periodic_task.objects.create(
            name=name[:NAME_LENGTH],
            task=task,
            interval=shared_interval(interval, *every),
            enabled=True if enabled is None else enabled,
            **identity,
            **fields,
        )
    elif enabled is not None and existing.enabled != enabled:
        existing.enabled = enabled
        existing.save(update_fields=["enabled"])


def shared_interval(interval, every, period):
    """The one interval row of this length, shared by every schedule. Not get_or_create, which
    makes a second row when two objects are saved at once and then raises
    MultipleObjectsReturned at every later save."""
    fields = {"every": every, "period": period}
    found = interval.objects.filter(**fields).order_by("pk").first()
    return found or interval.objects.create(**fields)

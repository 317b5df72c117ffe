from celery import shared_task

from pipelinehub.environments.models import Environment

from .reconcile import reconcile


@shared_task(name="pipelinehub.sync.reconcile_environment", ignore_result=True)
def reconcile_environment(environment_id, mode="changes", trigger="beat"):
    """Scheduled per environment by beat (see sync.schedules) in mode "changes", and queued by
    the admin's "Reconcile now (full)"; a disabled or deleted environment is skipped."""
    environment = Environment.objects.filter(pk=environment_id, enabled=True).first()
    if environment is not None:
        reconcile(environment, trigger=trigger, mode=mode)


@shared_task(name="pipelinehub.sync.sweep_environment", ignore_result=True)
def sweep_environment(environment_id):
    """The second beat schedule of each environment: one slice of its window per run.

    A task of its own rather than `reconcile_environment` with other arguments, so that each
    schedule is found by its task name alone."""
    reconcile_environment(environment_id, mode="sweep")

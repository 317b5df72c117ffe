from celery import shared_task

from pipelinehub.environments.models import Environment

from .reconcile import reconcile


@shared_task(name="pipelinehub.sync.reconcile_environment", ignore_result=True)
def reconcile_environment(environment_id):
    """Scheduled per environment by beat (see sync.schedules); a disabled or deleted
    environment is skipped."""
    environment = Environment.objects.filter(pk=environment_id, enabled=True).first()
    if environment is not None:
        reconcile(environment, trigger="beat")

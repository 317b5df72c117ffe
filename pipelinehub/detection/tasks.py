from celery import shared_task

from pipelinehub.environments.models import Environment

from .schedules import TASK
from .service import detect


@shared_task(name=TASK, ignore_result=True)
def detect_environment(environment_id):
    """Scheduled per environment by beat every 30 seconds (see detection.schedules); a disabled
    or deleted environment is skipped."""
    environment = (
        Environment.objects.with_connections().filter(pk=environment_id, enabled=True).first()
    )
    if environment is not None:
        detect(environment)

"""The Celery app. Beat reads its schedule from the database (django-celery-beat), so
schedules are edited in the admin like the rest of the configuration."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pipelinehub.settings")

app = Celery("pipelinehub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

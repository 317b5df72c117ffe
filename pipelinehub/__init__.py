"""PipelineHub: many teams' Prefect run states, mirrored into Redis and served live."""

from .celery import app as celery_app

__all__ = ("celery_app",)

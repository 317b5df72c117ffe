# One image for every role: `web` (default), `worker`, `beat`, `ingest`, `relay`.
# Not exercised by CI (no Docker engine on the CI machines).
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 DJANGO_SETTINGS_MODULE=pipelinehub.settings
RUN useradd --create-home --uid 10001 pipelinehub
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=pipelinehub . /app
# collectstatic needs settings, not secrets: throwaway values for the build step only.
RUN PIPELINEHUB_PRODUCTION=1 DJANGO_SECRET_KEY=build-only \
    PIPELINEHUB_SECRET_KEYS=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    python manage.py collectstatic --noinput
USER pipelinehub
EXPOSE 8000
ENTRYPOINT ["scripts/docker-entrypoint.sh"]
CMD ["web"]

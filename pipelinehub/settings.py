"""Django settings for PipelineHub, read from the environment (see `.env.example`).

Two modes: development (the default, `DEBUG` on, SQLite and a local Redis) and production
(`PIPELINEHUB_PRODUCTION=1`), in which `manage.py check --deploy` reports nothing and every
secret must come from the environment.
"""

import ssl
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from pipelinehub.accounts.oidc import okta_providers, origin

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

PRODUCTION = env.bool("PIPELINEHUB_PRODUCTION", default=False)
DEBUG = env.bool("DJANGO_DEBUG", default=not PRODUCTION)

_DEV_SECRET_KEY = "dev-only-not-secret-pipelinehub-key-change-me-in-production-0123456789"
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="" if PRODUCTION else _DEV_SECRET_KEY)
if not SECRET_KEY:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set in production.")

ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS", default=[] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]"]
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Fernet keys for secrets stored in the database, newest first; older keys still decrypt, so a
# key is rotated by prepending a new one and running `manage.py rotate_secret_keys`.
SECRET_ENCRYPTION_KEYS = env.list("PIPELINEHUB_SECRET_KEYS", default=[])
if PRODUCTION and not SECRET_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("PIPELINEHUB_SECRET_KEYS must be set in production.")

# Secret backends (README, "Secret backends"): the one new secrets go to, and what each external
# one needs. AWS takes its region and credentials from the usual AWS chain.
SECRET_DEFAULT_BACKEND = env.str("PIPELINEHUB_SECRET_BACKEND", default="database")
SECRET_NAME_PREFIX = env.str("PIPELINEHUB_SECRET_NAME_PREFIX", default="pipelinehub/")
SECRET_FILES_DIR = env.str("PIPELINEHUB_SECRET_FILES_DIR", default="")
SECRET_ENV_PREFIX = env.str("PIPELINEHUB_SECRET_ENV_PREFIX", default="PH_SECRET_")
AWS_SECRETS_ENDPOINT_URL = env.str("AWS_SECRETS_ENDPOINT_URL", default="")
VAULT_ADDR = env.str("VAULT_ADDR", default="")
VAULT_TOKEN = env.str("VAULT_TOKEN", default="")
VAULT_ROLE_ID = env.str("VAULT_ROLE_ID", default="")
VAULT_SECRET_ID = env.str("VAULT_SECRET_ID", default="")
VAULT_KV_MOUNT = env.str("VAULT_KV_MOUNT", default="secret")
VAULT_DATABASE_MOUNT = env.str("VAULT_DATABASE_MOUNT", default="database")
VAULT_CACERT = env.str("VAULT_CACERT", default="")

INSTALLED_APPS = [
    "daphne",
    "pipelinehub.audit.apps.AuditedAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_celery_beat",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "axes",
    "csp",
    "pipelinehub.accounts",
    "pipelinehub.dashboard",
    "pipelinehub.audit",
    "pipelinehub.credentials",
    "pipelinehub.environments",
    "pipelinehub.state",
    "pipelinehub.sync",
    "pipelinehub.live",
    "pipelinehub.detection",
    "pipelinehub.alerts",
    "pipelinehub.rotation",
    "pipelinehub.watch",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "pipelinehub.audit.middleware.RequestIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # allauth's account-management pages (connected accounts, sign-up form) answer 404.
    "pipelinehub.accounts.middleware.HideAccountManagementMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: turns a locked-out login attempt into its lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "pipelinehub.urls"
ASGI_APPLICATION = "pipelinehub.asgi.application"
WSGI_APPLICATION = "pipelinehub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
# A connection kept open (CONN_MAX_AGE > 0: beat, ingest) dies with a PostgreSQL restart; checked
# before reuse, it is replaced instead of failing the first query after the restart.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The hub's own Redis: channel layer, Celery broker, cache. Run state lives in the Redis
# targets configured per environment, not here.
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
REDIS_HEALTH_TIMEOUT = env.float("REDIS_HEALTH_TIMEOUT", default=2.0)
# Callers sending `Authorization: Bearer <HEALTHZ_TOKEN>` (and staff) see why a /healthz check
# failed; others see only which. Empty: no token is accepted.
HEALTHZ_TOKEN = env.str("HEALTHZ_TOKEN", default="")
# Entries kept in each environment's change stream (the live feed and its replay window).
STATE_STREAM_MAXLEN = env.int("STATE_STREAM_MAXLEN", default=10_000)
RECONCILE_REPORT_DAYS = env.int("RECONCILE_REPORT_DAYS", default=30)
# How long the health watch keeps its per-minute snapshots of each Redis target (docs/health.md).
HEALTH_SNAPSHOT_RETENTION = timedelta(
    hours=env.float("HEALTH_SNAPSHOT_RETENTION_HOURS", default=24)
)
# How often ingest and the live relay read the configuration (environments added, changed or
# disabled).
CONFIG_POLL_SECONDS = env.float("CONFIG_POLL_SECONDS", default=30.0)
# Password rotation: how long the old Redis password keeps working after the new one is current
# (docs/rotation.md).
ROTATION_GRACE_SECONDS = env.int("ROTATION_GRACE_SECONDS", default=600)

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # channels_redis waits 5 s in BZPOPMIN, redis-py 8 times reads out after 5 s by default:
        # without a longer timeout, a consumer with nothing to receive for 5 s dies (1011)
        # (django/channels_redis#422). redis-py 8 also caps a pool at 100 connections and raises
        # beyond, which hundreds of sockets closing at once reach.
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "max_connections": 2000}],
            "prefix": "pipelinehub:asgi",
        },
    }
}

# Empty (as .env.example has it) means REDIS_URL too, not Celery's default of a local AMQP broker.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL
# rediss://: redis-py (the cache, the channel layer, /healthz) verifies the server's certificate
# and host name unless the URL's ssl_cert_reqs says otherwise; kombu, given no ssl_* parameter in
# the URL, connects with CERT_NONE and only logs a warning. This makes the broker verify as they
# do. Any ssl_* parameter in the URL replaces this whole dict, and `?ssl_ca_certs=...` alone still
# verifies (redis-py's default).
if CELERY_BROKER_URL.startswith("rediss://"):
    CELERY_BROKER_USE_SSL = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Ride out a Redis restart or outage of any length: Celery's default gives up after 100 retries
# (about 47 minutes) and the worker exits.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# On a lost broker connection, cancel running acks_late tasks (they are redelivered) rather than
# run them twice; the coming default, set to silence the warning logged at every reconnect.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True

# Alerts (docs/alerts.md): events of one team within ALERT_GROUP_SECONDS go out as one message;
# a failed delivery is tried again ALERT_DELIVERY_RETRIES times, after 2, 4, 8, ... seconds
# (ALERT_RETRY_BACKOFF_SECONDS doubling, at most 10 minutes). PIPELINEHUB_URL (the hub's address,
# https://hub.example.com) adds links to run pages; EMAIL_URL is the mail server
# (smtp+tls://user:password@host:587; the default prints mails to the log).
ALERT_GROUP_SECONDS = env.float("ALERT_GROUP_SECONDS", default=10.0)
ALERT_DELIVERY_RETRIES = env.int("ALERT_DELIVERY_RETRIES", default=8)
ALERT_RETRY_BACKOFF_SECONDS = env.int("ALERT_RETRY_BACKOFF_SECONDS", default=2)
PIPELINEHUB_URL = env.str("PIPELINEHUB_URL", default="")
vars().update(environ.Env.email_url_config(env.str("EMAIL_URL", default="") or "consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="pipelinehub@localhost")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Axes first (refuses locked-out login attempts); then SSO sessions, which check no password;
# then passwords, for active superusers only (the break-glass login at /admin/login/).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "pipelinehub.accounts.backends.SingleSignOnBackend",
    "pipelinehub.accounts.backends.BreakGlassBackend",
]

# allauth: Okta through the generic OpenID Connect provider (docs/sso.md); local sign-up and
# password login stay off. Without OKTA_SERVER_URL no provider is configured and only the
# break-glass admin login works.
SOCIALACCOUNT_ONLY = True
ACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_ADAPTER = "pipelinehub.accounts.adapter.SocialAccountAdapter"
# SSO users are their IdP subject alone (pipelinehub/accounts/identity.py): made at the first
# login without a form, never found or connected through an e-mail address, which therefore
# need not be unique either (a local account may share one with an Okta user).
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = False
ACCOUNT_UNIQUE_EMAIL = False
OKTA_SERVER_URL = env.str("OKTA_SERVER_URL", default="").rstrip("/")
SOCIALACCOUNT_PROVIDERS = okta_providers(
    OKTA_SERVER_URL,
    env.str("OKTA_CLIENT_ID", default=""),
    env.str("OKTA_CLIENT_SECRET", default=""),
)
if OKTA_SERVER_URL and not all(
    env.str(name, default="") for name in ("OKTA_CLIENT_ID", "OKTA_CLIENT_SECRET")
):
    raise ImproperlyConfigured("OKTA_SERVER_URL needs OKTA_CLIENT_ID and OKTA_CLIENT_SECRET.")
LOGIN_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Hours, decimals allowed (0.5 is half an hour), up to a year.
try:
    SESSION_COOKIE_AGE = int(timedelta(hours=env.float("SESSION_HOURS", default=8)).total_seconds())
except (ValueError, OverflowError):  # not a number, NaN, infinite
    SESSION_COOKIE_AGE = 0
if not 0 < SESSION_COOKIE_AGE <= 366 * 24 * 3600:
    raise ImproperlyConfigured(
        f"SESSION_HOURS={env.str('SESSION_HOURS')!r}: give the session lifetime in hours, above 0 "
        "and at most 8784 (a year), e.g. 8 or 0.5."
    )
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Only the site's own scripts, styles and images. Forms may post to the site and to Okta (the
# login form's redirect to the issuer counts as a form action in browsers).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF, *([origin(OKTA_SERVER_URL)] if OKTA_SERVER_URL else [])],
    }
}

# django-axes: rate-limits password logins (only the break-glass admin login has them) per
# username and, separately, per client address. Behind N proxies set AXES_PROXY_COUNT=N so the
# address comes from X-Forwarded-For; with 0 it is the TCP peer, which a client cannot forge.
# No reset on success: axes would reset at every login, SSO ones included, by client address;
# a break-glass login resets its own username's failures instead (accounts/signals.py).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = False
AXES_IPWARE_PROXY_COUNT = env.int("AXES_PROXY_COUNT", default=0)
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if AXES_IPWARE_PROXY_COUNT else ["REMOTE_ADDR"]
)

if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # httpx logs every request at INFO: ingest's follow-up alone makes several every 5 s.
    "loggers": {"httpx": {"level": "WARNING"}},
}

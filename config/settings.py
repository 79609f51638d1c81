"""Project settings. Every value that differs between deployments comes from the environment,
read here and nowhere else (django-environ)."""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# A placeholder, never a secret: the system check `config.E001` refuses it when DEBUG is off.
INSECURE_DEV_SECRET_KEY = "django-insecure-dev-only-do-not-deploy"  # noqa: S105

DEBUG = env.bool("DEBUG", default=False)
# GET /metrics asks for "Authorization: Bearer <METRICS_TOKEN>" when this is set.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# bench/api.py's baseline: a no-op JSON POST view at /bench/noop (never in production).
BENCH_ENDPOINTS = env.bool("BENCH_ENDPOINTS", default=False)
SECRET_KEY = env.str("SECRET_KEY", default=INSECURE_DEV_SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
PROVIDER_TOKEN = env.str("PROVIDER_TOKEN", default="")
# The panel API (/api/v2): the one currency of every balance, rate and charge of this install,
# and how many requests one API key may make (limits' notation, e.g. "600/minute"; empty: no
# limit), counted in REDIS_URL's Redis (one server or the cluster) by the `limits` library.
PANEL_CURRENCY = env.str("PANEL_CURRENCY", default="USD")
PANEL_RATE_LIMIT = env.str("PANEL_RATE_LIMIT", default="600/minute")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "telegram_tasks",
    "orders",
    "config.apps.ConfigAppConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Counts the provider API's answers by status code (GET /metrics).
    "telegram_tasks.counters.ApiResponses",
    # Serves the admin's static files from gunicorn itself (no separate web server needed).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The project's own overrides of admin templates (the index links the dashboard).
        "DIRS": [BASE_DIR / "config" / "templates"],
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

# PostgreSQL only: leasing relies on FOR UPDATE SKIP LOCKED.
DATABASES = {
    "default": env.db_url("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/tg_broker")
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("OPTIONS", {})
# A pool of connections per process (the web workers: config/gunicorn.conf.py sets it): a
# request takes one for the time it runs, a waiting long-poll none. 0: a connection per thread,
# kept DB_CONN_MAX_AGE seconds (Celery, commands, tests).
DB_POOL_SIZE = env.int("DB_POOL_SIZE", default=0)
if DB_POOL_SIZE:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    DATABASES["default"]["OPTIONS"]["pool"] = {
        "min_size": 1,
        "max_size": DB_POOL_SIZE,
        "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    }
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", env.int("DB_CONNECT_TIMEOUT", 5))
# Session settings: short statements only, so no JIT (triggered by the planner's estimate on a
# large table, it spends more compiling a statement than running it); storage on SSD, so random
# reads priced as such (queue reads then stay ordered index scans that stop at their LIMIT).
DATABASES["default"]["OPTIONS"].setdefault(
    "options", env.str("DB_OPTIONS", default="-c jit=off -c random_page_cost=1.1")
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# A single Redis (redis://, rediss://) or a Redis Cluster (redis+cluster://host:port).
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
REDIS_IS_CLUSTER = REDIS_URL.split("://", 1)[0].endswith("+cluster")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": 5,
            "SOCKET_TIMEOUT": 5,
            "CONNECTION_POOL_KWARGS": {"health_check_interval": 30, "retry_on_timeout": False},
        },
    }
}
if REDIS_IS_CLUSTER:
    # The claims keep their own cluster client (telegram_tasks.claims.scripts); nothing of the
    # app uses Django's cache, which django-redis cannot put on a cluster.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
# Daily caps reset at local midnight in this zone.
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Times shown to the second, dates in ISO order (config/formats/en/formats.py).
FORMAT_MODULE_PATH = ["config.formats"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Without collectstatic (make run, tests) the files are served from the apps' own folders.
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["telegram_tasks.parsers.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_AUTHENTICATION_CLASSES": ["telegram_tasks.authentication.ProviderTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["telegram_tasks.authentication.IsProvider"],
    "EXCEPTION_HANDLER": "telegram_tasks.exception_handlers.api_exception_handler",
}
# A sync of 10,000 accounts is a few MB of JSON.
DATA_UPLOAD_MAX_MEMORY_SIZE = 32 * 1024 * 1024
# The schema's own settings are the app's (telegram_tasks/schema.py); these serve its docs.
SPECTACULAR_SETTINGS = {
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The schema and the docs are public; every provider endpoint needs the token.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
}

# Celery's broker (kombu) has no Redis Cluster support: with a cluster in REDIS_URL, name a
# plain Redis (or RabbitMQ) here; the system check config.E002 says so if it is missing.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="" if REDIS_IS_CLUSTER else REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The worker keeps the LOGGING above (LOG_FORMAT=json included) instead of its own handler.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Overrides of the telegram_tasks defaults (telegram_tasks/conf.py); only keys set here or in
# the environment differ from the defaults.
TELEGRAM_TASKS = {
    "ORDER_MODEL": "orders.Order",
    **{
        key: env.int(f"TG_{key}")
        for key in (
            "LEASE_SECONDS",
            "RESERVE_LOCK_SECONDS",
            "PULL_MAX_LIMIT",
            "MAX_ATTEMPTS",
            "PENDING_TTL_SECONDS",
            "GENERATION_TICK_SECONDS",
            "MAX_TASKS_PER_ORDER_PER_PASS",
            "ACCOUNT_SCAN_BUDGET",
        )
        if env.str(f"TG_{key}", default="")
    },
}
if env.str("TG_KEY_PREFIX", default=""):
    TELEGRAM_TASKS["KEY_PREFIX"] = env.str("TG_KEY_PREFIX")
if REDIS_IS_CLUSTER:
    TELEGRAM_TASKS["REDIS_CLUSTER_URL"] = REDIS_URL
# Keys added later are read from the environment variable of the same name.
_SAME_NAME = {
    "TIERS": env.json,
    "TASK_RETENTION_DAYS": env.int,
    "DEFAULT_EXECUTION_MODE": env.str,
    "PROVIDER_PUSH_URL": env.str,
    "PUSH_ALLOW_HTTP": env.bool,
    "PUSH_TIMEOUT_SECONDS": env.float,
    "PUSH_CONCURRENCY": env.int,
    "PUSH_BATCH": env.int,
    "MAX_WAIT_SECONDS": env.int,
    "HEAL_WINDOW_SECONDS": env.int,
    "JSON_MAX_DEPTH": env.int,
    "JSON_MAX_BYTES": env.int,
}
TELEGRAM_TASKS.update(
    {key: read(key) for key, read in _SAME_NAME.items() if env.str(key, default="")}
)

# LOG_FORMAT=json: one JSON object per line (python-json-logger), with the structured fields
# passes and failed reports attach (``event``, counts, ``action``, ``reason``…) as keys.
LOG_FORMAT = env.str("LOG_FORMAT", default="") or "plain"
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # One line per pushed request is the dispatcher's business to summarize, not httpx's.
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

if env.bool("USE_X_FORWARDED_PROTO", default=False):
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

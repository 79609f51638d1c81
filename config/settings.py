"""Project settings. Every value that differs between deployments comes from the environment,
read here and nowhere else (django-environ)."""

import sys
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from telegram_tasks.tokens import generate_hint, secret_problem, split_tokens

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# A placeholder, never a secret: refused when DEBUG is off (below, and system check config.E001).
INSECURE_DEV_SECRET_KEY = "django-insecure-dev-only-do-not-deploy"  # noqa: S105

DEBUG = env.bool("DEBUG", default=False)
# GET /metrics and /readyz's details ask for "Authorization: Bearer <METRICS_TOKEN>": always
# when this is set; with DEBUG off, they are not served without it (but on the internal
# listener, WEB_PROBE_BIND, which needs no token).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Seconds /readyz's checks and /metrics's ledger gauges are kept per process: a flood of
# probes or scrapes costs no query.
HEALTH_CACHE_SECONDS = env.float("HEALTH_CACHE_SECONDS", default=5.0)
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
# The key of push requests' X-Provider-Signature; empty: the first PROVIDER_TOKEN (as before),
# so the provider may be given a signing secret apart from its API token.
PUSH_SIGNING_SECRET = env.str("PUSH_SIGNING_SECRET", default="")

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
    "axes",
    "csp",
    "telegram_tasks",
    "orders",
    "config.apps.ConfigAppConfig",
]

MIDDLEWARE = [
    # Outermost: gives the request's pooled database connection back once the response is
    # made, before it is written, so a client that reads slowly holds a socket, never a
    # connection.
    "config.middleware.ReleaseDatabase",
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on HTML pages (django-csp; below, "Facing the internet").
    "config.middleware.PageCSP",
    # Counts the provider API's answers by status code (GET /metrics).
    "telegram_tasks.counters.ApiResponses",
    # Serves the admin's static files from gunicorn itself (no separate web server needed).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # 413 before anything reads a body larger than its route takes (CSRF reads admin forms).
    "config.middleware.BodyLimit",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last (django-axes): it sees how each admin login ended.
    "axes.middleware.AxesMiddleware",
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

# django-axes first: a locked-out login is refused before its password is hashed (~0.3 s of a
# worker's CPU each).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
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
    "DEFAULT_PARSER_CLASSES": ["telegram_tasks.api.parsers.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "telegram_tasks.api.authentication.ProviderTokenAuthentication"
    ],
    "DEFAULT_PERMISSION_CLASSES": ["telegram_tasks.api.authentication.IsProvider"],
    "EXCEPTION_HANDLER": "telegram_tasks.api.exception_handlers.api_exception_handler",
}
# Request bodies: Django's default size (2.5 MB) for every route, refused with 413 by their
# Content-Length before anything reads them (config.middleware.BodyLimit); accounts/sync takes
# more (TELEGRAM_TASKS["SYNC_MAX_BODY_BYTES"], 32 MB), from an authenticated provider only.
# Django's own limit stays at the largest a route takes, as a backstop.
REQUEST_MAX_BODY_BYTES = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 32 * 1024 * 1024
# The schema's own settings are the app's (telegram_tasks/api/schema.py); these serve its docs.
SPECTACULAR_SETTINGS = {
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # (Who may read the schema and the docs is the app's: anyone with DEBUG on, staff
    # otherwise, telegram_tasks.api.schema.StaffUnlessDebug.)
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
    "MAX_WAITING_PULLS": env.int,
    "MAX_WAITING_PULLS_PER_PROVIDER": env.int,
    "SYNC_MAX_BODY_BYTES": env.int,
    "PUSH_MAX_ANSWER_BYTES": env.int,
    "HEAL_WINDOW_SECONDS": env.int,
    "JSON_MAX_DEPTH": env.int,
    "JSON_MAX_BYTES": env.int,
    "REPORT_GROUP_MAX": env.int,
    "REPORT_GROUP_WAIT_MS": env.int,
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
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        # Lockouts are WARNINGs; its start-up banner and each attempt are not worth a line.
        "axes": {"level": "WARNING"},
    },
}

if env.bool("USE_X_FORWARDED_PROTO", default=False):
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- Facing the internet (docs/operations.md, "Security settings") -----------------------------

# HTTPS: HSTS and the redirect are off unless asked for: TLS ends at the proxy in front, and a
# site that sends HSTS stays https-only in browsers for that long.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# An orchestrator's probes may call plain http from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

# Content-Security-Policy (django-csp) on every HTML page: the admin, the dashboard and the docs
# load scripts and styles from the app itself only (no inline script). CSP_MODE: enforce,
# report-only or off; CSP_REPORT_URI: where browsers report violations.
CSP_MODE = env.str("CSP_MODE", default="enforce")
if CSP_MODE not in ("enforce", "report-only", "off"):
    raise ImproperlyConfigured(f"CSP_MODE must be enforce, report-only or off, not {CSP_MODE!r}")
_CSP = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        # The admin and Swagger UI set style attributes.
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        **({"report-uri": [env.str("CSP_REPORT_URI")]} if env.str("CSP_REPORT_URI", "") else {}),
    }
}
CONTENT_SECURITY_POLICY = _CSP if CSP_MODE == "enforce" else None
CONTENT_SECURITY_POLICY_REPORT_ONLY = _CSP if CSP_MODE == "report-only" else None

# Staff sessions: a working day, not Django's two weeks (SESSION_COOKIE_AGE, in seconds).
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)

# Admin login throttling (django-axes, attempts kept in PostgreSQL): after ADMIN_LOGIN_FAILURES
# failed logins from one address, or for one username, logins from it (for it) answer 429 for
# ADMIN_LOCKOUT_MINUTES; a success clears the count. `manage.py axes_reset` lifts every lock.
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURES", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("ADMIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
# Behind the proxy (nginx sets X-Real-IP to the peer's address), the client is that address.
AXES_CLIENT_IP_CALLABLE = "config.middleware.client_ip"
USE_X_REAL_IP = env.bool("USE_X_REAL_IP", default=False)

# A deployment (DEBUG off) never starts with a secret anyone may know or guess. Checked here,
# when the settings load, because gunicorn and Celery never run the system checks. (The test
# runner is no deployment: its tests set their own secrets.)
if not DEBUG and "pytest" not in sys.modules:
    _weak = [
        "SECRET_KEY is not set"
        if SECRET_KEY in ("", INSECURE_DEV_SECRET_KEY)
        else secret_problem(SECRET_KEY, name="SECRET_KEY"),
        *(secret_problem(t, name="PROVIDER_TOKEN") for t in split_tokens(PROVIDER_TOKEN)),
        PUSH_SIGNING_SECRET and secret_problem(PUSH_SIGNING_SECRET, name="PUSH_SIGNING_SECRET"),
        METRICS_TOKEN and secret_problem(METRICS_TOKEN, name="METRICS_TOKEN"),
    ]
    if any(_weak):
        raise ImproperlyConfigured(
            "refusing to start with DEBUG off: "
            + "; ".join(w for w in _weak if w)
            + f". Make each with: {generate_hint()}"
        )

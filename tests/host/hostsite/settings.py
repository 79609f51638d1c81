"""A minimal Django project that installs telegram_tasks from its wheel (docs/reuse.md): its own
order model (shop.Purchase), its own API defaults, Redis through a second cache, and no
django-celery-beat. tests/host/run.py gives it HOST_DATABASE_URL, REDIS_URL, PROVIDER_TOKEN,
METRICS_TOKEN and TG_KEY_PREFIX."""

import os
from urllib.parse import urlsplit

SECRET_KEY = "host-project-test-only-not-a-secret"
DEBUG = os.environ.get("DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "telegram_tasks",
    "shop",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "telegram_tasks.counters.ApiResponses",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "hostsite.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

_db = urlsplit(os.environ["HOST_DATABASE_URL"])
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.path.lstrip("/"),
        "USER": _db.username or "",
        "PASSWORD": _db.password or "",
        "HOST": _db.hostname or "",
        "PORT": _db.port or "",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The host's own cache is local; the claims get a django-redis cache of their own.
REDIS_URL = os.environ["REDIS_URL"]
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "broker": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL},
}
TELEGRAM_TASKS = {
    "ORDER_MODEL": "shop.Purchase",
    "REDIS_CACHE": "broker",
    "KEY_PREFIX": os.environ["TG_KEY_PREFIX"],
    # Syncs of at most 500 accounts fit Django's default body limit (check telegram_tasks.W004).
    "SYNC_MAX_BATCH": 500,
}
if "+cluster://" in REDIS_URL:
    TELEGRAM_TASKS["REDIS_CLUSTER_URL"] = REDIS_URL
PROVIDER_TOKEN = os.environ["PROVIDER_TOKEN"]
METRICS_TOKEN = os.environ["METRICS_TOKEN"]  # /metrics and /readyz's details (DEBUG is off)

# The host's own API defaults, which the provider API does not take.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}
SPECTACULAR_SETTINGS = {"TITLE": "Shop"}

CELERY_BROKER_URL = "memory://"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "Europe/Berlin"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"

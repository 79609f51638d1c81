# One image for every process of the Procfile: web (the default command), the Celery worker and
# Celery beat (commands given by docker-compose.yml). Migrations are not run at start-up: they are
# a one-shot `python manage.py migrate --noinput` (the `migrate` service of docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    DJANGO_SETTINGS_MODULE=config.settings

# The application runs unprivileged; its home holds gunicorn's control socket.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --create-home --home-dir /home/app app

WORKDIR /app

# Runtime dependencies only (requirements-dev.txt is for tests and the dev stack). All are wheels:
# psycopg[binary] bundles libpq, so no compiler or system library is needed.
COPY requirements.txt .
RUN pip install -r requirements.txt

# The code stays owned by root and read-only for the app user.
COPY . .

# collectstatic imports the settings, which refuse to load without a strong SECRET_KEY: a random
# one that exists only for this RUN.
RUN SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    python manage.py collectstatic --noinput

USER app

# 8000: the application (behind the proxy: docker-compose.yml's `proxy`, nginx). 8001: each
# worker's internal listener for /healthz, /readyz and /metrics (no token there): for the
# orchestrator's probes and Prometheus on the private network, never published.
ENV WEB_PROBE_BIND=0.0.0.0:8001
EXPOSE 8000 8001

# As the Procfile's `web` (config/gunicorn.conf.py), bound to all interfaces for the container
# network.
CMD ["gunicorn", "-c", "config/gunicorn.conf.py", "--bind", "0.0.0.0:8000", "config.wsgi:application"]

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

# collectstatic imports the settings, which need a SECRET_KEY; this one exists only for this RUN.
RUN SECRET_KEY=collectstatic-build-only-not-a-secret python manage.py collectstatic --noinput

USER app

EXPOSE 8000

# As the Procfile's `web` (config/gunicorn.conf.py), bound to all interfaces for the container
# network.
CMD ["gunicorn", "-c", "config/gunicorn.conf.py", "--bind", "0.0.0.0:8000", "config.wsgi:application"]

"""gunicorn's settings, the same wherever the web process runs (Procfile and ``make run``, the
Dockerfile and docker-compose, bench/api.py). Every value comes from the environment.

The serving model is chosen by measurement (docs/operations.md, "Serving"): gevent workers.
A long-poll pull waits on an event, so a worker holds hundreds of waiting pulls in greenlets
at no cost while it serves everything else; threads would need a thread per waiting pull in
every worker. The database pool (DB_POOL_SIZE) bounds the connections of each worker.

Facing the internet (docs/operations.md, "Deployment topology"): every socket operation with a
client is bounded (config.serving.GeventWorker, WEB_SOCKET_TIMEOUT), and WEB_PROBE_BIND gives
each worker an internal listener for the probes and the metrics.
"""

import os
import tempfile
from pathlib import Path

# The workers' database pool (config/settings.py), unless set otherwise.
os.environ.setdefault("DB_POOL_SIZE", "8")
# The workers' Prometheus counters, one file each, summed at each scrape of /metrics.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="telegram-tasks-"))


def on_starting(server: object) -> None:
    """Counters of an earlier run are not this run's."""
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()


def post_worker_init(worker: object) -> None:
    """The internal listener for /healthz, /readyz and /metrics (WEB_PROBE_BIND)."""
    if _probe_bind:
        from config.serving import start_probe_listener

        start_probe_listener(worker, _probe_bind)


def child_exit(server: object, worker: object) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


_host, _port = os.environ.get("WEB_HOST", "127.0.0.1"), os.environ.get("WEB_PORT", "8000")
bind = os.environ.get("WEB_BIND") or f"{_host}:{_port}"
workers = int(os.environ.get("WEB_WORKERS", "2"))
# "gevent": gunicorn's gevent worker with a timeout on every client socket operation.
worker_class = os.environ.get("WEB_WORKER_CLASS", "gevent")
if worker_class == "gevent":
    worker_class = "config.serving.GeventWorker"
# gthread only: requests served at once per worker (each waiting pull takes one).
threads = int(os.environ.get("WEB_THREADS", "4"))
# gevent only: connections served at once per worker (waiting pulls included).
worker_connections = int(os.environ.get("WEB_CONNECTIONS", "1000"))
# Keep-alive between requests of a provider's connection (seconds).
keepalive = int(os.environ.get("WEB_KEEPALIVE", "5"))
# Longer than the longest long-poll (20 s).
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
graceful_timeout = 30
accesslog = os.environ.get("WEB_ACCESS_LOG", "-") or None
# host:port of the internal listener (probes and metrics, no token); empty: none.
_probe_bind = os.environ.get("WEB_PROBE_BIND", "")

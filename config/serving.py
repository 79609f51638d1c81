"""The web workers' side of facing the internet (config/gunicorn.conf.py uses both):

- ``GeventWorker``: gunicorn's gevent worker with a timeout on every socket operation of a
  client connection. gunicorn bounds the wait for a request's headers (its keep-alive time)
  but leaves reading a body and writing an answer blocking for ever: a client that stops
  reading would hold its connection, and whatever the request held, until it went away.
- ``start_probe_listener``: a second, internal listener in each worker that serves only
  ``/healthz``, ``/readyz`` and ``/metrics``, with connections of its own, so an orchestrator's
  probes and Prometheus are answered while the public listener's connections are all taken
  (slow clients, a flood of long-polls). Requests there skip the middleware (no session, no
  host check: it answers whoever reaches it, so bind it where only the orchestrator and the
  scraper can) and need no token.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.workers.ggevent import GeventWorker as _GunicornGevent

logger = logging.getLogger(__name__)

# Seconds one read from or write to a client may take (WEB_SOCKET_TIMEOUT).
SOCKET_TIMEOUT = float(os.environ.get("WEB_SOCKET_TIMEOUT", "30"))
# Connections the internal listener serves at once per worker; a probe's whole exchange, from
# its first byte to the answer written, within PROBE_TIMEOUT seconds.
PROBE_CONNECTIONS = 32
PROBE_TIMEOUT = 10.0


class GeventWorker(_GunicornGevent):
    """gunicorn's gevent worker, every client socket operation bounded by SOCKET_TIMEOUT: a
    read of the body waits at most that long for the next bytes, a write (gevent's
    ``sendall``) at most that long in all, and the connection is closed when one runs out."""

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        client.settimeout(SOCKET_TIMEOUT)
        # (The parent's handle() would set the socket blocking again, with no timeout.)
        super(_GunicornGevent, self).handle(listener, client, addr)


def probe_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The internal listener's WSGI application: the three probe views, called directly."""
    from django.core.handlers.wsgi import WSGIRequest
    from django.db import close_old_connections

    from telegram_tasks.monitoring.metrics import (
        INTERNAL_LISTENER,
        healthz_view,
        metrics_view,
        readyz_view,
    )

    views = {"/healthz": healthz_view, "/readyz": readyz_view, "/metrics": metrics_view}
    view = views.get(environ.get("PATH_INFO", ""))
    if view is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"the internal listener serves /healthz, /readyz and /metrics only\n"]
    environ[INTERNAL_LISTENER] = True
    try:
        response = view(WSGIRequest(environ))
    finally:
        close_old_connections()  # the pooled connection /readyz took goes back at once
    start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
    return [response.content]


def start_probe_listener(worker: Any, bind: str) -> None:
    """Listen on ``bind`` (host:port) in this gevent worker; every worker binds the same port
    (SO_REUSEPORT) and the kernel shares the connections out."""
    if not isinstance(worker, _GunicornGevent):
        logger.warning("WEB_PROBE_BIND is ignored: the internal listener needs gevent workers")
        return
    from gevent import Timeout
    from gevent.pool import Pool
    from gevent.pywsgi import WSGIHandler, WSGIServer

    class Handler(WSGIHandler):
        def handle(self) -> None:
            self.socket.settimeout(PROBE_TIMEOUT)
            with Timeout(PROBE_TIMEOUT, False):
                super().handle()

    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 (the operator chose the address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, int(port)))
    listener.listen(64)
    server = WSGIServer(
        listener, probe_app, spawn=Pool(PROBE_CONNECTIONS), handler_class=Handler, log=None
    )
    server.start()
    logger.info("internal listener for /healthz, /readyz, /metrics on %s", bind)

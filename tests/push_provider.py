"""A real provider for push tests and the simulation: an HTTP server on loopback that receives
pushed tasks, checks their signature and idempotency key, and answers as the task's link says:

    …done…      200 + {"state": "done"}
    …flood…     200 + {"state": "failed", "error": "FLOOD_WAIT_30"}
    …pending…   200 + {"state": "pending"}, then reports done through /tasks/report (webhook)
    …accept…    202, then reports done through /tasks/report (webhook)
    …flaky…     500 to the first FLAKY sends of a task (with Retry-After: 1), then done
    …hang…      answers after HANG seconds (past the dispatcher's timeout), then done
    …gone…      410
    …nul…       200 + a done report whose data holds a NUL character (\u0000)
    …random…    a mix (the simulation): mostly done, some 202 + webhook, failed, 500

Every request is logged as a JSON line (task, lease, idempotency key, whether the signature
verified, the answer) for the tests and the simulation's checker.

    python tests/push_provider.py PORT API_BASE TOKEN LOG_FILE [SEED] [KEY]

KEY says what the signature is verified with: ``token`` (the default: the token itself, as the
default provider's PROVIDER_TOKEN signs) or ``digest`` (SHA-256 hex of the token: a provider
whose tokens the broker made).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FLAKY = 3
HANG = 3.0


def verify(body: bytes, header: str, token: str) -> bool:
    """The provider's side of X-Provider-Signature (what docs/provider-guide.md shows), keyed
    by ``token``."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    expected = hmac.new(token.encode(), f"{parts.get('t')}.".encode() + body, hashlib.sha256)
    fresh = abs(time.time() - int(parts.get("t", 0))) < 300
    return fresh and hmac.compare_digest(expected.hexdigest(), parts.get("v1", ""))


class Provider(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the dispatcher's pooled connections stay open
    api: str
    token: str
    key: str  # what signatures are verified with
    log_file: str
    rng: random.Random
    lock = threading.Lock()
    sends: dict[str, int] = {}

    def log_message(self, *args) -> None:  # quiet
        pass

    def record(self, **event) -> None:
        event["t"] = time.time()
        with self.lock, open(self.log_file, "a") as f:
            f.write(json.dumps(event) + "\n")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        task = json.loads(body)
        signed = verify(body, self.headers.get("X-Provider-Signature", ""), self.key)
        key = self.headers.get("Idempotency-Key", "")
        with self.lock:
            self.sends[key] = self.sends.get(key, 0) + 1
            nth = self.sends[key]
        link = task["link"]
        kind = next(
            (
                k
                for k in ("done", "flood", "pending", "accept", "flaky", "hang", "gone", "nul")
                if k in link
            ),
            "random",
        )
        if kind == "random":
            kind = self.rng.choices(
                ["done", "accept", "pending", "failed", "flaky"], [60, 12, 8, 10, 10]
            )[0]
        status, answer = self.answer(kind, nth, task)
        self.record(ev="push", task=task["task_id"], lease=task["lease_id"], key=key,
                    signed=signed, kind=kind, status=status, until=task["leased_until"],
                    attempt=task["attempt"], account=task["account"]["provider_account_id"])  # fmt: skip
        data = json.dumps(answer).encode() if answer is not None else b""
        self.send_response(status)
        if status == 500:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if kind in ("pending", "accept") and status in (200, 202):
            threading.Timer(0.3, self.webhook, args=(task,)).start()

    def answer(self, kind: str, nth: int, task: dict) -> tuple[int, dict | None]:
        done = {"task_id": task["task_id"], "state": "done", "ok": True,
                "provider_task_id": f"p-{task['task_id']}", "data": {"via": "push"}}  # fmt: skip
        if kind == "done":
            return 200, done
        if kind == "flood":
            return 200, {"state": "failed", "ok": False, "error": "FLOOD_WAIT_30"}
        if kind == "failed":
            return 200, {"state": "failed", "ok": False, "error": "INTERNAL_ERROR"}
        if kind == "pending":
            return 200, {"state": "pending", "provider_task_id": f"p-{task['task_id']}"}
        if kind == "accept":
            return 202, None
        if kind == "flaky":
            return (500, {"error": "busy"}) if nth <= FLAKY else (200, done)
        if kind == "hang":
            time.sleep(HANG)
            return 200, done
        if kind == "nul":
            return 200, {**done, "data": {"note": "bad\u0000byte"}}
        return 410, {"error": "gone"}

    def webhook(self, task: dict) -> None:
        body = json.dumps({"task_id": task["task_id"], "state": "done",
                           "lease_id": task["lease_id"]}).encode()  # fmt: skip
        request = urllib.request.Request(  # noqa: S310 (the API's own http://127.0.0.1 URL)
            f"{self.api}/api/provider/telegram/tasks/report", data=body, method="POST",
            headers={"Content-Type": "application/json", "X-Provider-Token": self.token},
        )  # fmt: skip
        for _ in range(50):
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    self.record(ev="webhook", task=task["task_id"], lease=task["lease_id"],
                                status=response.status)  # fmt: skip
                    return
            except Exception:  # an outage: try again
                time.sleep(0.2)


def main() -> None:
    port, api, token, log_file = sys.argv[1:5]
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    digest = len(sys.argv) > 6 and sys.argv[6] == "digest"
    Provider.api, Provider.token, Provider.log_file = api.rstrip("/"), token, log_file
    Provider.key = hashlib.sha256(token.encode()).hexdigest() if digest else token
    Provider.rng = random.Random(seed)
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), Provider)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

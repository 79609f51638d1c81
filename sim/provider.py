"""One simulated provider process: pulls tasks over HTTP, "performs" them, reports a random
mix of outcomes, and logs every hand-out and report (JSON lines) for the checker. Before it
performs a task it checks that the task carries what its action needs (``params``): a task
without them is logged ``bad_params`` (a violation) and never performed.

    python sim/provider.py BASE_URL TOKEN LOG_FILE STOP_FILE SEED
"""

from __future__ import annotations

import http.client
import json
import random
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

OUTCOMES = [
    ("done", 50),
    ("failed", 7),
    ("flood", 7),
    ("pending_done", 10),
    ("silent", 5),  # never reports: the lease runs out and the task is handed out again
    ("duplicate", 6),  # reports done twice
    ("late", 5),  # reports done after its lease ran out
    ("release", 5),
    ("extend_done", 5),
]


def params_problem(task: dict) -> str | None:
    """What is wrong with a task's params for its action, or None: what a real provider needs
    to perform it (an emoji, a poll option, the bot's start parameter as its link has it)."""
    params, action = task.get("params"), task["action"]
    if not isinstance(params, dict):
        return f"params is {params!r}"
    expected_keys = {"reaction": {"reaction"}, "poll_vote": {"option"}}.get(action, set())
    if action == "bot_start":
        start = task["link"].partition("?start=")[2]
        expected_keys = {"start_param"} if start else set()
        if start and params.get("start_param") != start:
            return f"start_param {params.get('start_param')!r}, link {task['link']}"
    if set(params) != expected_keys:
        return f"{action} with params {params}"
    if action == "reaction" and not (isinstance(params["reaction"], str) and params["reaction"]):
        return f"reaction {params['reaction']!r}"
    if action == "poll_vote" and not (isinstance(params["option"], int) and params["option"] >= 1):
        return f"option {params['option']!r}"
    if action in ("reaction", "poll_vote") and task["post_id"] is None:
        return f"{action} without a post"
    return None


class Client:
    def __init__(self, base: str, token: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname, parts.port
        self.token = token
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        """POST with retries: an outage (503, refused connection) is waited out."""
        data = json.dumps(body)
        headers = {"Content-Type": "application/json", "X-Provider-Token": self.token}
        for attempt in range(200):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
                self.conn.request("POST", f"/api/provider/telegram/{path}", data, headers)
                response = self.conn.getresponse()
                payload = json.loads(response.read() or b"{}")
                if response.status == 503:
                    time.sleep(min(0.05 * (attempt + 1), 0.5))
                    continue
                return response.status, payload
            except (OSError, http.client.HTTPException, json.JSONDecodeError):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                time.sleep(min(0.05 * (attempt + 1), 0.5))
        raise RuntimeError(f"{path}: the service stayed unavailable")


class Provider:
    def __init__(self, base: str, token: str, log: Path, stop: Path, seed: int) -> None:
        self.base, self.token, self.stop = base, token, stop
        self.rng = random.Random(seed)
        self.log_file = log.open("a")
        self.lock = threading.Lock()
        self.client = Client(base, token)
        self.deferred: list[tuple[float, dict, str]] = []  # (when, task, what)

    def log(self, **event) -> None:
        event["t"] = time.time()
        with self.lock:
            self.log_file.write(json.dumps(event) + "\n")
            self.log_file.flush()

    def report(self, task: dict, state: str, **extra) -> tuple[int, dict]:
        body = {"task_id": task["task_id"], "state": state, "lease_id": task["lease_id"], **extra}
        status, payload = self.client.post("tasks/report", body)
        self.log(ev="report", task=task["task_id"], lease=task["lease_id"], state=state,
                 http=status, status=payload.get("status"), dup=payload.get("duplicate", False),
                 error=extra.get("error"))  # fmt: skip
        return status, payload

    def outcome(self, task: dict) -> str:
        link = task["link"]
        if "private" in link:
            return "channel_private"
        if "noclown" in link and task["params"].get("reaction") == "🤡":
            return "reaction_invalid"  # the channel does not allow 🤡
        if "gonepost" in link:
            return "post_gone"
        if "dead" in (task["account"]["provider_account_id"] or ""):
            return "auth_dead"
        names, weights = zip(*OUTCOMES, strict=True)
        return self.rng.choices(names, weights)[0]

    def handle(self, task: dict) -> None:
        problem = params_problem(task)
        if problem:
            self.log(ev="bad_params", task=task["task_id"], problem=problem)
            return  # cannot be performed: its lease runs out
        what = self.outcome(task)
        if what == "done":
            self.report(task, "done", ok=True, provider_task_id=f"p-{task['task_id']}")
        elif what == "failed":
            self.report(task, "failed", ok=False, error="INTERNAL_ERROR")
        elif what == "flood":
            self.report(task, "failed", ok=False, error="FLOOD_WAIT_1", retry_after=1)
        elif what == "channel_private":
            self.report(task, "failed", ok=False, error="CHANNEL_PRIVATE")
        elif what == "reaction_invalid":
            self.report(task, "failed", ok=False, error="REACTION_INVALID")
        elif what == "post_gone":
            self.report(task, "failed", ok=False, error="MESSAGE_ID_INVALID")
        elif what == "auth_dead":
            self.report(task, "failed", ok=False, error="AUTH_KEY_UNREGISTERED")
        elif what == "pending_done":
            self.report(task, "pending", provider_task_id=f"p-{task['task_id']}")
            self.deferred.append((time.time() + self.rng.uniform(0.2, 1.5), task, "done"))
        elif what == "duplicate":
            self.report(task, "done")
            self.report(task, "done")
        elif what == "late":
            self.deferred.append((time.time() + 3.5, task, "done"))
        elif what == "release":
            status, payload = self.client.post(
                "tasks/release",
                {"leases": [{"task_id": task["task_id"], "lease_id": task["lease_id"]}]},
            )
            ok = status == 200 and payload["results"][0]["ok"]
            self.log(ev="release", task=task["task_id"], lease=task["lease_id"], ok=ok)
        elif what == "extend_done":
            status, payload = self.client.post(
                "tasks/extend",
                {
                    "leases": [
                        {"task_id": task["task_id"], "lease_id": task["lease_id"], "seconds": 4}
                    ]
                },
            )
            result = payload.get("results", [{}])[0] if status == 200 else {}
            if result.get("ok"):
                self.log(ev="extend", task=task["task_id"], lease=task["lease_id"],
                         until=result["leased_until"])  # fmt: skip
            self.deferred.append((time.time() + 1.0, task, "done"))
        # "silent": nothing at all

    def run_deferred(self, force: bool = False) -> None:
        now = time.time()
        due = [d for d in self.deferred if force or d[0] <= now]
        self.deferred = [d for d in self.deferred if not (force or d[0] <= now)]
        for _, task, state in due:
            self.report(task, state)

    def run(self) -> None:
        idle = False
        while not self.stop.exists():
            self.run_deferred()
            request_id = uuid.uuid4().hex
            body: dict = {"limit": 10, "request_id": request_id}
            if idle and self.rng.random() < 0.5:
                body["wait_seconds"] = 1  # a long-poll: woken when tasks come
            status, payload = self.client.post("tasks/pull", body)
            if status != 200:
                self.log(ev="error", where="pull", http=status, body=payload)
                time.sleep(0.2)
                continue
            tasks = payload["tasks"]
            if tasks and self.rng.random() < 0.1:
                # The response was "lost": the same request_id must give the same tasks back.
                # It may return fewer (a lease that ran out meanwhile went to someone else), never
                # a task the first answer did not hold.
                _, again = self.client.post("tasks/pull", {"limit": 10, "request_id": request_id})
                first = {t["task_id"] for t in tasks}
                second = {t["task_id"] for t in again["tasks"]}
                self.log(ev="replay", subset=second <= first, same=second == first, n=len(tasks))
            for task in tasks:
                self.log(ev="lease", task=task["task_id"], lease=task["lease_id"],
                         until=task["leased_until"], attempt=task["attempt"],
                         account=task["account"]["provider_account_id"],
                         params=task.get("params"))  # fmt: skip
            for task in tasks:
                time.sleep(self.rng.uniform(0, 0.01))
                self.handle(task)
            idle = not tasks
            if idle and "wait_seconds" not in body:
                time.sleep(0.1)
        self.run_deferred(force=True)


if __name__ == "__main__":
    base, token, log, stop, seed = sys.argv[1:6]
    Provider(base, token, Path(log), Path(stop), int(seed)).run()

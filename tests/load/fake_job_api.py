"""A stand-in job API for Locust runs that test the load profiles, not the system.

It answers what `CreatorUser` asks (POST a job, GET its status) at once, every job
`completed` on its first poll with its own timestamps, and counts every request it
answered: a report that aggregates several Locust processes can be checked against what
the server really saw.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

JOBS_PREFIX = "/api/jobs/"
COMPLETION = timedelta(milliseconds=40)
"""Each job's updatedAt - createdAt: the time to completion the report must show."""


class FakeJobApi:
    """`with FakeJobApi() as api:` serves on `api.url`; `api.requests` counts answers by
    `"POST <route>"` / `"GET"`, `api.creators` the distinct creators that posted."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.creators: set[str] = set()
        self.jobs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def total(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Locust's session expects

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                route = self.path.removeprefix(JOBS_PREFIX)
                now = datetime.now(UTC)
                job_id = f"job_{uuid.uuid4().hex[:12]}"
                with api._lock:
                    api.requests[f"POST {route}"] += 1
                    api.creators.add(str(body.get("creatorId")))
                    api.jobs[job_id] = {
                        "jobId": job_id,
                        "status": "completed",
                        "createdAt": now.isoformat(),
                        "updatedAt": (now + COMPLETION).isoformat(),
                    }
                self._answer(200, {"jobId": job_id, "status": "pending"})

            def do_GET(self) -> None:
                with api._lock:
                    api.requests["GET"] += 1
                    job = api.jobs.get(self.path.removeprefix(JOBS_PREFIX))
                self._answer(200, job) if job else self._answer(404, {"error": "not found"})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: thousands of requests per run

        return Handler

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

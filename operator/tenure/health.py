"""Liveness and readiness over HTTP, served whether this replica leads or stands by.

`/healthz` (liveness): the process is alive. A standby waiting for the Lease is healthy.

`/readyz` (readiness): this replica can take the traffic a Service sends it, leader or standby:
every server it runs is up, which today means the admission webhook listens and has read the
IdentityPolicy (without `--webhook-port`, a started replica is ready). Readiness is not leadership:
the leader is the one replica that acts, the standby answers admission reviews and takes over when
the Lease is free. So a rolling update waits for a new pod to be Ready before stopping an old one,
and a PodDisruptionBudget counts both replicas (issue #8). The body says which role the replica
has; `tenure_leader` on /metrics says it too.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from typing import Any

ReadyCheck = Callable[[], str | None]
"""Why this replica is not ready, or None when the part it checks is."""
PostHandler = Callable[[str, bytes, str | None], tuple[int, str]]
"""(the path after the route's prefix, the body, X-Hub-Signature) -> (HTTP status, text)."""
MAX_POST_BODY = 1 << 20


class Health:
    def __init__(self) -> None:
        self.leading = threading.Event()
        """Set while this replica holds the Lease (or runs without leader election)."""
        self._checks: list[ReadyCheck] = []
        self._posts: dict[str, PostHandler] = {}
        self._server: http.server.ThreadingHTTPServer | None = None

    def require(self, check: ReadyCheck) -> None:
        """Ready only while `check` finds nothing missing."""
        self._checks.append(check)

    def route_post(self, prefix: str, handler: PostHandler) -> None:
        """Serve POST requests under `prefix` (the ITSM webhooks, tenure.ticketing)."""
        self._posts[prefix] = handler

    def readiness(self) -> tuple[bool, str]:
        """(ready, what /readyz says)."""
        missing = [found for check in self._checks if (found := check()) is not None]
        if missing:
            return False, 'not ready: ' + '; '.join(missing)
        return True, 'ready: ' + ('leading' if self.leading.is_set() else 'standing by')

    def serve(self, port: int, host: str = '0.0.0.0') -> None:  # noqa: S104 (a pod's probes)
        health = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == '/healthz':
                    self._answer(200, 'ok')
                elif self.path == '/readyz':
                    ready, text = health.readiness()
                    self._answer(200 if ready else 503, text)
                else:
                    self._answer(404, 'not found')

            def do_POST(self) -> None:
                prefix = next((p for p in health._posts if self.path.startswith(p)), None)
                length = int(self.headers.get('Content-Length') or 0)
                if prefix is None:
                    self._answer(404, 'not found')
                elif length > MAX_POST_BODY:
                    self._answer(413, 'too large')
                else:
                    body = self.rfile.read(length)
                    signature = self.headers.get('X-Hub-Signature')
                    self._answer(*health._posts[prefix](self.path[len(prefix) :], body, signature))

            def _answer(self, code: int, text: str) -> None:
                body = text.encode()
                self.send_response(code)
                self.send_header('Content-Type', 'text/plain')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # probes every few seconds are not worth a log line

        self._server = http.server.ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=self._server.serve_forever, name='health', daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

"""Liveness and readiness over HTTP, served whether this replica leads or stands by.

`/healthz`: the process is alive (a standby waiting for the Lease is healthy).
`/readyz`: this replica leads and its kopf engine is ready (the webhook Service routes here only).
"""

from __future__ import annotations

import http.server
import threading
from typing import Any


class Health:
    def __init__(self) -> None:
        self.ready = threading.Event()
        self._server: http.server.ThreadingHTTPServer | None = None

    def serve(self, port: int, host: str = '0.0.0.0') -> None:  # noqa: S104 (a pod's probes)
        health = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == '/healthz':
                    self._answer(200, b'ok')
                elif self.path == '/readyz':
                    if health.ready.is_set():
                        self._answer(200, b'ready')
                    else:
                        self._answer(503, b'not leading or not ready')
                else:
                    self._answer(404, b'not found')

            def _answer(self, code: int, body: bytes) -> None:
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

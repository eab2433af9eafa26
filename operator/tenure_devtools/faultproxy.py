"""A fault-injecting HTTP proxy in front of Vault/OpenBao (test tooling, never the operator).

Tenure must survive Vault being down, slow, failing or refusing (issue #5, "Faults"). The code
under test (the operator, often a child process) is pointed at the proxy; the test keeps a direct
client to the real server, and switches the proxy's mode at any moment:

    with running_fault_proxy(bao.addr) as proxy:
        start_operator(vault_addr=proxy.url)
        proxy.mode(ProxyMode.down())                 # Vault unreachable
        proxy.mode(ProxyMode.server_error(503))      # {"errors": ["Vault is sealed"]}
        proxy.mode(ProxyMode.permission_denied(path=r'^/v1/auth/token/'))
        proxy.mode(ProxyMode.slow(2.0, methods=WRITES))
        proxy.mode(ProxyMode.pass_through())

Modes, and what a client sees in each:

- pass-through: requests are forwarded unchanged (hop-by-hop headers aside) over a pooled
  upstream connection; answers come back byte for byte, compressed or not.
- down: the proxy stops listening (new connections are refused, as when Vault's process is gone)
  and resets every open connection, idle keep-alive ones included; in-flight requests fail with
  a connection reset. `mode()` returns once that is done. Leaving the mode listens again on the
  same port.
- slow: each matching request waits `delay` seconds before it is forwarded; a client with a
  shorter timeout sees a read timeout.
- error: the proxy answers itself, in Vault's error format: the status, `Content-Type:
  application/json`, `Cache-Control: no-store` and the body `{"errors":[...]}` followed by a
  newline, exactly as OpenBao writes it (`server_error(503)` is a sealed Vault's answer;
  `permission_denied()` is the 403 `{"errors":["permission denied"]}` of a bad token or a
  missing capability).
- drop: the connection of each matching request is reset instead of answered.

Every mode but down can be limited to requests whose path matches `path` (a regular expression
searched in the URL path) and whose method is in `methods` (`WRITES` for writes; hvac sends LIST
for lists); the others pass through. If the upstream itself cannot be reached, the client's
connection is reset, so a stopped Vault behind the proxy looks like a stopped Vault.

`ProxyCounts` says what the proxy did, to assert that a fault really happened. The proxy runs on
its own event loop in a background thread; every public method is thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Collection, Iterator
from typing import Any, Final, Literal

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

log = logging.getLogger(__name__)

WRITES: Final = frozenset({'POST', 'PUT', 'PATCH', 'DELETE'})
"""The methods that change something in Vault (reads are GET and LIST)."""

DEFAULT_ERRORS: Final = {
    403: 'permission denied',
    429: 'rate limit quota exceeded',
    500: 'internal error',
    502: 'bad gateway',
    503: 'Vault is sealed',
    504: 'context deadline exceeded',
}

# RFC 9110 section 7.6.1: meaningful for one connection only, never forwarded. Content-Length
# is recomputed for the body actually sent, Host names the upstream.
_HOP_BY_HOP: Final = frozenset(
    {
        'connection',
        'keep-alive',
        'proxy-authenticate',
        'proxy-authorization',
        'proxy-connection',
        'te',
        'trailer',
        'transfer-encoding',
        'upgrade',
        'content-length',
        'host',
    }
)
_START_TIMEOUT: Final = 30.0
_CALL_TIMEOUT: Final = 30.0

Kind = Literal['pass-through', 'down', 'slow', 'error', 'drop']


@dataclasses.dataclass(frozen=True)
class ProxyMode:
    """What the proxy does with requests; build one with the class methods."""

    kind: Kind = 'pass-through'
    delay: float = 0.0
    status: int = 0
    errors: tuple[str, ...] = ()
    retry_after: int | None = None
    path: str | None = None
    methods: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.path is not None:
            re.compile(self.path)  # a bad pattern fails here, in the test, not in the proxy
        if self.kind == 'down' and (self.path is not None or self.methods):
            raise ValueError('down is a whole-server mode: it takes no path or methods')
        object.__setattr__(self, 'methods', frozenset(m.upper() for m in self.methods))

    @classmethod
    def pass_through(cls) -> ProxyMode:
        return cls()

    @classmethod
    def down(cls) -> ProxyMode:
        return cls('down')

    @classmethod
    def slow(
        cls, seconds: float, *, path: str | None = None, methods: Collection[str] = ()
    ) -> ProxyMode:
        return cls('slow', delay=seconds, path=path, methods=frozenset(methods))

    @classmethod
    def error(
        cls,
        status: int,
        *errors: str,
        retry_after: int | None = None,
        path: str | None = None,
        methods: Collection[str] = (),
    ) -> ProxyMode:
        """Answer `status` with Vault's `{"errors": [...]}` (a default message if none given)."""
        if not 400 <= status <= 599:
            raise ValueError(f'an error mode needs a 4xx or 5xx status, not {status}')
        if not errors:
            errors = (DEFAULT_ERRORS.get(status, 'injected fault'),)
        return cls(
            'error',
            status=status,
            errors=errors,
            retry_after=retry_after,
            path=path,
            methods=frozenset(methods),
        )

    @classmethod
    def server_error(
        cls, status: int = 500, *errors: str, path: str | None = None, methods: Collection[str] = ()
    ) -> ProxyMode:
        """500 internal error, 503 sealed (by default), or another 5xx."""
        if not 500 <= status <= 599:
            raise ValueError(f'a server error is 5xx, not {status}')
        return cls.error(status, *errors, path=path, methods=methods)

    @classmethod
    def permission_denied(
        cls, *, path: str | None = None, methods: Collection[str] = ()
    ) -> ProxyMode:
        """403 `{"errors":["permission denied"]}`: a bad token or a missing capability."""
        return cls.error(403, path=path, methods=methods)

    @classmethod
    def drop(cls, *, path: str | None = None, methods: Collection[str] = ()) -> ProxyMode:
        """Reset the connection of each matching request instead of answering it."""
        return cls('drop', path=path, methods=frozenset(methods))

    def applies_to(self, method: str, path: str) -> bool:
        if self.methods and method.upper() not in self.methods:
            return False
        return self.path is None or re.search(self.path, path) is not None


@dataclasses.dataclass(frozen=True)
class ProxyCounts:
    """What the proxy did since it started."""

    connections: int = 0
    """TCP connections accepted (keep-alive: many requests, one connection)."""
    requests: int = 0
    """Requests received."""
    forwarded: int = 0
    """Requests answered by the upstream."""
    delayed: int = 0
    """Requests held back by a slow mode (counted when the wait starts)."""
    failed: int = 0
    """Requests the proxy answered with an error status itself."""
    dropped: int = 0
    """Requests whose connection was reset instead of answered."""
    resets: int = 0
    """Open connections reset when the proxy went down."""


class _Server(web.Server):
    """aiohttp's low-level server, telling the proxy about each accepted connection."""

    def __init__(
        self,
        on_connection: Callable[[], None],
        handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._on_connection = on_connection

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._on_connection()


def _reset(transport: asyncio.Transport | None) -> None:
    """Close abortively (RST, as a crashed peer does) rather than with an orderly FIN."""
    if transport is None or transport.is_closing():
        return
    sock = transport.get_extra_info('socket')
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    transport.abort()


class FaultProxy:
    """The proxy; use `running_fault_proxy()`, which runs and stops it in a thread."""

    def __init__(self, upstream_url: str, *, host: str = '127.0.0.1', port: int = 0) -> None:
        self.upstream_url = upstream_url.rstrip('/')
        self.host = host
        self.port = port
        self._mode = ProxyMode()
        self._counts = ProxyCounts()
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: _Server | None = None
        self._listener: asyncio.Server | None = None
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f'FaultProxy({self.url!r} -> {self.upstream_url!r}, mode={self._mode.kind})'

    @property
    def url(self) -> str:
        return f'http://{self.host}:{self.port}'

    @property
    def counts(self) -> ProxyCounts:
        with self._changed:
            return self._counts

    @property
    def current_mode(self) -> ProxyMode:
        return self._mode

    def mode(self, mode: ProxyMode) -> ProxyMode:
        """Switch to `mode`; returns the previous one. Down is in force when this returns."""
        loop = self._loop
        if loop is None:
            raise RuntimeError('the fault proxy is not running')
        future = asyncio.run_coroutine_threadsafe(self._switch(mode), loop)
        return future.result(_CALL_TIMEOUT)

    def wait_until(
        self, condition: Callable[[ProxyCounts], bool], *, timeout: float = 10.0
    ) -> ProxyCounts:
        """Block until `condition(counts)` holds; TimeoutError with the counts if it does not."""
        with self._changed:
            if not self._changed.wait_for(lambda: condition(self._counts), timeout):
                raise TimeoutError(
                    f'fault proxy condition not met within {timeout}s: {self._counts}'
                )
            return self._counts

    # -- on the proxy's loop ---------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # No proxies or netrc from the environment; bodies are passed on as they come.
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None),
        )
        self._server = _Server(
            self._connection_accepted, self._handle, handler_cancellation=True, access_log=None
        )
        await self._listen()
        log.info('fault proxy %s -> %s', self.url, self.upstream_url)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._server is not None:
            for connection in self._server.connections:
                _reset(connection.transport)
            await self._server.shutdown(1.0)
            self._server = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._loop = None

    async def _listen(self) -> None:
        assert self._loop is not None
        assert self._server is not None
        # Same port every time: the code under test keeps the URL it was given.
        self._listener = await self._loop.create_server(
            self._server, self.host, self.port, reuse_address=True
        )
        self.port = self._listener.sockets[0].getsockname()[1]

    async def _switch(self, mode: ProxyMode) -> ProxyMode:
        previous = self._mode
        self._mode = mode
        if mode.kind == 'down' and self._listener is not None:
            self._listener.close()
            self._listener = None
            assert self._server is not None
            connections = self._server.connections
            for connection in connections:
                _reset(connection.transport)
            self._count(resets=len(connections))
        elif mode.kind != 'down' and self._listener is None:
            await self._listen()
        log.info('fault proxy %s: %s -> %s', self.url, previous.kind, mode.kind)
        return previous

    def _count(self, **increments: int) -> None:
        with self._changed:
            self._counts = dataclasses.replace(
                self._counts,
                **{k: getattr(self._counts, k) + v for k, v in increments.items()},
            )
            self._changed.notify_all()

    def _connection_accepted(self) -> None:
        self._count(connections=1)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self._count(requests=1)
        mode = self._mode
        if mode.kind == 'down':
            # Only a connection accepted just before the switch can get here.
            return self._drop(request)
        if mode.kind != 'pass-through' and mode.applies_to(request.method, request.path):
            if mode.kind == 'slow':
                self._count(delayed=1)
                await asyncio.sleep(mode.delay)
                mode = self._mode  # the mode may have changed meanwhile (say, to down)
                if mode.kind == 'down':
                    return self._drop(request)
            elif mode.kind == 'error':
                self._count(failed=1)
                return self._vault_error(mode)
            elif mode.kind == 'drop':
                return self._drop(request)
        return await self._forward(request)

    def _drop(self, request: web.BaseRequest) -> web.StreamResponse:
        self._count(dropped=1)
        _reset(request.transport)
        # Never sent: the connection is gone (aiohttp drops writes to a closed transport).
        return web.Response(status=204)

    @staticmethod
    def _vault_error(mode: ProxyMode) -> web.Response:
        # Vault's jsonutil.EncodeJSON writes the body and a newline; headers as OpenBao sends.
        body = json.dumps({'errors': list(mode.errors)}, separators=(',', ':')) + '\n'
        headers = {'Cache-Control': 'no-store'}
        if mode.retry_after is not None:
            headers['Retry-After'] = str(mode.retry_after)
        # Bytes, not text: aiohttp would add `; charset=utf-8`, and hvac only reads the errors
        # of an answer whose Content-Type is exactly application/json.
        return web.Response(
            status=mode.status, body=body.encode(), content_type='application/json', headers=headers
        )

    async def _forward(self, request: web.BaseRequest) -> web.StreamResponse:
        assert self._session is not None
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP
        )
        body = await request.read()
        try:
            async with self._session.request(
                request.method,
                self.upstream_url + request.rel_url.raw_path_qs,
                headers=headers,
                data=body or None,
                allow_redirects=False,
            ) as upstream:
                payload = await upstream.read()
                answer_headers = CIMultiDict(
                    (k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP
                )
                status = upstream.status
        except aiohttp.ClientConnectionError:
            # The upstream is unreachable: so is the proxy, for this request.
            return self._drop(request)
        self._count(forwarded=1)
        return web.Response(status=status, body=payload, headers=answer_headers)


@contextlib.contextmanager
def running_fault_proxy(upstream_url: str, *, host: str = '127.0.0.1') -> Iterator[FaultProxy]:
    """Run a fault proxy to `upstream_url` on a free port in a background thread; stop on exit."""
    proxy = FaultProxy(upstream_url, host=host)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(proxy.start())
        except BaseException as exc:
            failure.append(exc)
            started.set()
            loop.close()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(proxy.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name='fault-proxy', daemon=True)
    thread.start()
    if not started.wait(_START_TIMEOUT):
        raise RuntimeError('the fault proxy did not start in time')
    if failure:
        thread.join(5)
        raise RuntimeError('the fault proxy failed to start') from failure[0]
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_CALL_TIMEOUT)

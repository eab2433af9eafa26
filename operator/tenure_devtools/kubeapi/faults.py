"""Fault injection for the Kubernetes API emulator (test tooling; no real API server has this).

Tenure must keep its promises when the API server misbehaves (issue #5, "Faults"): conflicts,
throttling, server errors, slow answers, watch streams that break or expire. Tests describe such
faults as rules; the emulator applies them to matching requests, counts what it did, and answers
exactly as a real kube-apiserver does in that situation, so that the official client, kopf and
kubectl react as they would against a cluster.

    rule_id = emu.faults.add(FaultRule(effect=Conflict(), verbs={'patch'}, resources={'widgets'}))
    ...  # drive the code under test
    emu.faults.wait_fired(rule_id)  # the fault really happened

The same API is served over HTTP under `CONTROL_PATH` (`/_emulator/faults`, outside every
Kubernetes path) for a test that drives an emulator it did not start in-process; `FaultControl`
is its client and has the same methods. Requests to that path are never faulted.

Rules
-----
A rule matches requests by HTTP method, URL path (a regular expression), and the parsed
`RequestInfo` (verb, group, resource or `resource/subresource`, namespace, name), as the
apiserver's authorizer sees them; a watch has the verb `watch`. Rules are tried in the order they
were added; the first that matches *and fires* decides what happens to the request, so a
`PassThrough` rule placed first exempts the requests it matches. A rule fires on matching requests
after letting the first `skip` through, at most `times` times (None: without limit), each time
with `probability`, drawn from its own `random.Random(seed)`: the same requests in the same order
give the same faults. `matched` and `fired` count per rule.

The test's own client is spared when it sends the `EXEMPT_HEADER` (any value) and the rule keeps
`spare_exempt=True`: with the official client, `api_client.set_default_header(EXEMPT_HEADER,
'1')`. `user_agent` restricts a rule to one client instead (kopf sends `kopf/<version>`, the
official Python client `OpenAPI-Generator/<version>/python`).

Effects, and the real server behaviour each reproduces
-------------------------------------------------------
- `Conflict`: 409 `Status` reason Conflict with apimachinery's optimistic-lock message
  (`errors.NewConflict`), as an update with a stale resourceVersion gets.
- `TooManyRequests`: 429 with a `Retry-After` header. By default the body of the max-in-flight and
  API Priority and Fairness filters (k8s.io/apiserver/pkg/server/filters: plain text "Too many
  requests, please try again later."); `body='status'` gives the `Status` of
  `errors.NewTooManyRequests` (reason TooManyRequests, `details.retryAfterSeconds`).
- `ServerError`: 500 InternalError (`errors.NewInternalError`), 503 ServiceUnavailable, or 504
  Timeout with the timeout filter's message ("request did not complete within requested timeout
  - context deadline exceeded"). `retry_after` sets `details.retryAfterSeconds` and the
  `Retry-After` header, as `responsewriters.ErrorNegotiated` does. With `applied=True` the request
  is carried out first and only its answer is replaced: a 504 does not mean the write failed
  (a watch has nothing to carry out: it just gets the error).
- `Latency`: the request waits, then is served (a watch: its stream starts late).
- `Disconnect`: the connection closes (`reset=True`: a TCP reset) instead of an answer, `after`
  seconds late; `applied=True` carries the request out first, so the change is made and its
  answer lost. A watch is cut `after` seconds after its stream started: its initial events reach
  the client, the terminating chunk never does (a broken stream, not a finished one); a stream
  that ends first is left alone, and so is the next request on its keep-alive connection.
- `WatchExpired`: a watch gets HTTP 200, one ERROR event holding a 410 Expired `Status` ("too old
  resource version"), and the end of the stream, as the watch cache answers a resourceVersion
  that left its window (https://kubernetes.io/docs/reference/using-api/api-concepts/#410-gone-responses).
  A rule with this effect matches watch requests only.
- `PassThrough`: the request is served as usual; the rule only counts (or shields, see above).

Open watch streams are tracked: `wait_watches()` waits until a client (say, the operator) has its
watch open, `drop_watches()` breaks the open streams that match, at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import random
import re
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, Protocol, assert_never

import pydantic
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import errors
from .errors import ApiError, GroupResource

if TYPE_CHECKING:
    from .server import RequestInfo

log = logging.getLogger(__name__)

CONTROL_PATH: Final = '/_emulator/faults'
"""Where the fault control API is served: no Kubernetes API path starts with `/_`."""

EXEMPT_HEADER: Final = 'X-Emulator-Faults-Exempt'
"""A request header that spares a client (any value) from rules with `spare_exempt=True`."""

TOO_MANY_REQUESTS_TEXT: Final = 'Too many requests, please try again later.\n'
TIMEOUT_MESSAGE: Final = (
    'Timeout: request did not complete within requested timeout - context deadline exceeded'
)
UNAVAILABLE_MESSAGE: Final = 'the server is currently unable to handle the request'
_DEFAULT_WAIT: Final = 10.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RequestParser = Callable[[str, str, str, list[str]], 'tuple[RequestInfo, bool]']


def _truthy(value: str | None) -> bool:
    return value in ('true', '1', 'True')


# ---- rules ---------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra='forbid')


class RequestMatch(_Model):
    """Which requests a rule (or `drop_watches`) concerns; unset fields match everything."""

    methods: AbstractSet[str] = frozenset()
    """HTTP methods (GET, POST, PUT, PATCH, DELETE)."""
    path: str | None = None
    """A regular expression searched in the URL path (without the query)."""
    verbs: AbstractSet[str] = frozenset()
    """Kubernetes verbs: get, list, watch, create, update, patch, delete, deletecollection."""
    group: str | None = None
    """API group; '' is the core group."""
    resources: AbstractSet[str] = frozenset()
    """Plural resource names, `resource/subresource` for a subresource (as in RBAC rules)."""
    namespace: str | None = None
    name: str | None = None
    user_agent: str | None = None
    """A regular expression searched in the User-Agent header."""
    spare_exempt: bool = True
    """Leave requests that carry `EXEMPT_HEADER` alone (the test's own client)."""

    @field_validator('methods')
    @classmethod
    def _upper(cls, methods: AbstractSet[str]) -> AbstractSet[str]:
        return frozenset(m.upper() for m in methods)

    @field_validator('path', 'user_agent')
    @classmethod
    def _regex(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f'not a regular expression: {exc}') from None
        return pattern

    def _resource_fields_set(self) -> bool:
        return bool(
            self.verbs
            or self.resources
            or self.group is not None
            or self.namespace is not None
            or self.name is not None
        )

    def matches(self, facts: RequestFacts) -> bool:
        if self.spare_exempt and facts.exempt:
            return False
        if self.methods and facts.method not in self.methods:
            return False
        if self.path is not None and not re.search(self.path, facts.path):
            return False
        if self.user_agent is not None and not re.search(self.user_agent, facts.user_agent):
            return False
        info = facts.info
        if info is None:
            return not self._resource_fields_set()
        resource = f'{info.resource}/{info.subresource}' if info.subresource else info.resource
        return (
            (not self.verbs or info.verb in self.verbs)
            and (self.group is None or info.group == self.group)
            and (not self.resources or resource in self.resources)
            and (self.namespace is None or info.namespace == self.namespace)
            and (self.name is None or info.name == self.name)
        )


class PassThrough(_Model):
    """Serve the request as usual (the rule counts it, and shields it from later rules)."""

    type: Literal['pass-through'] = 'pass-through'


class Latency(_Model):
    """Wait `seconds`, then serve the request."""

    type: Literal['latency'] = 'latency'
    seconds: Annotated[float, Field(ge=0)]


class Conflict(_Model):
    """409 Conflict with the optimistic-lock message (the object was modified meanwhile)."""

    type: Literal['conflict'] = 'conflict'


class TooManyRequests(_Model):
    """429 with `Retry-After`: the throttling filters' plain text, or a `Status` (`body`)."""

    type: Literal['too-many-requests'] = 'too-many-requests'
    retry_after: Annotated[int, Field(ge=0)] = 1
    body: Literal['text', 'status'] = 'text'


class ServerError(_Model):
    """500, 503 or 504 `Status`; with `applied`, the request is carried out first."""

    type: Literal['server-error'] = 'server-error'
    code: Literal[500, 503, 504] = 500
    message: str | None = None
    retry_after: Annotated[int, Field(ge=0)] = 0
    applied: bool = False


class Disconnect(_Model):
    """Close the connection instead of answering (a watch: `after` seconds into the stream)."""

    type: Literal['disconnect'] = 'disconnect'
    after: Annotated[float, Field(ge=0)] = 0.0
    reset: bool = False
    applied: bool = False


class WatchExpired(_Model):
    """A watch ends with an ERROR event carrying 410 Expired (matches watch requests only)."""

    type: Literal['watch-expired'] = 'watch-expired'


Effect = Annotated[
    PassThrough | Latency | Conflict | TooManyRequests | ServerError | Disconnect | WatchExpired,
    Field(discriminator='type'),
]


class FaultRule(RequestMatch):
    """An effect, the requests it applies to, and how often it fires."""

    effect: Effect
    skip: Annotated[int, Field(ge=0)] = 0
    """Matching requests let through before the rule may fire."""
    times: Annotated[int, Field(ge=1)] | None = 1
    """How many times the rule fires at most; None: without limit."""
    probability: Annotated[float, Field(gt=0, le=1)] = 1.0
    """The chance that a matching request (within `skip` and `times`) gets the fault."""
    seed: int = 0
    """Seeds the rule's own random generator: same requests, same faults."""

    def matches(self, facts: RequestFacts) -> bool:
        if isinstance(self.effect, WatchExpired) and not facts.watch:
            return False
        return super().matches(facts)


@dataclasses.dataclass(frozen=True)
class RequestFacts:
    """What rules look at in a request."""

    method: str
    path: str
    user_agent: str
    exempt: bool
    info: RequestInfo | None
    """None for paths outside the resource API (discovery, /version, health)."""

    @property
    def watch(self) -> bool:
        return self.info is not None and self.info.verb == 'watch'


@dataclasses.dataclass(frozen=True)
class RuleStats:
    """A rule and what it did so far."""

    id: str
    rule: FaultRule
    matched: int
    fired: int
    first_fired_at: float | None = None
    """When it first fired (the emulator's `time.time()`), None if it has not."""
    last_fired_at: float | None = None
    """When it last fired: two rules' times tell how far apart the requests they saw were,
    however late a test learns of them."""

    def to_json(self) -> dict[str, Any]:
        return {
            'id': self.id,
            'rule': _rule_json(self.rule),
            'matched': self.matched,
            'fired': self.fired,
            'firstFiredAt': self.first_fired_at,
            'lastFiredAt': self.last_fired_at,
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> RuleStats:
        return cls(
            id=str(body['id']),
            rule=FaultRule.model_validate(body['rule']),
            matched=int(body['matched']),
            fired=int(body['fired']),
            first_fired_at=body.get('firstFiredAt'),
            last_fired_at=body.get('lastFiredAt'),
        )


@dataclasses.dataclass(frozen=True)
class WatchInfo:
    """An open watch stream."""

    path: str
    resource: str
    namespace: str
    user_agent: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _rule_json(rule: BaseModel) -> dict[str, Any]:
    body = rule.model_dump(mode='json')
    for key, value in body.items():
        if isinstance(value, list):
            body[key] = sorted(value)  # sets: a stable order for readers and comparisons
    return body


class Faults(Protocol):
    """What tests call, in-process (`FaultInjector`) or over HTTP (`FaultControl`)."""

    def add(self, rule: FaultRule) -> str: ...

    def remove(self, rule_id: str) -> bool: ...

    def clear(self) -> int: ...

    def stats(self, rule_id: str) -> RuleStats: ...

    def rules(self) -> list[RuleStats]: ...

    def wait_fired(
        self, rule_id: str, count: int = 1, *, timeout: float = _DEFAULT_WAIT
    ) -> RuleStats: ...

    def wait_watches(
        self, match: RequestMatch | None = None, count: int = 1, *, timeout: float = _DEFAULT_WAIT
    ) -> list[WatchInfo]: ...

    def drop_watches(self, match: RequestMatch | None = None, *, reset: bool = False) -> int: ...


# ---- the injector --------------------------------------------------------------------------


@dataclasses.dataclass
class _RuleState:
    rule: FaultRule
    random: random.Random
    matched: int = 0
    fired: int = 0
    first_fired_at: float | None = None
    last_fired_at: float | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class _OpenWatch:
    request: web.Request
    facts: RequestFacts

    def info(self) -> WatchInfo:
        info = self.facts.info
        assert info is not None
        return WatchInfo(self.facts.path, info.resource, info.namespace, self.facts.user_agent)


class FaultInjector:
    """The emulator's rules, counters and open watches (`KubeApiEmulator.faults`).

    Thread-safe: tests call it from their own thread while the emulator serves on its loop.
    `install` puts it in front of the emulator's request handler.
    """

    def __init__(
        self, *, parse_request: RequestParser, resource_version: Callable[[], int]
    ) -> None:
        self._parse_request = parse_request
        self._resource_version = resource_version
        self._changed = threading.Condition()
        self._rules: dict[str, _RuleState] = {}
        self._ids = itertools.count(1)
        self._watches: dict[int, _OpenWatch] = {}
        # Watches to break once their stream has started, and the timers that will break them.
        self._cuts: dict[int, Disconnect] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Long polls of the control API, woken on the loop whenever counters or watches change.
        self._pollers: set[asyncio.Future[None]] = set()

    # -- the test-facing API (any thread) ----------------------------------------------------

    def add(self, rule: FaultRule) -> str:
        """Add a rule after the existing ones; returns its id."""
        with self._changed:
            rule_id = f'rule-{next(self._ids)}'
            self._rules[rule_id] = _RuleState(rule, random.Random(rule.seed))  # noqa: S311
        log.info('kubeapi fault rule %s added: %s', rule_id, _rule_json(rule))
        return rule_id

    def remove(self, rule_id: str) -> bool:
        with self._changed:
            removed = self._rules.pop(rule_id, None) is not None
            self._changed.notify_all()  # a thread waiting on this rule stops waiting
            return removed

    def clear(self) -> int:
        """Remove every rule; returns how many there were."""
        with self._changed:
            count = len(self._rules)
            self._rules.clear()
            self._changed.notify_all()
            return count

    def stats(self, rule_id: str) -> RuleStats:
        """The rule and its counters; KeyError for an unknown id."""
        with self._changed:
            return self._stats(rule_id)

    def rules(self) -> list[RuleStats]:
        with self._changed:
            return [self._stats(rule_id) for rule_id in self._rules]

    def wait_fired(
        self, rule_id: str, count: int = 1, *, timeout: float = _DEFAULT_WAIT
    ) -> RuleStats:
        """Block until the rule fired `count` times; TimeoutError (with its counters) if not."""
        with self._changed:
            self._changed.wait_for(
                lambda: rule_id not in self._rules or self._rules[rule_id].fired >= count, timeout
            )
            stats = self._stats(rule_id)
        if stats.fired < count:
            raise TimeoutError(
                f'fault rule {rule_id} fired {stats.fired} of {count} times within {timeout}s '
                f'({stats.matched} requests matched it)'
            )
        return stats

    def watches(self, match: RequestMatch | None = None) -> list[WatchInfo]:
        """The open watch streams that `match` selects (all by default)."""
        with self._changed:
            return [w.info() for w in self._matching_watches(match)]

    def wait_watches(
        self, match: RequestMatch | None = None, count: int = 1, *, timeout: float = _DEFAULT_WAIT
    ) -> list[WatchInfo]:
        """Block until `count` matching watch streams are open; TimeoutError if not."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._matching_watches(match)) >= count, timeout)
            found = [w.info() for w in self._matching_watches(match)]
        if len(found) < count:
            raise TimeoutError(f'{len(found)} of {count} watch streams open after {timeout}s')
        return found

    def drop_watches(self, match: RequestMatch | None = None, *, reset: bool = False) -> int:
        """Break the open watch streams that `match` selects, now; returns how many."""
        loop = self._loop
        if loop is None:
            return 0
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is loop:
                return self._drop_watches(match, reset=reset)

        async def drop() -> int:
            return self._drop_watches(match, reset=reset)

        return asyncio.run_coroutine_threadsafe(drop(), loop).result(_DEFAULT_WAIT)

    # -- wiring into the emulator (on its loop) ----------------------------------------------

    def install(self, app: web.Application, handler: Handler) -> None:
        """Route every request of `app` through the injector to `handler` (the emulator's)."""
        self._loop = asyncio.get_running_loop()
        app.router.add_route('*', CONTROL_PATH, self._control)
        app.router.add_route('*', CONTROL_PATH + '/{tail:.*}', self._control)
        app.router.add_route('*', '/{tail:.*}', self._wrap(handler))
        app.on_response_prepare.append(self._on_prepare)

    def _wrap(self, handler: Handler) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            facts = self._facts(request)
            decision = self._decide(facts)
            key = id(request)
            if facts.watch:
                self._watch_opened(key, _OpenWatch(request, facts))
            try:
                if decision is None:
                    return await handler(request)
                rule_id, effect = decision
                log.info(
                    'kubeapi fault %s: %s %s -> %s',
                    rule_id,
                    request.method,
                    request.path_qs,
                    effect.type,
                )
                return await self._apply(effect, request, facts, handler)
            finally:
                self._cuts.pop(key, None)
                timer = self._timers.pop(key, None)
                if timer is not None:
                    # The stream ended first; the connection may now serve another request.
                    timer.cancel()
                if facts.watch:
                    self._watch_closed(key)

        return handle

    def _facts(self, request: web.Request) -> RequestFacts:
        return RequestFacts(
            method=request.method,
            path=request.path,
            user_agent=request.headers.get('User-Agent', ''),
            exempt=EXEMPT_HEADER in request.headers,
            info=self._request_info(request),
        )

    def _request_info(self, request: web.Request) -> RequestInfo | None:
        parts = [p for p in request.path.split('/') if p]
        if len(parts) > 2 and parts[0] == 'api':
            group, version, rest = '', parts[1], parts[2:]
        elif len(parts) > 3 and parts[0] == 'apis':
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        try:
            info, watch_path = self._parse_request(request.method, group, version, rest)
        except ApiError:
            return None  # the server answers 404 for it; only path rules apply
        if watch_path or (request.method == 'GET' and _truthy(request.query.get('watch'))):
            info = dataclasses.replace(info, verb='watch')
        return info

    def _decide(self, facts: RequestFacts) -> tuple[str, Effect] | None:
        with self._changed:
            if not self._rules:
                return None
            decision: tuple[str, Effect] | None = None
            matched = False
            for rule_id, state in self._rules.items():
                rule = state.rule
                if not rule.matches(facts):
                    continue
                matched = True
                state.matched += 1
                if state.matched <= rule.skip:
                    continue
                if rule.times is not None and state.fired >= rule.times:
                    continue
                if rule.probability < 1 and state.random.random() >= rule.probability:
                    continue
                state.fired += 1
                state.last_fired_at = time.time()
                if state.first_fired_at is None:
                    state.first_fired_at = state.last_fired_at
                decision = (rule_id, rule.effect)
                break
            if matched:
                self._notify()
            return decision

    def _stats(self, rule_id: str) -> RuleStats:
        state = self._rules[rule_id]
        return RuleStats(
            rule_id,
            state.rule,
            state.matched,
            state.fired,
            state.first_fired_at,
            state.last_fired_at,
        )

    def _matching_watches(self, match: RequestMatch | None) -> list[_OpenWatch]:
        return [w for w in self._watches.values() if match is None or match.matches(w.facts)]

    def _watch_opened(self, key: int, watch: _OpenWatch) -> None:
        with self._changed:
            self._watches[key] = watch
            self._notify()

    def _watch_closed(self, key: int) -> None:
        with self._changed:
            self._watches.pop(key, None)
            self._notify()

    def _notify(self) -> None:
        """Wake waiting threads and the control API's long polls (on the loop, lock held)."""
        self._changed.notify_all()
        for poller in self._pollers:
            if not poller.done():
                poller.set_result(None)
        self._pollers.clear()

    def _drop_watches(self, match: RequestMatch | None, *, reset: bool) -> int:
        with self._changed:
            keys = [k for k, w in self._watches.items() if match is None or match.matches(w.facts)]
            # Gone from the list at once, not when their handlers notice the closed connection.
            doomed = [self._watches.pop(key) for key in keys]
            self._notify()
        for watch in doomed:
            _hang_up(watch.request, reset=reset)
        if doomed:
            log.info('kubeapi fault: dropped %d watch streams', len(doomed))
        return len(doomed)

    # -- effects ---------------------------------------------------------------------------

    async def _apply(
        self, effect: Effect, request: web.Request, facts: RequestFacts, handler: Handler
    ) -> web.StreamResponse:
        if isinstance(effect, PassThrough):
            return await handler(request)
        if isinstance(effect, Latency):
            await asyncio.sleep(effect.seconds)
            return await handler(request)
        if isinstance(effect, Conflict):
            return _status(await self._conflict(request, facts))
        if isinstance(effect, TooManyRequests):
            if effect.body == 'status':
                details = {'retryAfterSeconds': effect.retry_after} if effect.retry_after else {}
                error = ApiError(429, 'TooManyRequests', TOO_MANY_REQUESTS_TEXT.strip(), details)
                return _status(error)
            return web.Response(
                status=429,
                text=TOO_MANY_REQUESTS_TEXT,
                content_type='text/plain',
                charset='utf-8',
                headers={
                    'Retry-After': str(effect.retry_after),
                    'X-Content-Type-Options': 'nosniff',
                },
            )
        if isinstance(effect, ServerError):
            if effect.applied and not facts.watch:
                await handler(request)  # carried out; the client never sees the answer
            return _status(_server_error(effect))
        if isinstance(effect, Disconnect):
            if facts.watch:
                # Cut once the stream has started (see _on_prepare): a broken stream.
                self._cuts[id(request)] = effect
                return await handler(request)
            if effect.applied:
                await handler(request)
            if effect.after:
                await asyncio.sleep(effect.after)
            _hang_up(request, reset=effect.reset)
            # Never written: the transport is closed (aiohttp drops writes to a closed transport).
            return web.Response(status=204)
        if isinstance(effect, WatchExpired):
            return await self._watch_expired(request)
        assert_never(effect)

    async def _on_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        cut = self._cuts.pop(id(request), None)
        if cut is not None:
            # Scheduled, not immediate: the stream's first writes (its initial events) happen in
            # this same loop iteration and reach the client before the connection goes.
            self._timers[id(request)] = asyncio.get_running_loop().call_later(
                cut.after, _hang_up, request, cut.reset
            )

    async def _conflict(self, request: web.Request, facts: RequestFacts) -> ApiError:
        info = facts.info
        if info is None:
            return errors.conflict(GroupResource('', ''), '')
        name = info.name
        if not name and request.can_read_body:
            # A create names its object in the body.
            with contextlib.suppress(Exception):
                body = json.loads(await request.read())
                name = str(body['metadata']['name'])
        return errors.conflict(GroupResource(info.group, info.resource), name)

    async def _watch_expired(self, request: web.Request) -> web.StreamResponse:
        requested = request.query.get('resourceVersion') or '0'
        error = errors.expired(
            f'too old resource version: {requested} ({self._resource_version()})'
        )
        line = json.dumps({'type': 'ERROR', 'object': error.status()}, separators=(',', ':'))
        response = web.StreamResponse(status=200, headers={'Cache-Control': 'no-cache, private'})
        response.content_type = 'application/json'
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(line.encode() + b'\n')
        await response.write_eof()
        return response

    # -- the control API -------------------------------------------------------------------

    async def _control(self, request: web.Request) -> web.StreamResponse:
        tail = request.path[len(CONTROL_PATH) :].strip('/')
        method = request.method
        try:
            if not tail:
                if method == 'GET':
                    return _json({'rules': [s.to_json() for s in self.rules()]})
                if method == 'POST':
                    rule = FaultRule.model_validate_json(await request.read())
                    return _json(self.stats(self.add(rule)).to_json(), 201)
                if method == 'DELETE':
                    return _json({'removed': self.clear()})
            elif tail == 'watches' and method == 'GET':
                return _json({'watches': [w.to_json() for w in self.watches()]})
            elif tail == 'watches/wait' and method == 'POST':
                return await self._control_wait_watches(await _read_json(request))
            elif tail == 'watches/drop' and method == 'POST':
                body = await _read_json(request)
                match = RequestMatch.model_validate(body.get('match') or {})
                dropped = self._drop_watches(match, reset=bool(body.get('reset', False)))
                return _json({'dropped': dropped})
            elif '/' not in tail:
                if method == 'GET':
                    return await self._control_get_rule(request, tail)
                if method == 'DELETE':
                    if not self.remove(tail):
                        return _json({'error': f'no fault rule {tail!r}'}, 404)
                    return _json({'removed': 1})
            else:
                return _json({'error': f'no such fault control path: {request.path}'}, 404)
        except (pydantic.ValidationError, ValueError) as exc:
            return _json({'error': str(exc)}, 400)
        return _json({'error': f'{method} is not supported on {request.path}'}, 405)

    async def _control_get_rule(self, request: web.Request, rule_id: str) -> web.Response:
        """One rule; `?firedAtLeast=N&timeoutSeconds=T` waits (long poll) for its counter."""
        at_least = int(request.query.get('firedAtLeast', '0'))
        deadline = time.monotonic() + float(request.query.get('timeoutSeconds', '0'))
        while True:
            try:
                stats = self.stats(rule_id)
            except KeyError:
                return _json({'error': f'no fault rule {rule_id!r}'}, 404)
            if stats.fired >= at_least or not await self._changes(deadline):
                return _json(stats.to_json())

    async def _control_wait_watches(self, body: Mapping[str, Any]) -> web.Response:
        match = RequestMatch.model_validate(body.get('match') or {})
        count = int(body.get('count', 1))
        deadline = time.monotonic() + float(body.get('timeoutSeconds', 0))
        while True:
            found = self.watches(match)
            if len(found) >= count or not await self._changes(deadline):
                return _json({'watches': [w.to_json() for w in found]})

    async def _changes(self, deadline: float) -> bool:
        """Wait for the next change before `deadline`; False when the time is up."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        poller: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._changed:
            self._pollers.add(poller)
        try:
            await asyncio.wait_for(poller, remaining)
        except TimeoutError:
            return False
        finally:
            with self._changed:
                self._pollers.discard(poller)
        return True


def _hang_up(request: web.Request, reset: bool = False) -> None:
    """Close the request's connection; `reset`: abortively (RST), as a crashed peer does."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    if reset:
        sock = transport.get_extra_info('socket')
        if sock is not None:
            # SO_LINGER on with a zero timeout makes close() send RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        transport.abort()
    else:
        transport.close()


def _server_error(effect: ServerError) -> ApiError:
    details: dict[str, Any] = {}
    if effect.code == 500:
        message = effect.message or 'injected fault'
        error = errors.internal(message)
        details = dict(error.details or {})
        reason, text = error.reason, error.message
    elif effect.code == 503:
        reason, text = 'ServiceUnavailable', effect.message or UNAVAILABLE_MESSAGE
    else:
        reason = 'Timeout'
        text = f'Timeout: {effect.message}' if effect.message else TIMEOUT_MESSAGE
    if effect.retry_after:
        details['retryAfterSeconds'] = effect.retry_after
    return ApiError(effect.code, reason, text, details or None)


def _status(error: ApiError) -> web.Response:
    response = _json(error.status(), error.code)
    retry_after = (error.details or {}).get('retryAfterSeconds')
    if retry_after:
        response.headers['Retry-After'] = str(retry_after)
    return response


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(',', ':')).encode(),
        content_type='application/json',
    )


async def _read_json(request: web.Request) -> Mapping[str, Any]:
    raw = await request.read()
    body = json.loads(raw) if raw else {}
    if not isinstance(body, dict):
        raise ValueError('the request body must be a JSON object')
    return body


# ---- the control API's client --------------------------------------------------------------


class FaultControl:
    """`Faults` of an emulator at `url`, over its HTTP control API (from any process)."""

    def __init__(self, url: str) -> None:
        if not url.startswith(('http://', 'https://')):
            raise ValueError(f'the emulator URL must be http(s)://, not {url!r}')
        self.url = url.rstrip('/') + CONTROL_PATH
        # No proxies from the environment: the emulator is on loopback.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __repr__(self) -> str:
        return f'FaultControl({self.url!r})'

    def _call(self, method: str, path: str = '', body: Any = None, *, timeout: float = 10.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        # The scheme was checked in __init__: no file: or custom schemes reach here.
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header(EXEMPT_HEADER, '1')
        if data is not None:
            request.add_header('Content-Type', 'application/json')
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                detail = json.loads(error.read() or b'{}').get('error', '')
            if error.code == 404:
                raise KeyError(detail) from None
            raise ValueError(f'fault control answered HTTP {error.code}: {detail}') from None

    def add(self, rule: FaultRule) -> str:
        return str(self._call('POST', '', _rule_json(rule))['id'])

    def remove(self, rule_id: str) -> bool:
        try:
            self._call('DELETE', f'/{rule_id}')
        except KeyError:
            return False
        return True

    def clear(self) -> int:
        return int(self._call('DELETE')['removed'])

    def stats(self, rule_id: str) -> RuleStats:
        return RuleStats.from_json(self._call('GET', f'/{rule_id}'))

    def rules(self) -> list[RuleStats]:
        return [RuleStats.from_json(r) for r in self._call('GET')['rules']]

    def wait_fired(
        self, rule_id: str, count: int = 1, *, timeout: float = _DEFAULT_WAIT
    ) -> RuleStats:
        body = self._call(
            'GET',
            f'/{rule_id}?firedAtLeast={count}&timeoutSeconds={timeout}',
            timeout=timeout + 10,
        )
        stats = RuleStats.from_json(body)
        if stats.fired < count:
            raise TimeoutError(
                f'fault rule {rule_id} fired {stats.fired} of {count} times within {timeout}s '
                f'({stats.matched} requests matched it)'
            )
        return stats

    def watches(self, match: RequestMatch | None = None) -> list[WatchInfo]:
        if match is None:
            return [WatchInfo(**w) for w in self._call('GET', '/watches')['watches']]
        return self.wait_watches(match, 0, timeout=0)

    def wait_watches(
        self, match: RequestMatch | None = None, count: int = 1, *, timeout: float = _DEFAULT_WAIT
    ) -> list[WatchInfo]:
        body = {
            'match': _rule_json(match or RequestMatch()),
            'count': count,
            'timeoutSeconds': timeout,
        }
        answer = self._call('POST', '/watches/wait', body, timeout=timeout + 10)
        found = [WatchInfo(**w) for w in answer['watches']]
        if len(found) < count:
            raise TimeoutError(f'{len(found)} of {count} watch streams open after {timeout}s')
        return found

    def drop_watches(self, match: RequestMatch | None = None, *, reset: bool = False) -> int:
        body = {'match': _rule_json(match or RequestMatch()), 'reset': reset}
        return int(self._call('POST', '/watches/drop', body)['dropped'])

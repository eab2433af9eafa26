"""Watch streams of the Kubernetes API emulator.

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

Reproduces https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes
and the watch cache (k8s.io/apiserver/pkg/storage/cacher):

- `resourceVersion` unset or "0": synthetic ADDED events for the current state, then live
  events; a specific version: every event after it, replayed from the table's event log, then
  live events, with nothing lost in between; a version older than the log's window: an ERROR
  event carrying a 410 Expired `Status` ("too old resource version"), as the real server does
  once a watch has started; a version the server has not reached: it waits up to 3 s, then an
  ERROR event with 504 "Too large resource version";
- label/field selectors: an object that stops matching arrives as DELETED (its previous state
  at the event's resourceVersion), one that starts matching as ADDED (cacher.go
  `convertToWatchEvent`);
- `allowWatchBookmarks=true`: BOOKMARK events carrying only kind, apiVersion and the current
  resourceVersion, sent periodically and before a timeout ends the stream;
- `sendInitialEvents=true` (streaming lists): the initial ADDED events end with a BOOKMARK
  annotated `k8s.io/initial-events-end: "true"`;
- `timeoutSeconds` ends the stream; without it the server picks a timeout between 30 and 60
  minutes (`--min-request-timeout`).

Events are newline-delimited JSON objects `{"type": ..., "object": ...}` on a chunked response.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any

from aiohttp import web

from . import errors, meta
from .errors import ApiError
from .operations import Api, ListOptions, Predicate, parse_rv
from .resources import ResourceType
from .store import ADDED, DELETED, MODIFIED, Event, Obj, Watcher

INITIAL_EVENTS_END = 'k8s.io/initial-events-end'
_CHUNK = 64 * 1024


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(',', ':')).encode()


def _line(kind: str, obj_json: bytes) -> bytes:
    return b'{"type":"' + kind.encode() + b'","object":' + obj_json + b'}\n'


def _validate(options: ListOptions) -> None:
    """`ValidateListOptions` for a watch (apimachinery meta/internalversion/validation)."""
    problems = []
    match = options.resource_version_match
    if options.send_initial_events is not None:
        if match != 'NotOlderThan':
            problems.append(
                meta.forbidden(
                    'resourceVersionMatch',
                    'sendInitialEvents requires setting resourceVersionMatch to NotOlderThan',
                )
            )
        if not options.allow_bookmarks:
            problems.append(
                meta.forbidden(
                    'allowWatchBookmarks',
                    'sendInitialEvents requires setting allowWatchBookmarks to true',
                )
            )
    elif match:
        problems.append(
            meta.forbidden(
                'resourceVersionMatch',
                'resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided',
            )
        )
    if match and match != 'NotOlderThan':
        problems.append(meta.not_supported('resourceVersionMatch', match, ['NotOlderThan']))
    if problems:
        raise errors.invalid('meta.k8s.io', 'ListOptions', '', problems)


def make_filter(
    rt: ResourceType, namespace: str | None, matches: Predicate | None
) -> Callable[[Event], tuple[str, bytes] | None]:
    """Turn a table event into what this watch sees (type and serialised object), or None."""
    converted = rt.converter is not None

    def render(obj: Obj, event: Event, *, reuse: bool) -> bytes:
        if reuse and not converted:
            return event.object_json()
        return _dumps(rt.external(obj))

    def accept(event: Event) -> tuple[str, bytes] | None:
        if namespace is not None and event.obj['metadata'].get('namespace', '') != namespace:
            return None
        if matches is None:
            return event.type, render(event.obj, event, reuse=True)
        now_passes = event.type != DELETED and matches(event.obj)
        before_passes = event.old is not None and matches(event.old)
        if now_passes and before_passes:
            return MODIFIED, render(event.obj, event, reuse=True)
        if now_passes:
            return ADDED, render(event.obj, event, reuse=event.type == ADDED)
        if before_passes:
            if event.type == DELETED:
                return DELETED, render(event.obj, event, reuse=True)
            # Stopped matching: the previous state, at this event's resourceVersion.
            assert event.old is not None
            previous = dict(event.old)
            previous['metadata'] = dict(event.old['metadata'], resourceVersion=str(event.rv))
            return DELETED, render(previous, event, reuse=False)
        return None

    return accept


class WatchServer:
    """Serves watch requests for one emulator."""

    def __init__(self, api: Api, *, bookmark_interval: float) -> None:
        self.api = api
        self.bookmark_interval = bookmark_interval

    def _bookmark(self, rt: ResourceType, *, initial_end: bool = False) -> bytes:
        metadata: dict[str, Any] = {'resourceVersion': str(self.api.store.rv)}
        if initial_end:
            metadata['annotations'] = {INITIAL_EVENTS_END: 'true'}
        return _line(
            'BOOKMARK',
            _dumps({'kind': rt.kind, 'apiVersion': rt.api_version, 'metadata': metadata}),
        )

    async def serve(
        self,
        request: web.Request,
        rt: ResourceType,
        namespace: str | None,
        options: ListOptions,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        _validate(options)
        store = self.api.store
        matches = self.api.predicate(rt, options)
        accept = make_filter(rt, namespace, matches)
        rv_text = options.resource_version or ''
        requested = parse_rv(rv_text) if rv_text else 0
        error: ApiError | None = None
        if requested > store.rv and not await store.wait_for_rv(requested, 3.0):
            error = errors.too_large_resource_version(requested, store.rv)
        initial: list[bytes] = []
        send_initial = options.send_initial_events
        table = store.table(rt.table)
        # From here to the watcher's registration nothing awaits: no event can slip between
        # the state we send and the live events.
        if error is None:
            if (not rv_text or rv_text == '0' or send_initial) and send_initial is not False:
                for obj in table.items(namespace):
                    if matches is None or matches(obj):
                        initial.append(_line(ADDED, _dumps(rt.external(obj))))
            elif rv_text and rv_text != '0':
                try:
                    for event in table.log.since(requested):
                        seen = accept(event)
                        if seen is not None:
                            initial.append(_line(*seen))
                except ApiError as exc:
                    error = exc
        watcher = Watcher(accept, store.watcher_queue_limit)
        if error is None:
            table.watchers.add(watcher)
        response = web.StreamResponse(status=200, headers=headers)
        try:
            response.content_type = 'application/json'
            response.enable_chunked_encoding()
            await response.prepare(request)
            if error is not None:
                await response.write(_line('ERROR', _dumps(error.status())))
                return response
            await self._write_batched(response, initial)
            if send_initial:
                await response.write(self._bookmark(rt, initial_end=True))
            await self._stream(response, rt, watcher, options)
            return response
        except ConnectionResetError:
            return response  # the client hung up: that ends a watch, it is no failure
        finally:
            table.watchers.discard(watcher)

    @staticmethod
    async def _write_batched(response: web.StreamResponse, lines: list[bytes]) -> None:
        chunk: list[bytes] = []
        size = 0
        for line in lines:
            chunk.append(line)
            size += len(line)
            if size >= _CHUNK:
                await response.write(b''.join(chunk))
                chunk, size = [], 0
        if chunk:
            await response.write(b''.join(chunk))

    async def _stream(
        self, response: web.StreamResponse, rt: ResourceType, watcher: Watcher, options: ListOptions
    ) -> None:
        loop = asyncio.get_running_loop()
        timeout = options.timeout_seconds
        if timeout is None:
            timeout = int(1800 * (1 + random.random()))  # noqa: S311 - not a secret
        deadline = loop.time() + timeout
        next_bookmark = loop.time() + self.bookmark_interval
        while True:
            now = loop.time()
            if now >= deadline:
                if options.allow_bookmarks:
                    await response.write(self._bookmark(rt))
                return
            wake = min(deadline, next_bookmark) if options.allow_bookmarks else deadline
            try:
                item = await asyncio.wait_for(watcher.queue.get(), max(wake - now, 0))
            except TimeoutError:
                if options.allow_bookmarks and loop.time() >= next_bookmark:
                    await response.write(self._bookmark(rt))
                    next_bookmark = loop.time() + self.bookmark_interval
                continue
            if item is None:
                return  # the watcher fell behind or the resource went away
            lines = [_line(*item)]
            while not watcher.queue.empty():
                more = watcher.queue.get_nowait()
                if more is None:
                    await response.write(b''.join(lines))
                    return
                lines.append(_line(*more))
            await response.write(b''.join(lines))

"""In-memory object store of the Kubernetes API emulator: objects, resourceVersions, event logs.

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

The store plays etcd plus the apiserver's watch cache
(https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes):

- one global, monotonic resourceVersion (etcd's revision); every committed write takes the next
  one and produces exactly one watch event; no-op writes are never committed;
- objects are indexed by (namespace, name) per storage table and by namespace, and by uid and
  by owner uid across tables, so no request scans more than what it asks for;
- each table keeps a bounded log of its recent events (like the per-resource watch cache) to
  replay a watch from a resourceVersion with no lost events, or to answer 410 Expired when the
  version fell out of the window; a list continue token rebuilds its snapshot from that log.

Stored objects are never mutated after they are committed: readers may serialise them directly.
Everything runs on one asyncio loop, so a write is atomic with respect to every reader.
"""

from __future__ import annotations

import asyncio
import bisect
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import errors

Obj = dict[str, Any]
Key = tuple[str, str, str]  # (storage table, namespace, name)

ADDED = 'ADDED'
MODIFIED = 'MODIFIED'
DELETED = 'DELETED'


@dataclass(slots=True)
class Event:
    """One committed change. `old` is the previous state (None for ADDED)."""

    type: str
    rv: int
    obj: Obj
    old: Obj | None
    _json: bytes | None = None

    def object_json(self) -> bytes:
        """The object serialised once and shared by every watcher."""
        if self._json is None:
            self._json = json.dumps(self.obj, separators=(',', ':')).encode()
        return self._json


class EventLog:
    """A bounded, resourceVersion-ordered window of one table's events."""

    def __init__(self, capacity: int, floor: int) -> None:
        self.capacity = capacity
        # Every event with rv > floor is still in the window.
        self.floor = floor
        self._events: list[Event] = []
        self._start = 0

    def append(self, event: Event) -> None:
        self._events.append(event)
        if len(self._events) - self._start > self.capacity:
            self.floor = self._events[self._start].rv
            self._start += 1
            # Compact once the dead prefix is as long as the window: amortised O(1).
            if self._start >= self.capacity:
                del self._events[: self._start]
                self._start = 0

    def since(self, rv: int) -> list[Event]:
        """Events with resourceVersion > rv; raises 410 Expired when some were evicted."""
        if rv < self.floor:
            raise errors.expired(f'too old resource version: {rv} ({self.floor})')
        index = bisect.bisect_right(self._events, rv, lo=self._start, key=lambda e: e.rv)
        return self._events[index:]


class Watcher:
    """A live watch: the events of one table it accepts, as (type, serialised object)."""

    def __init__(self, accept: Callable[[Event], tuple[str, bytes] | None], limit: int) -> None:
        self.accept = accept
        self.queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self.limit = limit
        self.overflowed = False

    def offer(self, event: Event) -> None:
        if self.overflowed:
            return
        accepted = self.accept(event)
        if accepted is None:
            return
        if self.queue.qsize() >= self.limit:
            # Like the watch cache with a stuck consumer: end this watch; the client re-watches
            # from the last resourceVersion it saw and loses nothing.
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(accepted)

    def close(self) -> None:
        self.queue.put_nowait(None)


@dataclass
class Table:
    """All objects of one storage resource (e.g. `core/secrets`, `example.com/widgets`)."""

    name: str
    log: EventLog
    by_ns: dict[str, dict[str, Obj]] = field(default_factory=dict)
    watchers: set[Watcher] = field(default_factory=set)
    count: int = 0

    def get(self, namespace: str, name: str) -> Obj | None:
        objects = self.by_ns.get(namespace)
        return None if objects is None else objects.get(name)

    def items(self, namespace: str | None = None) -> Iterator[Obj]:
        if namespace is not None:
            yield from self.by_ns.get(namespace, {}).values()
            return
        for objects in self.by_ns.values():
            yield from objects.values()


def _meta(obj: Obj) -> dict[str, Any]:
    meta: dict[str, Any] = obj['metadata']
    return meta


class Store:
    """The emulator's etcd + watch cache. All methods are synchronous and atomic."""

    def __init__(self, *, window: int = 10_000, watcher_queue_limit: int = 10_000) -> None:
        self.rv = 0
        self.window = window
        self.watcher_queue_limit = watcher_queue_limit
        self._tables: dict[str, Table] = {}
        self._uids: dict[str, Key] = {}
        self._dependents: dict[str, set[Key]] = {}
        self._listeners: list[Callable[[str, Event], None]] = []
        self._progress: asyncio.Event | None = None  # created only while someone waits

    # ---- tables -------------------------------------------------------------------------

    def table(self, name: str) -> Table:
        table = self._tables.get(name)
        if table is None:
            # A table created later (a CRD registered now) has had no event before this version.
            table = Table(name=name, log=EventLog(self.window, floor=self.rv))
            self._tables[name] = table
        return table

    def has_table(self, name: str) -> bool:
        return name in self._tables

    def drop_table(self, name: str) -> None:
        """Forget a storage resource (its CRD is gone): end its watches."""
        table = self._tables.pop(name, None)
        if table is None:
            return
        for watcher in list(table.watchers):
            watcher.close()
        for obj in table.items():
            self._unindex(name, obj)

    def tables(self) -> list[Table]:
        return list(self._tables.values())

    # ---- reads --------------------------------------------------------------------------

    def get(self, table: str, namespace: str, name: str) -> Obj | None:
        found = self._tables.get(table)
        return None if found is None else found.get(namespace, name)

    def items(self, table: str, namespace: str | None = None) -> Iterable[Obj]:
        found = self._tables.get(table)
        return () if found is None else found.items(namespace)

    def by_uid(self, uid: str) -> tuple[Key, Obj] | None:
        key = self._uids.get(uid)
        if key is None:
            return None
        obj = self.get(*key)
        return None if obj is None else (key, obj)

    def dependents(self, uid: str) -> list[tuple[Key, Obj]]:
        found = []
        for key in self._dependents.get(uid, ()):
            obj = self.get(*key)
            if obj is not None:
                found.append((key, obj))
        return found

    def namespace_tables(self, namespace: str) -> list[tuple[str, int]]:
        """(table, object count) of every table holding objects in `namespace`."""
        return [
            (t.name, len(t.by_ns[namespace]))
            for t in self._tables.values()
            if t.by_ns.get(namespace)
        ]

    # ---- writes -------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[str, Event], None]) -> None:
        """Called synchronously after each commit (controllers enqueue work from it)."""
        self._listeners.append(listener)

    def put(self, table_name: str, obj: Obj) -> Obj:
        """Create or replace an object; assigns the next resourceVersion. Returns it."""
        table = self.table(table_name)
        meta = _meta(obj)
        namespace, name = meta.get('namespace', ''), meta['name']
        old = table.get(namespace, name)
        self.rv += 1
        meta['resourceVersion'] = str(self.rv)
        table.by_ns.setdefault(namespace, {})[name] = obj
        if old is None:
            table.count += 1
        else:
            self._unindex(table_name, old)
        self._index(table_name, obj)
        self._commit(table, Event(ADDED if old is None else MODIFIED, self.rv, obj, old))
        return obj

    def remove(self, table_name: str, namespace: str, name: str) -> Obj:
        """Delete an object; the DELETED event carries it at the deletion's resourceVersion."""
        table = self.table(table_name)
        old = table.by_ns[namespace].pop(name)
        if not table.by_ns[namespace]:
            del table.by_ns[namespace]
        table.count -= 1
        self._unindex(table_name, old)
        self.rv += 1
        gone = dict(old)
        gone['metadata'] = dict(_meta(old), resourceVersion=str(self.rv))
        self._commit(table, Event(DELETED, self.rv, gone, old))
        return gone

    def _commit(self, table: Table, event: Event) -> None:
        table.log.append(event)
        for watcher in list(table.watchers):
            watcher.offer(event)
        for listener in self._listeners:
            listener(table.name, event)
        if self._progress is not None:
            self._progress.set()
            self._progress = None

    def _index(self, table: str, obj: Obj) -> None:
        meta = _meta(obj)
        key = (table, meta.get('namespace', ''), meta['name'])
        uid = meta.get('uid')
        if uid:
            self._uids[uid] = key
        for ref in meta.get('ownerReferences') or ():
            owner = ref.get('uid')
            if owner:
                self._dependents.setdefault(owner, set()).add(key)

    def _unindex(self, table: str, obj: Obj) -> None:
        meta = _meta(obj)
        key = (table, meta.get('namespace', ''), meta['name'])
        uid = meta.get('uid')
        if uid and self._uids.get(uid) == key:
            del self._uids[uid]
        for ref in meta.get('ownerReferences') or ():
            owner = ref.get('uid') or ''
            dependents = self._dependents.get(owner)
            if dependents is not None:
                dependents.discard(key)
                if not dependents:
                    del self._dependents[owner]

    # ---- consistency helpers ------------------------------------------------------------

    async def wait_for_rv(self, rv: int, within: float) -> bool:
        """Wait until the store has reached `rv` (the cacher waits 3 s for a future version)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self.rv < rv:
            if self._progress is None:
                self._progress = asyncio.Event()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._progress.wait(), remaining)
            except TimeoutError:
                return self.rv >= rv
        return True

    def snapshot(
        self, table_name: str, namespace: str | None, rv: int
    ) -> dict[tuple[str, str], Obj]:
        """The objects of a table as they were at `rv`, rebuilt from the event log.

        Costs the table's current size plus the events since `rv`; raises 410 Expired when
        the log no longer reaches back to `rv` (as etcd does after compaction).
        """
        table = self.table(table_name)
        state = {
            (_meta(o).get('namespace', ''), _meta(o)['name']): o for o in table.items(namespace)
        }
        for event in reversed(table.log.since(rv)):
            meta = _meta(event.obj)
            ns = meta.get('namespace', '')
            if namespace is not None and ns != namespace:
                continue
            key = (ns, meta['name'])
            if event.type == ADDED:
                state.pop(key, None)
            elif event.old is not None:
                state[key] = event.old
        return state

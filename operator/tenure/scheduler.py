"""Event-driven deadlines: reconcile an identity exactly when its next deadline comes.

One asyncio task and a heap, not a timer per object: between deadlines nothing wakes up, so the
cost does not grow with the number of identities (issue #5). Each identity has at most one
deadline; scheduling it again replaces the previous one. Callable from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(namespace, name) of a ServiceIdentity."""


class DeadlineScheduler:
    """Calls `fire(key)` at (or right after) the deadline last scheduled for `key`."""

    def __init__(
        self,
        fire: Callable[[Key], Awaitable[None]],
        *,
        clock: Callable[[], datetime],
        concurrency: int = 8,
    ) -> None:
        self._fire = fire
        self._clock = clock
        self._heap: list[tuple[datetime, int, Key]] = []
        self._current: dict[Key, tuple[datetime, int]] = {}
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._current)

    def schedule(self, key: Key, when: datetime | None) -> None:
        """Set (or clear, with None) the deadline of `key`. Thread-safe."""
        loop = self._loop
        if loop is not None and not _in_loop(loop):
            loop.call_soon_threadsafe(self._set, key, when)
        else:
            self._set(key, when)

    def next_deadline(self, key: Key) -> datetime | None:
        entry = self._current.get(key)
        return entry[0] if entry else None

    def _set(self, key: Key, when: datetime | None) -> None:
        if when is None:
            self._current.pop(key, None)
            return
        seq = next(self._seq)
        self._current[key] = (when, seq)
        heapq.heappush(self._heap, (when, seq, key))
        self._wake.set()

    async def run(self) -> None:
        """Run until cancelled."""
        self._loop = asyncio.get_running_loop()
        try:
            while True:
                self._wake.clear()
                delay = self.due_in()
                if delay is None or delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=delay)
                    continue
                when, seq, key = heapq.heappop(self._heap)
                if self._current.get(key) != (when, seq):
                    continue  # superseded by a later schedule() of the same key
                del self._current[key]
                await self._slots.acquire()
                task = asyncio.create_task(self._run_one(key))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
        finally:
            for task in self._running:
                task.cancel()

    def due_in(self) -> float | None:
        """Seconds until the earliest deadline (negative: overdue; None: none). Call on the
        scheduler's loop."""
        while self._heap:
            when, seq, key = self._heap[0]
            if self._current.get(key) == (when, seq):
                return (when - self._clock()).total_seconds()
            heapq.heappop(self._heap)  # stale entry
        return None

    async def _run_one(self, key: Key) -> None:
        try:
            await self._fire(key)
        except Exception:
            log.exception('deadline of %s/%s failed', *key)
        finally:
            self._slots.release()


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False

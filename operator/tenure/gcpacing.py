"""Full garbage collections between deadlines, not in the middle of them (issue #5).

CPython's cycle collector stops every thread while it walks the objects it tracks. The young
generations are small and quick, but a full (generation 2) collection walks everything the
operator holds: about 150 ms with 3,000 identities, several hundred with 10,000. The default
policy starts one whenever enough objects have survived, as likely as not during a burst of
expiries, and each one delays every revocation in flight by its whole length.

So the operator turns the automatic full collection off and runs it itself: when the next
deadline is at least `Pacing.quiet` seconds away and `Pacing.every` seconds have passed since the
last one; when deadlines never leave such a gap, after `Pacing.latest` seconds anyway. Memory stays
bounded meanwhile: reference counting frees everything that is not part of a cycle at once, and
the young generations still collect young cycles as usual; only cycles that outlived both wait.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

NEVER = 2**31 - 1
"""A generation-2 threshold CPython never reaches on its own."""


@dataclasses.dataclass(frozen=True)
class Pacing:
    quiet: float = 2.0
    """Seconds that must separate a full collection from the next deadline."""
    every: float = 60.0
    """Seconds between full collections when deadlines leave room for them."""
    latest: float = 600.0
    """Seconds after which a full collection runs whatever deadline is near."""
    check: float = 1.0
    """Seconds between two looks at the deadlines."""


def collect_now(since_last: float, next_deadline_in: float | None, pacing: Pacing) -> bool:
    """Whether to run a full collection now, `since_last` seconds after the previous one, with
    the next deadline `next_deadline_in` seconds away (None: none scheduled)."""
    if since_last < pacing.every:
        return False
    if since_last >= pacing.latest:
        return True
    return next_deadline_in is None or next_deadline_in >= pacing.quiet


class CollectorPacer:
    """Runs full collections as `collect_now` decides, from a task on the operator's loop."""

    def __init__(
        self,
        next_deadline_in: Callable[[], float | None],
        *,
        pacing: Pacing | None = None,
        clock: Callable[[], float] = time.monotonic,
        collect: Callable[[], object] = lambda: gc.collect(2),
    ) -> None:
        self.next_deadline_in = next_deadline_in
        self.pacing = pacing or Pacing()
        self.clock = clock
        self.collect = collect
        self.last = clock()
        self.collections = 0

    def tick(self) -> bool:
        """Collect if it is time; returns whether it did."""
        now = self.clock()
        if not collect_now(now - self.last, self.next_deadline_in(), self.pacing):
            return False
        started = time.perf_counter()
        self.collect()
        took = time.perf_counter() - started
        self.last, self.collections = self.clock(), self.collections + 1
        log.debug('full garbage collection took %.0f ms', took * 1000)
        return True

    async def run(self) -> None:
        """Take over full collections until cancelled (then CPython's policy is back)."""
        young, middle, old = gc.get_threshold()
        gc.set_threshold(young, middle, NEVER)
        try:
            while True:
                await asyncio.sleep(self.pacing.check)
                self.tick()
        finally:
            gc.set_threshold(young, middle, old)

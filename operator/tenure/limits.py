"""Bounded load on Kubernetes and Vault, with revocations first.

kopf has no client-side rate limit and starts one worker per object: a burst of thousands of
objects was seen to overrun an API server (issue #5). Tenure bounds its own load twice:

- `TokenBucket`: requests per second with a burst, per backend (Kubernetes, Vault), like
  client-go's default limiter (QPS/burst). Every request of the adapters takes a token.
- `PriorityGate`: at most N reconciles in flight; a revocation waiting for a slot goes before
  any provisioning waiting for one, so an expiry is not stuck behind a provisioning storm.

Urgent work (`urgent()`: a revocation, set by the runtime around its reconcile) takes its
tokens without waiting. It still spends them, so provisioning slows down while revocations run;
but a revocation never queues behind requests that provisioning reserved, which at 50 QPS would
add a fraction of a second to each of its ~30 requests and miss the expiry by seconds. Urgent
load stays bounded by the gate: at most N reconciles in flight, each sending one request at a
time.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator

_URGENT: contextvars.ContextVar[bool] = contextvars.ContextVar('tenure_urgent', default=False)


@contextlib.contextmanager
def urgent(flag: bool = True) -> Iterator[None]:
    """Requests sent inside this block (in this thread or task) are urgent when `flag`."""
    token = _URGENT.set(flag)
    try:
        yield
    finally:
        _URGENT.reset(token)


def is_urgent() -> bool:
    return _URGENT.get()


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up. Thread-safe; `acquire` blocks."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError('a rate limit needs a positive rate and a burst of at least 1')
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._last = clock()
        self._held_until = float('-inf')
        self._lock = threading.Lock()

    def hold(self, seconds: float) -> None:
        """The server answered 429 with Retry-After: no request at all (urgent ones included)
        until then. Whatever triggers the next attempt (a retry, a watch event, another
        identity), the server gets the pause it asked for."""
        with self._lock:
            self._held_until = max(self._held_until, self._clock() + seconds)

    def _reserve(self) -> float:
        """Take a token (possibly going into debt); return how long to wait for it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self) -> None:
        """Take a token, waiting for it unless the caller is urgent (see `urgent`)."""
        wait = self._reserve()
        if is_urgent():
            wait = 0.0
        with self._lock:
            wait = max(wait, self._held_until - self._clock())
        if wait > 0:
            self._sleep(wait)


class PriorityGate:
    """At most `capacity` holders; urgent callers waiting are served before normal ones."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError('capacity must be at least 1')
        self._cv = threading.Condition()
        self._free = capacity
        self._urgent_waiting = 0

    @property
    def urgent_waiting(self) -> int:
        """How many urgent callers wait for a slot right now."""
        with self._cv:
            return self._urgent_waiting

    @contextlib.contextmanager
    def slot(self, *, urgent: bool) -> Iterator[None]:
        with self._cv:
            if urgent:
                self._urgent_waiting += 1
            try:
                while self._free == 0 or (not urgent and self._urgent_waiting > 0):
                    self._cv.wait()
            finally:
                if urgent:
                    self._urgent_waiting -= 1
            self._free -= 1
        try:
            yield
        finally:
            with self._cv:
                self._free += 1
                self._cv.notify_all()

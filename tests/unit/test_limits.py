"""Bounded load: a request rate with a burst, and revocations before provisioning."""

from __future__ import annotations

import threading

import pytest

from tenure.limits import PriorityGate, TokenBucket, is_urgent, urgent


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_a_burst_passes_at_once_then_requests_are_spaced_by_the_rate() -> None:
    time = FakeTime()
    bucket = TokenBucket(50, 100, clock=time.clock, sleep=time.sleep)
    for _ in range(100):
        bucket.acquire()
    assert time.slept == []
    for _ in range(3):
        bucket.acquire()
    assert time.slept == [0.02, 0.02, 0.02]


def test_tokens_refill_while_idle_but_never_beyond_the_burst() -> None:
    time = FakeTime()
    bucket = TokenBucket(10, 5, clock=time.clock, sleep=time.sleep)
    for _ in range(5):
        bucket.acquire()
    time.now += 60  # a long idle minute saves up only `burst` tokens
    for _ in range(5):
        bucket.acquire()
    assert time.slept == []
    bucket.acquire()
    assert time.slept == [0.1]


@pytest.mark.parametrize(('rate', 'burst'), [(0, 1), (1, 0)])
def test_a_useless_limit_is_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match='positive rate'):
        TokenBucket(rate, burst)


def test_a_waiting_revocation_goes_before_waiting_provisioning() -> None:
    gate = PriorityGate(1)
    order: list[str] = []
    started = {name: threading.Event() for name in ('provision', 'revoke')}

    def worker(name: str, urgent: bool) -> None:
        started[name].set()
        with gate.slot(urgent=urgent):
            order.append(name)

    with gate.slot(urgent=False):  # the only slot is busy
        provision = threading.Thread(target=worker, args=('provision', False))
        provision.start()
        started['provision'].wait(5)
        revoke = threading.Thread(target=worker, args=('revoke', True))
        revoke.start()
        started['revoke'].wait(5)
        # Both wait for the slot now (a waiting thread cannot be observed more directly).
        while gate.urgent_waiting == 0:
            threading.Event().wait(0.001)
    provision.join(5)
    revoke.join(5)
    assert order == ['revoke', 'provision']


def test_a_revocation_takes_its_tokens_at_once_and_provisioning_pays_for_them() -> None:
    time = FakeTime()
    bucket = TokenBucket(10, 2, clock=time.clock, sleep=time.sleep)
    bucket.acquire()
    bucket.acquire()  # the burst is spent
    with urgent():
        for _ in range(3):
            bucket.acquire()
    assert time.slept == []  # urgent requests never wait...
    bucket.acquire()
    # ...but they were counted: the next normal request waits for 3 + 1 tokens at 10/s.
    assert time.slept == [0.4]


def test_urgency_ends_with_its_block_and_does_not_leak_to_other_threads() -> None:
    seen: list[bool] = []
    with urgent():
        other = threading.Thread(target=lambda: seen.append(is_urgent()))
        other.start()
        other.join(5)
        seen.append(is_urgent())
    seen.append(is_urgent())
    assert seen == [False, True, False]


def test_a_retry_after_holds_every_request_even_urgent_ones() -> None:
    time = FakeTime()
    bucket = TokenBucket(50, 100, clock=time.clock, sleep=time.sleep)
    bucket.hold(2.0)
    bucket.acquire()
    assert time.slept == [2.0]
    with urgent():
        bucket.hold(1.5)
        bucket.acquire()
    assert time.slept == [2.0, 1.5], 'the server asked everyone to wait'
    bucket.acquire()
    assert time.slept == [2.0, 1.5], 'once over, the burst is there again'

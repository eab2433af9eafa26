"""Deadlines fire once, in order, at their time; rescheduling replaces; clearing cancels."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import pytest

from tenure.scheduler import DeadlineScheduler, Key


class Recorder:
    def __init__(self) -> None:
        self.fired: list[Key] = []
        self.event = asyncio.Event()
        self.expected = 0

    async def __call__(self, key: Key) -> None:
        self.fired.append(key)
        if len(self.fired) >= self.expected:
            self.event.set()


def now() -> datetime:
    return datetime.now(UTC)


@pytest.mark.asyncio
async def test_deadlines_fire_in_time_order_and_only_the_latest_schedule_counts() -> None:
    recorder = Recorder()
    recorder.expected = 2
    scheduler = DeadlineScheduler(recorder, clock=now)
    task = asyncio.create_task(scheduler.run())
    try:
        start = now()
        scheduler.schedule(('ns', 'late'), start + timedelta(milliseconds=60))
        scheduler.schedule(('ns', 'early'), start + timedelta(milliseconds=20))
        scheduler.schedule(('ns', 'moved'), start + timedelta(milliseconds=10))
        scheduler.schedule(('ns', 'moved'), None)  # cleared: never fires
        await asyncio.wait_for(recorder.event.wait(), timeout=5)
        assert recorder.fired == [('ns', 'early'), ('ns', 'late')]
        assert len(scheduler) == 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.asyncio
async def test_a_deadline_already_past_fires_at_once_and_threads_can_schedule() -> None:
    recorder = Recorder()
    recorder.expected = 1
    scheduler = DeadlineScheduler(recorder, clock=now)
    task = asyncio.create_task(scheduler.run())
    try:
        await asyncio.sleep(0)  # let the scheduler bind to this loop
        worker = threading.Thread(
            target=scheduler.schedule, args=(('ns', 'overdue'), now() - timedelta(days=1))
        )
        worker.start()
        worker.join()
        await asyncio.wait_for(recorder.event.wait(), timeout=5)
        assert recorder.fired == [('ns', 'overdue')]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.asyncio
async def test_a_failing_deadline_does_not_stop_the_others() -> None:
    fired: list[Key] = []
    done = asyncio.Event()

    async def fire(key: Key) -> None:
        fired.append(key)
        if key[1] == 'broken':
            raise RuntimeError('boom')
        done.set()

    scheduler = DeadlineScheduler(fire, clock=now)
    task = asyncio.create_task(scheduler.run())
    try:
        scheduler.schedule(('ns', 'broken'), now())
        scheduler.schedule(('ns', 'fine'), now() + timedelta(milliseconds=10))
        await asyncio.wait_for(done.wait(), timeout=5)
        assert fired == [('ns', 'broken'), ('ns', 'fine')]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

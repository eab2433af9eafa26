"""Full garbage collections wait for a gap between deadlines (tenure.gcpacing)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from tenure.gcpacing import NEVER, CollectorPacer, Pacing, collect_now

PACING = Pacing(quiet=2.0, every=60.0, latest=600.0)


@pytest.mark.parametrize(
    ('since_last', 'next_deadline_in', 'collect'),
    [
        (30.0, None, False),  # too soon after the last one, even with nothing scheduled
        (61.0, None, True),  # nothing scheduled
        (61.0, 5.0, True),  # the next deadline is far enough
        (61.0, 2.0, True),
        (61.0, 1.9, False),  # a revocation is about to start: wait for a gap
        (61.0, -0.5, False),  # one is overdue and running
        (599.0, 0.1, False),
        (600.0, 0.1, True),  # deadlines never left a gap: collect anyway
    ],
)
def test_a_full_collection_runs_only_in_a_gap_between_deadlines_or_when_overdue(
    since_last: float, next_deadline_in: float | None, collect: bool
) -> None:
    assert collect_now(since_last, next_deadline_in, PACING) is collect


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_pacer_collects_once_per_gap_and_counts_from_the_collection() -> None:
    clock, collected = Clock(), []
    deadline: list[float | None] = [0.5]
    pacer = CollectorPacer(
        lambda: deadline[0], pacing=PACING, clock=clock, collect=lambda: collected.append(1)
    )
    clock.now += 61
    assert pacer.tick() is False, 'a deadline is half a second away'
    deadline[0] = None
    assert pacer.tick() is True
    assert pacer.tick() is False, 'not again right after'
    clock.now += 59
    assert pacer.tick() is False
    clock.now += 1
    assert pacer.tick() is True
    assert (len(collected), pacer.collections) == (2, 2)


@pytest.mark.asyncio
async def test_running_the_pacer_turns_the_automatic_full_collection_off_until_it_stops() -> None:
    before = gc.get_threshold()
    pacer = CollectorPacer(lambda: None, pacing=Pacing(check=3600.0))
    task = asyncio.create_task(pacer.run())
    await asyncio.sleep(0)  # let it start
    assert gc.get_threshold() == (before[0], before[1], NEVER)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gc.get_threshold() == before

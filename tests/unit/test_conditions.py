"""Conditions follow Kubernetes API conventions: lastTransitionTime moves only on a status flip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tenure.api.v1alpha1 import ConditionStatus
from tenure.domain.conditions import find_condition, set_condition

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def test_a_new_condition_starts_its_transition_clock_now() -> None:
    conditions = set_condition(
        [],
        type='Ready',
        status=ConditionStatus.TRUE,
        reason='Active',
        message='ok',
        generation=1,
        now=T0,
    )
    (ready,) = conditions
    assert (ready.status, ready.last_transition_time, ready.observed_generation) == (
        ConditionStatus.TRUE,
        T0,
        1,
    )


def test_rewriting_the_same_status_keeps_the_transition_time() -> None:
    first = set_condition(
        [],
        type='Ready',
        status=ConditionStatus.TRUE,
        reason='Active',
        message='ok',
        generation=1,
        now=T0,
    )
    later = set_condition(
        first,
        type='Ready',
        status=ConditionStatus.TRUE,
        reason='Active',
        message='still ok',
        generation=2,
        now=T0 + timedelta(hours=1),
    )
    ready = find_condition(later, 'Ready')
    assert ready is not None
    assert ready.last_transition_time == T0
    assert (ready.message, ready.observed_generation) == ('still ok', 2)


def test_a_flip_moves_the_transition_time_and_keeps_other_conditions_in_place() -> None:
    conditions = set_condition(
        [],
        type='Valid',
        status=ConditionStatus.TRUE,
        reason='SpecValid',
        message='',
        generation=1,
        now=T0,
    )
    conditions = set_condition(
        conditions,
        type='Ready',
        status=ConditionStatus.TRUE,
        reason='Active',
        message='',
        generation=1,
        now=T0,
    )
    flipped = set_condition(
        conditions,
        type='Valid',
        status=ConditionStatus.FALSE,
        reason='InvalidSpec',
        message='x',
        generation=2,
        now=T0 + timedelta(minutes=3),
    )
    assert [c.type for c in flipped] == ['Valid', 'Ready']
    assert flipped[0].last_transition_time == T0 + timedelta(minutes=3)
    assert flipped[1] == conditions[1]

"""Exactly one replica acts: the Lease decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tenure.domain.leadership import LeaseState, Take, Wait, lease_decision

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DURATION = timedelta(seconds=15)


@pytest.mark.parametrize(
    ('lease', 'expected'),
    [
        pytest.param(None, Take(0), id='no-lease-yet'),
        pytest.param(LeaseState(None, None, DURATION, 3), Take(4), id='released-lease'),
        pytest.param(
            LeaseState('me', NOW - timedelta(seconds=5), DURATION, 2), Take(2), id='renew-own'
        ),
        pytest.param(
            LeaseState('other', NOW - timedelta(seconds=5), DURATION, 2),
            Wait('other', NOW + timedelta(seconds=10)),
            id='someone-else-leads',
        ),
        pytest.param(
            LeaseState('other', NOW - timedelta(seconds=15), DURATION, 2),
            Take(3),
            id='expired-at-the-instant',
        ),
        pytest.param(
            LeaseState('other', NOW - timedelta(minutes=5), DURATION, 7), Take(8), id='leader-died'
        ),
    ],
)
def test_who_leads(lease: LeaseState | None, expected: object) -> None:
    assert lease_decision(lease, 'me', NOW) == expected

"""status.history: the durable record of every transition (issue #6), as users read it back."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest

from tenure.api.v1alpha1 import (
    Condition,
    ConditionStatus,
    HistoryEntry,
    Phase,
    ServiceIdentityStatus,
)
from tenure.domain.guardrails import Policy
from tenure.domain.history import HISTORY_LIMIT, MESSAGE_LIMIT, with_history
from tenure.reconcile import ReconcileFailed
from tests.unit.conftest import VALID
from tests.unit.test_reconcile import T0, Harness


def reasons(harness: Harness) -> list[tuple[str | None, str]]:
    return [(e.get('phase'), e['reason']) for e in harness.status.get('history', [])]


@pytest.fixture
def harness() -> Harness:
    return Harness(copy.deepcopy(VALID))


def test_the_whole_life_of_an_identity_is_recorded_in_order(harness: Harness) -> None:
    harness.run()
    harness.now += timedelta(hours=2)
    harness.edit('spec.owner', {'team': 'ledger', 'contact': 'ledger@example.com'})
    harness.run()
    harness.reconciler.policy = lambda: Policy(allowed_cluster_roles=frozenset({'view'}))
    harness.edit('spec.kubernetes.clusterRoles', ['view'])
    harness.run()
    harness.body['metadata']['annotations'] = {'tenure.dev/rotate': 'quarterly'}
    harness.run()
    harness.body['metadata']['annotations'] = {'tenure.dev/revoke': 'laptop stolen'}
    harness.run()
    assert reasons(harness) == [
        ('Active', 'Active'),
        ('Active', 'OwnerChanged'),
        ('Active', 'SecretRotated'),
        ('Active', 'ScopeChangeNotApproved'),
        ('Active', 'SecretRotated'),
        ('Active', 'Revoking'),
        ('Revoked', 'Revoked'),
    ]
    history = harness.status['history']
    assert history[1]['message'] == (
        'owner changed from payments-platform (payments-oncall@example.com) to ledger '
        '(ledger@example.com)'
    )
    assert history[1]['generation'] == 2
    assert history[5]['message'] == 'revocation requested: Emergency'
    assert history[0]['at'] == '2026-12-01T12:00:00Z'


def test_reconciles_that_change_nothing_record_nothing_and_write_nothing(
    harness: Harness,
) -> None:
    harness.run()
    patches = len(harness.kube.status_patches)
    for _ in range(3):
        harness.now += timedelta(minutes=10)
        harness.run()
    assert len(harness.status['history']) == 1
    assert len(harness.kube.status_patches) == patches


def test_a_denial_is_recorded_once_with_its_rule(harness: Harness) -> None:
    harness.edit(
        'spec.kubernetes.rules', [{'apiGroups': [''], 'resources': ['*'], 'verbs': ['get']}]
    )
    harness.run()
    harness.run()
    assert reasons(harness) == [('Denied', 'WildcardNotAllowed')]


def test_a_pending_ticket_then_its_approval_are_two_entries(harness: Harness) -> None:
    harness.edit('spec.ticket.state', 'Requested')
    harness.run()
    harness.edit('spec.ticket.state', 'Approved')
    harness.run()
    assert reasons(harness) == [('Pending', 'AwaitingApproval'), ('Active', 'Active')]


def test_a_failing_revocation_is_recorded_once_however_often_it_retries(
    harness: Harness,
) -> None:
    harness.run()
    harness.edit('spec.ticket.state', 'Cancelled')
    harness.vault.down = True
    for _ in range(3):
        with pytest.raises(ReconcileFailed):
            harness.run()
    harness.vault.down = False
    harness.run()
    assert reasons(harness) == [
        ('Active', 'Active'),
        ('Active', 'Revoking'),
        ('Active', 'RevocationFailed'),
        ('Revoked', 'Revoked'),
    ]


def test_an_edit_of_a_tombstone_is_recorded_once(harness: Harness) -> None:
    harness.run()
    harness.now = harness.now.replace(year=2027, month=3)
    harness.run()
    harness.edit('spec.ticket.id', 'CHG0099999')
    harness.run()
    harness.edit('spec.ticket.id', 'CHG0099998')
    harness.run()
    assert reasons(harness) == [
        ('Active', 'Active'),
        ('Active', 'Revoking'),
        ('Revoked', 'Revoked'),
        ('Revoked', 'RevokedIsTerminal'),
    ]


def entry(index: int) -> HistoryEntry:
    return HistoryEntry(at=T0, phase=Phase.ACTIVE, reason='Active', message=f'#{index}')


def test_the_history_keeps_the_most_recent_entries_only() -> None:
    before = ServiceIdentityStatus(
        phase=Phase.PENDING, history=[entry(i) for i in range(HISTORY_LIMIT)]
    )
    after = before.model_copy(update={'phase': Phase.ACTIVE})
    recorded = with_history(before, after, at=T0, generation=2)
    assert len(recorded.history) == HISTORY_LIMIT
    assert recorded.history[0].message == '#1', 'the oldest entry goes first'
    assert recorded.history[-1].phase is Phase.ACTIVE


def test_a_long_message_is_truncated_to_fit_the_api() -> None:
    before = ServiceIdentityStatus()
    after = ServiceIdentityStatus(
        phase=Phase.DENIED,
        conditions=[
            Condition(
                type='Valid',
                status=ConditionStatus.FALSE,
                reason='InvalidSpec',
                message='x' * 5000,
                last_transition_time=T0,
            )
        ],
    )
    (recorded,) = with_history(before, after, at=T0, generation=1).history
    assert len(recorded.message) == MESSAGE_LIMIT
    assert recorded.message.endswith(' ...')


def test_an_unchanged_status_is_returned_as_it_is() -> None:
    status = ServiceIdentityStatus(phase=Phase.ACTIVE, history=[entry(0)])
    assert with_history(status, status, at=T0, generation=1) is status

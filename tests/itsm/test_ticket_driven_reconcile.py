"""The reconcile with a TicketSource: the ITSM's observation drives the lifecycle (issue #7).

The operator's own pieces (reconciler, domain) against fakes of Kubernetes and Vault; the
observation is what the poller wrote into status.ticket.
"""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest

from tenure.api.v1alpha1 import TicketSourceSpec
from tenure.domain.tickets import SourceView
from tests.unit.conftest import VALID
from tests.unit.test_reconcile import T0, Harness

SPEC = TicketSourceSpec.model_validate(
    {
        'type': 'servicenow',
        'url': 'https://example.service-now.com',
        'credentialsSecretRef': {'name': 'snow', 'namespace': 'tenure-system'},
    }
)


class Source:
    """The TicketSource `servicenow` as the poller reports it."""

    def __init__(self) -> None:
        self.view: SourceView | None = SourceView('servicenow', SPEC)

    def __call__(self, system: str) -> SourceView | None:
        return self.view if self.view and system == self.view.name else None

    def down(self, error: str = 'could not read CHG0031337: server error (503)') -> None:
        assert self.view is not None
        self.view = SourceView(self.view.name, self.view.spec, error)

    def verifying(self) -> None:
        assert self.view is not None
        self.view = SourceView(
            self.view.name, SPEC.model_copy(update={'verify_approval': True}), self.view.error
        )


def observe(
    h: Harness, state: str, *, ticket: str = 'CHG0031337', approvers: tuple[str, ...] = ()
) -> None:
    """What the poller writes into status.ticket."""
    h.body.setdefault('status', {})['ticket'] = {
        'id': ticket,
        'source': 'servicenow',
        'observedState': state,
        'rawState': f'state for {state}',
        'observedAt': '2026-12-01T11:59:00Z',
        'approvers': list(approvers),
    }


@pytest.fixture
def source() -> Source:
    return Source()


@pytest.fixture
def h(source: Source) -> Harness:
    harness = Harness(copy.deepcopy(VALID))
    harness.reconciler.ticket_sources = source
    return harness


def activate(h: Harness) -> None:
    observe(h, 'Approved')
    h.run()
    assert h.status['phase'] == 'Active'


@pytest.mark.parametrize(
    ('observed', 'reason'),
    [
        pytest.param('Cancelled', 'TicketCancelled', id='cancelled-in-servicenow'),
        pytest.param('Rejected', 'TicketRejected', id='rejected-in-servicenow'),
        pytest.param('Closed', 'TicketClosed', id='closed-in-servicenow-onclose-revoke'),
    ],
)
def test_the_itsm_ends_access_the_manifest_still_grants(
    h: Harness, observed: str, reason: str
) -> None:
    activate(h)
    observe(h, observed)
    h.run()
    assert h.status['phase'] == 'Revoked'
    assert h.status['revocation']['reason'] == reason
    assert h.body['spec']['ticket']['state'] == 'Approved', 'spec is never written'


def test_an_observation_of_another_ticket_is_ignored(h: Harness) -> None:
    activate(h)
    observe(h, 'Cancelled', ticket='CHG0000001')
    h.run()
    assert h.status['phase'] == 'Active'


def test_a_new_grant_waits_until_its_ticket_was_read(h: Harness) -> None:
    h.run()
    assert h.status['phase'] == 'Pending'
    assert h.condition('Ready')['status'] == 'Unknown'
    assert h.condition('Ready')['reason'] == 'TicketNotObserved'
    assert 'create:' not in ' '.join(h.calls)
    observe(h, 'Approved')
    h.run()
    assert h.status['phase'] == 'Active'


def test_a_new_grant_waits_while_the_itsm_is_down(h: Harness, source: Source) -> None:
    source.down()
    h.run()
    ready = h.condition('Ready')
    assert (h.status['phase'], ready['status'], ready['reason']) == (
        'Pending',
        'Unknown',
        'TicketSourceUnavailable',
    )
    assert 'server error (503)' in ready['message']
    since = ready['lastTransitionTime']
    h.now = T0 + timedelta(minutes=1)
    h.run()
    assert h.condition('Ready')['lastTransitionTime'] == since, 'no flip while still unknown'


def test_an_outage_revokes_nothing_that_is_active(h: Harness, source: Source) -> None:
    activate(h)
    source.down()
    outcome = h.run()
    assert h.status['phase'] == 'Active'
    assert outcome.next_deadline is not None


def test_an_outage_does_not_delay_expiry(h: Harness, source: Source) -> None:
    activate(h)
    source.down()
    h.now = T0 + timedelta(days=400)
    h.run()
    assert h.status['phase'] == 'Revoked'
    assert h.status['revocation']['reason'] == 'Expired'


def test_approval_by_the_wrong_person_is_denied(h: Harness, source: Source) -> None:
    source.verifying()
    observe(h, 'Approved', approvers=('mallory@example.com',))
    h.run()
    assert h.status['phase'] == 'Denied'
    valid = h.condition('Valid')
    assert valid['reason'] == 'ApprovalNotVerified'
    assert 'bob@example.com' in valid['message']
    assert 'mallory@example.com' in valid['message']
    observe(h, 'Approved', approvers=('mallory@example.com', 'bob@example.com'))
    h.run()
    assert h.status['phase'] == 'Active'


def test_without_a_ticket_source_the_manifest_is_all_there_is(h: Harness, source: Source) -> None:
    source.view = None
    h.run()
    assert h.status['phase'] == 'Active'

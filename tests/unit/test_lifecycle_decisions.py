"""Every way access starts, changes and ends, decided without touching a cluster (issue #3)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tenure.api.v1alpha1 import (
    ApprovalRecord,
    Owner,
    Phase,
    RevocationReason,
    RevocationStatus,
    ServiceIdentity,
    ServiceIdentityStatus,
)
from tenure.domain.lifecycle import Converge, Deny, Hold, Keep, Observed, Revoke, Wait, decide
from tenure.domain.reasons import Reason
from tenure.domain.scope import scope_of
from tests.unit.conftest import DELETE

Build = Callable[..., dict[str, Any]]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
APPROVED_AT = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
EXPIRES_AT = datetime(2027, 2, 15, tzinfo=UTC)


def observe(
    doc: dict[str, Any],
    status: ServiceIdentityStatus | None = None,
    *,
    annotations: dict[str, str] | None = None,
    deleting: bool = False,
) -> Observed:
    si = ServiceIdentity.model_validate(doc)
    return Observed(
        spec=si.spec,
        spec_error=None,
        status=status or ServiceIdentityStatus(),
        annotations=annotations or {},
        generation=1,
        deleting=deleting,
    )


def active_status(doc: dict[str, Any], **changes: Any) -> ServiceIdentityStatus:
    """The status an identity has once provisioned from `doc` as it stands."""
    spec = ServiceIdentity.model_validate(doc).spec
    status = ServiceIdentityStatus(
        phase=Phase.ACTIVE,
        approval=ApprovalRecord(
            ticket_id=spec.ticket.id, approver=spec.ticket.approver, approved_at=APPROVED_AT
        ),
        applied_scope=scope_of(spec),
        owner=spec.owner,
        expires_at=spec.expires_at,
    )
    return status.model_copy(update=changes)


def test_an_approved_ticket_provisions_the_requested_scope(manifest: Build) -> None:
    decision = decide(observe(manifest()), NOW)
    assert isinstance(decision, Converge)
    assert decision.verdict.valid
    assert decision.expires_at == EXPIRES_AT
    assert decision.scope.rules[0].resources == ['configmaps']
    assert decision.approval.ticket_id == 'CHG0031337'
    assert not decision.rotate_secret


def test_a_requested_ticket_waits_and_creates_nothing(manifest: Build) -> None:
    doc = manifest({'spec.ticket.state': 'Requested', 'spec.ticket.approvedAt': DELETE})
    assert isinstance(decide(observe(doc), NOW), Wait)


def test_an_invalid_spec_is_denied_before_anything_exists() -> None:
    observed = Observed(None, 'spec.ticket.id: bad', ServiceIdentityStatus(), {}, 1, False)
    decision = decide(observed, NOW)
    assert decision == Deny(Reason.INVALID_SPEC, 'the spec is invalid: spec.ticket.id: bad')


def test_an_invalid_spec_on_an_active_identity_holds_what_is_in_force(manifest: Build) -> None:
    status = active_status(manifest())
    observed = Observed(None, 'spec.ticket.id: bad', status, {}, 2, False)
    assert isinstance(decide(observed, NOW), Hold)


def test_an_invalid_spec_cannot_keep_an_identity_alive_past_its_expiry(manifest: Build) -> None:
    status = active_status(manifest())
    observed = Observed(None, 'spec.ticket.id: bad', status, {}, 2, False)
    decision = decide(observed, EXPIRES_AT)
    assert decision == Revoke(RevocationReason.EXPIRED, 'access expired at 2027-02-15T00:00:00Z')


@pytest.mark.parametrize(
    ('changes', 'annotations', 'deleting', 'now', 'reason'),
    [
        pytest.param({}, {}, False, EXPIRES_AT, RevocationReason.EXPIRED, id='expiry-instant'),
        pytest.param(
            {},
            {},
            False,
            EXPIRES_AT + timedelta(days=3),
            RevocationReason.EXPIRED,
            id='after-expiry',
        ),
        pytest.param(
            {'spec.ticket.state': 'Closed'},
            {},
            False,
            NOW,
            RevocationReason.TICKET_CLOSED,
            id='close-revokes-by-default',
        ),
        pytest.param(
            {'spec.ticket.state': 'Cancelled', 'spec.ticket.onClose': 'Retain'},
            {},
            False,
            NOW,
            RevocationReason.TICKET_CANCELLED,
            id='cancel-always-revokes',
        ),
        pytest.param(
            {'spec.ticket.state': 'Rejected', 'spec.ticket.onClose': 'Rotate'},
            {},
            False,
            NOW,
            RevocationReason.TICKET_REJECTED,
            id='reject-always-revokes',
        ),
        pytest.param(
            {},
            {'tenure.dev/revoke': 'laptop stolen'},
            False,
            NOW,
            RevocationReason.EMERGENCY,
            id='emergency-brake',
        ),
        pytest.param({}, {}, True, NOW, RevocationReason.DELETED, id='deleted'),
        pytest.param(
            {'spec.ticket.state': 'Cancelled'},
            {'tenure.dev/revoke': 'x'},
            False,
            EXPIRES_AT,
            RevocationReason.EMERGENCY,
            id='emergency-wins-over-everything',
        ),
        pytest.param(
            {'spec.ticket.state': 'Closed'},
            {},
            True,
            EXPIRES_AT,
            RevocationReason.DELETED,
            id='deletion-wins-over-expiry-and-closure',
        ),
        pytest.param(
            {'spec.ticket.state': 'Closed'},
            {},
            False,
            EXPIRES_AT,
            RevocationReason.EXPIRED,
            id='expiry-wins-over-closure',
        ),
    ],
)
def test_every_way_access_ends(
    manifest: Build,
    changes: dict[str, Any],
    annotations: dict[str, str],
    deleting: bool,
    now: datetime,
    reason: RevocationReason,
) -> None:
    doc = manifest(changes)
    status = active_status(manifest())
    decision = decide(observe(doc, status, annotations=annotations, deleting=deleting), now)
    assert isinstance(decision, Revoke)
    assert decision.reason is reason


def test_an_empty_revoke_annotation_is_not_an_emergency(manifest: Build) -> None:
    decision = decide(observe(manifest(), annotations={'tenure.dev/revoke': ' '}), NOW)
    assert isinstance(decision, Converge)


def test_closure_with_retain_keeps_the_identity_until_it_expires(manifest: Build) -> None:
    doc = manifest({'spec.ticket.state': 'Closed', 'spec.ticket.onClose': 'Retain'})
    decision = decide(observe(doc, active_status(manifest())), NOW)
    assert isinstance(decision, Converge)
    assert not decision.rotate_secret


def test_closure_with_rotate_rotates_once(manifest: Build) -> None:
    doc = manifest({'spec.ticket.state': 'Closed', 'spec.ticket.onClose': 'Rotate'})
    first = decide(observe(doc, active_status(manifest())), NOW)
    assert isinstance(first, Converge)
    assert first.rotate_for_closure
    assert first.revoke_issued_tokens
    handled = active_status(manifest(), closure_handled_at=NOW)
    again = decide(observe(doc, handled), NOW + timedelta(minutes=5))
    assert isinstance(again, Converge)
    assert not again.rotate_secret


def test_a_revocation_once_decided_resumes_even_if_the_spec_changes(manifest: Build) -> None:
    status = active_status(manifest()).model_copy(
        update={
            'revocation': RevocationStatus(
                reason=RevocationReason.TICKET_CANCELLED, requested_at=NOW
            )
        }
    )
    decision = decide(observe(manifest(), status), NOW)
    assert isinstance(decision, Revoke)
    assert decision.reason is RevocationReason.TICKET_CANCELLED


def test_a_revoked_identity_is_a_tombstone_whatever_the_spec_says(manifest: Build) -> None:
    status = ServiceIdentityStatus(
        phase=Phase.REVOKED,
        revocation=RevocationStatus(
            reason=RevocationReason.EXPIRED, requested_at=NOW, completed_at=NOW, verified=True
        ),
    )
    new_approval = manifest(
        {'spec.ticket.id': 'CHG9999999', 'spec.expiresAt': '2027-06-01T00:00:00Z'}
    )
    assert isinstance(decide(observe(new_approval, status), NOW), Keep)
    assert isinstance(decide(observe(new_approval, status, deleting=True), NOW), Keep)


@pytest.mark.parametrize(
    ('changes', 'widened'),
    [
        pytest.param({'spec.kubernetes.rules': []}, False, id='dropping-rules-narrows'),
        pytest.param(
            {
                'spec.kubernetes.rules': [
                    {
                        'apiGroups': [''],
                        'resources': ['configmaps'],
                        'resourceNames': ['settlement-config'],
                        'verbs': ['get'],
                    }
                ]
            },
            False,
            id='fewer-verbs-narrows',
        ),
        pytest.param({'spec.vault.policy': []}, False, id='dropping-vault-paths-narrows'),
        pytest.param(
            {
                'spec.kubernetes.rules': [
                    {'apiGroups': [''], 'resources': ['configmaps'], 'verbs': ['get', 'watch']}
                ]
            },
            True,
            id='dropping-resource-names-widens',
        ),
        pytest.param(
            {
                'spec.kubernetes.rules': [
                    {
                        'apiGroups': [''],
                        'resources': ['configmaps', 'secrets'],
                        'resourceNames': ['settlement-config'],
                        'verbs': ['get', 'watch'],
                    }
                ]
            },
            True,
            id='another-resource-widens',
        ),
        pytest.param(
            {'spec.kubernetes.clusterRoles': ['view']}, True, id='binding-a-cluster-role-widens'
        ),
        pytest.param(
            {
                'spec.vault.policy': [
                    {
                        'path': 'secret/data/payments/settlement/*',
                        'capabilities': ['read', 'update'],
                    }
                ]
            },
            True,
            id='more-vault-capabilities-widen',
        ),
        pytest.param(
            {'spec.vault.secret': {'keys': ['api-key', 'second-key']}},
            True,
            id='more-secret-keys-widen',
        ),
    ],
)
def test_narrowing_applies_at_once_widening_needs_a_new_approval(
    manifest: Build, changes: dict[str, Any], widened: bool
) -> None:
    status = active_status(manifest())
    edited = manifest(changes)
    decision = decide(observe(edited, status), NOW)
    assert isinstance(decision, Converge)
    if widened:
        assert decision.scope == status.applied_scope, 'the approved scope stays in force'
        assert decision.verdict.reason is Reason.SCOPE_CHANGE_NOT_APPROVED
        assert not decision.verdict.valid
        reapproved = dict(changes, **{'spec.ticket.approvedAt': '2026-11-30T09:00:00Z'})
        approved = decide(observe(manifest(reapproved), status), NOW)
        assert isinstance(approved, Converge)
        assert approved.scope == scope_of(ServiceIdentity.model_validate(manifest(reapproved)).spec)
        assert approved.verdict.valid
    else:
        assert decision.scope == scope_of(ServiceIdentity.model_validate(edited).spec)
        assert decision.verdict.valid


def test_removing_a_vault_deny_widens_access(manifest: Build) -> None:
    deny = [
        {'path': 'secret/data/payments/settlement/private', 'capabilities': ['deny']},
        {'path': 'secret/data/payments/settlement/*', 'capabilities': ['read']},
    ]
    status = active_status(manifest({'spec.vault.policy': deny}))
    decision = decide(observe(manifest(), status), NOW)
    assert isinstance(decision, Converge)
    assert decision.verdict.reason is Reason.SCOPE_CHANGE_NOT_APPROVED


def test_an_earlier_expiry_applies_at_once(manifest: Build) -> None:
    status = active_status(manifest())
    decision = decide(observe(manifest({'spec.expiresAt': '2027-01-01T00:00:00Z'}), status), NOW)
    assert isinstance(decision, Converge)
    assert decision.expires_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert decision.verdict.valid


def test_a_later_expiry_without_approval_is_refused_and_the_old_one_stays(manifest: Build) -> None:
    status = active_status(manifest())
    extended = manifest({'spec.expiresAt': '2027-06-01T00:00:00Z'})
    decision = decide(observe(extended, status), NOW)
    assert isinstance(decision, Converge)
    assert decision.expires_at == EXPIRES_AT
    assert decision.verdict.reason is Reason.EXTENSION_NOT_APPROVED
    # ... and the refused extension does not keep the identity alive past the old expiry.
    assert isinstance(decide(observe(extended, status), EXPIRES_AT), Revoke)


def test_a_later_expiry_with_a_new_approval_applies(manifest: Build) -> None:
    status = active_status(manifest())
    extended = manifest({'spec.expiresAt': '2027-06-01T00:00:00Z', 'spec.ticket.id': 'CHG0031400'})
    decision = decide(observe(extended, status), NOW)
    assert isinstance(decision, Converge)
    assert decision.expires_at == datetime(2027, 6, 1, tzinfo=UTC)
    assert decision.approval.ticket_id == 'CHG0031400'


def test_an_owner_change_rotates_the_secret_and_revokes_issued_tokens(manifest: Build) -> None:
    status = active_status(manifest())
    moved = manifest({'spec.owner': {'team': 'ledger', 'contact': 'ledger@example.com'}})
    decision = decide(observe(moved, status), NOW)
    assert isinstance(decision, Converge)
    assert decision.previous_owner == Owner(
        team='payments-platform', contact='payments-oncall@example.com'
    )
    assert decision.owner.team == 'ledger'
    assert decision.rotate_secret
    assert decision.revoke_issued_tokens


def test_annotation_churn_changes_nothing(manifest: Build) -> None:
    status = active_status(manifest())
    churn = {
        'argocd.argoproj.io/tracking-id': 'payments:tenure.dev/ServiceIdentity:x',
        'kubectl.kubernetes.io/last-applied-configuration': '{}',
    }
    decision = decide(observe(manifest(), status, annotations=churn), NOW)
    assert isinstance(decision, Converge)
    assert decision.verdict.valid
    assert not decision.rotate_secret
    assert decision.scope == status.applied_scope


def test_a_ticket_back_to_requested_holds_an_active_identity(manifest: Build) -> None:
    status = active_status(manifest())
    doc = manifest({'spec.ticket.state': 'Requested'})
    decision = decide(observe(doc, status), NOW)
    assert isinstance(decision, Hold)
    assert decision.reason is Reason.NOT_APPROVED

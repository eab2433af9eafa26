"""The ServiceIdentity API accepts what the issue's contract allows and refuses the rest."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from tenure.api.v1alpha1 import OnClose, ServiceIdentity, TicketState
from tests.unit.conftest import DELETE

Build = Callable[..., dict[str, Any]]


def test_a_complete_manifest_parses_with_wire_names_and_typed_values(manifest: Build) -> None:
    si = ServiceIdentity.model_validate(manifest())
    assert si.spec.ticket.state is TicketState.APPROVED
    assert si.spec.ticket.approved_at == datetime(2026, 11, 28, 10, tzinfo=UTC)
    assert si.spec.vault is not None
    assert si.spec.vault.secret is not None
    assert si.spec.vault.secret.rotate_every == timedelta(hours=720)
    assert si.spec.kubernetes is not None
    assert si.spec.kubernetes.rules[0].resource_names == ['settlement-config']


def test_on_close_defaults_to_revoke(manifest: Build) -> None:
    si = ServiceIdentity.model_validate(manifest())
    assert si.spec.ticket.on_close is OnClose.REVOKE


def test_serialises_back_to_the_wire_shape(manifest: Build) -> None:
    doc = manifest()
    si = ServiceIdentity.model_validate(doc)
    wire = si.model_dump(mode='json', by_alias=True, exclude_none=True, exclude_defaults=True)
    assert wire['spec']['ticket']['approvedAt'] == '2026-11-28T10:00:00Z'
    assert wire['spec']['expiresAt'] == '2027-02-15T00:00:00Z'
    assert wire['spec']['vault']['secret']['rotateEvery'] == '720h0m0s'
    assert wire['spec']['kubernetes'] == doc['spec']['kubernetes']


def test_a_requested_ticket_needs_no_approval_time(manifest: Build) -> None:
    doc = manifest({'spec.ticket.state': 'Requested', 'spec.ticket.approvedAt': DELETE})
    assert ServiceIdentity.model_validate(doc).spec.ticket.approved_at is None


@pytest.mark.parametrize(
    ('changes', 'field', 'error'),
    [
        pytest.param(
            {'spec.ticket.approvedAt': DELETE},
            ('spec', 'ticket'),
            'ApprovalTimeMissing',
            id='approved-without-approval-time',
        ),
        pytest.param(
            {'spec.expiresAt': '2026-12-31T00:00:00'},
            ('spec', 'expiresAt'),
            'value_error',
            id='expiry-without-timezone',
        ),
        pytest.param(
            {'spec.expiresAt': 1798675200},
            ('spec', 'expiresAt'),
            'value_error',
            id='expiry-as-epoch-number',
        ),
        pytest.param(
            {'spec.ticket.id': 'CHG 0031337'},
            ('spec', 'ticket', 'id'),
            'string_pattern_mismatch',
            id='ticket-id-with-space',
        ),
        pytest.param(
            {'spec.ticket.system': 'ServiceNow'},
            ('spec', 'ticket', 'system'),
            'string_pattern_mismatch',
            id='ticket-system-not-lowercase',
        ),
        pytest.param(
            {'spec.ticket.state': 'Done'},
            ('spec', 'ticket', 'state'),
            'enum',
            id='unknown-ticket-state',
        ),
        pytest.param(
            {'spec.ticket.justification': 'because'},
            ('spec', 'ticket', 'justification'),
            'string_too_short',
            id='justification-under-10-characters',
        ),
        pytest.param(
            {'spec.ticket.justification': 'x' * 2001},
            ('spec', 'ticket', 'justification'),
            'string_too_long',
            id='justification-over-2000-characters',
        ),
        pytest.param(
            {'spec.owner.contact': 'payments oncall'},
            ('spec', 'owner', 'contact'),
            'string_pattern_mismatch',
            id='contact-not-an-email',
        ),
        pytest.param(
            {'spec.owner.team': 'Payments Platform'},
            ('spec', 'owner', 'team'),
            'string_pattern_mismatch',
            id='team-not-a-label-value',
        ),
        pytest.param(
            {'spec.expiresat': '2027-01-01T00:00:00Z'},
            ('spec', 'expiresat'),
            'extra_forbidden',
            id='misspelt-field-is-an-error-not-ignored',
        ),
        pytest.param(
            {'spec.vault.secret.rotateEvery': '30d'},
            ('spec', 'vault', 'secret', 'rotateEvery'),
            'value_error',
            id='rotation-with-unit-go-does-not-know',
        ),
        pytest.param(
            {'spec.kubernetes.rules': [{'resources': ['pods'], 'verbs': ['get', 'get']}]},
            ('spec', 'kubernetes', 'rules', 0, 'verbs'),
            'value_error',
            id='duplicate-verbs',
        ),
        pytest.param(
            {'spec.kubernetes.rules': [{'resources': ['pods'], 'verbs': []}]},
            ('spec', 'kubernetes', 'rules', 0, 'verbs'),
            'too_short',
            id='rule-without-verbs',
        ),
        pytest.param(
            {'metadata.name': 'a' * 64},
            ('metadata', 'name'),
            'string_too_long',
            id='name-longer-than-a-label-value',
        ),
        pytest.param(
            {'apiVersion': 'tenure.dev/v1'},
            ('apiVersion',),
            'literal_error',
            id='wrong-api-version',
        ),
    ],
)
def test_invalid_specs_are_refused_with_the_offending_field(
    manifest: Build, changes: dict[str, Any], field: tuple[Any, ...], error: str
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        ServiceIdentity.model_validate(manifest(changes))
    found = {(tuple(e['loc']), e['type']) for e in excinfo.value.errors()}
    assert (field, error) in found, found


def test_models_are_immutable(manifest: Build) -> None:
    si = ServiceIdentity.model_validate(manifest())
    with pytest.raises(ValidationError):
        si.spec.ticket.state = TicketState.CANCELLED  # type: ignore[misc]

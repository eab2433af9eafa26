"""The CRD (as an API server enforces it) and the models (as the operator and `tenure check`
enforce them) agree on what a valid ServiceIdentity is.

The cross-field rules exist twice, as pydantic validators and as CEL `x-kubernetes-validations`;
this table runs the same manifests through both, with the emulator's implementation of the API
server's schema validation (pruning, OpenAPI, CEL) standing in for a real cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from tenure.api.crd import render_service_identity_crd
from tenure.api.v1alpha1 import ServiceIdentity
from tenure_devtools.kubeapi import schema as apiserver_schema
from tests.unit.conftest import DELETE

Build = Callable[..., dict[str, Any]]

CASES = [
    pytest.param({}, None, id='valid'),
    pytest.param(
        {'spec.ticket.state': 'Requested', 'spec.ticket.approvedAt': DELETE},
        None,
        id='requested-without-approval-time-is-valid',
    ),
    pytest.param(
        {'spec.ticket.approver': 'Alice@Example.com'},
        'spec.ticket.approver',
        id='requester-is-approver',
    ),
    pytest.param(
        {'spec.ticket.approvedAt': DELETE}, 'spec.ticket.approvedAt', id='no-approval-time'
    ),
    pytest.param(
        {'spec.ticket.state': 'Cancelled', 'spec.ticket.approvedAt': DELETE},
        'spec.ticket.approvedAt',
        id='cancelled-without-approval-time',
    ),
    pytest.param(
        {'spec.expiresAt': '2026-11-28T10:00:00Z'}, 'spec.expiresAt', id='expiry-at-approval'
    ),
    pytest.param(
        {'spec.expiresAt': '2026-01-01T00:00:00Z'}, 'spec.expiresAt', id='expiry-before-approval'
    ),
    pytest.param({'spec.ticket.id': '-CHG'}, 'spec.ticket.id', id='bad-ticket-id'),
    pytest.param({'spec.ticket.state': 'Done'}, 'spec.ticket.state', id='unknown-state'),
    pytest.param({'spec.owner.contact': 'nobody'}, 'spec.owner.contact', id='contact-not-email'),
    pytest.param({'spec.service': DELETE}, 'spec.service', id='no-service'),
    pytest.param({'spec.expiresAt': '2027-01-01'}, 'spec.expiresAt', id='date-without-time'),
    pytest.param({'metadata.name': 'x' * 64}, 'metadata.name', id='name-too-long'),
]


def _crd_schema() -> dict[str, Any]:
    crd = render_service_identity_crd()
    schema: dict[str, Any] = crd['spec']['versions'][0]['schema']['openAPIV3Schema']
    return schema


def test_the_crd_schema_is_accepted_by_the_api_server_rules() -> None:
    """Structural, and every CEL rule compiles (the API server refuses the CRD otherwise)."""
    assert apiserver_schema.check_crd_schema(_crd_schema()) == []


@pytest.mark.parametrize(('changes', 'field'), CASES)
def test_models_and_crd_agree(manifest: Build, changes: dict[str, Any], field: str | None) -> None:
    doc = manifest(changes)
    schema = _crd_schema()
    crd_errors = apiserver_schema.validate(
        schema, apiserver_schema.apply_defaults(schema, apiserver_schema.prune(schema, doc))
    )
    try:
        ServiceIdentity.model_validate(doc)
        model_ok = True
    except ValidationError:
        model_ok = False
    if field is None:
        assert crd_errors == []
        assert model_ok
    else:
        assert not model_ok, 'the models accept what the CRD should refuse'
        assert field in {e.field for e in crd_errors}, [e.message for e in crd_errors]

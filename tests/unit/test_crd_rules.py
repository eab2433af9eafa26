"""The CRD (as an API server enforces it) refuses exactly what the models refuse plus what the
static guardrails refuse, and names the same rule ids.

The static guardrails (no policy, no clock) exist twice on purpose: in `tenure.domain.guardrails`
and as the CEL `x-kubernetes-validations` rendered from its CEL_RULES. This table runs the same
manifests through both, with the emulator's implementation of the API server's schema validation
(pruning, OpenAPI, CEL) standing in for a real cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from tenure.api.crd import render_service_identity_crd
from tenure.api.v1alpha1 import ServiceIdentity
from tenure.domain.guardrails import CEL_RULES, Policy, Target, Violation, evaluate
from tenure_devtools.kubeapi import schema as apiserver_schema
from tests.unit.conftest import DELETE

Build = Callable[..., dict[str, Any]]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

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
    pytest.param(
        {'spec.kubernetes.rules': [{'resources': ['pods'], 'verbs': ['*']}]},
        'spec.kubernetes.rules[0]',
        id='wildcard-verb',
    ),
    pytest.param(
        {'spec.kubernetes.rules': [{'apiGroups': ['*'], 'resources': ['pods'], 'verbs': ['get']}]},
        'spec.kubernetes.rules[0]',
        id='wildcard-api-group',
    ),
    pytest.param(
        {'spec.kubernetes.rules': [{'resources': ['roles'], 'verbs': ['escalate']}]},
        'spec.kubernetes.rules[0].verbs',
        id='forbidden-verb',
    ),
    pytest.param(
        {
            'spec.kubernetes.rules': [
                {'apiGroups': [''], 'resources': ['secrets'], 'verbs': ['get']}
            ]
        },
        'spec.kubernetes.rules[0]',
        id='secrets-without-names',
    ),
    pytest.param(
        {
            'spec.kubernetes.rules': [
                {'apiGroups': [''], 'resources': ['serviceaccounts/token'], 'verbs': ['create']}
            ]
        },
        'spec.kubernetes.rules[0].verbs',
        id='token-minting',
    ),
    pytest.param(
        {'spec.vault.policy': [{'path': 'secret/data/payments/x', 'capabilities': ['sudo']}]},
        'spec.vault.policy[0].capabilities',
        id='sudo-capability',
    ),
    pytest.param(
        {'spec.vault.policy': [{'path': 'secret/data/payments/x', 'capabilities': ['write']}]},
        'spec.vault.policy[0].capabilities',
        id='unknown-capability',
    ),
    pytest.param(
        {'spec.vault.policy': [{'path': 'sys/policies/acl/x', 'capabilities': ['read']}]},
        'spec.vault.policy[0].path',
        id='sys-path',
    ),
    pytest.param(
        {'spec.vault.policy': [{'path': 'secret/data/payments/../x', 'capabilities': ['read']}]},
        'spec.vault.policy[0].path',
        id='dot-dot-path',
    ),
    pytest.param(
        {'spec.vault.policy': [{'path': 'secret/data/tenure/other/x', 'capabilities': ['read']}]},
        'spec.vault.policy[0].path',
        id='other-identities-secret',
    ),
]

STATIC_RULES = {rule['message'].split(':', 1)[0] for rules in CEL_RULES.values() for rule in rules}
"""The guardrails the CRD enforces itself (their CEL messages start with the rule id)."""


def _crd_schema() -> dict[str, Any]:
    crd = render_service_identity_crd()
    schema: dict[str, Any] = crd['spec']['versions'][0]['schema']['openAPIV3Schema']
    return schema


def test_the_crd_schema_is_accepted_by_the_api_server_rules() -> None:
    """Structural, and every CEL rule compiles (the API server refuses the CRD otherwise)."""
    assert apiserver_schema.check_crd_schema(_crd_schema()) == []


@pytest.mark.parametrize(('changes', 'field'), CASES)
def test_the_crd_refuses_what_the_models_and_the_static_guardrails_refuse(
    manifest: Build, changes: dict[str, Any], field: str | None
) -> None:
    doc = manifest(changes)
    schema = _crd_schema()
    crd_errors = apiserver_schema.validate(
        schema, apiserver_schema.apply_defaults(schema, apiserver_schema.prune(schema, doc))
    )
    try:
        identity = ServiceIdentity.model_validate(doc)
    except ValidationError:
        identity = None
    static: list[Violation] = []
    if identity is not None:
        target = Target(namespace='payments', name=identity.metadata.name)
        static = [
            v for v in evaluate(identity.spec, Policy(), target, NOW) if v.rule in STATIC_RULES
        ]
    if field is None:
        assert crd_errors == []
        assert identity is not None
        assert static == []
        return
    assert identity is None or static, 'the operator would accept what the CRD refuses'
    assert field in {e.field for e in crd_errors}, [e.message for e in crd_errors]
    for violation in static:
        assert any(violation.rule in e.message for e in crd_errors), (violation, crd_errors)


def test_every_static_rule_has_a_cel_mirror() -> None:
    assert {
        'ExpiryBeforeApproval',
        'RequesterIsApprover',
        'WildcardNotAllowed',
        'ForbiddenVerb',
        'SecretsNeedResourceNames',
        'TokenMintingNotAllowed',
        'VaultCapabilityNotAllowed',
        'VaultPathNotAllowed',
    } == STATIC_RULES

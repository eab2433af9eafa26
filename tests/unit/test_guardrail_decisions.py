"""What a guardrail violation does to an identity: deny it, hold it, or (Audit) report it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tenure.api.v1alpha1 import ApprovalRecord, Phase, ServiceIdentity, ServiceIdentityStatus
from tenure.domain.guardrails import (
    Mode,
    Policy,
    Rule,
    Target,
    Violation,
    allowed_prefixes,
    evaluate,
)
from tenure.domain.lifecycle import Converge, Deny, Hold, Observed, decide
from tenure.domain.scope import scope_of

Build = Callable[..., dict[str, Any]]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WILDCARD = Violation(Rule.WILDCARD_NOT_ALLOWED, 'spec.kubernetes.rules[0].verbs', '"*" ...')
LIFETIME = Violation(Rule.LIFETIME_TOO_LONG, 'spec.expiresAt', 'too long')


def observe(
    doc: dict[str, Any],
    status: ServiceIdentityStatus,
    violations: tuple[Violation, ...],
    mode: Mode = Mode.ENFORCE,
) -> Observed:
    spec = ServiceIdentity.model_validate(doc).spec
    return Observed(spec, None, status, {}, 1, False, violations, mode)


def active(doc: dict[str, Any]) -> ServiceIdentityStatus:
    spec = ServiceIdentity.model_validate(doc).spec
    return ServiceIdentityStatus(
        phase=Phase.ACTIVE,
        approval=ApprovalRecord(
            ticket_id=spec.ticket.id,
            approver=spec.ticket.approver,
            approved_at=spec.ticket.approved_at,
        ),
        applied_scope=scope_of(spec),
        owner=spec.owner,
        expires_at=spec.expires_at,
    )


def test_a_violation_denies_a_new_identity_naming_the_first_rule_and_listing_all(
    manifest: Build,
) -> None:
    decision = decide(observe(manifest(), ServiceIdentityStatus(), (WILDCARD, LIFETIME)), NOW)
    assert isinstance(decision, Deny)
    assert decision.reason == 'WildcardNotAllowed'
    assert 'WildcardNotAllowed' in decision.message
    assert 'LifetimeTooLong' in decision.message


def test_a_new_violation_of_an_active_identity_is_held_not_revoked(manifest: Build) -> None:
    doc = manifest()
    decision = decide(observe(doc, active(doc), (LIFETIME,)), NOW)
    assert isinstance(decision, Hold)
    assert decision.reason == 'LifetimeTooLong'


def test_audit_mode_provisions_and_reports(manifest: Build) -> None:
    decision = decide(observe(manifest(), ServiceIdentityStatus(), (WILDCARD,), Mode.AUDIT), NOW)
    assert isinstance(decision, Converge)
    assert not decision.verdict.valid
    assert decision.verdict.reason == 'WildcardNotAllowed'
    assert decision.verdict.message.startswith('Audit (not enforced): ')


def test_an_already_expired_new_identity_is_denied_even_in_audit_mode(manifest: Build) -> None:
    doc = manifest({'spec.expiresAt': '2026-11-30T00:00:00Z'})
    decision = decide(observe(doc, ServiceIdentityStatus(), (), Mode.AUDIT), NOW)
    assert isinstance(decision, Deny)
    assert decision.reason == 'AlreadyExpired'


def test_cancellation_still_revokes_an_identity_that_violates_the_policy(manifest: Build) -> None:
    doc = manifest({'spec.ticket.state': 'Cancelled'})
    decision = decide(observe(doc, active(manifest()), (WILDCARD,)), NOW)
    assert type(decision).__name__ == 'Revoke'


def test_vault_prefixes_are_templated_with_the_namespace_and_the_kv_mount() -> None:
    policy = Policy(
        allowed_vault_path_prefixes=('{kvMount}/data/{namespace}/', 'pki/issue/{namespace}-')
    )
    assert allowed_prefixes(policy, Target('payments', 'x', kv_mount='kv')) == (
        'kv/data/payments/',
        'pki/issue/payments-',
    )


def test_a_namespace_called_tenure_cannot_reach_other_identities_secrets(manifest: Build) -> None:
    doc = manifest(
        {
            'metadata.namespace': 'tenure',
            'spec.vault.policy': [{'path': 'secret/data/tenure/x/y', 'capabilities': ['read']}],
        }
    )
    spec = ServiceIdentity.model_validate(doc).spec
    rules = {v.rule for v in evaluate(spec, Policy(), Target('tenure', 'x'), NOW)}
    assert rules == {Rule.VAULT_PATH_NOT_ALLOWED}


def test_the_lifetime_is_measured_from_approval_and_may_equal_the_maximum(manifest: Build) -> None:
    approved = datetime(2026, 11, 28, 10, tzinfo=UTC)
    at_max = (approved + timedelta(days=90)).strftime('%Y-%m-%dT%H:%M:%SZ')
    over = (approved + timedelta(days=90, seconds=1)).strftime('%Y-%m-%dT%H:%M:%SZ')
    for expires, expected in ((at_max, set()), (over, {Rule.LIFETIME_TOO_LONG})):
        spec = ServiceIdentity.model_validate(manifest({'spec.expiresAt': expires})).spec
        assert {v.rule for v in evaluate(spec, Policy(), Target('payments', 'x'), NOW)} == expected

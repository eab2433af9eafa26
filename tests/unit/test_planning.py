"""`tenure plan`: what applying a manifest would do, decided as the operator decides, without
doing it (issue #6). The live state comes from a reconcile against the in-memory fakes."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from tenure.api.v1alpha1 import ServiceIdentity
from tenure.domain.guardrails import Policy
from tenure.domain.planning import Action, Change, Live, Plan, plan
from tests.unit.conftest import VALID
from tests.unit.test_reconcile import T0, Harness

NS, NAME = 'payments', 'settlement-exporter'
SECRET = 'secret/tenure/payments/settlement-exporter'


def live_after(harness: Harness) -> Live:
    """What the cluster and Vault hold after the harness's reconciles."""
    role = harness.vault.roles.get(f'tenure-{NS}-{NAME}')
    return Live(
        kubernetes_read=True,
        vault_read=True,
        identity=copy.deepcopy(harness.body),
        namespace_labels={},
        objects=dict(harness.kube.objects),
        vault_policy=harness.vault.policies.get(f'tenure-{NS}-{NAME}'),
        vault_role=role.config() if role else None,
        secret_version=harness.vault.secrets.get(f'tenure/{NS}/{NAME}'),
    )


def provisioned() -> Harness:
    harness = Harness(copy.deepcopy(VALID))
    harness.run()
    return harness


def planned(doc: dict[str, Any], live: Live, policy: Policy | None = None) -> Plan:
    return plan(ServiceIdentity.model_validate(doc), live, policy=policy or Policy(), now=T0)


def actions(result: Plan) -> list[tuple[str, str, str]]:
    return [(c.action.value, c.kind, c.name) for c in result.changes]


def edited(changes: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    for path, value in changes.items():
        *parents, last = path.split('.')
        node = doc
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return doc


def test_a_new_identity_creates_everything_in_kubernetes_and_vault() -> None:
    empty = Live(kubernetes_read=True, vault_read=True, namespace_labels={})
    result = planned(VALID, empty)
    assert (result.phase, result.reason, result.as_written) == ('Active', 'SpecValid', True)
    assert actions(result) == [
        ('create', 'ServiceIdentity', NAME),
        ('create', 'ServiceAccount', NAME),
        ('create', 'Role', f'tenure-{NAME}'),
        ('create', 'RoleBinding', f'tenure-{NAME}'),
        ('create', 'VaultPolicy', f'tenure-{NS}-{NAME}'),
        ('create', 'VaultRole', f'tenure-{NS}-{NAME}'),
        ('create', 'VaultSecret', SECRET),
    ]
    assert result.changes[5].detail == 'token TTL 3600s'


def test_the_manifest_as_applied_changes_nothing() -> None:
    harness = provisioned()
    result = planned(VALID, live_after(harness))
    assert {c.action for c in result.changes} == {Action.UNCHANGED}
    assert result.as_written


def test_widening_the_scope_without_a_new_approval_is_refused_and_changes_nothing() -> None:
    harness = provisioned()
    wider = edited({'spec.vault.policy': [
        {'path': 'secret/data/payments/settlement/*', 'capabilities': ['read', 'update']}
    ]})  # fmt: skip
    result = planned(wider, live_after(harness))
    assert result.reason == 'ScopeChangeNotApproved'
    assert 'more access than was approved' in result.message
    assert not result.as_written
    assert actions(result)[0] == ('update', 'ServiceIdentity', NAME)
    assert {c.action for c in result.changes[1:]} == {Action.UNCHANGED}, 'the approved scope stays'


def test_widening_with_a_new_approval_updates_the_policy() -> None:
    harness = provisioned()
    approved = edited({
        'spec.vault.policy': [
            {'path': 'secret/data/payments/settlement/*', 'capabilities': ['read', 'update']}
        ],
        'spec.ticket.id': 'CHG0040000',
    })  # fmt: skip
    result = planned(approved, live_after(harness))
    assert result.reason == 'SpecValid'
    assert ('update', 'VaultPolicy', f'tenure-{NS}-{NAME}') in actions(result)


def test_narrowing_deletes_the_grant_that_is_no_longer_approved() -> None:
    harness = provisioned()
    result = planned(edited({'spec.kubernetes': None}), live_after(harness))
    assert actions(result)[:3] == [
        ('update', 'ServiceIdentity', NAME),
        ('delete', 'Role', f'tenure-{NAME}'),
        ('delete', 'RoleBinding', f'tenure-{NAME}'),
    ]


def test_an_owner_change_updates_labels_rotates_the_secret_and_cuts_tokens() -> None:
    harness = provisioned()
    doc = edited({'spec.owner': {'team': 'ledger', 'contact': 'ledger@example.com'}})
    changes = {(c.action, c.kind): c for c in planned(doc, live_after(harness)).changes}
    sa = changes[(Action.UPDATE, 'ServiceAccount')]
    assert 'metadata.annotations[tenure.dev/owner-team]' in sa.detail
    assert changes[(Action.UPDATE, 'VaultSecret')].detail == 'rotated to version 2 (owner change)'
    assert (Action.DELETE, 'VaultTokens') in changes


def test_a_guardrail_violation_denies_and_lists_every_violation() -> None:
    doc = edited({'spec.kubernetes.rules': [
        {'apiGroups': [''], 'resources': ['secrets'], 'verbs': ['get', 'escalate']}
    ]})  # fmt: skip
    result = planned(doc, Live(kubernetes_read=True, vault_read=True, namespace_labels={}))
    assert (result.phase, result.reason) == ('Denied', 'ForbiddenVerb')
    assert [v.rule.value for v in result.violations] == [
        'ForbiddenVerb',
        'SecretsNeedResourceNames',
    ]
    assert actions(result) == [('create', 'ServiceIdentity', NAME)], 'nothing else is created'
    assert not result.as_written


def test_a_service_account_that_is_not_tenures_is_a_name_conflict() -> None:
    stranger = {'kind': 'ServiceAccount', 'metadata': {'name': NAME, 'labels': {'team': 'x'}}}
    live = Live(
        kubernetes_read=True,
        vault_read=True,
        namespace_labels={},
        objects={('ServiceAccount', NAME): stranger},
    )
    result = planned(VALID, live)
    assert (result.phase, result.reason) == ('Denied', 'NameConflict')
    assert 'not labelled' in result.message


def test_a_cancelled_ticket_revokes_vault_first_then_kubernetes() -> None:
    harness = provisioned()
    result = planned(edited({'spec.ticket.state': 'Cancelled'}), live_after(harness))
    assert (result.phase, result.reason, result.as_written) == ('Revoked', 'TicketCancelled', True)
    assert actions(result) == [
        ('update', 'ServiceIdentity', NAME),
        ('delete', 'VaultRole', f'tenure-{NS}-{NAME}'),
        ('delete', 'VaultTokens', f'tenure-{NS}-{NAME}'),
        ('delete', 'VaultPolicy', f'tenure-{NS}-{NAME}'),
        ('delete', 'VaultSecret', SECRET),
        ('delete', 'RoleBinding', f'tenure-{NAME}'),
        ('delete', 'Role', f'tenure-{NAME}'),
        ('delete', 'ServiceAccount', NAME),
    ]


@pytest.mark.parametrize(
    ('doc', 'as_written'),
    [
        pytest.param(VALID, True, id='unchanged-tombstone'),
        pytest.param(edited({'spec.ticket.id': 'CHG0099999'}), False, id='edit-is-ignored'),
    ],
)
def test_a_revoked_tombstone_changes_nothing(doc: dict[str, Any], as_written: bool) -> None:
    harness = provisioned()
    harness.now = T0 + timedelta(days=100)
    harness.run()
    result = plan(
        ServiceIdentity.model_validate(doc),
        live_after(harness),
        policy=Policy(),
        now=harness.now,
    )
    assert (result.phase, result.reason, result.as_written) == (
        'Revoked',
        'RevokedIsTerminal',
        as_written,
    )
    assert len(result.changes) == 1


def test_a_requested_ticket_waits_and_creates_nothing_but_itself() -> None:
    result = planned(
        edited({'spec.ticket.state': 'Requested', 'spec.ticket.approvedAt': None}), Live()
    )
    assert (result.phase, result.reason, result.as_written) == ('Pending', 'AwaitingApproval', True)
    assert actions(result) == [('apply', 'ServiceIdentity', NAME)]


def test_offline_every_object_is_to_apply_without_comparison() -> None:
    result = planned(VALID, Live())
    assert {c.action for c in result.changes} == {Action.APPLY}
    assert Change('Vault', Action.APPLY, 'VaultSecret', SECRET) in result.changes


def test_offline_an_environment_mismatch_cannot_be_judged_and_is_not_reported() -> None:
    doc = edited({'spec.environment': 'production'})
    offline = planned(doc, Live(namespace_labels={'tenure.dev/environment': 'staging'}))
    assert offline.reason == 'SpecValid', 'labels that were not read are not judged'
    online = planned(
        doc,
        Live(
            kubernetes_read=True,
            vault_read=True,
            namespace_labels={'tenure.dev/environment': 'staging'},
        ),
    )
    assert online.reason == 'EnvironmentMismatch'

"""One reconcile at a time, against in-memory Kubernetes and Vault: what users see in status,
events and the world, including retries, restarts and the order of revocation."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tenure.domain.guardrails import Policy
from tenure.reconcile import Outcome, ReconcileFailed, Reconciler, merge_patch_between
from tests.unit.conftest import DELETE
from tests.unit.fakes import Calls, FakeKube, FakeVault

Build = Callable[..., dict[str, Any]]
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class Harness:
    """A ServiceIdentity in a fake API server, and the reconciler that acts on it."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.now = T0
        self.calls = Calls()
        self.kube = FakeKube(self.calls)
        self.vault = FakeVault(self.calls)
        self.body = copy.deepcopy(doc)
        self.body['metadata'].update(uid='si-uid', generation=1)
        self.reconciler = Reconciler(self.kube, self.vault, clock=lambda: self.now)

    def run(self) -> Outcome:
        before = len(self.kube.status_patches)
        try:
            return self.reconciler.reconcile(copy.deepcopy(self.body))
        finally:
            for patch in self.kube.status_patches[before:]:
                _merge(self.body.setdefault('status', {}), patch)

    def edit(self, path: str, value: Any) -> None:
        *parents, last = path.split('.')
        node = self.body
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
        if path.startswith('spec'):
            self.body['metadata']['generation'] += 1

    @property
    def status(self) -> dict[str, Any]:
        return self.body.get('status', {})

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status['conditions'] if c['type'] == type_)


@pytest.fixture
def harness(manifest: Build) -> Harness:
    return Harness(manifest())


def test_an_approved_identity_becomes_active_with_its_objects(harness: Harness) -> None:
    outcome = harness.run()
    assert harness.status['phase'] == 'Active'
    assert harness.condition('Ready')['status'] == 'True'
    assert harness.status['serviceAccount'] == 'settlement-exporter'
    assert harness.status['vault'] == {
        'policy': 'tenure-payments-settlement-exporter',
        'role': 'tenure-payments-settlement-exporter',
        'secretPath': 'secret/tenure/payments/settlement-exporter',
        'secretVersion': 1,
        'lastRotatedAt': '2026-12-01T12:00:00Z',
    }
    assert harness.status['approval'] == {
        'ticketId': 'CHG0031337',
        'approver': 'bob@example.com',
        'approvedAt': '2026-11-28T10:00:00Z',
    }
    assert set(harness.kube.objects) == {
        ('ServiceAccount', 'settlement-exporter'),
        ('Role', 'tenure-settlement-exporter'),
        ('RoleBinding', 'tenure-settlement-exporter'),
    }
    assert [e[1] for e in harness.kube.events] == ['Provisioned']
    assert outcome.token_refresh is not None
    assert outcome.token_refresh.at == T0 + timedelta(hours=1), 'the token TTL stays at 1h'
    assert outcome.next_deadline == T0 + timedelta(days=30), 'the scheduled secret rotation'


def test_near_the_expiry_a_token_ttl_refresh_is_one_role_write_and_halves_the_ttl(
    harness: Harness,
) -> None:
    expires = datetime(2027, 2, 15, tzinfo=UTC)
    harness.now = expires - timedelta(minutes=2)
    due = harness.run().token_refresh
    assert due is not None
    assert (due.ttl_seconds, due.at) == (60, expires - timedelta(minutes=1))
    harness.calls.clear()
    harness.now = due.at
    following = harness.reconciler.refresh(due)
    assert harness.calls == ['vault.role tenure-payments-settlement-exporter ttl=30']
    assert following is not None
    assert (following.ttl_seconds, following.at) == (30, expires - timedelta(seconds=30))
    # Tokens issued up to that refresh end by the expiry; at the expiry there is none left.
    assert following.at + timedelta(seconds=following.ttl_seconds) <= expires
    harness.now = expires
    harness.calls.clear()
    assert harness.reconciler.refresh(following) is None
    assert harness.calls == [], 'the expiry revokes it: no role is written'


def test_running_again_changes_nothing_and_writes_nothing(harness: Harness) -> None:
    harness.run()
    calls, patches, events = (
        len(harness.calls),
        len(harness.kube.status_patches),
        len(harness.kube.events),
    )
    harness.now += timedelta(minutes=5)
    harness.run()
    assert harness.calls[calls:] == []
    assert len(harness.kube.status_patches) == patches, 'no status write when nothing changed'
    assert len(harness.kube.events) == events


def test_gitops_annotation_churn_regenerates_nothing(harness: Harness) -> None:
    harness.run()
    calls = len(harness.calls)
    harness.body['metadata']['annotations'] = {'argocd.argoproj.io/tracking-id': 'app:x'}
    harness.run()
    assert harness.calls[calls:] == []


def test_a_requested_ticket_is_pending_and_nothing_exists(manifest: Build) -> None:
    harness = Harness(
        manifest({'spec.ticket.state': 'Requested', 'spec.ticket.approvedAt': DELETE})
    )
    harness.run()
    assert harness.status['phase'] == 'Pending'
    assert harness.condition('Ready')['reason'] == 'AwaitingApproval'
    assert harness.calls == []


def test_an_invalid_spec_is_denied_with_the_field_and_nothing_exists(manifest: Build) -> None:
    doc = manifest()
    doc['spec']['ticket']['id'] = 'not valid!'
    harness = Harness(doc)
    harness.run()
    assert harness.status['phase'] == 'Denied'
    valid = harness.condition('Valid')
    assert valid['reason'] == 'InvalidSpec'
    assert 'spec.ticket.id' in valid['message']
    assert harness.calls == []
    assert harness.kube.events[0][:2] == (True, 'InvalidSpec')


def test_a_name_conflict_is_denied_before_anything_is_written(harness: Harness) -> None:
    harness.kube.foreign.add(('ServiceAccount', 'settlement-exporter'))
    with pytest.raises(ReconcileFailed):
        harness.run()
    assert harness.status['phase'] == 'Denied'
    assert harness.condition('Valid')['reason'] == 'NameConflict'
    assert harness.vault.policies == {}
    patches = len(harness.kube.status_patches)
    with pytest.raises(ReconcileFailed):
        harness.run()  # a retry, or a restart of the operator
    assert [e[1] for e in harness.kube.events] == ['NameConflict'], 'one event, not one per retry'
    assert len(harness.kube.status_patches) == patches


def test_expiry_revokes_vault_and_rbac_together_the_service_account_last_and_records_proof(
    harness: Harness,
) -> None:
    harness.run()
    sa_uid = harness.kube.service_account_uid(harness.reconciler._read(harness.body).names)
    mark = len(harness.calls)
    harness.now = datetime(2027, 2, 15, tzinfo=UTC)
    outcome = harness.run()
    done = harness.calls[mark:]
    # Vault's part runs beside Kubernetes' (its own order kept); the ServiceAccount, whose uid
    # names the Vault entity, goes only after all of Vault's part.
    assert [c for c in done if c.startswith('vault.')] == [
        'vault.delete_role',
        'vault.revoke_tokens',
        f'vault.disable_entity {sa_uid}',
        'vault.delete_policy',
        'vault.delete_secret',
    ]
    assert sorted(c for c in done if c.startswith('kube.')) == [
        'kube.delete_access',
        'kube.delete_service_account',
    ]
    assert done[-1] == 'kube.delete_service_account'
    revocation = harness.status['revocation']
    assert (revocation['reason'], revocation['verified']) == ('Expired', True)
    assert all(p['result'] == 'Gone' for p in revocation['proof'])
    assert harness.status['phase'] == 'Revoked'
    assert outcome.finished


def test_a_revocation_that_fails_part_way_retries_and_never_claims_verified(
    harness: Harness,
) -> None:
    harness.run()
    harness.edit('spec.ticket.state', 'Cancelled')
    harness.vault.down = True
    with pytest.raises(ReconcileFailed) as failed:
        harness.run()
    assert failed.value.outcome.status.revocation is not None
    assert harness.status['revocation']['verified'] is False
    assert harness.status['phase'] == 'Active', 'not Revoked until verified'
    assert harness.condition('Ready')['reason'] == 'RevocationFailed'
    assert 'sealed' in harness.condition('Ready')['message']
    assert [k for k in harness.kube.objects if k[0] == 'ServiceAccount'], (
        'the ServiceAccount stays until Vault is done: the retry needs its uid for the entity'
    )
    assert 'kube.delete_service_account' not in harness.calls
    # Vault comes back; meanwhile someone "un-cancels" the ticket: revocation still completes.
    harness.vault.down = False
    harness.edit('spec.ticket.state', 'Approved')
    harness.run()
    assert harness.status['phase'] == 'Revoked'
    assert harness.status['revocation']['reason'] == 'TicketCancelled'
    assert harness.status['revocation']['verified'] is True


def test_a_revoked_tombstone_ignores_later_edits_and_says_so(harness: Harness) -> None:
    harness.run()
    harness.body['metadata']['annotations'] = {'tenure.dev/revoke': 'incident 42'}
    harness.run()
    assert harness.status['revocation']['reason'] == 'Emergency'
    mark = len(harness.calls)
    harness.body['metadata'].pop('annotations')
    harness.edit('spec.ticket.id', 'CHG0099999')
    harness.run()
    assert harness.calls[mark:] == []
    assert harness.status['phase'] == 'Revoked'
    assert harness.condition('Valid')['reason'] == 'RevokedIsTerminal'


def test_an_owner_change_rotates_the_secret_revokes_tokens_and_keeps_history(
    harness: Harness,
) -> None:
    harness.run()
    harness.vault.tokens = 3
    harness.now += timedelta(hours=2)
    harness.edit('spec.owner', {'team': 'ledger', 'contact': 'ledger@example.com'})
    harness.run()
    assert harness.vault.tokens == 0
    assert harness.status['vault']['secretVersion'] == 2
    assert harness.status['owner'] == {'team': 'ledger', 'contact': 'ledger@example.com'}
    assert harness.status['ownerHistory'] == [
        {
            'team': 'payments-platform',
            'contact': 'payments-oncall@example.com',
            'until': '2026-12-01T14:00:00Z',
        }
    ]
    sa = harness.kube.objects[('ServiceAccount', 'settlement-exporter')]
    assert sa['metadata']['annotations']['tenure.dev/owner-team'] == 'ledger'
    path = 'tenure/payments/settlement-exporter'
    assert harness.vault.secret_metadata[path]['owner-team'] == 'ledger'
    assert {e[1] for e in harness.kube.events} >= {'OwnerChanged', 'SecretRotated'}


def test_widening_without_approval_keeps_the_old_scope_and_warns_once(harness: Harness) -> None:
    harness.reconciler.policy = lambda: Policy(allowed_cluster_roles=frozenset({'view'}))
    harness.run()
    harness.edit('spec.kubernetes.clusterRoles', ['view'])
    harness.run()
    harness.run()
    assert ('RoleBinding', 'tenure-settlement-exporter-view') not in harness.kube.objects
    assert harness.condition('Valid')['reason'] == 'ScopeChangeNotApproved'
    assert harness.condition('Ready')['status'] == 'True', 'the approved scope stays usable'
    assert [e[1] for e in harness.kube.events].count('ScopeChangeNotApproved') == 1


def test_narrowing_removes_access_at_once(harness: Harness) -> None:
    harness.run()
    harness.edit('spec.kubernetes', None)
    harness.edit('spec.vault.secret', None)
    harness.run()
    assert set(harness.kube.objects) == {('ServiceAccount', 'settlement-exporter')}
    assert harness.vault.secrets == {}
    assert 'secretPath' not in harness.status['vault']


def test_the_merge_patch_removes_what_is_gone_and_nothing_else() -> None:
    old = {'a': 1, 'b': {'c': 2, 'd': 3}, 'e': [1]}
    new = {'a': 1, 'b': {'c': 2}, 'e': [1, 2], 'f': 'x'}
    assert merge_patch_between(old, new) == {'b': {'d': None}, 'e': [1, 2], 'f': 'x'}
    assert merge_patch_between(new, new) == {}


def test_expiring_soon_is_a_condition_and_one_warning_event_per_approval(harness: Harness) -> None:
    harness.now = datetime(2027, 2, 1, tzinfo=UTC)  # more than 7 days before 2027-02-15
    outcome = harness.run()
    assert harness.condition('ExpiringSoon')['status'] == 'False'
    assert outcome.next_deadline == datetime(2027, 2, 8, tzinfo=UTC), 'the warning is next'
    harness.now = datetime(2027, 2, 10, tzinfo=UTC)
    harness.run()
    expiring = harness.condition('ExpiringSoon')
    assert (expiring['status'], expiring['reason']) == ('True', 'ExpiringSoon')
    assert '2027-02-15T00:00:00Z' in expiring['message']
    patches = len(harness.kube.status_patches)
    harness.now += timedelta(hours=3)
    harness.run()  # a later reconcile, or the same status read after a restart
    assert len(harness.kube.status_patches) == patches, 'a stable message: no status rewrite'
    assert [e for e in harness.kube.events if e[1] == 'ExpiringSoon'] == [
        (True, 'ExpiringSoon', expiring['message'])
    ]


def test_a_look_alike_in_another_namespace_is_refused_and_its_revocation_spares_the_owner(
    manifest: Build,
) -> None:
    """`team-x`/`api` and `team`/`x-api` both spell the Vault names `tenure-team-x-api`."""

    def own(namespace: str, name: str) -> dict[str, Any]:
        return manifest(
            {
                'metadata.namespace': namespace,
                'metadata.name': name,
                'spec.vault.policy': [
                    {'path': f'secret/data/{namespace}/db', 'capabilities': ['read']}
                ],
            }
        )

    victim = Harness(own('team-x', 'api'))
    victim.run()
    role_before = dict(victim.vault.roles)
    policy_before = dict(victim.vault.policies)
    intruder = Harness(own('team', 'x-api'))
    intruder.kube, intruder.vault = FakeKube(intruder.calls), victim.vault
    intruder.reconciler = Reconciler(intruder.kube, victim.vault, clock=lambda: intruder.now)
    with pytest.raises(ReconcileFailed):
        intruder.run()
    assert intruder.status['phase'] == 'Denied'
    assert intruder.condition('Valid')['reason'] == 'NameConflict'
    assert intruder.kube.objects == {}, 'refused before anything is written'
    intruder.body['metadata']['deletionTimestamp'] = '2026-12-01T13:00:00Z'
    intruder.run()
    assert intruder.status['revocation']['verified'] is True
    assert victim.vault.roles == role_before
    assert victim.vault.policies == policy_before


def test_the_secret_rotates_on_schedule_and_keeps_issued_tokens(harness: Harness) -> None:
    """rotateEvery: 720h in the manifest; KV keeps the previous version for the rollover."""
    outcome = harness.run()
    assert harness.status['vault']['secretVersion'] == 1
    assert outcome.next_deadline is not None
    harness.vault.tokens = 2
    harness.now += timedelta(hours=720)
    harness.run()
    assert harness.status['vault']['secretVersion'] == 2
    assert harness.status['vault']['lastRotatedAt'] == '2026-12-31T12:00:00Z'
    assert harness.vault.tokens == 2, 'a scheduled rotation is a rollover, not a revocation'
    assert 'SecretRotated' in [e[1] for e in harness.kube.events]
    harness.now += timedelta(hours=1)
    harness.run()
    assert harness.status['vault']['secretVersion'] == 2, 'not again before the next period'


def test_rotation_on_demand_happens_once_per_annotation_value(harness: Harness) -> None:
    harness.run()
    harness.body['metadata']['annotations'] = {'tenure.dev/rotate': 'INC-1'}
    harness.run()
    assert harness.status['vault']['secretVersion'] == 2
    assert harness.status['rotationRequest'] == 'INC-1'
    harness.body['metadata']['annotations']['argocd.argoproj.io/tracking-id'] = 'x'
    harness.run()  # GitOps churn re-stamps the same value: nothing happens
    assert harness.status['vault']['secretVersion'] == 2
    harness.body['metadata']['annotations']['tenure.dev/rotate'] = 'INC-2'
    harness.run()
    assert harness.status['vault']['secretVersion'] == 3

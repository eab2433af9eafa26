"""Drift (issue #6) without a cluster: what a reconcile counts as a repair and reports, the
bindings index, the watch events that ask for a reconcile, and the periodic Vault check."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tenure.api.v1alpha1 import Owner, Scope
from tenure.cli import _build_parser
from tenure.config import ConfigError, OperatorConfig, parse_run_config
from tenure.domain.desired import Identity, VaultRole, vault_policy
from tenure.domain.drift import (
    BindingRef,
    DriftKind,
    Repair,
    VaultExpectation,
    drift_message,
    kubernetes_repairs,
    pace,
    policy_claimed_by_other,
    role_claimed_by_other,
    role_ttl_drifted,
)
from tenure.domain.inventory import BindingRecord
from tenure.domain.names import IdentityNames
from tenure.drift import BindingIndex, DriftWatch, vault_differences, vault_resync
from tenure.errors import NameConflict
from tenure.reconcile import ReconcileFailed
from tests.unit.test_reconcile import Harness

Build = Callable[..., dict[str, Any]]
NS, NAME = 'payments', 'settlement-exporter'
ROLE = f'tenure-{NS}-{NAME}'
SECRET = f'tenure/{NS}/{NAME}'


@pytest.fixture
def active(manifest: Build) -> Harness:
    harness = Harness(manifest())
    harness.run()
    assert harness.status['phase'] == 'Active'
    harness.kube.events.clear()
    return harness


def drift_events(harness: Harness) -> list[str]:
    return [message for _, reason, message in harness.kube.events if reason == 'DriftRepaired']


# -- what a reconcile counts as a repair -----------------------------------------------------


def test_a_reconcile_that_finds_everything_as_approved_repairs_nothing(active: Harness) -> None:
    outcome = active.run()
    assert outcome.repairs == ()
    assert drift_events(active) == []


@pytest.mark.parametrize(
    ('change', 'kind', 'what'),
    [
        pytest.param(
            lambda h: h.vault.policies.__setitem__(ROLE, 'path "secret/*" {}'),
            DriftKind.VAULT_POLICY,
            'policy text',
            id='policy-text-replaced',
        ),
        pytest.param(
            lambda h: h.vault.roles.pop(ROLE),
            DriftKind.VAULT_ROLE,
            'missing; created',
            id='role-deleted',
        ),
        pytest.param(
            lambda h: h.vault.roles.__setitem__(
                ROLE, dataclasses.replace(h.vault.roles[ROLE], ttl_seconds=86400)
            ),
            DriftKind.VAULT_ROLE,
            'token TTL',
            id='role-ttl-raised',
        ),
        pytest.param(
            lambda h: h.vault.roles.__setitem__(
                ROLE, dataclasses.replace(h.vault.roles[ROLE], service_account='intruder')
            ),
            DriftKind.VAULT_ROLE,
            'bound ServiceAccount or namespace',
            id='role-bound-elsewhere',
        ),
        pytest.param(
            lambda h: h.vault.secrets.pop(SECRET),
            DriftKind.VAULT_SECRET,
            'deleted; re-created with new values as version',
            id='secret-deleted',
        ),
        pytest.param(
            lambda h: h.kube.objects.pop(('ServiceAccount', NAME)),
            DriftKind.SERVICE_ACCOUNT,
            'missing; created',
            id='service-account-deleted',
        ),
    ],
)
def test_an_object_changed_outside_tenure_is_put_back_and_reported(
    active: Harness, change: Callable[[Harness], Any], kind: DriftKind, what: str
) -> None:
    change(active)
    outcome = active.run()
    assert [r.kind for r in outcome.repairs] == [kind]
    assert what in outcome.repairs[0].what
    [message] = drift_events(active)
    assert message.startswith('changed outside Tenure and put back: ')
    assert f'{kind.value}/' in message
    assert 'SecretRotated' not in {reason for _, reason, _ in active.kube.events}
    assert active.run().repairs == (), 'once put back, the next reconcile finds nothing'


def test_a_role_claimed_by_a_look_alike_identity_stays_a_name_conflict(active: Harness) -> None:
    """`payments`/`settlement-exporter` and `payments-settlement`/`exporter` spell the same Vault
    role: bound to the other, it is not drift to undo but another identity's role."""
    active.vault.roles[ROLE] = dataclasses.replace(
        active.vault.roles[ROLE], namespace='payments-settlement', service_account='exporter'
    )
    with pytest.raises(ReconcileFailed) as failed:
        active.run()
    assert isinstance(failed.value.cause, NameConflict)
    assert drift_events(active) == []
    assert active.vault.roles[ROLE].namespace == 'payments-settlement'


def test_writes_for_a_new_approval_are_the_converge_not_drift(active: Harness) -> None:
    active.edit('spec.owner', {'team': 'ledger', 'contact': 'ledger@example.com'})
    outcome = active.run()
    assert active.status['owner']['team'] == 'ledger'
    assert outcome.repairs == ()
    assert drift_events(active) == []


def test_tenures_own_ttl_step_near_expiry_is_not_drift(active: Harness) -> None:
    """Near the expiry Tenure halves the role's token TTL on its own schedule."""
    expires = datetime.fromisoformat(active.status['expiresAt'].replace('Z', '+00:00'))
    for remaining in (timedelta(minutes=90), timedelta(minutes=30), timedelta(minutes=10)):
        active.now = expires - remaining
        assert active.run().repairs == ()
    assert drift_events(active) == []


# -- bindings outside Tenure -----------------------------------------------------------------

EDIT = BindingRef(
    kind='RoleBinding',
    namespace=NS,
    name='sneaky',
    uid='rb-1',
    role='ClusterRole/edit',
    service_accounts=((NS, NAME),),
)
SHARED = BindingRef(
    kind='ClusterRoleBinding',
    namespace='',
    name='shared',
    uid='crb-1',
    role='ClusterRole/view',
    service_accounts=((NS, NAME),),
    other_subjects=1,
)


def test_an_unexpected_binding_is_reported_once_without_the_flag(active: Harness) -> None:
    active.reconciler.unexpected_bindings = lambda key: [EDIT] if key == (NS, NAME) else []
    active.run()
    condition = active.condition('UnexpectedBindings')
    assert condition['status'] == 'True'
    assert 'RoleBinding/payments/sneaky (grants ClusterRole/edit)' in condition['message']
    assert '--remove-unexpected-bindings' in condition['message']
    assert [r for _, r, _ in active.kube.events] == ['UnexpectedBinding']
    active.run()
    assert [r for _, r, _ in active.kube.events] == ['UnexpectedBinding'], 'reported once'
    active.reconciler.unexpected_bindings = lambda key: []
    active.run()
    assert active.condition('UnexpectedBindings')['status'] == 'False'


def test_with_the_flag_a_sole_subject_binding_is_deleted_and_a_shared_one_kept(
    active: Harness,
) -> None:
    deleted: list[BindingRef] = []
    active.kube.delete_binding = deleted.append  # type: ignore[attr-defined]
    active.reconciler.settings = dataclasses.replace(
        active.reconciler.settings, remove_unexpected_bindings=True
    )
    active.reconciler.unexpected_bindings = lambda key: [EDIT, SHARED]
    outcome = active.run()
    assert deleted == [EDIT]
    assert [str(r) for r in outcome.repairs] == [
        'RoleBinding/payments/sneaky (granted ClusterRole/edit outside Tenure; deleted)'
    ]
    condition = active.condition('UnexpectedBindings')
    assert condition['status'] == 'True'
    assert 'ClusterRoleBinding/shared' in condition['message']
    assert 'other subjects share' in condition['message']


def test_bindings_are_not_judged_before_they_are_known(active: Harness) -> None:
    active.run()
    assert all(c['type'] != 'UnexpectedBindings' for c in active.status['conditions'])


def record(name: str, *accounts: tuple[str, str], **fields: Any) -> BindingRecord:
    return BindingRecord(
        namespace=fields.pop('namespace', NS),
        name=name,
        uid=f'uid-{name}',
        role_kind='ClusterRole',
        role_name='edit',
        service_accounts=accounts,
        **fields,
    )


def test_the_binding_index_answers_per_service_account_and_follows_events() -> None:
    index = BindingIndex()
    assert index.unexpected((NS, NAME)) is None, 'unknown until the first listing'
    ours = record(
        f'tenure-{NAME}',
        (NS, NAME),
        labels={'app.kubernetes.io/managed-by': 'tenure', 'tenure.dev/identity': NAME},
    )
    index.load([ours, record('sneaky', (NS, NAME)), record('other', (NS, 'someone'))])
    assert [b.name for b in index.unexpected((NS, NAME)) or []] == ['sneaky']
    body = {
        'metadata': {'name': 'crb', 'uid': 'u'},
        'roleRef': {'kind': 'ClusterRole', 'name': 'admin'},
        'subjects': [
            {'kind': 'ServiceAccount', 'name': NAME, 'namespace': NS},
            {'kind': 'Group', 'name': 'devs'},
        ],
    }
    assert index.update('ClusterRoleBinding', 'ADDED', body) == {(NS, NAME)}
    found = index.unexpected((NS, NAME)) or []
    assert [str(b) for b in found] == [
        'ClusterRoleBinding/crb (grants ClusterRole/admin)',
        'RoleBinding/payments/sneaky (grants ClusterRole/edit)',
    ]
    assert not found[0].sole_subject
    # A RoleBinding's ServiceAccount subject without a namespace is in the binding's namespace.
    local = {
        'metadata': {'name': 'local', 'namespace': NS},
        'roleRef': {'kind': 'Role', 'name': 'x'},
        'subjects': [{'kind': 'ServiceAccount', 'name': NAME}],
    }
    assert index.update('RoleBinding', 'ADDED', local) == {(NS, NAME)}
    assert index.update('RoleBinding', None, local) == set(), 'a re-list that changes nothing'
    assert index.update('RoleBinding', 'DELETED', local) == {(NS, NAME)}
    ours_event = {
        'metadata': {'name': f'tenure-{NAME}', 'namespace': NS, 'labels': dict(ours.labels)},
        'roleRef': {'kind': 'Role', 'name': f'tenure-{NAME}'},
        'subjects': [{'kind': 'ServiceAccount', 'name': NAME, 'namespace': NS}],
    }
    assert index.update('RoleBinding', 'MODIFIED', ours_event) == set(), "Tenure's own binding"
    assert index.update('RoleBinding', 'DELETED', {'metadata': {'name': 'sneaky', 'namespace': NS}})
    assert [b.name for b in index.unexpected((NS, NAME)) or []] == ['crb']


def test_only_bindings_of_known_identities_ask_for_a_reconcile() -> None:
    index = BindingIndex()
    index.load([])
    requested: list[tuple[str, str]] = []
    drift = DriftWatch(
        request_reconcile=requested.append,
        own_write=lambda *_: False,
        expected={},
        vault=None,
        vault_interval=None,
        bindings=index,
        is_identity=lambda key: key == (NS, NAME),
    )
    body = {
        'metadata': {'name': 'b', 'namespace': NS},
        'roleRef': {'kind': 'ClusterRole', 'name': 'edit'},
        'subjects': [
            {'kind': 'ServiceAccount', 'name': NAME},
            {'kind': 'ServiceAccount', 'name': 'default'},
        ],
    }
    drift.binding_event('RoleBinding', 'ADDED', body)
    assert requested == [(NS, NAME)]


# -- the watch events --------------------------------------------------------------------------


def sa_event(version: str, *, identity: str | None = NAME) -> dict[str, Any]:
    labels = {'tenure.dev/identity': identity} if identity else {}
    return {
        'metadata': {
            'namespace': NS,
            'name': NAME,
            'uid': 'sa-uid',
            'resourceVersion': version,
            'labels': labels,
        }
    }


def watch(own: set[tuple[str, str]]) -> tuple[DriftWatch, list[tuple[str, str]]]:
    requested: list[tuple[str, str]] = []
    drift = DriftWatch(
        request_reconcile=requested.append,
        own_write=lambda kind, ns, name, marker: (name, marker) in own,
        expected={},
        vault=None,
        vault_interval=None,
    )
    return drift, requested


def test_a_change_by_someone_else_asks_for_a_reconcile_and_tenures_own_write_does_not() -> None:
    drift, requested = watch(own={(NAME, '7'), (NAME, 'deleted:sa-uid')})
    drift.managed_object_event('ServiceAccount', 'MODIFIED', sa_event('7'))
    assert requested == []
    drift.managed_object_event('ServiceAccount', 'MODIFIED', sa_event('8'))
    assert requested == [(NS, NAME)]
    drift.managed_object_event('ServiceAccount', 'DELETED', sa_event('9'))
    assert requested == [(NS, NAME)], 'its own delete'
    drift.managed_object_event('ServiceAccount', 'MODIFIED', sa_event('10', identity=None))
    assert requested == [(NS, NAME)], 'no identity label: not an identity object'


def test_a_listing_asks_for_a_reconcile_only_for_objects_changed_since_last_seen() -> None:
    drift, requested = watch(own=set())
    drift.managed_object_event('ServiceAccount', None, sa_event('5'))
    assert requested == [], 'first listing at start: every identity is resumed anyway'
    drift.managed_object_event('ServiceAccount', None, sa_event('5'))
    assert requested == []
    drift.managed_object_event('ServiceAccount', None, sa_event('6'))
    assert requested == [(NS, NAME)], 'a re-list after a watch gap shows a change'


# -- the periodic Vault check --------------------------------------------------------------------


@dataclasses.dataclass
class FakeVaultReads:
    policies: dict[str, str]
    roles: dict[str, VaultRole]
    secrets: set[str]
    reads: int = 0

    def policy_text(self, name: str) -> str | None:
        self.reads += 1
        return self.policies.get(name)

    def role_matches(self, role: VaultRole) -> bool:
        self.reads += 1
        return self.roles.get(role.name) == role

    def secret_version(self, path: str) -> int | None:
        self.reads += 1
        return 1 if path in self.secrets else None


def expectation(name: str) -> VaultExpectation:
    names = IdentityNames(NS, name)
    identity = Identity(
        names=names,
        uid='u',
        ticket_id='CHG1',
        owner=Owner(team='t', contact='t@example.com'),
        scope=Scope(),
        expires_at=datetime(2027, 1, 1, tzinfo=UTC),
    )
    role = VaultRole(names.vault_role, name, NS, names.vault_policy, 3600)
    return VaultExpectation(names.vault_policy, vault_policy(identity), role, names.secret_path)


def vault_with(*expected: VaultExpectation) -> FakeVaultReads:
    return FakeVaultReads(
        policies={e.policy: e.policy_text for e in expected},
        roles={e.role.name: e.role for e in expected},
        secrets={e.secret_path for e in expected if e.secret_path},
    )


def test_vault_differences_names_each_kind_that_differs() -> None:
    wanted = expectation('a')
    vault = vault_with(wanted)
    assert vault_differences(vault, wanted) == []
    assert vault.reads == 3, 'three reads per identity, no write'
    vault.policies[wanted.policy] += '\n# edited'
    vault.roles[wanted.role.name] = dataclasses.replace(wanted.role, ttl_seconds=86400)
    vault.secrets.clear()
    assert vault_differences(vault, wanted) == ['VaultPolicy', 'VaultRole', 'VaultSecret']


@pytest.mark.asyncio
async def test_the_vault_check_is_spread_over_its_interval_and_asks_only_for_what_differs() -> None:
    expected = {(NS, n): expectation(n) for n in ('a', 'b', 'c', 'd')}
    vault = vault_with(*expected.values())
    vault.policies[expected[(NS, 'c')].policy] = 'path "*" { capabilities = ["sudo"] }'
    gaps: list[float] = []
    requested: list[tuple[str, str]] = []

    async def sleep(seconds: float) -> None:
        gaps.append(seconds)

    await vault_resync(
        expected, vault, requested.append, timedelta(minutes=5), sleep=sleep, passes=1
    )
    assert gaps == [75.0] * 4, 'one identity every interval/n, not all at the same instant'
    assert requested == [(NS, 'c')]


@pytest.mark.asyncio
async def test_an_identity_reconciled_meanwhile_is_checked_at_the_next_pass() -> None:
    expected = {(NS, 'a'): expectation('a')}
    vault = FakeVaultReads(policies={}, roles={}, secrets=set())
    requested: list[tuple[str, str]] = []

    async def sleep(seconds: float) -> None:
        # A converge since wrote a shorter TTL: what the snapshot holds is no longer wanted.
        former = expected[(NS, 'a')]
        expected[(NS, 'a')] = dataclasses.replace(
            former, role=dataclasses.replace(former.role, ttl_seconds=60)
        )

    await vault_resync(
        expected, vault, requested.append, timedelta(seconds=1), sleep=sleep, passes=1
    )
    assert requested == []
    assert vault.reads == 0


# -- pure helpers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('current', 'last_written', 'kept', 'drifted'),
    [
        pytest.param(None, 3600, False, True, id='role-deleted'),
        pytest.param(3600, 3600, True, False, id='ttl-kept-by-the-plan'),
        pytest.param(1800, 3600, False, True, id='differs-from-tenures-last-write'),
        pytest.param(3600, 3600, False, False, id='tenures-own-step-near-expiry'),
        pytest.param(86400, None, False, True, id='after-restart-above-the-cap'),
        pytest.param(1800, None, False, False, id='after-restart-within-the-cap-unknowable'),
    ],
)
def test_role_ttl_drift(
    current: int | None, last_written: int | None, kept: bool, drifted: bool
) -> None:
    assert (
        role_ttl_drifted(current=current, cap=3600, last_written=last_written, kept=kept) is drifted
    )


def test_look_alike_claims_are_recognised() -> None:
    names = IdentityNames('payments', 'settlement-exporter')
    assert role_claimed_by_other((('payments-settlement',), ('exporter',)), names)
    assert not role_claimed_by_other((('payments',), ('intruder',)), names)
    assert not role_claimed_by_other((('a', 'b'), ('exporter',)), names)
    other = IdentityNames('payments-settlement', 'exporter')
    text = vault_policy(
        Identity(other, 'u', 'T', Owner(team='t', contact='t@x.io'), Scope(), datetime.now(UTC))
    )
    assert policy_claimed_by_other(text, names)
    assert not policy_claimed_by_other('path "x" {}', names)


def test_the_kubernetes_changes_become_repairs_of_known_kinds_only() -> None:
    repairs = kubernetes_repairs({'Role/tenure-x': 'rules', 'Secret/y': 'data'})
    assert repairs == [Repair(DriftKind.ROLE, 'tenure-x', 'rules')]


def test_the_drift_message_stays_within_an_event() -> None:
    many = [Repair(DriftKind.ROLE_BINDING, f'tenure-x-{i:03}', 'subjects') for i in range(100)]
    assert len(drift_message(many)) < 1024


def test_the_pace_fills_the_interval() -> None:
    assert pace(4, timedelta(minutes=5)) == 75
    assert pace(0, timedelta(seconds=2)) == 2
    assert pace(10**9, timedelta(seconds=1)) == 0.001


# -- the flags ---------------------------------------------------------------------------------


def run_config(*argv: str) -> OperatorConfig:
    args = _build_parser().parse_args(['run', *argv])
    return parse_run_config(args, {'VAULT_ADDR': 'http://127.0.0.1:8200', 'VAULT_TOKEN': 'root'})


@pytest.mark.parametrize(
    ('argv', 'resync', 'inventory', 'remove'),
    [
        pytest.param((), timedelta(minutes=5), timedelta(minutes=5), False, id='defaults'),
        pytest.param(
            ('--vault-resync', '0', '--inventory-interval', '0'), None, None, False, id='zero-off'
        ),
        pytest.param(
            ('--vault-resync', '90s', '--remove-unexpected-bindings'),
            timedelta(seconds=90),
            timedelta(minutes=5),
            True,
            id='set',
        ),
    ],
)
def test_the_drift_and_inventory_flags(
    argv: tuple[str, ...],
    resync: timedelta | None,
    inventory: timedelta | None,
    remove: bool,
) -> None:
    config = run_config(*argv)
    assert config.vault_resync == resync
    assert config.inventory_interval == inventory
    assert config.remove_unexpected_bindings is remove


def test_a_resync_that_is_no_duration_is_refused() -> None:
    with pytest.raises(ConfigError, match='--vault-resync'):
        run_config('--vault-resync', 'often')


def test_only_binding_events_that_can_change_the_index_reach_the_handler() -> None:
    index = BindingIndex()
    index.load([record('sneaky', (NS, NAME))])
    users_only = {
        'metadata': {'name': 'humans', 'namespace': NS},
        'subjects': [{'kind': 'User', 'name': 'alice'}],
    }
    assert not index.relevant('RoleBinding', users_only)
    assert index.relevant(
        'RoleBinding', {**users_only, 'metadata': {'name': 'sneaky', 'namespace': NS}}
    )
    assert index.relevant(
        'ClusterRoleBinding', {'metadata': {'name': 'x'}, 'subjects': [{'kind': 'ServiceAccount'}]}
    )


def test_a_token_ttl_refresh_between_reconciles_is_what_the_drift_check_expects(
    active: Harness,
) -> None:
    """Near the expiry the TTL is shortened without a reconcile (`Reconciler.refresh`): neither
    the Vault check nor the next reconcile may take Tenure's own write for drift."""
    expires = datetime.fromisoformat(active.status['expiresAt'].replace('Z', '+00:00'))
    active.now = expires - timedelta(minutes=2)
    due = active.run().token_refresh
    assert due is not None
    active.now = due.at
    assert active.reconciler.refresh(due) is not None
    expected = active.reconciler.vault_expected[(NS, NAME)]
    assert expected.role == active.vault.roles[ROLE], 'the refreshed role is the expected one'
    assert active.run().repairs == ()
    assert drift_events(active) == []

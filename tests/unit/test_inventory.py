"""`tenure report`: what every non-human identity is (Managed, Leaked, Unmanaged) and the OWASP
NHI Top 10 risk each finding maps to (issue #6). Pure: records in, findings out."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from tenure.domain.inventory import (
    BindingRecord,
    Class,
    Finding,
    IdentityRecord,
    Inventory,
    Kind,
    Risk,
    Scope,
    ServiceAccountRecord,
    TokenSecretRecord,
    VaultPolicyRecord,
    VaultRoleRecord,
    classify,
)
from tests.unit.conftest import VALID

NOW = datetime(2026, 12, 10, tzinfo=UTC)
NS = 'payments'
SI_UID = 'si-uid'
TENURE = {'app.kubernetes.io/managed-by': 'tenure', 'tenure.dev/identity': 'exporter'}
TENURE_NOTES = {
    'tenure.dev/ticket': 'CHG0031337',
    'tenure.dev/owner-team': 'payments-platform',
    'tenure.dev/expires-at': '2027-02-15T00:00:00Z',
}


def identity(phase: str = 'Active', **status: Any) -> IdentityRecord:
    body = copy.deepcopy(VALID)
    body['metadata'] = {'name': 'exporter', 'namespace': NS, 'uid': SI_UID}
    body['status'] = {
        'phase': phase,
        'owner': {'team': 'payments-platform', 'contact': 'payments-oncall@example.com'},
        'approval': {
            'ticketId': 'CHG0031337',
            'approver': 'bob@example.com',
            'approvedAt': '2026-11-28T10:00:00Z',
        },
        'expiresAt': '2027-02-15T00:00:00Z',
        **status,
    }
    return IdentityRecord.from_body(body)


REVOKED = {
    'revocation': {
        'reason': 'Expired',
        'requestedAt': '2026-12-01T00:00:00Z',
        'completedAt': '2026-12-01T00:00:01Z',
        'verified': True,
    }
}
REVOKING = {
    'revocation': {'reason': 'TicketCancelled', 'requestedAt': '2026-12-01T00:00:00Z'},
}


def tenure_sa(**kw: Any) -> ServiceAccountRecord:
    fields: dict[str, Any] = {
        'namespace': NS,
        'name': 'exporter',
        'uid': 'sa-uid',
        'labels': TENURE,
        'annotations': TENURE_NOTES,
        'owner_uids': (SI_UID,),
    }
    return ServiceAccountRecord(**{**fields, **kw})


def sa(name: str, namespace: str = NS, **kw: Any) -> ServiceAccountRecord:
    return ServiceAccountRecord(namespace=namespace, name=name, uid=f'{name}-uid', **kw)


def token(name: str, account: str, namespace: str = NS) -> TokenSecretRecord:
    return TokenSecretRecord(namespace=namespace, name=name, service_account=account)


def binding(
    name: str,
    subjects: tuple[tuple[str, str], ...],
    namespace: str = NS,
    cluster_wide: bool = False,
    **kw: Any,
) -> BindingRecord:
    return BindingRecord(
        namespace='' if cluster_wide else namespace,
        name=name,
        cluster_wide=cluster_wide,
        role_kind='ClusterRole',
        role_name='edit',
        service_accounts=subjects,
        **kw,
    )


TENURE_ROLE = VaultRoleRecord(
    name='tenure-payments-exporter',
    bound_namespaces=(NS,),
    bound_service_accounts=('exporter',),
    policies=('tenure-payments-exporter',),
    token_max_ttl=3600,
)
TENURE_POLICY = VaultPolicyRecord(
    name='tenure-payments-exporter',
    text='# Managed by Tenure for payments/exporter (ticket CHG0031337, owner payments-platform). '
    'Changes are reverted.\n\npath "secret/data/payments/x/*" {\n  capabilities = ["read"]\n}\n',
)


def only(inventory: Inventory, kind: Kind, scope: Scope | None = None) -> Finding:
    found = [f for f in classify(inventory, NOW, scope) if f.kind is kind]
    assert len(found) == 1, found
    return found[0]


# -- objects Tenure made: Managed while an Active identity stands behind them, else Leaked ----

STANDINGS = [
    pytest.param((identity(),), Class.MANAGED, None, 'approved under CHG0031337', id='active'),
    pytest.param(
        (identity(expiresAt='2026-12-09T00:00:00Z'),),
        Class.MANAGED,
        Risk.NHI1,
        'not revoked yet',
        id='active-but-past-expiry-is-an-offboarding-risk',
    ),
    pytest.param(
        (identity('Revoked', **REVOKED),),
        Class.LEAKED,
        Risk.NHI1,
        'revoked (Expired)',
        id='identity-revoked',
    ),
    pytest.param(
        (identity('Active', **REVOKING),),
        Class.LEAKED,
        Risk.NHI1,
        'not verified yet',
        id='revocation-in-progress',
    ),
    pytest.param(
        (identity('Pending'),),
        Class.LEAKED,
        Risk.NHI1,
        'is Pending',
        id='identity-not-provisioned',
    ),
    pytest.param((), Class.LEAKED, Risk.NHI1, 'no longer exists', id='identity-missing'),
]


@pytest.mark.parametrize(('identities', 'class_', 'risk', 'detail'), STANDINGS)
@pytest.mark.parametrize(
    ('inventory', 'kind'),
    [
        pytest.param(Inventory(service_accounts=(tenure_sa(),)), Kind.SERVICE_ACCOUNT, id='sa'),
        pytest.param(
            Inventory(
                bindings=(
                    binding(
                        'tenure-exporter',
                        ((NS, 'exporter'),),
                        labels=TENURE,
                        annotations=TENURE_NOTES,
                        owner_uids=(SI_UID,),
                    ),
                )
            ),
            Kind.ROLE_BINDING,
            id='rolebinding',
        ),
        pytest.param(Inventory(vault_roles=(TENURE_ROLE,)), Kind.VAULT_ROLE, id='vault-role'),
        pytest.param(
            Inventory(vault_policies=(TENURE_POLICY,)), Kind.VAULT_POLICY, id='vault-policy'
        ),
    ],
)
def test_what_tenure_made_is_managed_only_while_an_active_identity_stands_behind_it(
    inventory: Inventory,
    kind: Kind,
    identities: tuple[IdentityRecord, ...],
    class_: Class,
    risk: Risk | None,
    detail: str,
) -> None:
    finding = only(Inventory(**{**vars(inventory), 'identities': identities}), kind)
    assert (finding.class_, finding.risk) == (class_, risk)
    assert detail in finding.detail
    assert finding.namespace == NS
    if identities or kind is not Kind.VAULT_ROLE:
        # From the identity, or from what the object says (annotations, the policy's first line).
        assert finding.owner == 'payments-platform'
        assert finding.ticket == 'CHG0031337'
    if identities or kind in (Kind.SERVICE_ACCOUNT, Kind.ROLE_BINDING):
        assert finding.expires_at is not None


def test_a_managed_finding_answers_who_owns_it_why_and_until_when() -> None:
    finding = only(
        Inventory(identities=(identity(),), service_accounts=(tenure_sa(),)), Kind.SERVICE_ACCOUNT
    )
    governance = finding.governance
    assert governance is not None
    assert governance.identity == 'payments/exporter'
    assert governance.owner_contact == 'payments-oncall@example.com'
    assert (governance.ticket_system, governance.requester, governance.approver) == (
        'servicenow',
        'alice@example.com',
        'bob@example.com',
    )
    assert governance.justification == 'Nightly export of settlement totals.'
    assert finding.days_left(NOW) == 67


def test_a_service_account_left_by_an_earlier_identity_of_the_same_name_is_leaked() -> None:
    stale = tenure_sa(owner_uids=('deleted-si-uid',))
    finding = only(
        Inventory(identities=(identity(),), service_accounts=(stale,)), Kind.SERVICE_ACCOUNT
    )
    assert (finding.class_, finding.risk) == (Class.LEAKED, Risk.NHI1)
    assert 'earlier ServiceIdentity' in finding.detail


# -- ServiceIdentities themselves ---------------------------------------------------------------


@pytest.mark.parametrize(
    ('record', 'expected'),
    [
        pytest.param(identity(), (Class.MANAGED, None), id='active-is-managed'),
        pytest.param(
            identity('Active', **REVOKING), (Class.LEAKED, Risk.NHI1), id='unverified-revocation'
        ),
        pytest.param(identity('Revoked', **REVOKED), None, id='tombstone-is-no-identity'),
        pytest.param(identity('Pending'), None, id='pending-is-no-identity'),
        pytest.param(identity('Denied'), None, id='denied-is-no-identity'),
    ],
)
def test_service_identities_are_reported_while_they_grant_or_should_stop_granting(
    record: IdentityRecord, expected: tuple[Class, Risk | None] | None
) -> None:
    found = [
        (f.class_, f.risk)
        for f in classify(Inventory(identities=(record,)), NOW)
        if f.kind is Kind.SERVICE_IDENTITY
    ]
    assert found == ([expected] if expected else [])


# -- Unmanaged: no ServiceIdentity stands behind it ---------------------------------------------

UNMANAGED = [
    pytest.param(
        Inventory(service_accounts=(sa('legacy-batch'),)),
        Kind.SERVICE_ACCOUNT,
        Risk.NHI1,
        'no owner, no ticket, no expiry',
        id='hand-made-service-account',
    ),
    pytest.param(
        Inventory(identities=(identity('Denied'),), service_accounts=(sa('exporter'),)),
        Kind.SERVICE_ACCOUNT,
        Risk.NHI1,
        'NameConflict',
        id='service-account-a-denied-identity-collided-with',
    ),
    pytest.param(
        Inventory(
            service_accounts=(sa('legacy-batch'),), token_secrets=(token('t', 'legacy-batch'),)
        ),
        Kind.SECRET,
        Risk.NHI7,
        'created by hand',
        id='hand-made-token-secret',
    ),
    pytest.param(
        Inventory(
            service_accounts=(sa('legacy-batch', secrets=('legacy-batch-token-x1',)),),
            token_secrets=(token('legacy-batch-token-x1', 'legacy-batch'),),
        ),
        Kind.SECRET,
        Risk.NHI7,
        'generated by Kubernetes',
        id='generated-token-secret',
    ),
    pytest.param(
        Inventory(service_accounts=(sa('default'),), token_secrets=(token('d', 'default'),)),
        Kind.SECRET,
        Risk.NHI7,
        'for ServiceAccount default',
        id='token-secret-of-the-default-service-account',
    ),
    pytest.param(
        Inventory(token_secrets=(token('orphan-token', 'gone'),)),
        Kind.SECRET,
        Risk.NHI1,
        'does not exist',
        id='token-secret-of-a-missing-service-account',
    ),
    pytest.param(
        Inventory(
            service_accounts=(sa('batch'),), bindings=(binding('batch-edit', ((NS, 'batch'),)),)
        ),
        Kind.ROLE_BINDING,
        Risk.NHI5,
        'no approval behind it',
        id='rolebinding',
    ),
    pytest.param(
        Inventory(bindings=(binding('peek', (('analytics', 'reader'),)),)),
        Kind.ROLE_BINDING,
        Risk.NHI8,
        'crosses namespaces: analytics/reader',
        id='rolebinding-across-namespaces',
    ),
    pytest.param(
        Inventory(bindings=(binding('everyone', ((NS, 'default'),)),)),
        Kind.ROLE_BINDING,
        Risk.NHI9,
        'every pod without its own ServiceAccount',
        id='rolebinding-of-the-default-service-account',
    ),
    pytest.param(
        Inventory(
            identities=(identity(),),
            service_accounts=(tenure_sa(),),
            bindings=(binding('extra-edit', ((NS, 'exporter'),)),),
        ),
        Kind.ROLE_BINDING,
        Risk.NHI5,
        'UnexpectedBinding',
        id='extra-rolebinding-of-a-managed-identity',
    ),
    pytest.param(
        Inventory(bindings=(binding('ci-admin', ((NS, 'ci'),), cluster_wide=True),)),
        Kind.CLUSTER_ROLE_BINDING,
        Risk.NHI5,
        'cluster-wide',
        id='clusterrolebinding',
    ),
    pytest.param(
        Inventory(
            vault_roles=(VaultRoleRecord('ci', (NS,), ('ci',), ('ci-policy',), token_max_ttl=0),)
        ),
        Kind.VAULT_ROLE,
        Risk.NHI1,
        'capped only by the mount',
        id='vault-role',
    ),
    pytest.param(
        Inventory(vault_roles=(VaultRoleRecord('anyone', ('*',), ('*',), ('p',), 60),)),
        Kind.VAULT_ROLE,
        Risk.NHI9,
        'wildcard',
        id='vault-role-bound-to-any-service-account',
    ),
    pytest.param(
        Inventory(
            vault_roles=(
                VaultRoleRecord('tenure-payments-exporter', (NS,), ('someone-else',), ('p',), 60),
            )
        ),
        Kind.VAULT_ROLE,
        Risk.NHI1,
        'named like a Tenure role',
        id='vault-role-named-like-tenure',
    ),
    pytest.param(
        Inventory(
            vault_policies=(
                VaultPolicyRecord('ops', 'path "sys/*" {\n  capabilities = ["read", "sudo"]\n}\n'),
            )
        ),
        Kind.VAULT_POLICY,
        Risk.NHI5,
        '1 path(s) granted with no approval behind them, sudo among them',
        id='vault-policy',
    ),
    pytest.param(
        Inventory(vault_policies=(VaultPolicyRecord('tenure-payments-other', TENURE_POLICY.text),)),
        Kind.VAULT_POLICY,
        Risk.NHI5,
        'no approval',
        id='tenure-marker-under-another-name',
    ),
]


@pytest.mark.parametrize(('inventory', 'kind', 'risk', 'detail'), UNMANAGED)
def test_identities_without_a_service_identity_are_unmanaged(
    inventory: Inventory, kind: Kind, risk: Risk, detail: str
) -> None:
    finding = only(inventory, kind)
    assert (finding.class_, finding.risk) == (Class.UNMANAGED, risk)
    assert detail in finding.detail
    assert finding.owner is None
    assert finding.ticket is None


@pytest.mark.parametrize(
    ('identities', 'class_', 'risk'),
    [
        pytest.param((identity(),), Class.MANAGED, Risk.NHI7, id='of-a-managed-identity'),
        pytest.param(
            (identity('Revoked', **REVOKED),), Class.LEAKED, Risk.NHI1, id='of-a-leaked-identity'
        ),
    ],
)
def test_a_token_secret_follows_its_service_account_and_is_always_long_lived(
    identities: tuple[IdentityRecord, ...], class_: Class, risk: Risk
) -> None:
    inventory = Inventory(
        identities=identities,
        service_accounts=(tenure_sa(),),
        token_secrets=(token('exporter-token', 'exporter'),),
    )
    finding = only(inventory, Kind.SECRET)
    assert (finding.class_, finding.risk) == (class_, risk)
    assert 'created by hand' in finding.detail
    assert finding.owner == 'payments-platform'


# -- what is left out unless asked for -----------------------------------------------------------

SYSTEM = Inventory(
    service_accounts=(sa('default'), sa('coredns', namespace='kube-system')),
    token_secrets=(token('bootstrap', 'coredns', namespace='kube-system'),),
    bindings=(
        binding('system:coredns', (('kube-system', 'coredns'),), cluster_wide=True),
        binding('kube-proxy', (('kube-system', 'kube-proxy'),), cluster_wide=True),
    ),
    vault_policies=(VaultPolicyRecord('default', 'path "x" {}'), VaultPolicyRecord('root', '')),
)


def test_system_identities_are_left_out_by_default() -> None:
    assert classify(SYSTEM, NOW) == []


def test_include_system_reports_them_too() -> None:
    found = {(f.kind, f.name) for f in classify(SYSTEM, NOW, Scope(include_system=True))}
    assert found == {
        (Kind.SERVICE_ACCOUNT, 'default'),
        (Kind.SERVICE_ACCOUNT, 'coredns'),
        (Kind.SECRET, 'bootstrap'),
        (Kind.CLUSTER_ROLE_BINDING, 'system:coredns'),
        (Kind.CLUSTER_ROLE_BINDING, 'kube-proxy'),
        (Kind.VAULT_POLICY, 'default'),
        (Kind.VAULT_POLICY, 'root'),
    }


def test_a_namespace_scope_keeps_what_belongs_to_that_namespace() -> None:
    inventory = Inventory(
        identities=(identity(),),
        service_accounts=(tenure_sa(), sa('other', namespace='analytics')),
        bindings=(
            binding('reads-payments', ((NS, 'exporter'),), cluster_wide=True),
            binding('reads-analytics', (('analytics', 'other'),), cluster_wide=True),
        ),
        vault_roles=(TENURE_ROLE, VaultRoleRecord('analytics-ci', ('analytics',), ('ci',))),
        vault_policies=(TENURE_POLICY, VaultPolicyRecord('ops', 'path "x" {}')),
    )
    found = {(f.kind, f.name) for f in classify(inventory, NOW, Scope(namespace=NS))}
    assert found == {
        (Kind.SERVICE_IDENTITY, 'exporter'),
        (Kind.SERVICE_ACCOUNT, 'exporter'),
        (Kind.CLUSTER_ROLE_BINDING, 'reads-payments'),
        (Kind.VAULT_ROLE, 'tenure-payments-exporter'),
        (Kind.VAULT_POLICY, 'tenure-payments-exporter'),
    }


def test_the_riskiest_findings_come_first() -> None:
    inventory = Inventory(
        identities=(identity(),),
        service_accounts=(tenure_sa(), sa('legacy')),
        vault_policies=(
            VaultPolicyRecord(
                'tenure-payments-gone',
                TENURE_POLICY.text.replace('payments/exporter', 'payments/gone'),
            ),
        ),
    )
    assert [(f.class_, f.kind) for f in classify(inventory, NOW)] == [
        (Class.LEAKED, Kind.VAULT_POLICY),
        (Class.UNMANAGED, Kind.SERVICE_ACCOUNT),
        (Class.MANAGED, Kind.SERVICE_IDENTITY),
        (Class.MANAGED, Kind.SERVICE_ACCOUNT),
    ]


def test_an_identity_with_an_unreadable_status_or_spec_is_still_classified() -> None:
    record = IdentityRecord.from_body(
        {
            'metadata': {'namespace': NS, 'name': 'exporter'},
            'spec': {'bad': 1},
            'status': {'phase': 'Nope'},
        }
    )
    assert record.spec is None
    finding = only(
        Inventory(identities=(record,), service_accounts=(tenure_sa(),)), Kind.SERVICE_ACCOUNT
    )
    assert finding.class_ is Class.LEAKED
    assert finding.owner == 'payments-platform', 'from the object annotations'

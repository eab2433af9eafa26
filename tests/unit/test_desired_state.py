"""What an Active identity looks like in Kubernetes and Vault, by the names in the design card."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tenure.api.v1alpha1 import Owner, PolicyRule, Scope, VaultPathRule
from tenure.domain.desired import (
    Identity,
    kubernetes_objects,
    plan_token_ttl,
    secret_metadata,
    vault_policy,
    vault_role,
)
from tenure.domain.names import IdentityNames

EXPIRES = datetime(2027, 2, 15, tzinfo=UTC)


def identity(**scope: object) -> Identity:
    return Identity(
        names=IdentityNames('payments', 'exporter'),
        uid='5d1a-uid',
        ticket_id='CHG0031337',
        owner=Owner(team='payments', contact='pay@example.com'),
        scope=Scope.model_validate(scope),
        expires_at=EXPIRES,
    )


RULE = PolicyRule(resources=['configmaps'], verbs=['get'], resource_names=['cfg'], api_groups=[''])


def test_service_account_role_and_binding_carry_the_contract_names_and_labels() -> None:
    objects = kubernetes_objects(identity(rules=[RULE]))
    assert [(o['kind'], o['metadata']['name']) for o in objects] == [
        ('ServiceAccount', 'exporter'),
        ('Role', 'tenure-exporter'),
        ('RoleBinding', 'tenure-exporter'),
    ]
    for obj in objects:
        meta = obj['metadata']
        assert meta['namespace'] == 'payments'
        assert meta['labels'] == {
            'app.kubernetes.io/managed-by': 'tenure',
            'tenure.dev/identity': 'exporter',
        }
        assert meta['annotations'] == {
            'tenure.dev/ticket': 'CHG0031337',
            'tenure.dev/owner-team': 'payments',
            'tenure.dev/owner-contact': 'pay@example.com',
            'tenure.dev/expires-at': '2027-02-15T00:00:00Z',
        }
        (owner,) = meta['ownerReferences']
        assert (owner['kind'], owner['name'], owner['uid']) == (
            'ServiceIdentity',
            'exporter',
            '5d1a-uid',
        )
    assert objects[1]['rules'] == [
        {'apiGroups': [''], 'resources': ['configmaps'], 'verbs': ['get'], 'resourceNames': ['cfg']}
    ]
    assert objects[2]['roleRef'] == {
        'apiGroup': 'rbac.authorization.k8s.io',
        'kind': 'Role',
        'name': 'tenure-exporter',
    }
    assert objects[2]['subjects'] == [
        {'kind': 'ServiceAccount', 'name': 'exporter', 'namespace': 'payments'}
    ]


def test_no_rules_means_no_role_and_each_cluster_role_gets_its_own_binding() -> None:
    objects = kubernetes_objects(identity(cluster_roles=['view', 'metrics-reader']))
    assert [(o['kind'], o['metadata']['name']) for o in objects] == [
        ('ServiceAccount', 'exporter'),
        ('RoleBinding', 'tenure-exporter-view'),
        ('RoleBinding', 'tenure-exporter-metrics-reader'),
    ]
    assert objects[1]['roleRef']['kind'] == 'ClusterRole'


def test_the_vault_policy_grants_the_approved_paths_and_the_own_secret_only() -> None:
    text = vault_policy(
        identity(
            vault_policy=[
                VaultPathRule(path='secret/data/payments/x/*', capabilities=['read', 'list'])
            ],
            secret_keys=['api-key'],
        )
    )
    assert 'path "secret/data/payments/x/*" {\n  capabilities = ["list", "read"]\n}' in text
    assert 'path "secret/data/tenure/payments/exporter" {\n  capabilities = ["read"]\n}' in text
    assert text.count('path "') == 2


def test_without_a_generated_secret_the_policy_does_not_mention_one() -> None:
    text = vault_policy(
        identity(vault_policy=[VaultPathRule(path='kv/data/a', capabilities=['read'])])
    )
    assert 'tenure/payments/exporter' not in text


def test_the_vault_role_binds_exactly_one_service_account_with_revocable_capped_tokens() -> None:
    config = vault_role(identity(), 1800).config()
    assert config['bound_service_account_names'] == ['exporter']
    assert config['bound_service_account_namespaces'] == ['payments']
    assert config['token_policies'] == ['tenure-payments-exporter']
    assert config['token_type'] == 'service'
    assert (
        config['token_ttl'] == config['token_max_ttl'] == config['token_explicit_max_ttl'] == 1800
    )


def test_secret_metadata_answers_who_why_and_until_when() -> None:
    assert secret_metadata(identity()) == {
        'managed-by': 'tenure',
        'identity': 'payments/exporter',
        'ticket': 'CHG0031337',
        'owner-team': 'payments',
        'owner-contact': 'pay@example.com',
        'expires-at': '2027-02-15T00:00:00Z',
    }


def test_far_from_expiry_the_token_ttl_is_the_maximum_and_a_restart_writes_nothing() -> None:
    now = EXPIRES - timedelta(days=30)
    first = plan_token_ttl(now, EXPIRES, None)
    assert (first.ttl_seconds, first.write) == (3600, True)
    again = plan_token_ttl(now + timedelta(minutes=10), EXPIRES, first.ttl_seconds)
    assert not again.write


def test_near_expiry_the_token_ttl_shrinks() -> None:
    plan = plan_token_ttl(EXPIRES - timedelta(minutes=20), EXPIRES, 3600)
    assert plan.write
    assert plan.ttl_seconds == 600


@given(
    remaining=st.integers(min_value=2, max_value=90 * 86400),
    current=st.one_of(st.none(), st.integers(min_value=1, max_value=7200)),
    logged_in_after=st.floats(min_value=0, max_value=1),
)
def test_no_token_issued_before_the_next_refresh_outlives_the_expiry(
    remaining: int, current: int | None, logged_in_after: float
) -> None:
    now = EXPIRES - timedelta(seconds=remaining)
    plan = plan_token_ttl(now, EXPIRES, current)
    login = now + (plan.next_refresh - now) * logged_in_after
    assert login + timedelta(seconds=plan.ttl_seconds) <= EXPIRES
    assert plan.next_refresh > now

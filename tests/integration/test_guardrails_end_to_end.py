"""Nothing outside a tenant's namespace is read or written on its behalf: the real operator, the
emulator and OpenBao (issue #4; the confused-deputy class of bugs in similar operators:
external-secrets GHSA-fcxq-v2r3-cc8h, CVE-2024-45041).

Tenant A controls a ServiceIdentity in its namespace and nothing else. Whatever it names there
(a ServiceAccount name used in namespace B, Vault paths under B's prefix or under tenure/, a name
that spells B's Vault objects) must leave B's Kubernetes objects and Vault material as they were.
"""

from __future__ import annotations

import uuid
from typing import Any

import hvac.exceptions
import pytest
from kubernetes.client.exceptions import ApiException

from tenure_devtools.operator_process import OperatorProcess
from tests.integration.stack import Obj, Stack, identity

pytestmark = pytest.mark.integration

MANAGED = 'app.kubernetes.io/managed-by=tenure'


def two_namespaces(stack: Stack) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return stack.namespace(f'tenant-a-{suffix}'), stack.namespace(f'tenant-b-{suffix}')


def snapshot(stack: Stack, namespace: str, name: str) -> dict[str, Any]:
    """B's objects that share the identity's names, as the API returns them."""
    return {
        'sa': stack.core.read_namespaced_service_account(name, namespace).to_dict(),
        'role': stack.rbac.read_namespaced_role(f'tenure-{name}', namespace).to_dict(),
        'binding': stack.rbac.read_namespaced_role_binding(f'tenure-{name}', namespace).to_dict(),
    }


def plant_look_alikes(stack: Stack, namespace: str, name: str) -> None:
    """B's own ServiceAccount, Role and RoleBinding, with exactly the names Tenure would use."""
    labels = {'team': 'b'}
    stack.core.create_namespaced_service_account(
        namespace, {'metadata': {'name': name, 'labels': labels}}
    )
    stack.rbac.create_namespaced_role(
        namespace,
        {
            'metadata': {'name': f'tenure-{name}', 'labels': labels},
            'rules': [{'apiGroups': [''], 'resources': ['pods'], 'verbs': ['get']}],
        },
    )
    stack.rbac.create_namespaced_role_binding(
        namespace,
        {
            'metadata': {'name': f'tenure-{name}', 'labels': labels},
            'roleRef': {
                'apiGroup': 'rbac.authorization.k8s.io',
                'kind': 'Role',
                'name': f'tenure-{name}',
            },
            'subjects': [{'kind': 'ServiceAccount', 'name': name, 'namespace': namespace}],
        },
    )


def labelled_elsewhere(stack: Stack, name: str, home: str) -> list[str]:
    """Every object carrying Tenure's labels for `name` outside namespace `home`."""
    selector = f'{MANAGED},tenure.dev/identity={name}'
    found = []
    for kind, listing in (
        ('ServiceAccount', stack.core.list_service_account_for_all_namespaces),
        ('Secret', stack.core.list_secret_for_all_namespaces),
        ('Role', stack.rbac.list_role_for_all_namespaces),
        ('RoleBinding', stack.rbac.list_role_binding_for_all_namespaces),
    ):
        for item in listing(label_selector=selector).items:
            if item.metadata.namespace != home:
                found.append(f'{kind} {item.metadata.namespace}/{item.metadata.name}')
    return found


def valid_condition(obj: Obj) -> Obj:
    found: Obj = next(c for c in obj['status']['conditions'] if c['type'] == 'Valid')
    return found


def test_an_identity_named_like_a_service_account_in_another_namespace_leaves_it_untouched(
    operator: OperatorProcess, stack: Stack
) -> None:
    a, b = two_namespaces(stack)
    name = 'billing'
    plant_look_alikes(stack, b, name)
    before = snapshot(stack, b, name)

    stack.create(identity(name, a))
    stack.wait_phase(a, name, 'Active')
    assert snapshot(stack, b, name) == before, 'provisioning in A touched B'
    assert labelled_elsewhere(stack, name, a) == []

    stack.delete(a, name)
    stack.wait_gone(a, name)
    assert snapshot(stack, b, name) == before, 'revocation in A touched B'
    assert labelled_elsewhere(stack, name, a) == []


def test_vault_paths_under_another_namespace_are_denied_and_nothing_is_created(
    operator: OperatorProcess, stack: Stack
) -> None:
    a, b = two_namespaces(stack)
    manifest = identity('reader', a)
    manifest['spec']['vault']['policy'] = [
        {'path': f'secret/data/{b}/database', 'capabilities': ['read']}
    ]
    stack.create(manifest)
    obj = stack.wait_phase(a, 'reader', 'Denied')
    valid = valid_condition(obj)
    assert valid['reason'] == 'VaultPathNotAllowed'
    assert f'secret/data/{b}/database' in valid['message']
    assert 'VaultPathNotAllowed' in stack.wait_events(a, 'reader', {'VaultPathNotAllowed'})
    with pytest.raises(ApiException) as missing:
        stack.core.read_namespaced_service_account('reader', a)
    assert missing.value.status == 404
    with pytest.raises(hvac.exceptions.InvalidPath):
        stack.bao.client().sys.read_acl_policy(f'tenure-{a}-reader')
    assert labelled_elsewhere(stack, 'reader', a) == []


@pytest.mark.parametrize(
    'path',
    [
        pytest.param('secret/data/tenure/{b}/victim', id='generated-secret'),
        pytest.param('secret/metadata/tenure/{b}/victim', id='generated-secret-metadata'),
        pytest.param('secret/data/{a}/../{b}/database', id='dot-dot-into-b'),
    ],
)
def test_the_api_server_refuses_paths_into_other_identities_secrets(
    operator: OperatorProcess, stack: Stack, path: str
) -> None:
    a, b = two_namespaces(stack)
    manifest = identity('thief', a)
    manifest['spec']['vault']['policy'] = [
        {'path': path.format(a=a, b=b), 'capabilities': ['read']}
    ]
    with pytest.raises(ApiException) as refused:
        stack.create(manifest)
    assert refused.value.status == 422
    assert 'VaultPathNotAllowed' in refused.value.body
    assert stack.get(a, 'thief') is None


def test_look_alike_identities_in_two_namespaces_keep_their_own_vault_role_and_policy(
    operator: OperatorProcess, stack: Stack
) -> None:
    """`<ns>-x`/`api` and `<ns>`/`x-api` both spell `tenure-<ns>-x-api` in Vault. Tenant A (the
    second) must not rewrite B's Vault role and policy: B's ServiceAccount must still log in and
    read its own secret, and nothing A's ServiceAccount logs in to may read it."""
    suffix = uuid.uuid4().hex[:8]
    victim_ns = stack.namespace(f'look-{suffix}-x')
    intruder_ns = stack.namespace(f'look-{suffix}')
    stack.create(identity('api', victim_ns))
    stack.wait_phase(victim_ns, 'api', 'Active')
    root = stack.bao.client()
    policy_name = f'tenure-{victim_ns}-api'
    policy_before = root.sys.read_acl_policy(policy_name)['data']['policy']

    stack.create(identity('x-api', intruder_ns))
    stack.wait(
        intruder_ns, 'x-api', lambda o: o.get('status', {}).get('phase') in {'Active', 'Denied'}
    )

    assert root.sys.read_acl_policy(policy_name)['data']['policy'] == policy_before
    token = stack.vault_login(victim_ns, 'api')
    own = stack.vault_as(token).secrets.kv.v2.read_secret_version(
        path=f'tenure/{victim_ns}/api', raise_on_deleted_version=True
    )
    assert own['data']['data']['api-key']

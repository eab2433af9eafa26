"""The real operator against the emulator and OpenBao: every way access starts and ends (issue #3).

Each test checks both sides. While Active: the Kubernetes objects and the Vault material exist
with the right content and the identity can log in to Vault. After revocation: all of it is gone,
the ServiceAccount token no longer passes TokenReview, a Vault login as the identity fails, a Vault
token obtained before revocation gets 403, and the proof is in status.
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


def fresh_namespace(stack: Stack) -> str:
    return stack.namespace(f'life-{uuid.uuid4().hex[:8]}')


def assert_active(stack: Stack, ns: str, name: str) -> dict[str, Any]:
    """The identity's objects exist with the contract's content; return a live Vault session."""
    obj = stack.wait_phase(ns, name, 'Active')
    status = obj['status']
    assert status['serviceAccount'] == name
    sa = stack.core.read_namespaced_service_account(name, ns)
    assert sa.metadata.labels['tenure.dev/identity'] == name
    assert sa.metadata.annotations['tenure.dev/ticket'] == obj['spec']['ticket']['id']
    role = stack.rbac.read_namespaced_role(f'tenure-{name}', ns)
    assert role.rules[0].resource_names == [f'{name}-config']
    binding = stack.rbac.read_namespaced_role_binding(f'tenure-{name}', ns)
    assert binding.subjects[0].name == name
    root = stack.bao.client()
    policy = root.sys.read_acl_policy(f'tenure-{ns}-{name}')
    assert f'secret/data/{ns}/shared/*' in policy['data']['policy']
    sa_token = stack.service_account_token(ns, name)
    vault_token = stack.vault_login(ns, name, sa_token)
    own = stack.vault_as(vault_token).secrets.kv.v2.read_secret_version(
        path=f'tenure/{ns}/{name}', raise_on_deleted_version=True
    )
    assert set(own['data']['data']) == {'api-key'}
    assert len(own['data']['data']['api-key']) >= 43, '32 bytes of entropy, base64url'
    return {'sa_token': sa_token, 'vault_token': vault_token, 'status': status}


def assert_revoked(
    stack: Stack, ns: str, name: str, before: dict[str, Any], reason: str
) -> Obj | None:
    """Everything is gone and proven gone; what was issued before no longer works."""
    obj = stack.get(ns, name)
    if obj is not None:
        obj = stack.wait_phase(ns, name, 'Revoked')
        revocation = obj['status']['revocation']
        assert revocation['reason'] == reason
        assert revocation['verified'] is True
        assert revocation['proof']
        assert all(p['result'] == 'Gone' for p in revocation['proof'])
    for read in (
        lambda: stack.core.read_namespaced_service_account(name, ns),
        lambda: stack.rbac.read_namespaced_role(f'tenure-{name}', ns),
        lambda: stack.rbac.read_namespaced_role_binding(f'tenure-{name}', ns),
    ):
        with pytest.raises(ApiException) as missing:
            read()
        assert missing.value.status == 404
    root = stack.bao.client()
    with pytest.raises(hvac.exceptions.InvalidPath):
        root.sys.read_acl_policy(f'tenure-{ns}-{name}')
    with pytest.raises(hvac.exceptions.InvalidPath):
        root.secrets.kv.v2.read_secret_metadata(path=f'tenure/{ns}/{name}')
    assert not stack.token_review(before['sa_token']), 'the SA token must fail TokenReview'
    with pytest.raises((hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest)):
        stack.vault_login(ns, name, before['sa_token'])
    assert stack.vault_denied(before['vault_token']), 'a Vault token issued before must get 403'
    return obj


def test_deleting_an_active_identity_revokes_everything_then_releases_it(
    operator: OperatorProcess, stack: Stack
) -> None:
    ns = fresh_namespace(stack)
    stack.create(identity('exporter', ns))
    before = assert_active(stack, ns, 'exporter')
    stack.delete(ns, 'exporter')
    stack.wait_gone(ns, 'exporter')
    assert_revoked(stack, ns, 'exporter', before, 'Deleted')

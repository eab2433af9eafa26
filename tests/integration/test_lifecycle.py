"""The real operator against the emulator and OpenBao: every way access starts and ends (issue #3).

Each test checks both sides. While Active: the Kubernetes objects and the Vault material exist
with the right content and the identity can log in to Vault. After revocation: all of it is gone,
the ServiceAccount token no longer passes TokenReview, a Vault login as the identity fails, a Vault
token obtained before revocation gets 403, and the proof is in status.
"""

from __future__ import annotations

import json
import re
import time
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


@pytest.mark.parametrize(
    ('changes', 'reason'),
    [
        pytest.param(
            {'spec': {'ticket': {'state': 'Closed'}}}, 'TicketClosed', id='close-revokes-by-default'
        ),
        pytest.param(
            {'spec': {'ticket': {'state': 'Cancelled', 'onClose': 'Retain'}}},
            'TicketCancelled',
            id='cancel-revokes-whatever-onClose-says',
        ),
        pytest.param(
            {'spec': {'ticket': {'state': 'Rejected', 'onClose': 'Rotate'}}},
            'TicketRejected',
            id='reject-revokes-whatever-onClose-says',
        ),
        pytest.param(
            {'metadata': {'annotations': {'tenure.dev/revoke': 'laptop stolen, INC0042'}}},
            'Emergency',
            id='emergency-brake',
        ),
    ],
)
def test_ticket_states_and_the_emergency_brake_end_access(
    operator: OperatorProcess, stack: Stack, changes: Obj, reason: str
) -> None:
    ns = fresh_namespace(stack)
    stack.create(identity('worker', ns))
    before = assert_active(stack, ns, 'worker')
    stack.patch(ns, 'worker', changes)
    obj = assert_revoked(stack, ns, 'worker', before, reason)
    assert obj is not None, 'a revoked identity stays as a tombstone for audit and GitOps'
    ready = next(c for c in obj['status']['conditions'] if c['type'] == 'Ready')
    assert (ready['status'], ready['reason']) == ('False', 'Revoked')


def test_expiry_revokes_at_the_expiry_instant(operator: OperatorProcess, stack: Stack) -> None:
    from datetime import UTC, datetime, timedelta

    ns = fresh_namespace(stack)
    stack.create(identity('short', ns, expires_in=timedelta(seconds=6)))
    before = assert_active(stack, ns, 'short')
    in_force = datetime.fromisoformat(before['status']['expiresAt']).timestamp()
    gauge = f'tenure_identity_expiry_timestamp_seconds{{name="short",namespace="{ns}"}}'
    deadline = time.monotonic() + 10  # the gauge is set right after the status write
    while not any(
        line.startswith(gauge) and float(line.split()[-1]) == in_force
        for line in operator.metrics().splitlines()
    ):
        assert time.monotonic() < deadline, 'the expiry in force is exported for alerting'
        time.sleep(0.05)
    obj = stack.wait_phase(ns, 'short', 'Revoked', timeout=30)
    revocation = obj['status']['revocation']
    expires = datetime.fromisoformat(obj['status']['expiresAt'])
    requested = datetime.fromisoformat(revocation['requestedAt'])
    assert expires <= requested < expires + timedelta(seconds=2)
    assert requested <= datetime.now(UTC)
    assert_revoked(stack, ns, 'short', before, 'Expired')
    metrics = operator.metrics()
    count = re.search(r'^tenure_revocation_latency_seconds_count (\S+)$', metrics, re.M)
    assert count is not None
    assert float(count.group(1)) >= 1
    assert gauge not in metrics, 'a revoked identity has no expiry in force'
    assert re.search(r'^tenure_vault_requests_total\{op="write",result="ok"\} [1-9]', metrics, re.M)


def test_a_requested_ticket_stays_pending_until_approved(
    operator: OperatorProcess, stack: Stack
) -> None:
    ns = fresh_namespace(stack)
    stack.create(identity('later', ns, state='Requested'))
    obj = stack.wait_phase(ns, 'later', 'Pending')
    assert next(c for c in obj['status']['conditions'] if c['type'] == 'Ready')['reason'] == (
        'AwaitingApproval'
    )
    with pytest.raises(ApiException):
        stack.core.read_namespaced_service_account('later', ns)
    from datetime import UTC, datetime

    approved = identity('later', ns)['spec']['ticket']['approvedAt']
    assert approved <= datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')
    stack.patch(ns, 'later', {'spec': {'ticket': {'state': 'Approved', 'approvedAt': approved}}})
    assert_active(stack, ns, 'later')


def test_a_spec_the_models_refuse_is_denied_and_creates_nothing(
    operator: OperatorProcess, stack: Stack
) -> None:
    ns = fresh_namespace(stack)
    manifest = identity('odd', ns)
    manifest['spec']['vault']['secret']['rotateEvery'] = '0s'  # the CRD pattern allows it
    stack.create(manifest)
    obj = stack.wait_phase(ns, 'odd', 'Denied')
    valid = next(c for c in obj['status']['conditions'] if c['type'] == 'Valid')
    assert valid['reason'] == 'InvalidSpec'
    assert 'spec.vault.secret.rotateEvery' in valid['message']
    with pytest.raises(ApiException):
        stack.core.read_namespaced_service_account('odd', ns)
    with pytest.raises(hvac.exceptions.InvalidPath):
        stack.bao.client().sys.read_acl_policy(f'tenure-{ns}-odd')


def test_closing_with_rotate_rotates_the_secret_and_cuts_issued_tokens_but_keeps_access(
    operator: OperatorProcess, stack: Stack
) -> None:
    ns = fresh_namespace(stack)
    stack.create(identity('rotor', ns, on_close='Rotate'))
    before = assert_active(stack, ns, 'rotor')
    stack.patch(ns, 'rotor', {'spec': {'ticket': {'state': 'Closed'}}})
    obj = stack.wait(ns, 'rotor', lambda o: o['status'].get('vault', {}).get('secretVersion') == 2)
    assert obj['status']['phase'] == 'Active'
    assert stack.vault_denied(before['vault_token'])
    assert stack.token_review(before['sa_token']), 'the ServiceAccount itself stays'
    after = assert_active(stack, ns, 'rotor')
    assert not stack.vault_denied(after['vault_token'])


def test_closing_with_retain_keeps_everything(operator: OperatorProcess, stack: Stack) -> None:
    ns = fresh_namespace(stack)
    stack.create(identity('keeper', ns, on_close='Retain'))
    before = assert_active(stack, ns, 'keeper')
    obj = stack.patch(ns, 'keeper', {'spec': {'ticket': {'state': 'Closed'}}})
    stack.wait(
        ns,
        'keeper',
        lambda o: o['status'].get('observedGeneration') == obj['metadata']['generation'],
    )
    assert not stack.vault_denied(before['vault_token'])
    assert stack.get(ns, 'keeper')['status']['vault']['secretVersion'] == 1  # type: ignore[index]


def test_an_owner_change_rotates_the_secret_and_cuts_tokens_the_old_owner_may_hold(
    operator: OperatorProcess, stack: Stack
) -> None:
    ns = fresh_namespace(stack)
    stack.create(identity('moved', ns))
    before = assert_active(stack, ns, 'moved')
    stack.patch(
        ns, 'moved', {'spec': {'owner': {'team': 'ledger', 'contact': 'ledger@example.com'}}}
    )
    obj = stack.wait(ns, 'moved', lambda o: o['status'].get('owner', {}).get('team') == 'ledger')
    assert obj['status']['ownerHistory'][0]['team'] == 'payments'
    assert obj['status']['vault']['secretVersion'] == 2
    assert stack.vault_denied(before['vault_token'])
    sa = stack.core.read_namespaced_service_account('moved', ns)
    assert sa.metadata.annotations['tenure.dev/owner-team'] == 'ledger'
    metadata = stack.bao.client().secrets.kv.v2.read_secret_metadata(path=f'tenure/{ns}/moved')
    assert metadata['data']['custom_metadata']['owner-team'] == 'ledger'
    stack.wait_events(ns, 'moved', {'Provisioned', 'OwnerChanged', 'SecretRotated'})
    assert_active(stack, ns, 'moved')


def test_widening_the_scope_without_a_new_approval_is_refused(
    operator: OperatorProcess, stack: Stack
) -> None:
    ns = fresh_namespace(stack)
    stack.create(identity('wide', ns))
    assert_active(stack, ns, 'wide')
    stack.custom.create_cluster_custom_object(
        'tenure.dev',
        'v1alpha1',
        'identitypolicies',
        {
            'apiVersion': 'tenure.dev/v1alpha1',
            'kind': 'IdentityPolicy',
            'metadata': {'name': 'default'},
            'spec': {'allowedClusterRoles': ['view']},
        },
    )
    try:
        widen_with_and_without_approval(stack, ns)
    finally:
        stack.custom.delete_cluster_custom_object(
            'tenure.dev', 'v1alpha1', 'identitypolicies', 'default'
        )


def widen_with_and_without_approval(stack: Stack, ns: str) -> None:
    stack.patch(ns, 'wide', {'spec': {'kubernetes': {'clusterRoles': ['view']}}})
    obj = stack.wait(
        ns,
        'wide',
        lambda o: any(
            c['type'] == 'Valid' and c['reason'] == 'ScopeChangeNotApproved'
            for c in o['status'].get('conditions', [])
        ),
    )
    assert obj['status']['phase'] == 'Active'
    with pytest.raises(ApiException):
        stack.rbac.read_namespaced_role_binding('tenure-wide-view', ns)
    stack.patch(ns, 'wide', {'spec': {'ticket': {'id': 'CHG0031338'}}})
    stack.wait(
        ns, 'wide', lambda o: o['status'].get('approval', {}).get('ticketId') == 'CHG0031338'
    )
    binding = stack.rbac.read_namespaced_role_binding('tenure-wide-view', ns)
    assert binding.role_ref.kind == 'ClusterRole'


def test_two_identities_in_one_namespace_stay_independent(
    operator: OperatorProcess, stack: Stack
) -> None:
    ns = fresh_namespace(stack)
    stack.create(identity('alpha', ns))
    stack.create(identity('beta', ns, ticket='CHG0000002'))
    alpha = assert_active(stack, ns, 'alpha')
    beta = assert_active(stack, ns, 'beta')
    stack.patch(ns, 'alpha', {'spec': {'ticket': {'state': 'Cancelled'}}})
    assert_revoked(stack, ns, 'alpha', alpha, 'TicketCancelled')
    assert stack.get(ns, 'beta')['status']['phase'] == 'Active'  # type: ignore[index]
    assert not stack.vault_denied(beta['vault_token'])
    assert stack.token_review(beta['sa_token'])
    stack.vault_login(ns, 'beta', beta['sa_token'])


def test_generated_secret_values_appear_nowhere_but_in_vault(
    operator: OperatorProcess, stack: Stack
) -> None:
    """Issue #3: secret values never appear in Kubernetes objects, status, events, logs, errors."""
    ns = fresh_namespace(stack)
    stack.create(identity('canary', ns, on_close='Rotate'))
    assert_active(stack, ns, 'canary')
    stack.patch(ns, 'canary', {'spec': {'ticket': {'state': 'Closed'}}})  # rotate once
    stack.wait(ns, 'canary', lambda o: o['status'].get('vault', {}).get('secretVersion') == 2)
    kv = stack.bao.client().secrets.kv.v2
    values = [
        kv.read_secret_version(
            path=f'tenure/{ns}/canary', version=v, raise_on_deleted_version=True
        )['data']['data']['api-key']
        for v in (1, 2)
    ]
    identity_json = json.dumps(stack.get(ns, 'canary'))
    stack.delete(ns, 'canary')
    stack.wait_gone(ns, 'canary')
    places = {
        'ServiceIdentity and its status': identity_json,
        'operator log': operator.log_text(),
        'events': json.dumps(
            [e.to_dict() for e in stack.core.list_namespaced_event(ns).items], default=str
        ),
        'objects': json.dumps(
            [s.to_dict() for s in stack.core.list_namespaced_service_account(ns).items], default=str
        ),
    }
    for value in values:
        for place, text in places.items():
            assert value not in text, f'a generated secret value leaked into the {place}'


def test_a_revoked_tombstone_ignores_later_edits_and_says_so(
    operator: OperatorProcess, stack: Stack
) -> None:
    ns = fresh_namespace(stack)
    stack.create(identity('ghost', ns))
    before = assert_active(stack, ns, 'ghost')
    stack.patch(ns, 'ghost', {'spec': {'ticket': {'state': 'Cancelled'}}})
    assert_revoked(stack, ns, 'ghost', before, 'TicketCancelled')
    edited = stack.patch(
        ns, 'ghost', {'spec': {'ticket': {'state': 'Approved', 'id': 'CHG0099999'}}}
    )
    obj = stack.wait(
        ns,
        'ghost',
        lambda o: o['status'].get('observedGeneration') == edited['metadata']['generation'],
    )
    assert obj['status']['phase'] == 'Revoked'
    valid = next(c for c in obj['status']['conditions'] if c['type'] == 'Valid')
    assert (valid['status'], valid['reason']) == ('False', 'RevokedIsTerminal')
    with pytest.raises(ApiException):
        stack.core.read_namespaced_service_account('ghost', ns)


def test_a_later_expiry_without_a_new_approval_is_refused(
    operator: OperatorProcess, stack: Stack
) -> None:
    ns = fresh_namespace(stack)
    manifest = identity('extend', ns)
    stack.create(manifest)
    obj = stack.wait_phase(ns, 'extend', 'Active')
    in_force = obj['status']['expiresAt']
    from datetime import UTC, datetime, timedelta

    later = (datetime.now(UTC) + timedelta(days=60)).strftime('%Y-%m-%dT%H:%M:%SZ')
    stack.patch(ns, 'extend', {'spec': {'expiresAt': later}})
    obj = stack.wait(
        ns,
        'extend',
        lambda o: any(
            c['type'] == 'Valid' and c['reason'] == 'ExtensionNotApproved'
            for c in o['status'].get('conditions', [])
        ),
    )
    assert obj['status']['expiresAt'] == in_force
    sa = stack.core.read_namespaced_service_account('extend', ns)
    assert sa.metadata.annotations['tenure.dev/expires-at'] == in_force

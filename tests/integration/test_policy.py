"""The IdentityPolicy in force: a stricter policy holds Active identities and reports them, it does
not revoke them (issue #4, "Policy"); its deletion restores the built-in defaults."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tenure_devtools.operator_process import OperatorProcess
from tests.integration.stack import Stack, identity
from tests.integration.test_lifecycle import assert_active

pytestmark = pytest.mark.integration

POLICY = ('tenure.dev', 'v1alpha1', 'identitypolicies')


@pytest.fixture
def strict_policy(stack: Stack) -> Iterator[Any]:
    """Creates the `default` IdentityPolicy on demand; always deletes it afterwards."""

    def create(spec: dict[str, Any]) -> None:
        stack.custom.create_cluster_custom_object(
            *POLICY,
            {
                'apiVersion': 'tenure.dev/v1alpha1',
                'kind': 'IdentityPolicy',
                'metadata': {'name': 'default'},
                'spec': spec,
            },
        )

    try:
        yield create
    finally:
        # The test may have deleted it already (404).
        with contextlib.suppress(ApiException):
            stack.custom.delete_cluster_custom_object(*POLICY, 'default')


def valid_condition(obj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in obj['status']['conditions'] if c['type'] == 'Valid')


def test_a_stricter_policy_holds_active_identities_and_reports_them(
    operator: OperatorProcess, stack: Stack, strict_policy: Any
) -> None:
    ns = stack.namespace(f'pol-{uuid.uuid4().hex[:8]}')
    stack.create(identity('veteran', ns))
    before = assert_active(stack, ns, 'veteran')
    strict_policy({'maxLifetime': '24h'})
    obj = stack.wait(ns, 'veteran', lambda o: valid_condition(o)['reason'] == 'LifetimeTooLong')
    assert obj['status']['phase'] == 'Active', 'a policy change is reported, not a revocation'
    assert not stack.vault_denied(before['vault_token'])
    stack.wait_events(ns, 'veteran', {'LifetimeTooLong'})
    metrics = operator.metrics()
    assert re.search(r'^tenure_policy_violations\{rule="LifetimeTooLong"\} [1-9]', metrics, re.M)
    # A new identity under the same policy is denied.
    stack.create(identity('rookie', ns, ticket='CHG0000009'))
    denied = stack.wait_phase(ns, 'rookie', 'Denied')
    assert valid_condition(denied)['reason'] == 'LifetimeTooLong'
    stack.custom.delete_cluster_custom_object(*POLICY, 'default')
    stack.wait(ns, 'veteran', lambda o: valid_condition(o)['status'] == 'True')
    assert_active(stack, ns, 'rookie')


def test_audit_mode_provisions_and_reports(
    operator: OperatorProcess, stack: Stack, strict_policy: Any
) -> None:
    ns = stack.namespace(f'aud-{uuid.uuid4().hex[:8]}')
    strict_policy({'maxLifetime': '24h', 'mode': 'Audit'})
    # The operator follows the policy through a watch: wait until it judges by it.
    stack.create(identity('audited', ns))
    obj = stack.wait(
        ns,
        'audited',
        lambda o: (
            o.get('status', {}).get('phase') == 'Active'
            and valid_condition(o)['reason'] == 'LifetimeTooLong'
        ),
    )
    assert valid_condition(obj)['message'].startswith('Audit (not enforced): ')

"""Vault misbehaves; the operator keeps its promises (issue #5, "Faults").

The operator reaches its own OpenBao only through the fault proxy (tenure_devtools/faultproxy.py),
which can refuse connections (down), hold requests (slow), answer in Vault's error format (5xx,
503 sealed, 403 permission denied) for chosen paths and methods. The test reads OpenBao directly.
After each scenario the invariants of tests/faults/invariants.py must hold.
"""

from __future__ import annotations

import time

import pytest

from tenure_devtools.faultproxy import WRITES, FaultProxy, ProxyMode
from tenure_devtools.operator_process import OperatorProcess
from tests.faults.invariants import Expect, VerifiedWatch, World, condition
from tests.integration.stack import identity

pytestmark = pytest.mark.integration

ROLES = r'^/v1/auth/kubernetes/role/'
POLICIES = r'^/v1/sys/policies/acl/'


def test_vault_down_while_provisioning_is_reported_then_recovered(
    operator: OperatorProcess, proxy: FaultProxy, world: World, ns: str
) -> None:
    key = (ns, 'early')
    proxy.mode(ProxyMode.down())
    world.create(identity('early', ns))
    failing = world.wait_condition(ns, 'early', 'Ready', 'ProvisioningFailed')
    assert 'unreachable' in condition(failing, 'Ready')['message']
    proxy.mode(ProxyMode.pass_through())
    world.check({key: Expect.ACTIVE}, secret_versions={key: [1]})


def test_vault_down_while_revoking_keeps_trying_and_never_claims_success_early(
    operator: OperatorProcess, proxy: FaultProxy, world: World, ns: str
) -> None:
    key = (ns, 'leaver')
    world.create(identity('leaver', ns))
    world.check({key: Expect.ACTIVE})
    world.login(ns, 'leaver')
    with VerifiedWatch(world, {ns}) as watch:
        proxy.mode(ProxyMode.down())
        world.patch(ns, 'leaver', {'spec': {'ticket': {'state': 'Cancelled'}}})
        failing = world.wait_condition(ns, 'leaver', 'Ready', 'RevocationFailed')
        assert failing['status']['revocation']['verified'] is False
        # Vault goes first: nothing of Kubernetes was touched while Vault could not be.
        assert world.kubernetes_objects(ns, 'leaver')
        proxy.mode(ProxyMode.pass_through())
        world.check({key: Expect.REVOKED})
    watch.assert_clean()


def test_a_slow_vault_slows_provisioning_and_revocation_down_but_both_complete(
    operator: OperatorProcess, proxy: FaultProxy, world: World, ns: str
) -> None:
    proxy.mode(ProxyMode.slow(0.2))
    started = time.monotonic()
    world.create(identity('tortoise', ns))
    world.create(identity('hare', ns))
    world.check({(ns, 'tortoise'): Expect.ACTIVE, (ns, 'hare'): Expect.ACTIVE})
    assert proxy.counts.delayed > 0
    assert time.monotonic() - started >= 0.2
    with VerifiedWatch(world, {ns}) as watch:
        world.delete(ns, 'hare')
        world.check({(ns, 'tortoise'): Expect.ACTIVE, (ns, 'hare'): Expect.GONE})
    watch.assert_clean()


@pytest.mark.parametrize(
    'mode',
    [
        pytest.param(ProxyMode.server_error(500, path=POLICIES, methods=WRITES), id='500'),
        pytest.param(ProxyMode.server_error(503), id='503-sealed'),
    ],
)
def test_vault_server_errors_while_provisioning_are_reported_then_recovered(
    operator: OperatorProcess, proxy: FaultProxy, world: World, ns: str, mode: ProxyMode
) -> None:
    key = (ns, 'erratic')
    proxy.mode(mode)
    world.create(identity('erratic', ns))
    failing = world.wait_condition(ns, 'erratic', 'Ready', 'ProvisioningFailed')
    assert f'HTTP {mode.status}' in condition(failing, 'Ready')['message']
    proxy.mode(ProxyMode.pass_through())
    world.check({key: Expect.ACTIVE}, secret_versions={key: [1]})


def test_vault_server_errors_while_revoking_are_retried_until_verified(
    operator: OperatorProcess, proxy: FaultProxy, world: World, ns: str
) -> None:
    key = (ns, 'sealed')
    world.create(identity('sealed', ns))
    world.check({key: Expect.ACTIVE})
    world.login(ns, 'sealed')
    with VerifiedWatch(world, {ns}) as watch:
        proxy.mode(ProxyMode.server_error(503, methods={'DELETE'}))
        world.patch(ns, 'sealed', {'metadata': {'annotations': {'tenure.dev/revoke': 'INC0042'}}})
        failing = world.wait_condition(ns, 'sealed', 'Ready', 'RevocationFailed')
        assert 'HTTP 503' in condition(failing, 'Ready')['message']
        proxy.mode(ProxyMode.pass_through())
        world.check({key: Expect.REVOKED})
    watch.assert_clean()


def test_a_permission_problem_is_reported_without_a_retry_storm(
    operator: OperatorProcess, proxy: FaultProxy, world: World, ns: str
) -> None:
    """403 will not pass by itself: Ready=False says what is missing, and the operator does not
    hammer Vault meanwhile (it looks again every five minutes). Once the permission is back, the
    next reconcile converges."""
    key = (ns, 'forbidden')
    proxy.mode(ProxyMode.permission_denied(path=ROLES, methods=WRITES))
    world.create(identity('forbidden', ns))
    failing = world.wait_condition(ns, 'forbidden', 'Ready', 'ProvisioningFailed')
    message = condition(failing, 'Ready')['message']
    assert 'HTTP 403' in message
    assert 'operator_policy' in message, 'the message says where the needed permissions are'
    refused = proxy.counts.failed
    # A retry storm would be dozens of refusals in a few seconds; backoff or waiting for a
    # change allows at most one more.
    with pytest.raises(TimeoutError):
        proxy.wait_until(lambda c: c.failed > refused + 1, timeout=3.0)
    proxy.mode(ProxyMode.pass_through())
    # Whatever touches the identity next (an edit, a resync, a restart) finds Vault fixed.
    world.patch(ns, 'forbidden', {'metadata': {'annotations': {'example.com/nudge': '1'}}})
    world.check({key: Expect.ACTIVE}, secret_versions={key: [1]})


@pytest.mark.parametrize(
    'end', [pytest.param('cancel', id='cancelled'), pytest.param('delete', id='deleted')]
)
def test_a_permission_problem_while_revoking_does_not_stop_the_revocation(
    operator: OperatorProcess, proxy: FaultProxy, world: World, ns: str, end: str
) -> None:
    """Access that must end cannot wait for someone to edit the identity: once the operator's
    permission is back, the revocation completes on its own; a deleted identity is held by its
    finalizer until then."""
    key = (ns, 'stuck')
    world.create(identity('stuck', ns))
    world.check({key: Expect.ACTIVE})
    world.login(ns, 'stuck')
    with VerifiedWatch(world, {ns}) as watch:
        proxy.mode(ProxyMode.permission_denied(path=ROLES, methods={'DELETE'}))
        if end == 'delete':
            world.delete(ns, 'stuck')
        else:
            world.patch(ns, 'stuck', {'spec': {'ticket': {'state': 'Cancelled'}}})
        failing = world.wait_condition(ns, 'stuck', 'Ready', 'RevocationFailed')
        assert 'HTTP 403' in condition(failing, 'Ready')['message']
        # It keeps trying (with backoff), and a deleted identity stays held by its finalizer:
        # kopf must not give up on it and release it with its access in place.
        refused = proxy.counts.failed
        proxy.wait_until(lambda c: c.failed >= refused + 2, timeout=15)
        assert world.get(ns, 'stuck') is not None
        proxy.mode(ProxyMode.pass_through())
        world.check({key: Expect.GONE if end == 'delete' else Expect.REVOKED})
    watch.assert_clean()

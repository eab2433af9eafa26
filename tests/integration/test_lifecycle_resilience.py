"""Restarts and Vault outages: nothing lost, nothing duplicated, nothing left behind (issue #3).

This module runs its own OpenBao (it seals it) and its own operator (it restarts it).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import kubernetes
import pytest

from tenure_devtools.kubeapi import KubeApiEmulator
from tenure_devtools.openbao import OpenBaoDevServer, running_openbao
from tenure_devtools.operator_process import OperatorProcess
from tests.integration.stack import Stack, identity
from tests.integration.test_lifecycle import assert_active, assert_revoked

pytestmark = pytest.mark.integration


@pytest.fixture(scope='module')
def own_bao(kube_emulator: KubeApiEmulator) -> Iterator[OpenBaoDevServer]:
    with running_openbao() as bao:
        bao.configure_kubernetes_auth(kubernetes_host=kube_emulator.url)
        yield bao


@pytest.fixture(scope='module')
def restartable(
    kubeconfig: Path, own_bao: OpenBaoDevServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    with OperatorProcess(
        kubeconfig=kubeconfig,
        vault_addr=own_bao.addr,
        vault_token=own_bao.root_token,
        log_dir=tmp_path_factory.mktemp('operator'),
    ) as process:
        process.start()
        yield process


@pytest.fixture
def bstack(kube_api: kubernetes.client.ApiClient, own_bao: OpenBaoDevServer) -> Stack:
    return Stack(kube_api, own_bao)


@pytest.fixture
def ns(bstack: Stack) -> str:
    return bstack.namespace(f'res-{uuid.uuid4().hex[:8]}')


def reconciles(operator: OperatorProcess) -> float:
    found = re.search(
        r'^tenure_reconcile_total\{result="success"\} (\S+)$', operator.metrics(), re.M
    )
    return float(found.group(1)) if found else 0.0


def wait_reconciles(operator: OperatorProcess, at_least: float, timeout: float = 30) -> None:
    """Poll the operator's own metrics until it has reconciled `at_least` times."""
    deadline = time.monotonic() + timeout
    while reconciles(operator) < at_least:
        assert time.monotonic() < deadline, f'fewer than {at_least} reconciles in {timeout}s'
        time.sleep(0.1)


def cluster_version(stack: Stack) -> str:
    """The API server's current resourceVersion: it moves with every write, anywhere."""
    listed = stack.core.list_namespace()
    return str(listed.metadata.resource_version)


def test_a_restart_with_unchanged_identities_writes_nothing(
    restartable: OperatorProcess, bstack: Stack, ns: str
) -> None:
    for name in ('one', 'two', 'three'):
        bstack.create(identity(name, ns, ticket=f'CHG-{name}'))
        assert_active(bstack, ns, name)
    policy_before = bstack.bao.client().sys.read_acl_policy(f'tenure-{ns}-one')['data']
    restartable.restart()
    before = cluster_version(bstack)
    wait_reconciles(restartable, 3)
    assert cluster_version(bstack) == before, 'the resume wrote to the API server'
    assert bstack.bao.client().sys.read_acl_policy(f'tenure-{ns}-one')['data'] == policy_before
    secret = bstack.bao.client().secrets.kv.v2.read_secret_metadata(path=f'tenure/{ns}/one')
    assert secret['data']['current_version'] == 1, 'no secret was regenerated'


def test_a_cancellation_while_the_operator_is_down_is_revoked_at_start(
    restartable: OperatorProcess, bstack: Stack, ns: str
) -> None:
    bstack.create(identity('offline', ns))
    before = assert_active(bstack, ns, 'offline')
    restartable.stop()
    try:
        bstack.patch(ns, 'offline', {'spec': {'ticket': {'state': 'Cancelled'}}})
    finally:
        restartable.start()
    assert_revoked(bstack, ns, 'offline', before, 'TicketCancelled')


def test_an_expiry_that_passed_while_the_operator_was_down_is_revoked_at_start(
    restartable: OperatorProcess, bstack: Stack, ns: str
) -> None:
    # Long enough to be provisioned and stopped before it expires on a loaded machine.
    bstack.create(identity('lapsed', ns, expires_in=timedelta(seconds=10)))
    before = assert_active(bstack, ns, 'lapsed')
    restartable.stop()
    try:
        obj = bstack.get(ns, 'lapsed')
        assert obj is not None
        assert obj['status']['phase'] == 'Active', 'stopped too late: it expired while running'
        expires = datetime.fromisoformat(obj['status']['expiresAt'])
        # Real time has to pass the expiry while nothing runs: that is the scenario.
        time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.5)
        assert bstack.get(ns, 'lapsed')['status']['phase'] == 'Active'  # type: ignore[index]
    finally:
        restartable.start()
    assert_revoked(bstack, ns, 'lapsed', before, 'Expired')


def test_provisioning_waits_out_a_sealed_vault_and_then_converges(
    restartable: OperatorProcess, bstack: Stack, ns: str
) -> None:
    bstack.bao.seal()
    try:
        bstack.create(identity('patient', ns))
        obj = bstack.wait(
            ns,
            'patient',
            lambda o: any(
                c['type'] == 'Ready' and c['reason'] == 'ProvisioningFailed'
                for c in o.get('status', {}).get('conditions', [])
            ),
        )
        ready = next(c for c in obj['status']['conditions'] if c['type'] == 'Ready')
        assert 'sealed' in ready['message'].lower() or '503' in ready['message']
    finally:
        bstack.bao.unseal()
    assert_active(bstack, ns, 'patient')


def test_revocation_survives_a_sealed_vault_and_never_claims_success_early(
    restartable: OperatorProcess, bstack: Stack, ns: str
) -> None:
    bstack.create(identity('stubborn', ns))
    before = assert_active(bstack, ns, 'stubborn')
    bstack.bao.seal()
    try:
        bstack.delete(ns, 'stubborn')
        obj = bstack.wait(
            ns,
            'stubborn',
            lambda o: any(
                c['type'] == 'Ready' and c['reason'] == 'RevocationFailed'
                for c in o.get('status', {}).get('conditions', [])
            ),
        )
        assert obj['status']['revocation']['verified'] is False
        assert obj['metadata']['deletionTimestamp'], 'held by the finalizer'
        assert 'tenure.dev/revocation' in obj['metadata']['finalizers']
    finally:
        bstack.bao.unseal()
    bstack.wait_gone(ns, 'stubborn', timeout=60)
    assert_revoked(bstack, ns, 'stubborn', before, 'Deleted')

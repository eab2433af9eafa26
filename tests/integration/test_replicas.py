"""Two replicas: exactly one acts (it holds the Lease); when it dies, the other takes over and
misses no expiry (issue #5)."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tenure_devtools.openbao import OpenBaoDevServer
from tenure_devtools.operator_process import OperatorProcess
from tests.integration.stack import Stack, identity

pytestmark = pytest.mark.integration


def metric(operator: OperatorProcess, name: str) -> float:
    found = re.search(rf'^{name}(?:\{{[^}}]*\}})? (\S+)$', operator.metrics(), re.M)
    return float(found.group(1)) if found else 0.0


def leader_of(replicas: list[OperatorProcess], timeout: float = 20) -> OperatorProcess:
    """The one replica reporting tenure_leader 1 (polls their /metrics, bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leading = [r for r in replicas if r.running and metric(r, 'tenure_leader') == 1]
        if len(leading) == 1:
            return leading[0]
        assert len(leading) < 2, 'two replicas lead at once'
        time.sleep(0.1)
    raise AssertionError(f'no single leader within {timeout}s')


def test_exactly_one_replica_acts_and_the_other_takes_over_without_missing_an_expiry(
    kubeconfig: Path, vault_for_identities: OpenBaoDevServer, stack: Stack, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    system = stack.namespace(f'tenure-system-{suffix}')
    ns = stack.namespace(f'replicas-{suffix}')
    args = [
        '--leader-election',
        '--leader-election-namespace',
        system,
        '--lease-duration',
        '3s',
        '--namespace',
        ns,
    ]
    replicas = [
        OperatorProcess(
            kubeconfig=kubeconfig,
            vault_addr=vault_for_identities.addr,
            vault_token=vault_for_identities.root_token,
            args=args,
            log_dir=tmp_path / f'replica-{i}',
        )
        for i in range(2)
    ]
    try:
        for i, replica in enumerate(replicas):
            (tmp_path / f'replica-{i}').mkdir()
            replica.start()
        leader = leader_of(replicas)
        standby = next(r for r in replicas if r is not leader)
        stack.create(identity('steady', ns))
        stack.wait_phase(ns, 'steady', 'Active')
        # The counter moves right after the status write the wait above saw: wait for it too.
        deadline = time.monotonic() + 10
        while metric(leader, 'tenure_reconcile_total') < 1:
            assert time.monotonic() < deadline, 'the leader did not count its reconcile'
            time.sleep(0.05)
        assert metric(standby, 'tenure_reconcile_total') == 0, 'the standby must not act'

        stack.create(identity('handover', ns, ticket='CHG0000077', expires_in=timedelta(seconds=6)))
        stack.wait_phase(ns, 'handover', 'Active')
        leader.kill()  # SIGKILL: no release of the Lease, the standby waits for it to expire
        assert leader_of([standby], timeout=15) is standby
        revoked = stack.wait_phase(ns, 'handover', 'Revoked', timeout=30)
        revocation = revoked['status']['revocation']
        assert revocation['reason'] == 'Expired'
        expires = datetime.fromisoformat(revoked['status']['expiresAt'])
        requested = datetime.fromisoformat(revocation['requestedAt'])
        assert requested >= expires
        assert requested - expires < timedelta(seconds=10), 'revoked within the handover window'
        assert requested <= datetime.now(UTC)
        assert stack.get(ns, 'steady')['status']['phase'] == 'Active'  # type: ignore[index]
    finally:
        for replica in replicas:
            replica.close()

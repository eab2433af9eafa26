"""The operator's periodic inventory scan: `tenure report`'s classification, counted as gauges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import generate_latest

from tenure.domain.inventory import BindingRecord, ServiceAccountRecord
from tenure.errors import TransientError
from tenure.inventory_scan import counts, inventory_loop, scan
from tenure.metrics import Metrics

NOW = datetime(2026, 12, 1, tzinfo=UTC)
MANAGED = {'app.kubernetes.io/managed-by': 'tenure', 'tenure.dev/identity': 'api'}


class Cluster:
    def __init__(self) -> None:
        self.identities: list[dict[str, Any]] = [
            {
                'metadata': {'namespace': 'shop', 'name': 'api', 'uid': 'si'},
                'status': {'phase': 'Active'},
            }
        ]
        self.accounts = [
            ServiceAccountRecord(namespace='shop', name='api', labels=MANAGED, owner_uids=('si',)),
            ServiceAccountRecord(namespace='shop', name='by-hand'),
            ServiceAccountRecord(
                namespace='shop',
                name='old',
                labels={**MANAGED, 'tenure.dev/identity': 'old'},
            ),
        ]
        self.down = False

    def list_identities(self, namespace: str | None = None) -> list[dict[str, Any]]:
        if self.down:
            raise TransientError('could not list ServiceIdentities: 503')
        return self.identities

    def list_service_accounts(self, namespace: str | None = None) -> list[ServiceAccountRecord]:
        return self.accounts

    def list_bindings(self, namespace: str | None = None) -> list[BindingRecord]:
        return []


def test_the_scan_classifies_as_tenure_report_does() -> None:
    found = counts(scan(Cluster(), NOW))
    assert found[('Managed', 'ServiceAccount')] == 1
    assert found[('Leaked', 'ServiceAccount')] == 1
    assert found[('Unmanaged', 'ServiceAccount')] == 1


def series(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


@pytest.mark.asyncio
async def test_the_gauges_follow_each_scan_and_a_failed_scan_keeps_the_last_counts() -> None:
    metrics = Metrics()
    assert 'tenure_inventory_identities{' not in series(metrics), 'absent before a first scan'
    cluster = Cluster()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        cluster.down = True  # the second scan fails

    def run_scan() -> Any:
        return scan(cluster, NOW)

    await inventory_loop(run_scan, metrics, timedelta(minutes=5), sleep=sleep, passes=2)
    assert waits == [300.0]
    text = series(metrics)
    assert 'tenure_inventory_identities{class="Leaked",kind="ServiceAccount"} 1.0' in text
    assert 'tenure_inventory_identities{class="Leaked",kind="VaultRole"} 0.0' in text

"""The operator's periodic inventory scan: `tenure_inventory_identities{class,kind}` (issue #6).

The classification is `tenure report`'s own (`tenure.domain.inventory.classify`); this module
only gathers what the operator may read and counts the findings. The operator's credentials are
least-privilege on purpose, so the scan covers the Kubernetes side: ServiceIdentities,
ServiceAccounts, RoleBindings and ClusterRoleBindings. Legacy token Secrets (the operator may list
Secrets only in namespaces that hold identities) and Vault roles and policies (its Vault token
cannot list them) stay with `tenure report`, run with an auditor's credentials.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

from tenure.domain.inventory import (
    BindingRecord,
    Finding,
    IdentityRecord,
    Inventory,
    Scope,
    ServiceAccountRecord,
    classify,
)
from tenure.domain.names import DEFAULT_AUTH_MOUNT, DEFAULT_KV_MOUNT
from tenure.errors import TenureError
from tenure.metrics import Metrics

log = logging.getLogger(__name__)


class InventoryReader(Protocol):
    """What the scan reads (`tenure.adapters.kubernetes.KubeObjects`)."""

    def list_identities(self, namespace: str | None = None) -> list[dict[str, Any]]: ...

    def list_service_accounts(self, namespace: str | None = None) -> list[ServiceAccountRecord]: ...

    def list_bindings(self, namespace: str | None = None) -> list[BindingRecord]: ...


def counts(findings: Iterable[Finding]) -> dict[tuple[str, str], int]:
    """Findings counted by (class, kind)."""
    return dict(Counter((f.class_.value, f.kind.value) for f in findings))


def scan(
    kube: InventoryReader,
    now: datetime,
    namespaces: tuple[str, ...] = (),
    *,
    kv_mount: str = DEFAULT_KV_MOUNT,
    auth_mount: str = DEFAULT_AUTH_MOUNT,
) -> list[Finding]:
    """Classify the Kubernetes identities in `namespaces` (empty: all namespaces)."""
    findings: list[Finding] = []
    for namespace in namespaces or (None,):
        inventory = Inventory(
            identities=tuple(IdentityRecord.from_body(b) for b in kube.list_identities(namespace)),
            service_accounts=tuple(kube.list_service_accounts(namespace)),
            bindings=tuple(kube.list_bindings(namespace)),
            kv_mount=kv_mount,
            auth_mount=auth_mount,
        )
        findings += classify(inventory, now, Scope(namespace=namespace))
    return findings


async def inventory_loop(
    run_scan: Callable[[], list[Finding]],
    metrics: Metrics,
    interval: timedelta,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    passes: int | None = None,
) -> None:
    """Scan now, then every `interval`; a failed scan keeps the last counts and is retried at
    the next interval. Runs until cancelled (or `passes` scans)."""
    done = 0
    while passes is None or done < passes:
        try:
            found = await asyncio.to_thread(run_scan)
        except TenureError as e:
            log.warning('inventory scan failed, keeping the last counts: %s', e)
        else:
            metrics.inventory.set(counts(found))
            log.debug('inventory scan: %d findings', len(found))
        done += 1
        if passes is None or done < passes:
            await sleep(interval.total_seconds())

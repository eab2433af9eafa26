"""A policy change that lands while an identity is being reconciled is not lost."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tenure.domain.desired import VaultRole
from tenure.reconcile import Reconciler
from tenure.runtime import Runtime
from tests.unit.fakes import Calls, FakeKube, FakeVault

Build = Callable[..., dict[str, Any]]
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class ReadableKube(FakeKube):
    def __init__(self, calls: Calls, body: dict[str, Any]) -> None:
        super().__init__(calls)
        self.body = body

    def read_identity(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.body)


def test_a_policy_change_during_a_reconcile_schedules_a_re_check_at_once(manifest: Build) -> None:
    body = manifest()
    body['metadata'].update(uid='u', generation=1)
    calls = Calls()
    kube = ReadableKube(calls, body)
    runtime: Runtime

    class PolicyChangesMidway(FakeVault):
        def ensure_role(self, role: VaultRole) -> bool:
            runtime.set_policy(
                {
                    'apiVersion': 'tenure.dev/v1alpha1',
                    'kind': 'IdentityPolicy',
                    'metadata': {'name': 'default'},
                    'spec': {'maxLifetime': '24h'},
                }
            )
            return super().ensure_role(role)

    vault = PolicyChangesMidway(calls)
    reconciler = Reconciler(kube, vault, clock=lambda: NOW)
    runtime = Runtime(kube, reconciler, clock=lambda: NOW)
    reconciler.policy = runtime.policy
    runtime.reconcile_key(('payments', 'settlement-exporter'))
    assert runtime.scheduler.next_deadline(('payments', 'settlement-exporter')) == NOW

"""What the runtime schedules besides kopf: token TTL refreshes near the expiry (role writes
alone, never after a revocation) and slow retries of permanent failures."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tenure.domain.desired import VaultRole
from tenure.errors import PermanentError
from tenure.reconcile import ReconcileFailed, Reconciler
from tenure.runtime import Runtime
from tests.unit.fakes import Calls, FakeKube, FakeVault

Build = Callable[..., dict[str, Any]]
KEY = ('payments', 'settlement-exporter')
EXPIRES = datetime(2027, 2, 15, tzinfo=UTC)


class LiveKube(FakeKube):
    """Reads back the ServiceIdentity with the status the reconciles wrote."""

    def __init__(self, calls: Calls, body: dict[str, Any]) -> None:
        super().__init__(calls)
        self.body = body
        self.reads = 0

    def read_identity(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        return copy.deepcopy(self.body)

    def patch_status(self, names: Any, status: Any) -> None:
        super().patch_status(names, status)
        merged = dict(self.body.get('status') or {})
        for key, value in status.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        self.body['status'] = merged


def _runtime(manifest: Build, clock: list[datetime]) -> tuple[Runtime, LiveKube, Calls]:
    body = manifest({'spec.expiresAt': '2027-02-15T00:00:00Z'})
    body['metadata'].update(uid='u', generation=1)
    calls = Calls()
    kube = LiveKube(calls, body)
    reconciler = Reconciler(kube, FakeVault(calls), clock=lambda: clock[0])
    return Runtime(kube, reconciler, clock=lambda: clock[0]), kube, calls


def test_token_ttl_refreshes_write_only_the_role_until_the_expiry_revokes(manifest: Build) -> None:
    clock = [EXPIRES - timedelta(minutes=2)]
    runtime, kube, calls = _runtime(manifest, clock)
    runtime.reconcile_key(KEY)
    assert runtime.scheduler.next_deadline(KEY) == EXPIRES
    due = runtime.refresher.next_deadline(KEY)
    assert due == EXPIRES - timedelta(minutes=1)

    written = []
    while (due := runtime.refresher.next_deadline(KEY)) is not None:
        clock[0] = due
        calls.clear()
        reads = kube.reads
        runtime.refresh_key(KEY)
        assert kube.reads == reads, 'a refresh reads nothing from Kubernetes'
        assert all(call.startswith('vault.role ') for call in calls), calls
        written.extend(int(call.rsplit('=', 1)[1]) for call in calls)
    assert written == [30, 15, 7, 4, 2, 1], 'halving down to one second'
    assert clock[0] < EXPIRES

    clock[0] = EXPIRES
    runtime.reconcile_key(KEY)
    assert kube.body['status']['phase'] == 'Revoked'
    assert runtime.refresher.next_deadline(KEY) is None


def test_a_cancelled_identity_has_no_refresh_left_to_write_its_role_back(manifest: Build) -> None:
    clock = [EXPIRES - timedelta(minutes=2)]
    runtime, kube, calls = _runtime(manifest, clock)
    runtime.reconcile_key(KEY)
    due = runtime.refresher.next_deadline(KEY)
    assert due is not None
    kube.body['spec']['ticket']['state'] = 'Cancelled'
    kube.body['metadata']['generation'] = 2
    runtime.reconcile_key(KEY)
    assert kube.body['status']['phase'] == 'Revoked'
    assert runtime.refresher.next_deadline(KEY) is None
    clock[0] = due
    calls.clear()
    runtime.refresh_key(KEY)  # fired anyway, e.g. already running when the plan was dropped
    assert calls == []


def test_a_permanent_failure_is_looked_at_again_after_five_minutes(manifest: Build) -> None:
    """Vault refusing the operator is fixed in Vault's policy: no event tells Tenure so."""
    clock = [EXPIRES - timedelta(days=20)]
    body = manifest({'spec.expiresAt': '2027-02-15T00:00:00Z'})
    body['metadata'].update(uid='u', generation=1)
    calls = Calls()
    kube = LiveKube(calls, body)

    class Forbidden(FakeVault):
        def ensure_role(self, role: VaultRole) -> bool:
            raise PermanentError('Vault refused to write the role: HTTP 403 permission denied')

    reconciler = Reconciler(kube, Forbidden(calls), clock=lambda: clock[0])
    runtime = Runtime(kube, reconciler, clock=lambda: clock[0])
    with pytest.raises(ReconcileFailed):
        runtime.reconcile_key(KEY)
    assert runtime.scheduler.next_deadline(KEY) == clock[0] + timedelta(minutes=5)


def test_a_reconcile_asked_for_while_one_runs_is_not_replaced_by_its_deadline(
    manifest: Build,
) -> None:
    """A drift event or a new generation seen after the running reconcile read the object: that
    reconcile's own, later deadline must not replace the request."""
    clock = [EXPIRES - timedelta(days=20)]
    body = manifest({'spec.expiresAt': '2027-02-15T00:00:00Z'})
    body['metadata'].update(uid='u', generation=1)
    calls = Calls()
    kube = LiveKube(calls, body)
    runtime: Runtime

    class ChangedMidway(FakeVault):
        def ensure_role(self, role: VaultRole) -> bool:
            runtime.request(KEY)
            return super().ensure_role(role)

    reconciler = Reconciler(kube, ChangedMidway(calls), clock=lambda: clock[0])
    runtime = Runtime(kube, reconciler, clock=lambda: clock[0])
    runtime.reconcile_key(KEY)
    assert runtime.scheduler.next_deadline(KEY) == clock[0]


def test_without_a_request_meanwhile_the_next_deadline_is_the_planned_one(
    manifest: Build,
) -> None:
    clock = [EXPIRES - timedelta(days=20)]
    runtime, _, _ = _runtime(manifest, clock)
    runtime.request(KEY)  # before the reconcile reads: that read sees the change
    runtime.reconcile_key(KEY)
    assert runtime.scheduler.next_deadline(KEY) == EXPIRES - timedelta(days=7), 'the warning'

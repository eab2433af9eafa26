"""The API server misbehaves; the operator keeps its promises (issue #5, "Faults").

Each fault is injected in the emulator as a real kube-apiserver sends it (409 optimistic-lock
conflicts, 5xx, 429 with Retry-After, broken and expired watches, answers lost after the write
happened: see tenure_devtools/kubeapi/faults.py), aimed at the operator only: the test's client
is exempt. After each scenario the invariants of tests/faults/invariants.py must hold.

A note on reads: the official client's urllib3 retries a GET answered 429 or 503 with a
Retry-After header itself (up to 3 times, waiting it out), so such rules run without a limit
(`times=None`) until the operator has seen the fault, then are removed.
"""

from __future__ import annotations

import pytest

from tenure_devtools.kubeapi import KubeApiEmulator
from tenure_devtools.kubeapi.faults import (
    Conflict,
    Disconnect,
    FaultRule,
    Latency,
    PassThrough,
    RequestMatch,
    ServerError,
    TooManyRequests,
    WatchExpired,
)
from tenure_devtools.operator_process import OperatorProcess
from tests.faults.invariants import Expect, VerifiedWatch, World, condition
from tests.integration.stack import identity

pytestmark = pytest.mark.integration

KOPF = 'kopf/'
"""kopf's User-Agent: its watches and lists of ServiceIdentities."""
IDENTITY_WATCHES = RequestMatch(resources={'serviceidentities'}, user_agent=KOPF)


def _objects(ns: str, name: str) -> set[str]:
    return {f'ServiceAccount/{name}', f'Role/tenure-{name}', f'RoleBinding/tenure-{name}'}


# ---- 409 Conflict ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('verbs', 'resources'),
    [
        pytest.param({'patch'}, {'serviceidentities/status'}, id='status-patch'),
        pytest.param({'create'}, {'serviceaccounts'}, id='serviceaccount-create'),
        pytest.param({'create'}, {'roles', 'rolebindings'}, id='role-and-binding-create'),
    ],
)
def test_conflicts_while_provisioning_are_retried_until_active(
    operator: OperatorProcess,
    emu: KubeApiEmulator,
    world: World,
    ns: str,
    verbs: set[str],
    resources: set[str],
) -> None:
    rule = emu.faults.add(FaultRule(effect=Conflict(), verbs=verbs, resources=resources, times=2))
    world.create(identity('conflicted', ns))
    emu.faults.wait_fired(rule, 2)
    world.check({(ns, 'conflicted'): Expect.ACTIVE}, secret_versions={(ns, 'conflicted'): [1]})


def test_conflicts_on_updates_of_an_active_identity_change_it_in_place(
    operator: OperatorProcess, emu: KubeApiEmulator, world: World, ns: str
) -> None:
    """An owner change patches the ServiceAccount, Role and binding; 409s on those patches are
    retried, and the objects are updated, never replaced."""
    key = (ns, 'mover')
    world.create(identity('mover', ns))
    world.check({key: Expect.ACTIVE})
    before = world.uids([key])
    rule = emu.faults.add(
        FaultRule(
            effect=Conflict(),
            verbs={'patch'},
            resources={'serviceaccounts', 'roles', 'rolebindings', 'serviceidentities/status'},
            times=3,
        )
    )
    world.patch(ns, 'mover', {'spec': {'owner': {'team': 'ledger'}}})
    emu.faults.wait_fired(rule, 3)
    world.wait(ns, 'mover', lambda o: (o['status'].get('owner') or {}).get('team') == 'ledger')
    world.check({key: Expect.ACTIVE}, uids=before, secret_versions={key: [2]})
    sa = world.core.read_namespaced_service_account('mover', ns)
    assert sa.metadata.annotations['tenure.dev/owner-team'] == 'ledger'


# ---- 5xx -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('effect', 'verbs', 'resources'),
    [
        pytest.param(ServerError(code=500), {'get'}, {'serviceaccounts'}, id='500-on-reads'),
        pytest.param(
            ServerError(code=503), {'create'}, {'rolebindings'}, id='503-on-binding-creates'
        ),
        pytest.param(
            ServerError(code=500), {'get'}, {'serviceidentities'}, id='500-on-identity-reads'
        ),
    ],
)
def test_server_errors_while_provisioning_are_reported_then_recovered(
    operator: OperatorProcess,
    emu: KubeApiEmulator,
    world: World,
    ns: str,
    effect: ServerError,
    verbs: set[str],
    resources: set[str],
) -> None:
    rule = emu.faults.add(FaultRule(effect=effect, verbs=verbs, resources=resources, times=None))
    world.create(identity('flaky', ns))
    emu.faults.wait_fired(rule, 2)
    if resources != {'serviceidentities'}:  # without a read of it, no status can be written
        failing = world.wait_condition(ns, 'flaky', 'Ready', 'ProvisioningFailed')
        assert str(effect.code) in condition(failing, 'Ready')['message']
    emu.faults.remove(rule)
    world.check({(ns, 'flaky'): Expect.ACTIVE}, secret_versions={(ns, 'flaky'): [1]})


def test_server_errors_on_status_writes_write_nothing_twice(
    operator: OperatorProcess, emu: KubeApiEmulator, world: World, ns: str
) -> None:
    """Everything is provisioned but the status cannot be written: each retry finds it all in
    place, creates nothing again and generates no new secret."""
    rule = emu.faults.add(
        FaultRule(
            effect=ServerError(code=503),
            verbs={'patch'},
            resources={'serviceidentities/status'},
            times=None,
        )
    )
    world.create(identity('mute', ns))
    emu.faults.wait_fired(rule, 2)
    key = (ns, 'mute')
    before = world.uids([key])
    assert set(before[key]) == _objects(ns, 'mute')
    emu.faults.remove(rule)
    world.check({key: Expect.ACTIVE}, uids=before, secret_versions={key: [1]})


def test_server_errors_while_revoking_never_claim_success_early(
    operator: OperatorProcess, emu: KubeApiEmulator, world: World, ns: str
) -> None:
    key = (ns, 'leaver')
    world.create(identity('leaver', ns))
    world.check({key: Expect.ACTIVE})
    world.login(ns, 'leaver')
    rule = emu.faults.add(
        FaultRule(effect=ServerError(code=503), verbs={'delete'}, resources={'roles'}, times=None)
    )
    with VerifiedWatch(world, {ns}) as watch:
        world.patch(ns, 'leaver', {'spec': {'ticket': {'state': 'Cancelled'}}})
        failing = world.wait_condition(ns, 'leaver', 'Ready', 'RevocationFailed')
        assert failing['status']['revocation']['verified'] is False
        assert '503' in condition(failing, 'Ready')['message']
        emu.faults.remove(rule)
        world.check({key: Expect.REVOKED})
    watch.assert_clean()


# ---- 429 -------------------------------------------------------------------------------------


def test_throttled_writes_wait_out_retry_after(
    operator: OperatorProcess, emu: KubeApiEmulator, world: World, ns: str
) -> None:
    """A 429 on a create (never retried by the client) reaches the operator, which waits the
    Retry-After it was given before it tries again."""
    # In this test's namespace only: the operator is shared by the module, and another
    # identity's Role created meanwhile is not a retry of this one.
    rule = emu.faults.add(
        FaultRule(
            effect=TooManyRequests(retry_after=2),
            verbs={'create'},
            resources={'roles'},
            namespace=ns,
            times=1,
        )
    )
    # Tried after the 429 rule: it counts the creates that rule let through (the retries).
    retries = emu.faults.add(
        FaultRule(
            effect=PassThrough(), verbs={'create'}, resources={'roles'}, namespace=ns, times=None
        )
    )
    world.create(identity('patient', ns))
    throttled = emu.faults.wait_fired(rule)
    retried = emu.faults.wait_fired(retries, timeout=30)
    # The emulator's own times: how late this thread learns of either does not count.
    assert throttled.last_fired_at is not None
    assert retried.first_fired_at is not None
    waited = retried.first_fired_at - throttled.last_fired_at
    assert waited >= 1.8, f'retried {waited:.2f}s after a 429 with Retry-After: 2'
    world.check({(ns, 'patient'): Expect.ACTIVE})


def test_throttled_reads_are_reported_then_recovered(
    operator: OperatorProcess, emu: KubeApiEmulator, world: World, ns: str
) -> None:
    """A GET answered 429 is retried by the client itself first; once the operator sees it, the
    reason is on the Ready condition, and it converges when the throttling ends."""
    rule = emu.faults.add(
        FaultRule(
            effect=TooManyRequests(retry_after=1, body='status'),
            verbs={'get'},
            resources={'roles'},
            times=None,
        )
    )
    world.create(identity('throttled', ns))
    failing = world.wait_condition(ns, 'throttled', 'Ready', 'ProvisioningFailed')
    assert '429' in condition(failing, 'Ready')['message']
    assert emu.faults.stats(rule).fired >= 4, 'the client retried the GET before giving up'
    emu.faults.remove(rule)
    world.check({(ns, 'throttled'): Expect.ACTIVE})


# ---- watches ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    'reset', [pytest.param(False, id='closed'), pytest.param(True, id='reset')]
)
def test_a_change_made_while_the_watch_is_down_is_not_missed(
    operator: OperatorProcess, emu: KubeApiEmulator, world: World, ns: str, reset: bool
) -> None:
    """kopf's watch breaks and the API refuses it for a while; the cancellation made meanwhile
    is found when kopf lists again (no deadline would have revoked it: only the watch)."""
    key = (ns, 'watched')
    world.create(identity('watched', ns))
    world.check({key: Expect.ACTIVE})
    outage = emu.faults.add(
        FaultRule(
            effect=ServerError(code=503),
            verbs={'list', 'watch'},
            resources={'serviceidentities'},
            user_agent=KOPF,
            times=None,
        )
    )
    emu.faults.wait_watches(IDENTITY_WATCHES)
    assert emu.faults.drop_watches(IDENTITY_WATCHES, reset=reset) >= 1
    emu.faults.wait_fired(outage)
    world.patch(ns, 'watched', {'spec': {'ticket': {'state': 'Cancelled'}}})
    emu.faults.wait_fired(outage, emu.faults.stats(outage).fired + 1)
    assert world.get(ns, 'watched')['status']['phase'] == 'Active'  # type: ignore[index]
    emu.faults.remove(outage)
    world.check({key: Expect.REVOKED})


def test_an_expired_watch_is_listed_again_and_later_changes_still_arrive(
    operator: OperatorProcess, emu: KubeApiEmulator, world: World, ns: str
) -> None:
    """410 Gone on kopf's watch (its resourceVersion left the watch cache): a change made before
    the re-list and one made after both take effect."""
    key = (ns, 'expired')
    world.create(identity('expired', ns))
    world.check({key: Expect.ACTIVE})
    lists = emu.faults.add(
        FaultRule(
            effect=ServerError(code=503),
            verbs={'list'},
            resources={'serviceidentities'},
            user_agent=KOPF,
            times=None,
        )
    )
    gone = emu.faults.add(
        FaultRule(effect=WatchExpired(), resources={'serviceidentities'}, user_agent=KOPF, times=1)
    )
    emu.faults.wait_watches(IDENTITY_WATCHES)
    emu.faults.drop_watches(IDENTITY_WATCHES)
    emu.faults.wait_fired(lists)
    world.patch(ns, 'expired', {'spec': {'owner': {'team': 'ledger'}}})
    emu.faults.remove(lists)
    emu.faults.wait_fired(gone)
    world.wait(ns, 'expired', lambda o: (o['status'].get('owner') or {}).get('team') == 'ledger')
    emu.faults.wait_watches(IDENTITY_WATCHES)
    world.patch(ns, 'expired', {'metadata': {'annotations': {'tenure.dev/revoke': 'INC0042'}}})
    world.check({key: Expect.REVOKED})


# ---- answers lost after the write happened ---------------------------------------------------


@pytest.mark.parametrize(
    ('effect', 'verbs', 'resources', 'kind'),
    [
        pytest.param(
            Disconnect(applied=True),
            {'create'},
            {'serviceaccounts'},
            'ServiceAccount/lost',
            id='serviceaccount-create-then-disconnect',
        ),
        pytest.param(
            ServerError(code=504, applied=True),
            {'create'},
            {'rolebindings'},
            'RoleBinding/tenure-lost',
            id='binding-create-then-504',
        ),
        pytest.param(
            Disconnect(applied=True, reset=True),
            {'patch'},
            {'serviceidentities/status'},
            None,
            id='status-patch-then-reset',
        ),
    ],
)
def test_a_write_whose_answer_was_lost_is_not_made_twice(
    operator: OperatorProcess,
    emu: KubeApiEmulator,
    world: World,
    ns: str,
    effect: Disconnect | ServerError,
    verbs: set[str],
    resources: set[str],
    kind: str | None,
) -> None:
    key = (ns, 'lost')
    rule = emu.faults.add(FaultRule(effect=effect, verbs=verbs, resources=resources, times=1))
    world.create(identity('lost', ns))
    emu.faults.wait_fired(rule)
    written = world.uids([key])
    if kind is not None:
        assert kind in written[key], 'the write was carried out although its answer was lost'
    world.check({key: Expect.ACTIVE}, uids=written, secret_versions={key: [1]})


def test_a_delete_whose_answer_was_lost_still_ends_in_a_verified_revocation(
    operator: OperatorProcess, emu: KubeApiEmulator, world: World, ns: str
) -> None:
    key = (ns, 'gone')
    world.create(identity('gone', ns))
    world.check({key: Expect.ACTIVE})
    world.login(ns, 'gone')
    rule = emu.faults.add(
        FaultRule(
            effect=Disconnect(applied=True),
            verbs={'delete'},
            resources={'rolebindings', 'serviceaccounts'},
            times=2,
        )
    )
    with VerifiedWatch(world, {ns}) as watch:
        world.delete(ns, 'gone')
        emu.faults.wait_fired(rule, 2)
        world.check({key: Expect.GONE})
    watch.assert_clean()


# ---- slow answers ----------------------------------------------------------------------------


def test_a_change_undone_while_a_slow_reconcile_applies_it_is_not_lost(
    operator: OperatorProcess, emu: KubeApiEmulator, world: World, ns: str
) -> None:
    """A slow API server: the owner changes A -> B -> A while one reconcile is in flight. The
    reconcile reads B (the operator always re-reads) and applies it; the spec is back at A by the
    time kopf records what it handled. A must win in the end (the status says B otherwise:
    the wrong owner, forever)."""
    key = (ns, 'aba')
    slow_read = emu.faults.add(
        FaultRule(
            effect=Latency(seconds=1.0),
            verbs={'get'},
            resources={'serviceidentities'},
            name='aba',
            times=1,
        )
    )
    slow_write = emu.faults.add(
        FaultRule(
            effect=Latency(seconds=1.0),
            verbs={'patch'},
            resources={'serviceidentities/status'},
            name='aba',
            times=1,
        )
    )
    world.create(identity('aba', ns))  # owner team: payments
    emu.faults.wait_fired(slow_read)
    world.patch(ns, 'aba', {'spec': {'owner': {'team': 'ledger'}}})
    emu.faults.wait_fired(slow_write)
    world.patch(ns, 'aba', {'spec': {'owner': {'team': 'payments'}}})
    objs = world.check({key: Expect.ACTIVE}, timeout=15)
    assert objs[key]['status']['owner']['team'] == 'payments'  # type: ignore[index]

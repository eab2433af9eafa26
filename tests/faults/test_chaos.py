"""A seeded storm: a few hundred identity changes with faults coming and going (issue #5).

Twenty identity slots in two namespaces go through random changes (create as Requested,
approved or refused by a guardrail; approve; cancel; close per onClose; owner change; emergency
annotation; delete; an edit of a tombstone) while the emulator and the Vault proxy switch faults
on and off at random (409, 429, 5xx, answers lost after the write, broken and expired watches;
Vault down, sealed, slow, failing writes), and the operator is SIGKILLed and restarted once or
twice. Then everything heals and the invariants of tests/faults/invariants.py must hold for
every identity that ever existed. The test keeps its own model of what each identity should end
as. Its pace follows the operator's: after a few changes it waits for some of the operator's
requests (or a short while when faults stop them all), so faults meet real work.

Deterministic in what the test does (one `random.Random(seed)` drives every choice, and each
fault rule has its own seed); the operator's timing is not, which is what it is tested against.
A failure names the seed and each identity's history; `TENURE_CHAOS_SEED=N` replays another.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tenure_devtools.faultproxy import WRITES, FaultProxy, ProxyMode
from tenure_devtools.kubeapi import KubeApiEmulator
from tenure_devtools.kubeapi.faults import (
    Conflict,
    Disconnect,
    FaultRule,
    PassThrough,
    RequestMatch,
    ServerError,
    TooManyRequests,
    WatchExpired,
)
from tenure_devtools.operator_process import OperatorProcess
from tests.faults.invariants import Expect, Key, VerifiedWatch, World
from tests.integration.stack import Obj, identity, stamp

pytestmark = pytest.mark.integration

SEED = int(os.environ.get('TENURE_CHAOS_SEED', '20261129'))
SLOTS = 20
STEPS = 240
EPOCH = 12
"""Changes between two fault switches."""
KILLS = 2
KOPF = 'kopf/'

FaultFactory = Callable[[random.Random], FaultRule]

EMULATOR_FAULTS: dict[str, FaultFactory] = {
    'status-409': lambda rng: FaultRule(
        effect=Conflict(),
        verbs={'patch'},
        resources={'serviceidentities/status'},
        times=None,
        probability=0.3,
        seed=rng.randrange(2**32),
    ),
    'reads-500': lambda rng: FaultRule(
        effect=ServerError(code=500),
        verbs={'get'},
        resources={'serviceaccounts', 'roles', 'rolebindings'},
        times=None,
        probability=0.2,
        seed=rng.randrange(2**32),
    ),
    'creates-429': lambda rng: FaultRule(
        effect=TooManyRequests(retry_after=1),
        verbs={'create'},
        resources={'roles', 'rolebindings'},
        times=None,
        probability=0.4,
        seed=rng.randrange(2**32),
    ),
    'binding-writes-503': lambda rng: FaultRule(
        effect=ServerError(code=503),
        verbs={'create', 'patch', 'delete'},
        resources={'rolebindings'},
        times=None,
        probability=0.3,
        seed=rng.randrange(2**32),
    ),
    'lost-answers': lambda rng: FaultRule(
        effect=Disconnect(applied=True),
        verbs={'create', 'delete'},
        resources={'serviceaccounts'},
        times=None,
        probability=0.3,
        seed=rng.randrange(2**32),
    ),
    'status-504-applied': lambda rng: FaultRule(
        effect=ServerError(code=504, applied=True),
        verbs={'patch'},
        resources={'serviceidentities/status'},
        times=None,
        probability=0.3,
        seed=rng.randrange(2**32),
    ),
    'kopf-patches-500': lambda rng: FaultRule(
        effect=ServerError(code=500),
        verbs={'patch'},
        resources={'serviceidentities'},
        user_agent=KOPF,
        times=None,
        probability=0.3,
        seed=rng.randrange(2**32),
    ),
    'kopf-watch-410': lambda rng: FaultRule(
        effect=WatchExpired(),
        resources={'serviceidentities'},
        user_agent=KOPF,
        times=None,
        probability=0.5,
        seed=rng.randrange(2**32),
    ),
}

VAULT_FAULTS: dict[str, ProxyMode] = {
    'down': ProxyMode.down(),
    'sealed': ProxyMode.server_error(503),
    'slow': ProxyMode.slow(0.1),
    'writes-500': ProxyMode.server_error(500, methods=WRITES),
    'writes-dropped': ProxyMode.drop(methods=WRITES),
}


@dataclasses.dataclass
class Tracked:
    """The test's model of one identity."""

    key: Key
    expect: Expect
    on_close: str
    secret: bool
    requested: bool
    closed: bool = False
    rotations: int = 0
    """Changes that may rotate its secret (each at most once): the version's upper bound."""
    history: list[str] = dataclasses.field(default_factory=list)


class Chaos:
    """The storm: the model, the changes, the faults, the pace."""

    def __init__(
        self,
        world: World,
        emu: KubeApiEmulator,
        proxy: FaultProxy,
        operator: OperatorProcess,
        namespaces: tuple[str, str],
        rng: random.Random,
    ) -> None:
        self.world = world
        self.emu = emu
        self.proxy = proxy
        self.operator = operator
        self.namespaces = namespaces
        self.rng = rng
        self.slots: list[Tracked | None] = [None] * SLOTS
        self.generations = [0] * SLOTS
        self.tracked: dict[Key, Tracked] = {}
        self.first_uids: dict[Key, dict[str, str]] = {}
        self.faults: list[str] = []
        self.counter = ''
        self.counted = 0
        self.now = 0
        """The step being taken."""
        self.timeline: list[str] = []
        """Fault switches and restarts, with their step."""

    # -- the model -------------------------------------------------------------------------

    def _stamp(self) -> str:
        # Step and wall-clock time, to find the moment in the operator's log.
        return f'#{self.now} {datetime.now(UTC):%H:%M:%S.%f}'[:-3]

    def note(self, item: Tracked, what: str) -> None:
        item.history.append(f'{self._stamp()} {what} -> {item.expect.value}')

    def happened(self, what: str) -> None:
        self.timeline.append(f'{self._stamp()} {what}')

    def step(self) -> None:
        slot = self.rng.randrange(SLOTS)
        item = self.slots[slot]
        if item is None or item.expect is Expect.GONE:
            self.create(slot)
            return
        weights: dict[Callable[[Tracked], None], int] = {
            self.delete: 1,
            self.emergency: 1,
            self.poke: 1 if item.expect is not Expect.REVOKED else 3,
        }
        if item.expect is Expect.PENDING:
            weights |= {self.approve: 4, self.owner: 2, self.cancel: 1}
        elif item.expect is Expect.ACTIVE:
            weights |= {self.owner: 4, self.cancel: 1, self.poke: 2}
            if not item.closed:
                weights[self.close] = 2
        elif item.expect is Expect.DENIED:
            weights |= {self.owner: 1, self.cancel: 1}
        change = self.rng.choices(list(weights), weights=list(weights.values()))[0]
        change(item)

    def create(self, slot: int) -> None:
        self.generations[slot] += 1
        namespace = self.namespaces[slot % 2]
        name = f's{slot:02d}-g{self.generations[slot]}'
        kind = self.rng.choices(['approved', 'requested', 'refused'], weights=[7, 2, 1])[0]
        on_close = self.rng.choice(['Revoke', 'Retain', 'Rotate'])
        secret = self.rng.random() < 0.8
        manifest = identity(
            name,
            namespace,
            state='Requested' if kind == 'requested' else 'Approved',
            on_close=on_close,
            secret=secret,
            ticket=f'CHG{slot:02d}{self.generations[slot]:03d}',
            # The default policy allows no ClusterRole: a guardrail refuses this one.
            cluster_roles=('view',) if kind == 'refused' else (),
        )
        expect = {'approved': Expect.ACTIVE, 'requested': Expect.PENDING}.get(kind, Expect.DENIED)
        item = Tracked((namespace, name), expect, on_close, secret, kind == 'requested')
        self.slots[slot] = item
        self.tracked[item.key] = item
        self.world.create(manifest)
        self.note(item, f'created {kind} (onClose {on_close}, secret {secret})')

    def _patch(self, item: Tracked, patch: Obj) -> None:
        self.world.patch(*item.key, patch)

    def _ticket(self, state: str, item: Tracked) -> Obj:
        ticket: Obj = {'state': state}
        if item.requested:
            # A ticket leaving Requested needs an approval time (the CRD's rule).
            ticket['approvedAt'] = stamp(datetime.now(UTC) - timedelta(seconds=30))
            item.requested = False
        return {'spec': {'ticket': ticket}}

    def approve(self, item: Tracked) -> None:
        self._patch(item, self._ticket('Approved', item))
        item.expect = Expect.ACTIVE
        self.note(item, 'approved')

    def cancel(self, item: Tracked) -> None:
        self._patch(item, self._ticket('Cancelled', item))
        item.expect = Expect.REVOKED
        self.note(item, 'cancelled')

    def close(self, item: Tracked) -> None:
        self._patch(item, self._ticket('Closed', item))
        item.closed = True
        if item.on_close == 'Revoke':
            item.expect = Expect.REVOKED
        elif item.on_close == 'Rotate':
            item.rotations += 1
        self.note(item, f'closed (onClose {item.on_close})')

    def owner(self, item: Tracked) -> None:
        team = self.rng.choice(['payments', 'ledger', 'treasury', 'risk'])
        self._patch(item, {'spec': {'owner': {'team': team}}})
        if item.expect is Expect.ACTIVE:
            item.rotations += 1
        self.note(item, f'owner -> {team}')

    def emergency(self, item: Tracked) -> None:
        self._patch(item, {'metadata': {'annotations': {'tenure.dev/revoke': 'INC0042'}}})
        if item.expect is not Expect.REVOKED:
            item.expect = Expect.REVOKED
        self.note(item, 'emergency brake')

    def poke(self, item: Tracked) -> None:
        """An edit that changes nothing Tenure acts on (a tombstone must stay one)."""
        value = str(self.rng.randrange(10**6))
        self._patch(item, {'metadata': {'annotations': {'example.com/poke': value}}})
        self.note(item, 'poked')

    def delete(self, item: Tracked) -> None:
        self.world.delete(*item.key)
        item.expect = Expect.GONE
        self.note(item, 'deleted')

    # -- faults ----------------------------------------------------------------------------

    def switch_faults(self) -> None:
        """A new random fault configuration (often none)."""
        self._count_and_clear()
        names = []
        if self.rng.random() < 0.5:
            names = self.rng.sample(sorted(EMULATOR_FAULTS), self.rng.randint(1, 2))
        for name in names:
            self.emu.faults.add(EMULATOR_FAULTS[name](self.rng))
        # Last, so that it sees only what the faults let through: the pace-maker's counter.
        self.counter = self.emu.faults.add(FaultRule(effect=PassThrough(), times=None))
        vault = self.rng.choice(sorted(VAULT_FAULTS)) if self.rng.random() < 0.35 else None
        self.proxy.mode(VAULT_FAULTS[vault] if vault else ProxyMode.pass_through())
        if self.rng.random() < 0.2:
            self.emu.faults.drop_watches(RequestMatch(user_agent=KOPF))
            names.append('watches dropped')
        self.faults = [*names, f'vault {vault}'] if vault else names
        self.happened(f'faults: {", ".join(self.faults) or "none"}')

    def _count_and_clear(self) -> None:
        if self.counter:
            self.counted += self.emu.faults.stats(self.counter).fired
        self.emu.faults.clear()
        self.counter = ''

    def heal(self) -> None:
        self._count_and_clear()
        self.proxy.mode(ProxyMode.pass_through())
        self.faults = []
        self.happened('healed')

    def kill_and_restart(self) -> None:
        self.operator.kill()
        # A restart needs both ends reachable (it fails fast otherwise, and a pod would be
        # restarted until they are): heal first, the next fault switch comes soon enough.
        self.heal()
        self.operator.start()
        self.happened('operator SIGKILLed and restarted')

    def requests(self) -> int:
        emulator = self.emu.faults.stats(self.counter).fired if self.counter else 0
        return self.counted + emulator + self.proxy.counts.requests

    def pace(self, requests: int, timeout: float) -> None:
        """Let the operator make `requests` requests (or give it `timeout` seconds)."""
        target = self.requests() + requests
        deadline = time.monotonic() + timeout
        while self.requests() < target and time.monotonic() < deadline:
            time.sleep(0.02)

    # -- observing -------------------------------------------------------------------------

    def sample(self) -> None:
        """Remember the first uid of every managed object (invariant 3), and log in as an
        Active identity now and then (invariant 1 then proves those tokens refused)."""
        for namespace in self.namespaces:
            for key, objects in self.world.managed(namespace).items():
                seen = self.first_uids.setdefault(key, {})
                for name, uid in objects.items():
                    seen.setdefault(name, uid)
        active = [t for t in self.tracked.values() if t.expect is Expect.ACTIVE]
        for item in self.rng.sample(active, min(2, len(active))):
            obj = self.world.get(*item.key)
            if not obj or (obj.get('status') or {}).get('phase') != 'Active':
                continue
            try:
                self.world.login(*item.key)
            except Exception as e:  # raced with a revocation the test asked for
                self.note(item, f'login failed ({type(e).__name__})')
            else:
                self.note(item, 'logged in as it')

    def expected(self) -> dict[Key, Expect]:
        return {key: item.expect for key, item in self.tracked.items()}

    def secret_versions(self) -> dict[Key, range]:
        return {
            key: range(1, 2 + item.rotations)
            for key, item in self.tracked.items()
            if item.expect is Expect.ACTIVE and item.secret
        }

    def report(self) -> str:
        lines = [f'chaos seed {SEED} (TENURE_CHAOS_SEED={SEED} replays it)']
        for key, item in sorted(self.tracked.items()):
            lines.append(f'  {key[0]}/{key[1]}: ' + '; '.join(item.history))
        lines.append('faults and restarts: ' + ' | '.join(self.timeline))
        if self.operator.log_path is not None:
            lines.append(f'operator logs: {self.operator.log_path.parent}/operator-*.log')
        return '\n'.join(lines)


def test_a_storm_of_changes_with_faults_and_crashes_ends_with_every_invariant_holding(
    operator: OperatorProcess,
    emu: KubeApiEmulator,
    proxy: FaultProxy,
    world: World,
) -> None:
    rng = random.Random(SEED)
    suffix = uuid.uuid4().hex[:6]  # not from `rng`: names are no choice of the storm's
    namespaces = (world.namespace(f'chaos-a-{suffix}'), world.namespace(f'chaos-b-{suffix}'))
    chaos = Chaos(world, emu, proxy, operator, namespaces, rng)
    kills = set(rng.sample(range(EPOCH, STEPS - EPOCH), KILLS))
    try:
        with VerifiedWatch(world, namespaces) as watch:
            for step in range(STEPS):
                chaos.now = step
                if step % EPOCH == 0:
                    chaos.sample()
                    chaos.switch_faults()
                if step in kills:
                    chaos.kill_and_restart()
                chaos.step()
                if step % 3 == 2:
                    chaos.pace(requests=8, timeout=0.4)
            chaos.heal()
            chaos.sample()
            world.check(
                chaos.expected(), uids=chaos.first_uids, secret_versions=chaos.secret_versions()
            )
        watch.assert_clean()
    except AssertionError as e:
        raise AssertionError(f'{e}\n{chaos.report()}') from e

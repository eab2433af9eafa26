"""SIGKILL at random points of provisioning and of revocation, then a restart (issue #5).

A seeded generator picks where to kill: after the N-th request the operator sends to the
Kubernetes API (counted by a pass-through rule in the emulator) or to Vault (counted by the fault
proxy), N drawn within what the scenario takes from start to end. The restarted operator must
finish the job: nothing lost, nothing created twice, nothing left behind, `verified` never early.
A failure names the seed and the kill point; `TENURE_CRASH_SEEDS=7,8` replays other seeds.
"""

from __future__ import annotations

import os
import random

import pytest

from tenure_devtools.faultproxy import FaultProxy
from tenure_devtools.kubeapi import KubeApiEmulator
from tenure_devtools.kubeapi.faults import FaultRule, PassThrough
from tenure_devtools.operator_process import OperatorProcess
from tests.faults.invariants import Expect, Key, VerifiedWatch, World, scenario
from tests.integration.stack import identity

pytestmark = pytest.mark.integration

SEEDS = [int(s) for s in os.environ.get('TENURE_CRASH_SEEDS', '3,14,15').split(',')]
NAMES = ('alpha', 'bravo', 'charlie')
# Requests three identities take (measured: provisioning ~39 to Kubernetes and ~30 to Vault,
# revocation ~55 and ~57); a kill point is drawn below each, so it falls inside the work.
PROVISIONING = {'kubernetes': 36, 'vault': 28}
REVOCATION = {'kubernetes': 50, 'vault': 50}
ENDINGS = {
    'cancel': ({'spec': {'ticket': {'state': 'Cancelled'}}}, Expect.REVOKED),
    'close': ({'spec': {'ticket': {'state': 'Closed'}}}, Expect.REVOKED),
    'emergency': ({'metadata': {'annotations': {'tenure.dev/revoke': 'INC0042'}}}, Expect.REVOKED),
    'delete': (None, Expect.GONE),
}


class KillPoint:
    """A random request of the operator's, to Kubernetes or to Vault, after which it dies."""

    def __init__(
        self, emu: KubeApiEmulator, proxy: FaultProxy, rng: random.Random, budget: dict[str, int]
    ) -> None:
        self.side = rng.choice(sorted(budget))
        self.n = rng.randint(1, budget[self.side])
        self._emu = emu
        self._proxy = proxy
        self._rule = ''
        self._vault_base = 0

    def __str__(self) -> str:
        return f'SIGKILL after {self.n} {self.side} requests'

    def arm(self) -> None:
        """Start counting from now."""
        self._rule = self._emu.faults.add(FaultRule(effect=PassThrough(), times=None))
        self._vault_base = self._proxy.counts.requests

    def strike(self, operator: OperatorProcess) -> None:
        """Wait for the N-th request, then SIGKILL the operator."""
        if self.side == 'kubernetes':
            self._emu.faults.wait_fired(self._rule, self.n, timeout=30)
        else:
            base = self._vault_base
            self._proxy.wait_until(lambda c: c.requests >= base + self.n, timeout=30)
        operator.kill()


@pytest.mark.parametrize('seed', SEEDS)
def test_a_kill_while_provisioning_loses_nothing_and_creates_nothing_twice(
    operator: OperatorProcess,
    emu: KubeApiEmulator,
    proxy: FaultProxy,
    world: World,
    ns: str,
    seed: int,
) -> None:
    rng = random.Random(seed)
    keys: list[Key] = [(ns, name) for name in NAMES]
    kill = KillPoint(emu, proxy, rng, PROVISIONING)
    with scenario(f'seed {seed}: {kill} while provisioning'):
        kill.arm()
        for _, name in keys:
            world.create(identity(name, ns))
        kill.strike(operator)
        # Whatever exists at the kill must be kept, not replaced, by the restarted operator.
        survived = world.uids(keys)
        operator.start()
        world.check(
            dict.fromkeys(keys, Expect.ACTIVE),
            uids=survived,
            secret_versions={key: [1] for key in keys},
        )


@pytest.mark.parametrize('seed', SEEDS)
def test_a_kill_while_revoking_still_ends_in_verified_revocations(
    operator: OperatorProcess,
    emu: KubeApiEmulator,
    proxy: FaultProxy,
    world: World,
    ns: str,
    seed: int,
) -> None:
    rng = random.Random(seed)
    keys: list[Key] = [(ns, name) for name in NAMES]
    for _, name in keys:
        world.create(identity(name, ns))
    world.check(dict.fromkeys(keys, Expect.ACTIVE))
    for key in keys:
        world.login(*key)
    endings = {key: rng.choice(sorted(ENDINGS)) for key in keys}
    kill = KillPoint(emu, proxy, rng, REVOCATION)
    description = ', '.join(f'{name}: {how}' for (_, name), how in endings.items())
    with (
        scenario(f'seed {seed}: {kill} while revoking ({description})'),
        VerifiedWatch(world, {ns}) as watch,
    ):
        kill.arm()
        for (_, name), how in endings.items():
            change, _ = ENDINGS[how]
            if change is None:
                world.delete(ns, name)
            else:
                world.patch(ns, name, change)
        kill.strike(operator)
        operator.start()
        world.check({key: ENDINGS[how][1] for key, how in endings.items()})
        watch.assert_clean()

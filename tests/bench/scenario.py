"""One operator on the benchmark's workload, start to end, and the numbers it produced.

The same steps, in the same order, for Tenure and for the baseline, each on a fresh stack:

1. converge: `active` new identities (expiring in 30 days) created in bulk; the clock runs from
   the first create to the last `Active` seen by the watch. Requests counted over that span, per
   identity provisioned.
2. steady state: `steady` seconds with nothing to do; requests and the operator's CPU time per
   minute. Then its memory (VmRSS, and the peak VmHWM) holding `active` identities.
3. resync: the operator restarted with nothing changed; its requests until it has reconciled
   every identity once (when it counts its reconciles) and falls quiet (no Kubernetes request and
   no Vault write for QUIET seconds after it has started watching ServiceIdentities; Vault reads
   go on by design, see `_wait_quiet`). Target: no writes at all.
4. expiry: `expiring` more identities created in bulk (their convergence timed as in 1, with
   `active` already in the cluster), whose expiries are spread evenly over `window` seconds
   starting once they are surely provisioned. Then, per identity, the status the operator wrote:
   `revocation.requestedAt − expiresAt` (when the operator started revoking) and
   `revocation.completedAt − expiresAt` (when everything was verified gone).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from tests.bench import workload
from tests.bench.harness import Operator, Requests, Stack, cpu_seconds, peak_rss_bytes, rss_bytes
from tests.bench.workload import Cluster, PhaseWatch, parse_time

QUIET: Final = 5.0
"""Seconds without a request after which a restarted operator is considered done resyncing."""
FAR: Final = timedelta(days=30)
MIB: Final = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Scale:
    name: str
    active: int
    """Identities converged first, and Active while the others expire."""
    expiring: int
    """Identities that expire within `window`."""
    window: float
    """Seconds over which their expiries are spread (the expiry rate is the same at any scale)."""
    steady: float
    """Seconds of steady state measured (reported per minute). At least the baseline's timer
    interval (60 s): a shorter window may fall between two rounds of its timers and see none."""
    emulator_objects: int
    emulator_requests: int


SCALES: Final = {
    'full': Scale('full', 10_000, 1_000, 60.0, 60.0, 10_000, 100_000),
    # One fortieth, not the tenth issue #5 planned: at its default rate limits (50 requests/s to
    # Kubernetes and to Vault) Tenure takes over 7 minutes for 1,000 identities and a restart,
    # and CI must finish in a few. The emulator alone keeps one tenth.
    'quick': Scale('quick', 250, 25, 1.5, 60.0, 1_000, 10_000),
}


@dataclasses.dataclass(frozen=True)
class Measured:
    value: float | None
    n: int


@dataclasses.dataclass(frozen=True)
class Quiet:
    requests: Requests
    """The counts at the operator's last request (or when the wait gave up)."""
    last_request: float
    """When it made its last request (monotonic), or when the wait gave up."""
    reached: bool


Say = Callable[[str], None]


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction in (0, 1]): a value that was actually observed."""
    ordered = sorted(values)
    rank = max(1, math.ceil(round(fraction * len(ordered), 9)))
    return ordered[min(len(ordered), rank) - 1]


class Run:
    """The workload against one operator on one stack."""

    def __init__(self, stack: Stack, operator: Operator, scale: Scale, say: Say) -> None:
        self.stack = stack
        self.operator = operator
        self.scale = scale
        self.say = say
        self.results: dict[str, Measured] = {}

    def record(self, metric: str, value: float | None, n: int) -> None:
        self.results[metric] = Measured(value, n)

    @property
    def pid(self) -> int:
        pid = self.operator.pid
        assert pid is not None, 'the operator is not running'
        return pid

    def requests(self) -> Requests:
        return self.stack.requests.snapshot()

    async def execute(self) -> dict[str, Measured]:
        await asyncio.to_thread(self.operator.start)
        async with (
            Cluster(self.stack.emulator.url) as cluster,
            PhaseWatch(cluster, keep_status={'expiring'}) as watch,
        ):
            rate = await self.converge(cluster, watch)
            await self.steady_state()
            await self.resync(watch)
            await self.expiry(cluster, watch, rate)
        return self.results

    async def _wait_quiet(self, *, limit: float, since: Requests | None = None) -> Quiet:
        """Wait until the operator has made no request for QUIET seconds (and, with `since`,
        has opened a watch since then). Gives up after `limit` seconds: an operator that keeps
        busy is a finding to report, not a reason to lose the run.

        Vault reads do not count: Tenure's Vault drift check (`--vault-resync`) reads a few
        objects of one identity at a time, all the time, by design; its cost shows in the
        steady-state numbers instead."""
        begun = time.monotonic()
        last, last_change = self.requests(), begun
        while True:
            # Reading in-process counters and OpenBao's audit file, not the APIs: this loop
            # loads nothing it measures.
            await asyncio.sleep(0.25)
            now, current = time.monotonic(), self.requests()
            if (current.kube, current.vault_writes) != (last.kube, last.vault_writes):
                last, last_change = current, now
            elif current != last:
                last = current  # only Vault reads: counted, not a sign of work in progress
            watching = since is None or current.kube.get('watch', 0) > since.kube.get('watch', 0)
            if watching and now - last_change >= QUIET:
                return Quiet(last, last_change, reached=True)
            if now - begun > limit:
                return Quiet(current, now, reached=False)

    async def _wait_reconciles(self, n: int, *, limit: float) -> bool | None:
        """Wait until the operator has reconciled `n` times since it started (None: it does
        not say; False: not within `limit` seconds)."""
        begun = time.monotonic()
        while True:
            done = await asyncio.to_thread(self.operator.reconciles)
            if done is None:
                return None
            if done >= n:
                return True
            if time.monotonic() - begun > limit:
                return False
            await asyncio.sleep(1.0)  # polling the operator's metrics, not the API

    async def _converge_batch(
        self, cluster: Cluster, watch: PhaseWatch, manifests: list[workload.Obj], label: str
    ) -> float:
        """Create the batch and wait until all are Active; returns when (monotonic)."""
        count = len(manifests)
        started = time.monotonic()
        created = await cluster.create_all(manifests)
        self.say(f'  created {count} identities in {created:.1f}s; waiting until all are Active')
        finished = await watch.wait(
            lambda: watch.count(label, 'Active') + watch.count(label, 'Denied') >= count,
            within=max(600.0, count * 0.5),
            what=f'{count} {label} identities Active',
        )
        denied = watch.count(label, 'Denied')
        if denied:
            raise RuntimeError(f'{denied} of the {label} identities were Denied, not provisioned')
        self.say(f'  all Active after {finished - started:.1f}s')
        return finished

    async def converge(self, cluster: Cluster, watch: PhaseWatch) -> float:
        n = self.scale.active
        self.say(f'converge: {n} new identities')
        far = datetime.now(UTC) + FAR
        manifests = workload.batch('active', n, lambda _: far)
        before, started = self.requests(), time.monotonic()
        reconciles = self.operator.reconciles()
        finished = await self._converge_batch(cluster, watch, manifests, 'active')
        seconds = finished - started
        # Provisioning goes on after the last status write (Events, kopf's own annotations,
        # handlers still queued): its requests are counted until the operator falls quiet.
        quiet = await self._wait_quiet(limit=max(300.0, seconds))
        spent = quiet.requests - before
        busy = quiet.last_request - finished
        self.say(
            f'  converged in {seconds:.1f}s ({n / seconds:.0f}/s); busy for {busy:.1f}s more'
            f'{"" if quiet.reached else " (and still busy: the wait gave up)"}; {spent.describe()}'
        )
        self.record('converge_first_seconds', seconds, n)
        self.record('converge_busy_after_seconds', busy, n)
        after = self.operator.reconciles()
        if reconciles is not None and after is not None:
            self.record('provision_reconciles_per_identity', (after - reconciles) / n, n)
        self.record('provision_kube_requests_per_identity', spent.kube_total / n, n)
        self.record('provision_kube_writes_per_identity', spent.kube_writes / n, n)
        self.record('provision_vault_requests_per_identity', spent.vault / n, n)
        self.record('provision_vault_writes_per_identity', spent.vault_writes / n, n)
        self.record('rss_peak_mib', peak_rss_bytes(self.pid) / MIB, n)
        return n / seconds

    async def steady_state(self) -> None:
        n, span = self.scale.active, self.scale.steady
        self.say(f'steady state: {span:.0f}s with {n} Active identities and nothing to do')
        before, cpu = self.requests(), cpu_seconds(self.pid)
        await asyncio.sleep(span)  # the measurement window itself, not a wait for a condition
        spent, used = self.requests() - before, cpu_seconds(self.pid) - cpu
        per_minute = 60.0 / span
        self.say(f'  {spent.describe()}; {used:.2f} CPU seconds')
        self.record('steady_kube_requests_per_minute', spent.kube_total * per_minute, n)
        self.record('steady_vault_requests_per_minute', spent.vault * per_minute, n)
        self.record('steady_cpu_seconds_per_minute', used * per_minute, n)
        self.record('rss_mib', rss_bytes(self.pid) / MIB, n)

    async def resync(self, watch: PhaseWatch) -> None:
        n = self.scale.active
        self.say(f'resync: restart with {n} unchanged identities')
        await asyncio.to_thread(self.operator.stop)
        before = self.requests()
        started = time.monotonic()
        await asyncio.to_thread(self.operator.start)
        limit = max(900.0, n * 0.5)
        # At scale, the operator's first LIST of every watched kind takes longer than the quiet
        # spell: silence then means "still reading", not "done". An operator that counts its
        # reconciles is waited for until it has reconciled each identity once.
        if await self._wait_reconciles(n, limit=limit) is False:
            self.say(f'  fewer than {n} reconciles within {limit:.0f}s')
        quiet = await self._wait_quiet(limit=limit, since=before)
        spent = quiet.requests - before
        took = quiet.last_request - started
        self.say(
            f'  {"quiet" if quiet.reached else "still busy (the wait gave up)"} after '
            f'{took:.1f}s; {spent.describe()}'
        )
        self.record('resync_seconds', took, n)
        self.record('resync_kube_requests_per_identity', spent.kube_total / n, n)
        self.record('resync_vault_requests_per_identity', spent.vault / n, n)
        self.record('resync_kube_writes', spent.kube_writes, n)
        self.record('resync_vault_writes', spent.vault_writes, n)
        self.record('rss_after_restart_mib', rss_bytes(self.pid) / MIB, n)
        if watch.count('active', 'Active') != n:
            raise RuntimeError(f'after the restart only {watch.count("active", "Active")} Active')

    async def expiry(self, cluster: Cluster, watch: PhaseWatch, rate: float) -> None:
        n, span = self.scale.expiring, self.scale.window
        # The expiries start once the batch is surely Active: twice the time the first batch's
        # rate predicts, and at least 20 s (an expiry during provisioning measures nothing).
        lead = max(20.0, 2 * n / rate + 10)
        start = datetime.now(UTC) + timedelta(seconds=lead)
        step = span / n
        self.say(
            f'expiry: {n} new identities expiring over {span:.0f}s from {lead:.0f}s on, '
            f'with {self.scale.active} Active'
        )
        manifests = workload.batch(
            'expiring', n, lambda i: start + timedelta(seconds=i * step), first=0
        )
        started = time.monotonic()
        seconds = await self._converge_batch(cluster, watch, manifests, 'expiring') - started
        margin = (start - datetime.now(UTC)).total_seconds()
        self.say(
            f'  converged in {seconds:.1f}s ({n / seconds:.0f}/s), {margin:.1f}s before the '
            'first expiry'
        )
        if margin <= 0:
            raise RuntimeError('the expiring batch was still converging when expiries began')
        self.record('converge_more_seconds', seconds, n)
        before = self.requests()
        last_expiry = start + timedelta(seconds=span)
        # The emulator runs in this process: a full collection of its cycle collector walks every
        # object the emulator stores and stops it for as long (about 400 ms with 3,000 identities
        # in it), which would show as the operator's latency. A real API server's collector does
        # not stop the world like that: what is in the store by now is put out of its reach for
        # the window (objects still go when their last reference does).
        gc.collect()
        gc.freeze()
        try:
            await watch.wait(
                lambda: watch.count('expiring', 'Revoked') >= n,
                within=(last_expiry - datetime.now(UTC)).total_seconds() + 300 + 2 * n,
                what=f'{n} identities revoked',
            )
        finally:
            gc.unfreeze()
        spent = self.requests() - before
        self.say(f'  all revoked; {spent.describe()} from convergence to the last revocation')
        requested: list[float] = []
        completed: list[float] = []
        for tracked in watch.of_batch('expiring').values():
            assert tracked.status is not None
            assert tracked.expires_at is not None
            revocation = tracked.status['revocation']
            expires = parse_time(tracked.expires_at)
            requested.append((parse_time(revocation['requestedAt']) - expires).total_seconds())
            completed.append((parse_time(revocation['completedAt']) - expires).total_seconds())
        for name, values in (('requested', requested), ('completed', completed)):
            for label, fraction in (('p50', 0.5), ('p90', 0.9), ('p99', 0.99), ('max', 1.0)):
                value = percentile(values, fraction) * 1000
                self.record(f'revocation_{name}_after_expiry_{label}_ms', value, n)
        late = sum(1 for value in completed if value > 1.0)
        self.record('revocations_completed_over_1s_late', late, n)
        self.record('revocation_kube_requests_per_identity', spent.kube_total / n, n)
        self.record('revocation_vault_requests_per_identity', spent.vault / n, n)
        self.say(
            '  completedAt - expiresAt: '
            f'p50 {percentile(completed, 0.5) * 1000:.0f} ms, '
            f'p99 {percentile(completed, 0.99) * 1000:.0f} ms, max {max(completed) * 1000:.0f} ms'
        )

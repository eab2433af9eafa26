"""One operator process: its clients, the reconciler, the deadline scheduler and the kopf wiring.

kopf's handlers ask for a reconcile (`Runtime.request`) and the deadline scheduler runs it; only
deletion reconciles inside its kopf handler, which keeps the finalizer until the revocation is
verified. Everything ends in `Runtime.reconcile_key`, which serialises work per identity and
always re-reads the object from the API first: an event's body may be older than the status just
written, and a stale "Active" must never re-provision a revocation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import kopf
from pydantic import ValidationError

from tenure.api.v1alpha1 import (
    DEFAULT_POLICY_NAME,
    GROUP,
    PLURAL,
    POLICY_PLURAL,
    SOURCE_PLURAL,
    VERSION,
    Phase,
    RevocationReason,
)
from tenure.domain.guardrails import Policy, policy_of
from tenure.domain.lifecycle import Revoke
from tenure.domain.names import FINALIZER
from tenure.drift import DriftWatch
from tenure.errors import PermanentError, TenureError, TransientError
from tenure.gcpacing import CollectorPacer
from tenure.limits import PriorityGate, urgent
from tenure.metrics import Metrics
from tenure.ports import KubernetesPort
from tenure.reconcile import Outcome, ReconcileFailed, Reconciler, TokenRefresh
from tenure.scheduler import DeadlineScheduler, Key
from tenure.ticketing import TicketPoller

log = logging.getLogger(__name__)

MAX_BACKOFF = 300.0
SCHEDULER_THREADS_PER_SLOT = 4
KOPF_PREFIX = 'kopf.tenure.dev'
"""Where kopf keeps its own bookkeeping annotations."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def backoff(attempt: int) -> float:
    """Exponential backoff for retries: 1, 2, 4 ... seconds, at most 5 minutes."""
    return float(min(MAX_BACKOFF, 2 ** min(attempt, 9)))


class IdentityReader(KubernetesPort, Protocol):
    """The Kubernetes port plus the one read the runtime needs."""

    def read_identity(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class Runtime:
    """Reconciles identities on kopf's events and on their deadlines, one at a time each."""

    def __init__(
        self,
        kube: IdentityReader,
        reconciler: Reconciler,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utc_now,
        before_reconcile: Callable[[], None] | None = None,
        connection: Callable[[], kopf.ConnectionInfo] | None = None,
        max_in_flight: int = 16,
    ) -> None:
        self.kube = kube
        self.before_reconcile = before_reconcile
        self.connection = connection
        """kopf's credentials; None for kopf's own in-cluster ServiceAccount login."""
        self.reconciler = reconciler
        self.metrics = metrics or Metrics()
        self.clock = clock
        # Deadline reconciles mostly wait at the gate, which decides who goes first: the
        # scheduler may start more of them than the gate admits, so that a due revocation is
        # never stuck behind non-urgent deadlines holding all of the scheduler's threads.
        self.scheduler = DeadlineScheduler(
            self._on_deadline, clock=clock, concurrency=SCHEDULER_THREADS_PER_SLOT * max_in_flight
        )
        self.refresher = DeadlineScheduler(self._on_refresh, clock=clock, concurrency=max_in_flight)
        """Vault token TTL refreshes: one role write each, not a reconcile (`TokenRefresh`)."""
        self._refreshes: dict[Key, TokenRefresh] = {}
        self.pacer = CollectorPacer(self._next_deadline_in)
        """Full garbage collections between deadlines (see tenure.gcpacing)."""
        self._threads = concurrent.futures.ThreadPoolExecutor(
            (SCHEDULER_THREADS_PER_SLOT + 1) * max_in_flight, thread_name_prefix='tenure-deadline'
        )
        """The scheduler's own threads: asyncio's default executor has only CPUs + 4 of them,
        and kopf shares it."""
        self.gate = PriorityGate(max_in_flight)
        """Reconciles in flight, kopf's and the scheduler's together; revocations first."""
        self._policy = Policy()
        self._policy_epoch = 0
        """Bumped on every policy change: a reconcile that began under an older policy re-runs."""
        self._known: set[Key] = set()
        self._locks: dict[Key, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._failures: dict[Key, int] = {}
        self.drift: DriftWatch | None = None
        """Drift watches and the periodic Vault check (issue #6), if wired."""
        self.tickets: TicketPoller | None = None
        """Reads the tickets identities cite from their TicketSources (issue #7), if wired."""
        self._expiries: dict[Key, datetime] = {}
        self._requests: dict[Key, int] = {}
        """Per identity, how many times a reconcile was asked for (see `request`)."""
        """The expiry of each Active identity: once it has passed, its reconcile is urgent."""

    # -- the guardrail policy ----------------------------------------------------------------

    def policy(self) -> Policy:
        """The policy in force (the reconciler asks for it on every reconcile)."""
        return self._policy

    def set_policy(self, body: Mapping[str, Any] | None) -> bool:
        """Adopt the `default` IdentityPolicy (None: it was deleted, built-in defaults apply).

        Returns False (and keeps the policy in force) when the object does not validate.
        Identities are re-evaluated at once: an Active one that now violates an Enforce rule is
        reported (Valid=False, an event, a metric) and held, not revoked (see docs/design.md).
        """
        try:
            policy = policy_of(body)
        except ValidationError as e:
            log.error(
                'IdentityPolicy %s is invalid, keeping the one in force: %s', DEFAULT_POLICY_NAME, e
            )
            return False
        if policy != self._policy:
            self._policy = policy
            self._policy_epoch += 1
            log.info('guardrail policy now in force: %s', policy)
            for key in list(self._known):
                self.scheduler.schedule(key, self.clock())
        return True

    def _next_deadline_in(self) -> float | None:
        due = [d for d in (self.scheduler.due_in(), self.refresher.due_in()) if d is not None]
        return min(due, default=None)

    def knows(self, key: Key) -> bool:
        """Whether `key` is an identity this runtime has reconciled and not forgotten."""
        return key in self._known

    @contextlib.contextmanager
    def _exclusive(self, key: Key) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield

    def request(self, key: Key) -> None:
        """Reconcile `key` as soon as possible (something changed that its last reconcile did
        not see). Never lost: a reconcile already past its read when this is asked for
        schedules another one instead of its own later deadline. Thread-safe."""
        with self._locks_guard:
            self._requests[key] = self._requests.get(key, 0) + 1
        self.scheduler.schedule(key, self.clock())

    def reconcile_key(self, key: Key) -> Outcome | None:
        """Reconcile the identity as it is now in the API; None when it no longer exists."""
        with self._exclusive(key):
            with self._locks_guard:
                asked = self._requests.get(key, 0)
            if self.before_reconcile is not None:
                self.before_reconcile()
            expiry = self._expiries.get(key)
            with urgent(expiry is not None and expiry <= self.clock()):
                body = self.kube.read_identity(*key)
            if self.tickets is not None:
                self.tickets.track(key, body)
            if body is None:
                self._forget(key)
                return None
            # Known from now on: a policy change during this reconcile reschedules it too.
            self._known.add(key)
            epoch = self._policy_epoch
            try:
                revoking = isinstance(self.reconciler.decision_for(body), Revoke)
            except TenureError:
                revoking = False  # the reconcile itself will report the problem
            started = time.monotonic()
            try:
                with self.gate.slot(urgent=revoking), urgent(revoking):
                    outcome = self.reconciler.reconcile(body)
            except ReconcileFailed as failure:
                self._record_failure(key, failure)
                raise
            finally:
                self.metrics.reconcile_seconds.observe(time.monotonic() - started)
            self._failures.pop(key, None)
            self._known.add(key)
            self.metrics.reconciles.labels('success').inc()
            self.metrics.phases.set(key, outcome.status.phase)
            self.metrics.violations.set(key, {v.rule.value for v in outcome.violations})
            for repair in outcome.repairs:
                self.metrics.drift_repairs.labels(repair.kind.value).inc()
            status = outcome.status
            if status.phase is Phase.ACTIVE and status.expires_at is not None:
                self.metrics.expiry.labels(*key).set(status.expires_at.timestamp())
                self._expiries[key] = status.expires_at
            else:
                self._drop_expiry(key)
            self._plan_refresh(key, outcome.token_refresh if status.phase is Phase.ACTIVE else None)
            revocation = status.revocation
            if isinstance(outcome.decision, Revoke) and outcome.finished and revocation:
                self.metrics.revocations.labels(outcome.decision.reason.value).inc()
                if self.tickets is not None:
                    self.tickets.revoked(key, body, status)  # queued: never delays revocation
                done, due = revocation.completed_at, status.expires_at
                if outcome.decision.reason is RevocationReason.EXPIRED and done and due:
                    self.metrics.revocation_latency.observe(max(0.0, (done - due).total_seconds()))
            deadline = None if outcome.finished else outcome.next_deadline
            if epoch != self._policy_epoch and not outcome.finished:
                deadline = self.clock()  # judged under an older policy: look again at once
            with self._locks_guard:
                if self._requests.get(key, 0) != asked:
                    deadline = self.clock()  # asked for after the read: look again at once
            self.scheduler.schedule(key, deadline)
            return outcome

    def _plan_refresh(self, key: Key, due: TokenRefresh | None) -> None:
        if due is None:
            self._refreshes.pop(key, None)
        else:
            self._refreshes[key] = due
        self.refresher.schedule(key, None if due is None else due.at)

    def refresh_key(self, key: Key) -> None:
        """Shorten the Vault token TTL of an identity still Active, as its last reconcile
        planned. Serialised with its reconciles: one that revoked it has dropped the plan, so a
        refresh never writes a role back after a revocation."""
        with self._exclusive(key):
            due = self._refreshes.get(key)
            if due is None or due.at > self.clock():
                return
            try:
                # Urgent: a late refresh lets tokens issued meanwhile outlive the expiry.
                with urgent():
                    following = self.reconciler.refresh(due)
            except TenureError as e:
                # The reconcile knows how to report and retry a failure: let it do this one.
                log.warning('%s/%s: token TTL refresh failed: %s', *key, e)
                self._plan_refresh(key, None)
                self.scheduler.schedule(key, self.clock())
                return
            self._plan_refresh(key, following)

    async def _on_refresh(self, key: Key) -> None:
        await asyncio.get_running_loop().run_in_executor(self._threads, self.refresh_key, key)

    def close(self) -> None:
        """Stop the scheduler's threads (deadline reconciles in flight finish first)."""
        self._threads.shutdown(wait=True, cancel_futures=True)

    def _record_failure(self, key: Key, failure: ReconcileFailed) -> None:
        transient = isinstance(failure.cause, TransientError)
        self.metrics.reconciles.labels('transient_error' if transient else 'permanent_error').inc()
        if isinstance(failure.outcome.decision, Revoke):
            self.metrics.revocation_failures.inc()
            self._plan_refresh(key, None)  # half revoked: no role may be written back
        self.metrics.phases.set(key, failure.outcome.status.phase)
        attempt = self._failures.get(key, 0) + 1
        self._failures[key] = attempt
        deadline = failure.outcome.next_deadline
        if transient or isinstance(failure.outcome.decision, Revoke):
            # The scheduler retries too, so a failure is retried even without a kopf event; a
            # revocation whatever stopped it (see `handle`).
            delay = failure.cause.retry_after if isinstance(failure.cause, TransientError) else None
            retry_at = self.clock() + timedelta(seconds=delay or backoff(attempt))
        else:
            # A permanent failure (Vault refusing the operator, an object in the way) is fixed
            # by a change Tenure sees no event for: look again now and then, never in a storm.
            retry_at = self.clock() + timedelta(seconds=MAX_BACKOFF)
        deadline = retry_at if deadline is None else min(deadline, retry_at)
        self.scheduler.schedule(key, deadline)

    def _drop_expiry(self, key: Key) -> None:
        self._expiries.pop(key, None)
        with contextlib.suppress(KeyError):
            self.metrics.expiry.remove(*key)

    def _forget(self, key: Key) -> None:
        self._drop_expiry(key)
        self._plan_refresh(key, None)
        self.scheduler.schedule(key, None)
        self._known.discard(key)
        self.metrics.phases.set(key, None)
        self.metrics.violations.set(key, set())
        self._failures.pop(key, None)

    async def reconcile_now(self, key: Key) -> None:
        """Reconcile `key` now, after any reconcile of it in flight (which would replace a deadline
        set now with its own): for the ticket poller, whose news must not be lost."""
        await self._on_deadline(key)

    async def _on_deadline(self, key: Key) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._threads, self.reconcile_key, key)
        except ReconcileFailed as failure:
            log.warning('%s/%s: %s', key[0], key[1], failure.cause)
        except TenureError as e:
            log.warning('%s/%s: %s', key[0], key[1], e)
            self.scheduler.schedule(key, self.clock() + timedelta(seconds=backoff(1)))

    def catch_up(self, bodies: list[dict[str, Any]]) -> int:
        """Before anything else runs: revoke what came due while no replica acted (expiry,
        cancellation, deletion, an interrupted revocation). Returns how many were revoked."""
        due = []
        for body in bodies:
            try:
                decision = self.reconciler.decision_for(body)
            except TenureError as e:
                log.warning(
                    'catch-up: cannot judge %s: %s', body.get('metadata', {}).get('name'), e
                )
                continue
            if isinstance(decision, Revoke):
                meta = body['metadata']
                due.append((meta['namespace'], meta['name']))
        for key in due:
            try:
                self.reconcile_key(key)
            except (ReconcileFailed, TenureError) as e:
                log.warning('catch-up: revocation of %s/%s not complete yet: %s', *key, e)
        if due:
            log.info('catch-up: %d revocation(s) due at start-up handled first', len(due))
        return len(due)

    # -- kopf ------------------------------------------------------------------------------

    def handle(self, namespace: str, name: str, retry: int, *, deleting: bool = False) -> None:
        """Run one reconcile for a kopf handler (deletion: kopf keeps the finalizer until this
        returns), translating the outcome for kopf."""
        key = (namespace, name)
        try:
            outcome = self.reconcile_key(key)
        except ReconcileFailed as failure:
            cause = failure.cause
            # A revocation is never given up: on a kopf PermanentError, kopf drops the finalizer
            # of a deleted identity with its access still in place, and a 403 fixed in Vault's
            # policy sends no event. It is retried with backoff instead, like a transient error.
            revoking = deleting or isinstance(failure.outcome.decision, Revoke)
            if isinstance(cause, TransientError) or revoking:
                delay = cause.retry_after if isinstance(cause, TransientError) else None
                raise kopf.TemporaryError(str(cause), delay=delay or backoff(retry)) from None
            raise kopf.PermanentError(str(cause)) from None
        except TransientError as e:
            raise kopf.TemporaryError(str(e), delay=e.retry_after or backoff(retry)) from None
        except PermanentError as e:
            if deleting:
                raise kopf.TemporaryError(str(e), delay=backoff(retry)) from None
            raise kopf.PermanentError(str(e)) from None
        if deleting and outcome is not None and not outcome.finished:
            raise kopf.TemporaryError('revocation is not verified yet', delay=backoff(retry))


def operator_settings(max_workers: int = 16) -> kopf.OperatorSettings:
    """kopf settings Tenure depends on."""
    settings = kopf.OperatorSettings()
    # Handler progress and the diff base live in annotations: a structural schema prunes
    # `status.kopf` (kopf#574), and Tenure owns `status` entirely. Their prefix must not be
    # `tenure.dev`: kopf ignores every annotation under a prefix its storages use, and
    # `tenure.dev/revoke` must trigger a reconcile.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=KOPF_PREFIX, key='last-handled-configuration'
    )
    settings.persistence.finalizer = FINALIZER
    # Tenure records its own reason-coded events; kopf's per-handler events would be noise.
    settings.posting.enabled = False
    settings.execution.max_workers = max_workers
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    # After its own patch, kopf waits this long for the watch to show it before acting on the
    # object again; past it, it acts on the older body and runs the creation handler again. A
    # burst of thousands of objects delays watch events well past kopf's default of 5s.
    settings.persistence.consistency_timeout = 60
    return settings


def build_registry(runtime: Runtime) -> kopf.OperatorRegistry:
    """The kopf handlers: thin, they only call the runtime. (The admission webhook is not one: every
    replica serves it, leader or not, see tenure.webhook.)"""
    registry = kopf.OperatorRegistry()
    tasks: list[asyncio.Task[None]] = []

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if runtime.connection is not None:
            return runtime.connection()
        info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
        return info

    @kopf.on.startup(registry=registry)
    async def start_scheduler(**_: Any) -> None:
        tasks.append(asyncio.create_task(runtime.scheduler.run(), name='tenure-deadlines'))
        await asyncio.sleep(0)  # running (and thread-safe) before the first handler asks it
        tasks.append(asyncio.create_task(runtime.refresher.run(), name='tenure-token-ttls'))
        tasks.append(asyncio.create_task(runtime.pacer.run(), name='tenure-gc'))
        if runtime.tickets is not None:
            tasks.append(asyncio.create_task(runtime.tickets.run(), name='tenure-tickets'))

    @kopf.on.cleanup(registry=registry)
    async def stop_scheduler(**_: Any) -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        runtime.close()

    @kopf.on.event(GROUP, VERSION, POLICY_PLURAL, registry=registry)
    def policy_changed(*, name: str, type: str | None, body: kopf.Body, **_: Any) -> None:
        if name == DEFAULT_POLICY_NAME:
            runtime.set_policy(None if type == 'DELETED' else body)

    @kopf.on.event(GROUP, VERSION, SOURCE_PLURAL, registry=registry)
    def ticket_source_changed(*, name: str, type: str | None, body: kopf.Body, **_: Any) -> None:
        if runtime.tickets is not None:
            runtime.tickets.set_source(name, None if type == 'DELETED' else body)

    behind: dict[Key, int] = {}

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    def generation_not_observed(
        *, namespace: str | None, name: str, type: str | None, body: kopf.Body, **_: Any
    ) -> None:
        # kopf runs a handler only when the spec differs from the one it recorded as handled,
        # taken from the body its handler was given, while a reconcile re-reads and may apply a
        # newer spec: A -> B -> A during one reconcile leaves B applied and A recorded, and the
        # final A looks unchanged to kopf. So a generation the status has not observed yet is
        # reconciled now, once per generation (level-triggered, whatever kopf recorded).
        key = (namespace or '', name)
        if type == 'DELETED':
            behind.pop(key, None)
            return
        generation = body.get('metadata', {}).get('generation')
        observed = (body.get('status') or {}).get('observedGeneration')
        if observed is None or generation is None or observed >= generation:
            return
        if behind.get(key) != generation:
            behind[key] = generation
            runtime.request(key)

    # Creation, change and resumption only ask for a reconcile and return: the runtime runs it
    # (deduplicated per identity, revocations first, retried on failure). A kopf handler that
    # ran the reconcile itself would hold kopf's per-object worker, with the object's body, for
    # as long as the reconcile waits for a slot: a burst of thousands of identities held them
    # all at once (over 1 GB at 10,000), where a request is a key in the scheduler's heap.
    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    async def resumed(*, namespace: str | None, name: str, **_: Any) -> None:
        runtime.request((namespace or '', name))

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    async def created(*, namespace: str | None, name: str, **_: Any) -> None:
        runtime.request((namespace or '', name))

    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    async def updated(*, namespace: str | None, name: str, **_: Any) -> None:
        runtime.request((namespace or '', name))

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def deleted(*, namespace: str | None, name: str, retry: int, **_: Any) -> None:
        runtime.handle(namespace or '', name, retry, deleting=True)

    return registry

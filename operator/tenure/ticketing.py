"""The ITSM as the source of truth (issue #7): one poller for every TicketSource, its webhooks,
and the write-back of revocations.

- The runtime tells the poller which identity cites which ticket (`track`) as it reconciles.
- One asyncio task reads, per TicketSource and at its pollInterval, every ticket cited (each
  ticket once, whatever the number of identities citing it), writes what it saw into
  `status.ticket` only when that changes, and asks for a reconcile of the identities concerned.
  The reconcile decides (domain.tickets, domain.lifecycle); the poller never revokes anything.
- A source that cannot be read is recorded as unavailable: identities without an observation
  wait (Ready=Unknown, TicketSourceUnavailable); the last observation of the others stays in
  force, so an outage never ends access and never delays an expiry (the scheduler owns those).
- A signed webhook is only a hint: the source is read again through its API at once.
- A webhook source (type webhook) has no API: its signed push *is* the observation. It is
  checked (domain.tickets.parse_push, push_timing), recorded in `status.ticket` of the
  identities citing the ticket, remembered for those that cite it later, and reconciled at once.
  "Polling" such a source only reads its HMAC key again and hands remembered pushes over.
- After a verified revocation a note goes to the ticket from a worker thread; its failure is
  logged and changes nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError

from tenure.adapters.itsm import Credentials, ItsmClient, client_for
from tenure.api.v1alpha1 import (
    Phase,
    ServiceIdentityStatus,
    TicketObservation,
    TicketSource,
    TicketSourceSpec,
    TicketSourceType,
)
from tenure.domain.names import IdentityNames
from tenure.domain.tickets import Push, PushRefused, SourceView, parse_push, push_timing
from tenure.errors import TenureError
from tenure.scheduler import Key

log = logging.getLogger(__name__)

SIGNATURE_HEADER = 'X-Hub-Signature'
WEBHOOK_PREFIX = '/webhooks/'
MIN_POLL = timedelta(seconds=1)
"""A floor under pollInterval, so that a typo (1ms) cannot turn the poller into a load test."""
MAX_REMEMBERED = 10_000
"""Pushes kept for tickets no identity cites yet (the oldest are forgotten first): a grant
applied after its ticket was pushed is provisioned without waiting for another push."""


class SecretReader(Protocol):
    def read_secret_data(self, namespace: str, name: str) -> dict[str, str] | None: ...

    def patch_status(self, names: IdentityNames, status: Mapping[str, Any]) -> None: ...


ClientFactory = Callable[[TicketSourceSpec, Credentials], ItsmClient]


@dataclasses.dataclass
class _Source:
    name: str
    spec: TicketSourceSpec | None
    invalid: str | None = None
    error: str | None = None
    hmac_key: bytes | None = None
    due: datetime | None = None
    """When to read it next (None: as soon as the loop runs)."""


@dataclasses.dataclass
class _Cited:
    system: str
    ticket_id: str
    observation: TicketObservation | None


def signature_of(key: bytes, body: bytes) -> str:
    """The X-Hub-Signature value of `body` under `key`: sha256=<hex>."""
    return 'sha256=' + hmac.new(key, body, hashlib.sha256).hexdigest()


def webhook_route(
    poller: TicketPoller, leading: Callable[[], bool]
) -> Callable[[str, bytes, str | None], tuple[int, str]]:
    """The POST /webhooks/<source> handler for the operator's HTTP listener (tenure.health).

    Every replica serves the listener; only the leader reads tickets. A standby answers 503
    before looking at the request: the ITSM retries (ServiceNow and Jira retry failed webhook
    deliveries), and a hint lost for good is only a poll interval late.
    """

    def handle(name: str, body: bytes, signature: str | None) -> tuple[int, str]:
        if not name or '/' in name:
            return 404, 'not found'
        if not leading():
            return 503, 'not leading: retry later'
        return poller.webhook(name, body, signature)

    return handle


def revocation_note(key: Key, status: ServiceIdentityStatus) -> str:
    """The work note or comment written back on a verified revocation: the identity, the reason
    and the proof (object names and checks only: status never holds a secret value)."""
    revocation = status.revocation
    if revocation is None:
        return ''
    done = revocation.completed_at or revocation.requested_at
    lines = [
        f'Tenure revoked ServiceIdentity {key[0]}/{key[1]}: reason {revocation.reason.value}, '
        f'completed {done:%Y-%m-%dT%H:%M:%SZ}, verified {str(revocation.verified).lower()}.',
        'Revocation proof:',
        *(
            f'- {p.object}: {p.result} ({p.check}, {p.at:%Y-%m-%dT%H:%M:%SZ})'
            for p in revocation.proof
        ),
    ]
    return '\n'.join(lines)


class TicketPoller:
    """Reads the tickets identities cite; see the module docstring."""

    def __init__(
        self,
        kube: SecretReader,
        *,
        reconcile: Callable[[Key], Coroutine[Any, Any, None]],
        clock: Callable[[], datetime],
        clients: ClientFactory = client_for,
    ) -> None:
        self.kube = kube
        self.reconcile = reconcile
        """Reconciles an identity now (Runtime.reconcile_now). Not a deadline: a reconcile in
        flight would replace a deadline set now with its own later one, and the change be lost."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.clock = clock
        self.clients = clients
        self._sources: dict[str, _Source] = {}
        self._cited: dict[Key, _Cited] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._notes = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='itsm-notes')
        self._pushed: OrderedDict[tuple[str, str], TicketObservation] = OrderedDict()
        """The newest push per (webhook source, ticket): replay protection and late citers."""
        self._recording = threading.Lock()
        """Held from a push's check to its status writes (and while remembered pushes are
        handed over): two pushes racing must be written in the order they were checked."""

    # -- what the runtime tells us -------------------------------------------------------

    def set_source(self, name: str, body: Mapping[str, Any] | None) -> None:
        """Adopt a TicketSource (None: it was deleted); identities citing it are reconciled."""
        with self._lock:
            if body is None:
                self._sources.pop(name, None)
                for pushed in [p for p in self._pushed if p[0] == name]:
                    del self._pushed[pushed]
            else:
                try:
                    spec = TicketSource.model_validate(dict(body)).spec
                    invalid = None
                except ValidationError as e:
                    log.error('TicketSource %s is invalid: %s', name, e)
                    spec, invalid = None, f'the TicketSource {name} is invalid'
                previous = self._sources.get(name)
                if previous is None or previous.spec != spec or previous.invalid != invalid:
                    self._sources[name] = _Source(name, spec, invalid)
            keys = [k for k, c in self._cited.items() if c.system == name]
        self._wake_up()
        self._reconcile(keys)

    def source_view(self, system: str) -> SourceView | None:
        """The TicketSource named `system` as the reconcile needs it (None: there is none)."""
        with self._lock:
            source = self._sources.get(system)
            if source is None:
                return None
            return SourceView(source.name, source.spec, source.invalid or source.error)

    def track(self, key: Key, body: Mapping[str, Any] | None) -> None:
        """Note which ticket the identity cites (None or Revoked: it no longer needs reading)."""
        cited = _cited_by(body) if body is not None else None
        with self._lock:
            if cited is None:
                self._cited.pop(key, None)
                return
            new = key not in self._cited or self._cited[key].ticket_id != cited.ticket_id
            self._cited[key] = cited
            source = self._sources.get(cited.system)
            if new and cited.observation is None and source is not None:
                source.due = None  # read a newly cited ticket now, not a pollInterval later
        if new:
            self._wake_up()

    def hint(self, name: str) -> bool:
        """Read the source `name` again now (a webhook). False when there is no such source."""
        with self._lock:
            source = self._sources.get(name)
            if source is None:
                return False
            source.due = None
        self._wake_up()
        return True

    def _reconcile(self, keys: list[Key]) -> None:
        """Reconcile `keys` soon, from any thread (before the loop runs, kopf's resume does)."""
        loop = self._loop
        if loop is not None and keys:
            loop.call_soon_threadsafe(self._spawn, list(keys))

    def _spawn(self, keys: list[Key]) -> None:
        for key in keys:
            task = asyncio.get_running_loop().create_task(self.reconcile(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _wake_up(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            loop.call_soon_threadsafe(wake.set)

    # -- webhooks ------------------------------------------------------------------------

    def webhook(self, name: str, body: bytes, signature: str | None) -> tuple[int, str]:
        """Answer POST /webhooks/<name>: 202 and a re-read (a webhook source: the push recorded),
        or 404 / 401 (and, for a push, 400 / 409) and nothing changes."""
        with self._lock:
            source = self._sources.get(name)
            spec, key = (source.spec, source.hmac_key) if source else (None, None)
        if spec is None:
            return 404, 'no such TicketSource'
        if spec.webhook_secret is None:
            return 401, 'this TicketSource has no webhookSecret: webhooks are refused'
        if key is None:
            try:
                key = self._hmac_key(spec)
            except TenureError as e:
                log.warning('webhook for %s: %s', name, e)
                return 503, 'the webhook secret cannot be read now'
            with self._lock:
                if name in self._sources:
                    self._sources[name].hmac_key = key
        if not signature or not hmac.compare_digest(signature_of(key, body), signature):
            log.warning('webhook for TicketSource %s refused: missing or bad signature', name)
            return 401, 'missing or bad signature'
        if spec.type is TicketSourceType.WEBHOOK:
            return self._push(name, spec, body)
        self.hint(name)
        return 202, 'the tickets of this source are read again now'

    def _push(self, name: str, spec: TicketSourceSpec, body: bytes) -> tuple[int, str]:
        """A signed push to a webhook source: 400 malformed, 409 stale, 202 recorded."""
        push = parse_push(body, spec.state_mapping)
        if isinstance(push, PushRefused):
            log.warning('push to TicketSource %s refused: %s', name, push.message)
            return 400, push.message
        with self._recording:
            return self._record_push(name, push)

    def _record_push(self, name: str, push: Push) -> tuple[int, str]:
        seen = TicketObservation(
            id=push.ticket_id,
            source=name,
            observed_state=push.reading.state,
            raw_state=push.reading.raw[:256],
            observed_at=push.at,
            approvers=[push.approver] if push.approver else [],
        )
        with self._lock:
            # Checked and remembered under the lock: of two pushes racing, the older loses.
            if name not in self._sources:
                return 404, 'no such TicketSource'
            cited = [
                (k, c.observation)
                for k, c in self._cited.items()
                if c.system == name and c.ticket_id == push.ticket_id
            ]
            known = [self._pushed.get((name, push.ticket_id)), *(o for _, o in cited)]
            last = max((o.observed_at for o in known if o is not None), default=None)
            refused = push_timing(push.at, self.clock(), last)
            if refused is None:
                self._remember(name, seen)
        if refused is not None:
            log.warning('push to TicketSource %s refused: %s', name, refused.message)
            return 409, refused.message
        log.info(
            'TicketSource %s pushed ticket %s: %s (%s)',
            name,
            push.ticket_id,
            push.reading.state.value,
            push.reading.raw,
        )
        changed = [key for key, _ in cited if self._record(key, seen)]
        self._reconcile(changed)
        if not cited:
            return (
                202,
                f'no identity cites ticket {push.ticket_id} yet: remembered for one that will',
            )
        return (
            202,
            f'ticket {push.ticket_id} is {push.reading.state.value} for {len(changed)} identities',
        )

    def _remember(self, name: str, seen: TicketObservation) -> None:
        """Keep the newest push of a ticket (caller holds the lock); the oldest go first."""
        self._pushed[(name, seen.id)] = seen
        self._pushed.move_to_end((name, seen.id))
        while len(self._pushed) > MAX_REMEMBERED:
            self._pushed.popitem(last=False)

    def _hmac_key(self, spec: TicketSourceSpec) -> bytes:
        ref = spec.webhook_secret
        assert ref is not None
        data = self.kube.read_secret_data(ref.namespace, ref.name)
        if data is None or not data.get(ref.key):
            raise TenureError(f'Secret {ref.namespace}/{ref.name} has no key {ref.key}')
        return data[ref.key].encode()

    # -- polling -------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            while True:
                self._wake.clear()
                now = self.clock()
                with self._lock:
                    due = [s.name for s in self._sources.values() if s.due is None or s.due <= now]
                    later = [
                        s.due for s in self._sources.values() if s.due is not None and s.due > now
                    ]
                for name in due:
                    await asyncio.to_thread(self.poll, name)
                if due:
                    continue
                timeout = (min(later) - self.clock()).total_seconds() if later else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=timeout)
        finally:
            self._notes.shutdown(wait=False, cancel_futures=True)

    def poll(self, name: str) -> None:
        """Read every ticket cited from source `name` once; record changes; reconcile those."""
        with self._lock:
            source = self._sources.get(name)
            if source is None:
                return
            spec = source.spec
            interval = max(spec.poll_interval if spec else timedelta(seconds=60), MIN_POLL)
            source.due = self.clock() + interval
            cited = {k: dataclasses.replace(c) for k, c in self._cited.items() if c.system == name}
        if spec is None:
            return
        if spec.type is TicketSourceType.WEBHOOK:
            self._hand_over(name, spec, cited)
            return
        error: str | None = None
        changed: list[Key] = []
        client: ItsmClient | None = None
        try:
            client = self.clients(spec, self._credentials(spec))
            key_bytes = self._hmac_key(spec) if spec.webhook_secret is not None else None
            with self._lock:
                if name in self._sources:
                    self._sources[name].hmac_key = key_bytes
            for ticket_id in sorted({c.ticket_id for c in cited.values()}):
                read = client.read(ticket_id, approvals=spec.verify_approval)
                now = self.clock()
                for key, c in cited.items():
                    if c.ticket_id != ticket_id:
                        continue
                    seen = TicketObservation(
                        id=ticket_id,
                        source=name,
                        observed_state=read.reading.state,
                        raw_state=read.reading.raw[:256],
                        observed_at=now,
                        approvers=list(read.approvers)[:32],
                    )
                    if _same(c.observation, seen):
                        continue
                    self._record(key, seen)
                    changed.append(key)
        except TenureError as e:
            error = str(e)
            log.warning('TicketSource %s: %s', name, e)
        finally:
            if client is not None:
                client.close()
        self._settle(name, error, changed)

    def _hand_over(self, name: str, spec: TicketSourceSpec, cited: dict[Key, _Cited]) -> None:
        """A webhook source's "poll": read its HMAC key again (rotation; an unreadable key makes
        the source unavailable: it can take no push), and record remembered pushes for the
        identities that cite their tickets but have not seen them."""
        error: str | None = None
        try:
            key_bytes = self._hmac_key(spec)
            with self._lock:
                if name in self._sources:
                    self._sources[name].hmac_key = key_bytes
        except TenureError as e:
            error = f'its webhook key cannot be read: {e}'
            log.warning('TicketSource %s: %s', name, error)
            with self._lock:
                if name in self._sources:  # a key deleted to revoke it signs nothing any more
                    self._sources[name].hmac_key = None
        changed: list[Key] = []
        with self._recording:
            for key in cited:
                with self._lock:
                    # Read now, not from the snapshot: a push may have been recorded since.
                    c = self._cited.get(key)
                    mine = c is not None and c.system == name
                    pushed = self._pushed.get((name, c.ticket_id)) if c and mine else None
                    seen = c.observation if c is not None else None
                if pushed is None or (seen is not None and seen.observed_at >= pushed.observed_at):
                    continue
                if self._record(key, pushed):
                    changed.append(key)
        self._settle(name, error, changed)

    def _settle(self, name: str, error: str | None, changed: list[Key]) -> None:
        """Record the source's availability after a poll; reconcile what changed."""
        with self._lock:
            current = self._sources.get(name)
            if current is not None and current.error != error:
                current.error = error
                # Waiting identities show the outage (or its end) at once. Collected with the
                # flip, under the lock: one cited since reads the new error when it reconciles.
                changed += [
                    k
                    for k, c in self._cited.items()
                    if c.system == name and c.observation is None and k not in changed
                ]
        self._reconcile(changed)

    def _credentials(self, spec: TicketSourceSpec) -> Credentials:
        ref = spec.credentials_secret_ref
        if ref is None:  # the model refuses servicenow and jira sources without one
            raise TenureError(f'a TicketSource of type {spec.type.value} has no credentials')
        where = f'{ref.namespace}/{ref.name}'
        data = self.kube.read_secret_data(ref.namespace, ref.name)
        if data is None:
            raise TenureError(f'the credentials Secret {where} does not exist')
        return Credentials.from_secret(data, where)

    def _record(self, key: Key, seen: TicketObservation) -> bool:
        """Write the observation into the identity's status.ticket; False when that failed."""
        names = IdentityNames(namespace=key[0], name=key[1])
        try:
            self.kube.patch_status(names, {'ticket': seen.model_dump(mode='json', by_alias=True)})
        except TenureError as e:
            log.warning('%s/%s: could not record the ticket observation: %s', *key, e)
            return False
        with self._lock:
            cited = self._cited.get(key)
            if cited is not None and cited.ticket_id == seen.id:
                cited.observation = seen
        return True

    # -- write-back ----------------------------------------------------------------------

    def revoked(self, key: Key, body: Mapping[str, Any], status: ServiceIdentityStatus) -> None:
        """Queue the revocation note for the ticket; returns at once, whatever happens to it."""
        ticket = (body.get('spec') or {}).get('ticket') or {}
        system, ticket_id = str(ticket.get('system', '')), str(ticket.get('id', ''))
        with self._lock:
            source = self._sources.get(system)
            spec = source.spec if source else None
        if spec is None or spec.type is TicketSourceType.WEBHOOK:
            return  # a webhook source has no API to write a note to
        text = revocation_note(key, status)
        self._notes.submit(self._write_note, spec, system, ticket_id, text)

    def _write_note(self, spec: TicketSourceSpec, system: str, ticket_id: str, text: str) -> None:
        try:
            client = self.clients(spec, self._credentials(spec))
            try:
                client.add_note(ticket_id, text)
            finally:
                client.close()
            log.info('wrote the revocation note to %s ticket %s', system, ticket_id)
        except TenureError as e:
            log.warning(
                'could not write the revocation note to %s ticket %s: %s', system, ticket_id, e
            )

    def close(self) -> None:
        self._notes.shutdown(wait=True)


def _cited_by(body: Mapping[str, Any]) -> _Cited | None:
    ticket = (body.get('spec') or {}).get('ticket') or {}
    status = body.get('status') or {}
    system, ticket_id = ticket.get('system'), ticket.get('id')
    if not isinstance(system, str) or not isinstance(ticket_id, str):
        return None
    if status.get('phase') == Phase.REVOKED.value:
        return None  # a tombstone: nothing the ITSM says can change it
    observation = None
    raw = status.get('ticket')
    if raw:
        try:
            observation = TicketObservation.model_validate(raw)
        except ValidationError:
            observation = None
    if observation is not None and (observation.id != ticket_id or observation.source != system):
        observation = None
    return _Cited(system, ticket_id, observation)


def _same(before: TicketObservation | None, after: TicketObservation) -> bool:
    """Equal but for the time: rewriting observedAt on every poll would be a write per poll."""
    if before is None:
        return False
    return before.model_copy(update={'observed_at': after.observed_at}) == after

"""The benchmark's own Kubernetes client: ServiceIdentities created in bulk, phases watched.

The client talks to the emulator over HTTP like any other, with `EXEMPT_HEADER` so that the
request counters (see harness.py) count the operator's requests only. Progress is followed with
one watch over all ServiceIdentities (`PhaseWatch`), never by polling objects one by one: the
benchmark must not load the API server it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Self

import aiohttp

from tenure.api.v1alpha1 import GROUP, PLURAL, VERSION
from tenure_devtools.kubeapi.faults import EXEMPT_HEADER

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]

BATCH_LABEL: Final = 'bench.tenure.dev/batch'
PER_NAMESPACE: Final = 100
"""Identities per namespace: 10,000 identities live in 100 namespaces, as teams spread them."""


def stamp(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds: expiries are spread finer than one second."""
    return value.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3] + 'Z'


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace('Z', '+00:00'))


def identity(name: str, namespace: str, *, batch: str, ticket: int, expires_at: datetime) -> Obj:
    """An approved ServiceIdentity with what a typical one holds: a Role, Vault paths, a secret."""
    approved = datetime.now(UTC) - timedelta(minutes=1)
    return {
        'apiVersion': f'{GROUP}/{VERSION}',
        'kind': 'ServiceIdentity',
        'metadata': {'name': name, 'namespace': namespace, 'labels': {BATCH_LABEL: batch}},
        'spec': {
            'ticket': {
                'id': f'CHG{ticket:07d}',
                'system': 'servicenow',
                'state': 'Approved',
                'requester': 'alice@example.com',
                'approver': 'bob@example.com',
                'approvedAt': stamp(approved),
                'justification': 'Benchmark identity: a nightly export job reading its config.',
            },
            'owner': {'team': 'payments', 'contact': 'payments@example.com'},
            'service': name,
            'expiresAt': stamp(expires_at),
            'kubernetes': {
                'rules': [
                    {
                        'apiGroups': [''],
                        'resources': ['configmaps'],
                        'resourceNames': [f'{name}-config'],
                        'verbs': ['get'],
                    }
                ],
            },
            'vault': {
                'policy': [{'path': f'secret/data/{namespace}/shared/*', 'capabilities': ['read']}],
                'secret': {'keys': ['api-key']},
            },
        },
    }


def batch(
    label: str, count: int, expiry: Callable[[int], datetime], *, first: int = 0
) -> list[Obj]:
    """`count` identities named `<label>-NNNNN`, PER_NAMESPACE to a namespace `<label>-NNN`."""
    return [
        identity(
            f'{label}-{i:05d}',
            f'{label}-{i // PER_NAMESPACE:03d}',
            batch=label,
            ticket=i,
            expires_at=expiry(i - first),
        )
        for i in range(first, first + count)
    ]


class Cluster:
    """An aiohttp client for the emulator, spared by the request counters."""

    def __init__(self, url: str, *, concurrency: int = 8) -> None:
        self.url = url
        self.concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, 'use `async with Cluster(...)`'
        return self._session

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            headers={EXEMPT_HEADER: '1'},
            connector=aiohttp.TCPConnector(limit=self.concurrency + 4),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    def identities_url(self, namespace: str | None = None) -> str:
        where = f'/namespaces/{namespace}' if namespace else ''
        return f'{self.url}/apis/{GROUP}/{VERSION}{where}/{PLURAL}'

    async def _post(self, url: str, body: Obj) -> Obj:
        async with self.session.post(url, json=body) as response:
            if response.status not in (200, 201):
                raise RuntimeError(f'POST {url}: {response.status} {await response.text()}')
            answer: Obj = await response.json()
            return answer

    async def create_all(self, manifests: list[Obj]) -> float:
        """Create the namespaces the manifests need, then the manifests, `concurrency` at a time.

        Returns the seconds the creation of the manifests took.
        """
        namespaces = sorted({m['metadata']['namespace'] for m in manifests})
        for namespace in namespaces:
            await self._post(f'{self.url}/api/v1/namespaces', {'metadata': {'name': namespace}})
        started = time.monotonic()
        pending = iter(manifests)

        async def worker() -> None:
            for manifest in pending:
                await self._post(self.identities_url(manifest['metadata']['namespace']), manifest)

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return time.monotonic() - started


@dataclasses.dataclass
class Tracked:
    """What the benchmark keeps of one identity."""

    batch: str
    phase: str | None = None
    reached: dict[str, float] = dataclasses.field(default_factory=dict)
    """Monotonic time at which the watch first saw each phase."""
    status: Obj | None = None
    """The latest status (kept for the batches whose revocations are measured)."""
    expires_at: str | None = None


class PhaseWatch:
    """One watch over every ServiceIdentity; counts identities per batch and phase."""

    def __init__(self, cluster: Cluster, *, keep_status: Iterable[str] = ()) -> None:
        self.cluster = cluster
        self.keep_status = set(keep_status)
        self.identities: dict[Key, Tracked] = {}
        self.counts: Counter[tuple[str, str]] = Counter()
        self.events = 0
        self.failure: BaseException | None = None
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    def count(self, batch: str, phase: str) -> int:
        return self.counts[(batch, phase)]

    def of_batch(self, batch: str) -> dict[Key, Tracked]:
        return {key: t for key, t in self.identities.items() if t.batch == batch}

    async def __aenter__(self) -> Self:
        resource_version = await self._list()
        self._task = asyncio.create_task(self._run(resource_version), name='phase-watch')
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait(self, predicate: Callable[[], bool], *, within: float, what: str) -> float:
        """Wait until `predicate()` holds (checked on each watch event); returns when (monotonic).

        TimeoutError names `what` and the counts so far.
        """
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.failure is not None or predicate()),
                    within,
                )
            except TimeoutError:
                raise TimeoutError(
                    f'{what}: not reached within {within:.0f}s; counts {dict(self.counts)}'
                ) from None
        if self.failure is not None:
            # A broken watch is a failed benchmark, not a wait until the timeout.
            raise RuntimeError(f'the phase watch failed: {self.failure!r}') from self.failure
        return time.monotonic()

    def _see(self, obj: Obj, now: float) -> None:
        meta = obj['metadata']
        label = (meta.get('labels') or {}).get(BATCH_LABEL)
        if label is None:
            return
        key = (meta['namespace'], meta['name'])
        tracked = self.identities.get(key)
        if tracked is None:
            tracked = self.identities[key] = Tracked(batch=label)
        status = obj.get('status') or {}
        phase = status.get('phase')
        if phase != tracked.phase:
            if tracked.phase is not None:
                self.counts[(label, tracked.phase)] -= 1
            if phase is not None:
                self.counts[(label, phase)] += 1
                tracked.reached.setdefault(phase, now)
            tracked.phase = phase
        if label in self.keep_status:
            tracked.status = status
            tracked.expires_at = obj['spec']['expiresAt']

    async def _list(self) -> str:
        async with self.cluster.session.get(self.cluster.identities_url()) as response:
            response.raise_for_status()
            listing = await response.json()
        now = time.monotonic()
        for obj in listing['items']:
            self._see(obj, now)
        version: str = listing['metadata']['resourceVersion']
        return version

    async def _run(self, resource_version: str) -> None:
        try:
            await self._follow(resource_version)
        except Exception as exc:
            # Reported by wait(), to the step that needs the watch.
            self.failure = exc
            async with self._changed:
                self._changed.notify_all()

    async def _follow(self, resource_version: str) -> None:
        while True:
            params = {
                'watch': 'true',
                'resourceVersion': resource_version,
                'allowWatchBookmarks': 'true',
                'timeoutSeconds': '600',
            }
            async with self.cluster.session.get(
                self.cluster.identities_url(), params=params
            ) as response:
                response.raise_for_status()
                async for line in response.content:
                    event = json.loads(line)
                    obj = event['object']
                    if event['type'] == 'ERROR':
                        # 410 Gone: the watch fell out of the server's window. List again.
                        log.warning('phase watch: %s; listing again', obj.get('message'))
                        resource_version = await self._list()
                        break
                    resource_version = obj['metadata']['resourceVersion']
                    if event['type'] in ('ADDED', 'MODIFIED'):
                        self._see(obj, time.monotonic())
                        self.events += 1
                    async with self._changed:
                        self._changed.notify_all()

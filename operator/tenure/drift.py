"""Drift found and put back (issue #6): watches for Kubernetes, a periodic check for Vault.

Nothing here repairs anything itself: both paths only ask the runtime to reconcile the identity
now (`Runtime.scheduler`), and the reconcile's converge, which already applies the desired state
idempotently, finds what differs, writes it back and reports it (`tenure.domain.drift`: the
DriftRepaired event and `tenure_drift_repairs_total`). So a repair is serialised with every other
reconcile of the identity, and an event that shows nothing changed costs one no-op reconcile.

- Kubernetes: kopf event handlers on ServiceAccounts and Roles selected server-side by the label
  `app.kubernetes.io/managed-by=tenure` (unmanaged objects are not even sent), and on every
  RoleBinding and ClusterRoleBinding (a binding outside Tenure that grants a managed
  ServiceAccount carries no Tenure label; see `BindingIndex`). The operator's own writes come
  back as watch events too: the adapter remembers the resourceVersion of each write (and the uid
  of each delete) and those events are dropped (`own_write`), so Tenure does not chase itself.
- Vault has no watch: one asyncio loop walks the identities Active in this process, spread evenly
  over `--vault-resync` (never all at the same instant, never a timer per identity), and compares
  the policy text, the role and the secret's existence with what their last converge left (three
  reads, no write); a difference schedules a reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, Final, Protocol

import kopf

from tenure.domain.desired import VaultRole
from tenure.domain.drift import (
    BindingRef,
    VaultExpectation,
    made_by_tenure_for,
    pace,
    unexpected_for,
)
from tenure.domain.inventory import BindingRecord
from tenure.domain.names import IDENTITY_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from tenure.errors import TenureError
from tenure.scheduler import Key

log = logging.getLogger(__name__)

RBAC: Final = 'rbac.authorization.k8s.io'
MANAGED_SELECTOR: Final = f'{MANAGED_BY_LABEL}={MANAGED_BY},{IDENTITY_LABEL}'
"""Server-side: only objects Tenure labelled, with an identity label, are watched."""
WATCHED: Final = (
    ('ServiceAccount', '', 'v1', 'serviceaccounts'),
    ('Role', RBAC, 'v1', 'roles'),
    ('RoleBinding', RBAC, 'v1', 'rolebindings'),
)


class VaultChecker(Protocol):
    """The reads of the periodic Vault check (`tenure.adapters.vault.VaultMaterial`)."""

    def policy_text(self, name: str) -> str | None: ...

    def role_matches(self, role: VaultRole) -> bool: ...

    def secret_version(self, path: str) -> int | None: ...


def vault_differences(vault: VaultChecker, expected: VaultExpectation) -> list[str]:
    """What differs in Vault from what the identity's last converge left (kinds only)."""
    found = []
    if vault.policy_text(expected.policy) != expected.policy_text:
        found.append('VaultPolicy')
    if not vault.role_matches(expected.role):
        found.append('VaultRole')
    if expected.secret_path is not None and vault.secret_version(expected.secret_path) is None:
        found.append('VaultSecret')
    return found


async def vault_resync(
    expected: Mapping[Key, VaultExpectation],
    vault: VaultChecker,
    request_reconcile: Callable[[Key], None],
    interval: timedelta,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    passes: int | None = None,
) -> None:
    """Check every identity's Vault objects once per `interval`, one at a time, evenly spaced;
    ask for a reconcile of each that differs. Runs until cancelled (or `passes` passes)."""
    done = 0
    while passes is None or done < passes:
        snapshot = list(expected.items())
        gap = pace(len(snapshot), interval)
        if not snapshot:
            await sleep(gap)
        for key, wanted in snapshot:
            await sleep(gap)
            if expected.get(key) != wanted:
                continue  # converged to something else (or revoked) since: checked next pass
            try:
                differs = await asyncio.to_thread(vault_differences, vault, wanted)
            except TenureError as e:
                log.warning('Vault drift check of %s/%s: %s', key[0], key[1], e)
                continue
            if differs:
                log.info(
                    '%s/%s: Vault differs (%s); reconciling', key[0], key[1], ', '.join(differs)
                )
                request_reconcile(key)
        done += 1


class BindingIndex:
    """Every RoleBinding and ClusterRoleBinding with ServiceAccount subjects, by subject: which
    bindings grant a given identity's ServiceAccount. Filled by one listing at start, then kept
    current by watch events. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bindings: dict[tuple[str, str, str], tuple[BindingRef, Mapping[str, str]]] = {}
        self._by_subject: dict[Key, set[tuple[str, str, str]]] = {}
        self.synced = False
        """True once a full listing went in: until then nothing can be said to be absent."""

    def load(self, records: Iterable[BindingRecord]) -> None:
        for record in records:
            kind = 'ClusterRoleBinding' if record.cluster_wide else 'RoleBinding'
            self._put(
                BindingRef(
                    kind=kind,
                    namespace=record.namespace if not record.cluster_wide else '',
                    name=record.name,
                    uid=record.uid,
                    role=f'{record.role_kind}/{record.role_name}',
                    service_accounts=record.service_accounts,
                    other_subjects=record.other_subjects,
                ),
                record.labels,
            )
        self.synced = True

    def update(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> set[Key]:
        """Apply a watch event; return the ServiceAccounts (namespace, name) for which it adds or
        removes a binding outside Tenure. An event that changes nothing the index holds (a
        re-list, a status-free update) and Tenure's own bindings return nothing."""
        meta = body.get('metadata') or {}
        namespace = str(meta.get('namespace') or '') if kind == 'RoleBinding' else ''
        ident = (kind, namespace, str(meta.get('name') or ''))
        with self._lock:
            before = self._bindings.get(ident)
        touched = _outside_tenure(before)
        if event_type == 'DELETED':
            self._remove(ident)
            return touched
        subjects = body.get('subjects') or []
        accounts = tuple(
            (str(s.get('namespace') or namespace), str(s.get('name') or ''))
            for s in subjects
            if s.get('kind') == 'ServiceAccount'
        )
        role = body.get('roleRef') or {}
        ref = BindingRef(
            kind=kind,
            namespace=namespace,
            name=ident[2],
            uid=str(meta.get('uid') or ''),
            role=f'{role.get("kind", "")}/{role.get("name", "")}',
            service_accounts=accounts,
            other_subjects=len(subjects) - len(accounts),
        )
        labels = dict(meta.get('labels') or {})
        if before == (ref, labels):
            return set()
        self._put(ref, labels)
        return touched | _outside_tenure((ref, labels))

    def _put(self, ref: BindingRef, labels: Mapping[str, str]) -> None:
        ident = (ref.kind, ref.namespace, ref.name)
        self._remove(ident)
        if not ref.service_accounts:
            return
        with self._lock:
            self._bindings[ident] = (ref, labels)
            for account in ref.service_accounts:
                self._by_subject.setdefault(account, set()).add(ident)

    def _remove(self, ident: tuple[str, str, str]) -> None:
        with self._lock:
            gone = self._bindings.pop(ident, None)
            if gone is None:
                return
            for account in gone[0].service_accounts:
                idents = self._by_subject.get(account)
                if idents is not None:
                    idents.discard(ident)
                    if not idents:
                        del self._by_subject[account]

    def relevant(self, kind: str, body: Mapping[str, Any]) -> bool:
        """Whether an event about this binding can change the index: it names a ServiceAccount,
        or it did when last seen."""
        if any(s.get('kind') == 'ServiceAccount' for s in body.get('subjects') or []):
            return True
        meta = body.get('metadata') or {}
        namespace = str(meta.get('namespace') or '') if kind == 'RoleBinding' else ''
        with self._lock:
            return (kind, namespace, str(meta.get('name') or '')) in self._bindings

    def unexpected(self, key: Key) -> list[BindingRef] | None:
        """Bindings outside Tenure granting the identity's ServiceAccount; None before sync."""
        if not self.synced:
            return None
        with self._lock:
            found = [self._bindings[i] for i in self._by_subject.get(key, ())]
        return unexpected_for(key, found)


def _outside_tenure(entry: tuple[BindingRef, Mapping[str, str]] | None) -> set[Key]:
    """The ServiceAccounts a binding grants that Tenure did not make it for."""
    if entry is None:
        return set()
    binding, labels = entry
    return {
        k for k in binding.service_accounts if not made_by_tenure_for(labels, binding.namespace, k)
    }


class DriftWatch:
    """The kopf handlers and the Vault loop; `register` adds them to an operator's registry."""

    def __init__(
        self,
        *,
        request_reconcile: Callable[[Key], None],
        own_write: Callable[[str, str, str, str], bool],
        expected: Mapping[Key, VaultExpectation],
        vault: VaultChecker | None,
        vault_interval: timedelta | None,
        bindings: BindingIndex | None = None,
        list_bindings: Callable[[], list[BindingRecord]] | None = None,
        is_identity: Callable[[Key], bool] = lambda _key: True,
    ) -> None:
        self.request_reconcile = request_reconcile
        self.is_identity = is_identity
        """Whether a ServiceAccount (namespace, name) is a known identity's: a binding of any
        other ServiceAccount costs nothing."""
        self.own_write = own_write
        self.expected = expected
        self.vault = vault
        self.vault_interval = vault_interval
        self.bindings = bindings
        self.list_bindings = list_bindings
        self._seen: dict[tuple[str, str, str], str] = {}
        """resourceVersion last seen per managed object, to tell a re-list that shows a change
        (after a watch gap) from one that does not."""
        self._tasks: list[asyncio.Task[None]] = []

    def managed_object_event(
        self, kind: str, event_type: str | None, body: Mapping[str, Any]
    ) -> None:
        """A ServiceAccount, Role or RoleBinding labelled for an identity changed: reconcile it."""
        meta = body.get('metadata') or {}
        namespace, name = str(meta.get('namespace') or ''), str(meta.get('name') or '')
        identity = (meta.get('labels') or {}).get(IDENTITY_LABEL)
        if not identity:
            return
        ident = (kind, namespace, name)
        version = str(meta.get('resourceVersion') or '')
        if event_type is None:
            # kopf's listing (at start, or again after a watch gap): at start every identity is
            # resumed anyway; after a gap, only an object that changed meanwhile is looked at.
            previous = self._seen.get(ident)
            self._seen[ident] = version
            if previous is None or previous == version:
                return
        elif event_type == 'DELETED':
            self._seen.pop(ident, None)
            if self.own_write(kind, namespace, name, f'deleted:{meta.get("uid", "")}'):
                return
        else:
            self._seen[ident] = version
            if self.own_write(kind, namespace, name, version):
                return
        log.debug('%s %s/%s changed (%s): reconciling', kind, namespace, name, event_type)
        self.request_reconcile((namespace, identity))

    def binding_event(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        if self.bindings is None:
            return
        for key in self.bindings.update(kind, event_type, body):
            if self.bindings.synced and self.is_identity(key):
                self.request_reconcile(key)

    def register(self, registry: kopf.OperatorRegistry, settings: kopf.OperatorSettings) -> None:
        for kind, group, version, plural in WATCHED:
            if kind != 'RoleBinding' or self.bindings is None:
                # Selected by the API server: unmanaged objects never reach the operator.
                settings.watching.label_selectors[(group, version, plural)] = MANAGED_SELECTOR
            self._on_managed(registry, kind, group, version, plural)
        if self.bindings is not None:
            self._on_binding(registry, 'RoleBinding', 'rolebindings')
            self._on_binding(registry, 'ClusterRoleBinding', 'clusterrolebindings')

        @kopf.on.startup(registry=registry)
        async def start_drift(**_: Any) -> None:
            if self.bindings is not None and self.list_bindings is not None:
                try:
                    self.bindings.load(await asyncio.to_thread(self.list_bindings))
                except TenureError as e:
                    log.warning('bindings outside Tenure cannot be judged: %s', e)
            if self.vault is not None and self.vault_interval is not None:
                self._tasks.append(
                    asyncio.create_task(
                        vault_resync(
                            self.expected, self.vault, self.request_reconcile, self.vault_interval
                        ),
                        name='tenure-vault-resync',
                    )
                )

        @kopf.on.cleanup(registry=registry)
        async def stop_drift(**_: Any) -> None:
            for task in self._tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _on_managed(
        self, registry: kopf.OperatorRegistry, kind: str, group: str, version: str, plural: str
    ) -> None:
        @kopf.on.event(
            group,
            version,
            plural,
            id=f'drift-{plural}',
            labels={MANAGED_BY_LABEL: MANAGED_BY, IDENTITY_LABEL: kopf.PRESENT},
            registry=registry,
        )
        def changed(*, type: str | None, body: kopf.Body, **_: Any) -> None:
            self.managed_object_event(kind, type, body)

    def _on_binding(self, registry: kopf.OperatorRegistry, kind: str, plural: str) -> None:
        index = self.bindings
        assert index is not None

        def relevant(*, body: kopf.Body, **_: Any) -> bool:
            # Filtered before the handler runs (kopf logs every handler it runs): most bindings
            # of a cluster grant no ServiceAccount and were never indexed.
            return index.relevant(kind, body)

        @kopf.on.event(
            RBAC, 'v1', plural, id=f'bindings-{plural}', when=relevant, registry=registry
        )
        def changed(*, type: str | None, body: kopf.Body, **_: Any) -> None:
            self.binding_event(kind, type, body)

"""The control loops a cluster runs next to its apiserver, as far as API clients can observe them.

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

- Namespace lifecycle (https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/,
  pkg/controller/namespace): a namespace marked for deletion is Terminating; its content is
  deleted (finalizers respected, progress in status conditions); then the `kubernetes` finalizer
  is removed through `/finalize` and the namespace is gone.
- ServiceAccount controller: every active namespace has a `default` ServiceAccount.
- Tokens controller: a `kubernetes.io/service-account-token` Secret gets a token for its
  ServiceAccount, and is deleted with it (or at once when the ServiceAccount does not exist).
- Garbage collector (https://kubernetes.io/docs/concepts/architecture/garbage-collection/):
  dependents whose owners are all gone are deleted (background); `orphan` strips the owner
  reference from dependents; `foregroundDeletion` deletes the dependents that block the owner
  first (`blockOwnerDeletion`), then the owner.
- apiextensions controllers: a created CRD gets NamesAccepted/Established conditions and is
  served; a deleted one is Terminating until its custom resources are gone, then it and its
  resource disappear.

Work is event-driven: the store notifies every commit; items are deduplicated and processed
one at a time on the emulator's loop, each through the API like a real controller.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
from collections.abc import Iterable
from typing import Any

from . import crds
from .auth import SERVICE_ACCOUNTS, TokenApi
from .errors import ApiError
from .meta import FINALIZER_FOREGROUND, FINALIZER_ORPHAN
from .operations import NAMESPACES, Api, WriteOptions
from .resources import Registry, ResourceType
from .store import DELETED, Event, Obj
from .strategies import NAMESPACE_FINALIZER

log = logging.getLogger(__name__)

SECRETS = 'core/secrets'
SA_TOKEN_TYPE = 'kubernetes.io/service-account-token'
SA_NAME_ANNOTATION = 'kubernetes.io/service-account.name'
SA_UID_ANNOTATION = 'kubernetes.io/service-account.uid'
LEGACY_TOKEN_SECONDS = 10 * 365 * 24 * 3600
_QUIET = WriteOptions(field_validation='Ignore')

Item = tuple[str, ...]


def _is_terminating(namespace: Obj | None) -> bool:
    return namespace is not None and bool(namespace['metadata'].get('deletionTimestamp'))


class Controllers:
    def __init__(self, api: Api, registry: Registry, tokens: TokenApi) -> None:
        self.api = api
        self.store = api.store
        self.registry = registry
        self.tokens = tokens
        self._pending: dict[Item, None] = {}
        self._wakeup = asyncio.Event()
        self.store.add_listener(self.on_event)

    # ---- event intake (O(1) per event: it runs inside every commit) --------------------

    def _enqueue(self, *item: str) -> None:
        self._pending[item] = None
        self._wakeup.set()

    def on_event(self, table: str, event: Event) -> None:
        obj = event.obj
        metadata = obj['metadata']
        name, namespace = metadata['name'], metadata.get('namespace', '')
        deleting = bool(metadata.get('deletionTimestamp'))
        if table == NAMESPACES:
            if event.type != DELETED:
                self._enqueue('default-sa', name)
                if deleting:
                    self._enqueue('namespace', name)
        elif table == SERVICE_ACCOUNTS:
            if event.type == DELETED:
                self._enqueue('sa-deleted', namespace, name, metadata.get('uid', ''))
                if name == 'default':
                    self._enqueue('default-sa', namespace)
        elif table == SECRETS and obj.get('type') == SA_TOKEN_TYPE and event.type != DELETED:
            self._enqueue('token-secret', namespace, name)
        elif table == crds.CRD_TABLE:
            if event.type == DELETED:
                spec = obj.get('spec') or {}
                storage = f'{spec.get("group")}/{(spec.get("names") or {}).get("plural")}'
                self._enqueue('crd-gone', name, storage)
            else:
                self._enqueue('crd', name)
        key = (table, namespace, name)
        if event.type == DELETED:
            uid = metadata.get('uid', '')
            if uid and self.store.dependents(uid):
                self._enqueue('gc-owner', uid)
            for ref in metadata.get('ownerReferences') or ():
                found = self.store.by_uid(ref.get('uid', ''))
                if found is not None and FINALIZER_FOREGROUND in (
                    found[1]['metadata'].get('finalizers') or ()
                ):
                    self._enqueue('gc-deleting', *found[0])
            if namespace and _is_terminating(self.store.get(NAMESPACES, '', namespace)):
                self._enqueue('namespace', namespace)
            return
        finalizers = metadata.get('finalizers') or ()
        if deleting and (FINALIZER_ORPHAN in finalizers or FINALIZER_FOREGROUND in finalizers):
            self._enqueue('gc-deleting', *key)
        refs = metadata.get('ownerReferences') or ()
        if any(self._owner_state(ref, obj) != 'solid' for ref in refs):
            self._enqueue('gc-item', *key)

    # ---- the loop -----------------------------------------------------------------------

    def run_pending(self) -> None:
        """Process everything queued (and what it queues) until nothing is left."""
        while self._pending:
            item = next(iter(self._pending))
            del self._pending[item]
            try:
                self._process(item)
            except ApiError as exc:
                # Races with clients (a conflict, an object already gone): the next event
                # about the object brings the item back.
                log.debug('controller item %s: %s', item, exc.message)
            except Exception:
                log.exception('controller item %s failed', item)

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            self.run_pending()

    def _process(self, item: Item) -> None:
        kind, *args = item
        handler = getattr(self, '_do_' + kind.replace('-', '_'))
        handler(*args)

    # ---- helpers ------------------------------------------------------------------------

    def _view(self, table: str) -> ResourceType | None:
        return self.registry.storage_view(table)

    def _write(self, table: str, current: Obj, changed: Obj, *, subresource: str = '') -> None:
        rt = self._view(table)
        if rt is None:
            return
        metadata = current['metadata']
        self.api.update(
            rt,
            metadata.get('namespace', ''),
            metadata['name'],
            rt.external(changed),
            _QUIET,
            subresource=subresource,
        )

    def _delete(self, table: str, obj: Obj, policy: str | None = None) -> None:
        rt = self._view(table)
        if rt is None:
            return
        metadata = obj['metadata']
        options: dict[str, Any] = {'preconditions': {'uid': metadata['uid']}}
        if policy:
            options['propagationPolicy'] = policy
        try:
            self.api.delete(rt, metadata.get('namespace', ''), metadata['name'], options, _QUIET)
        except ApiError as exc:
            if exc.code not in (404, 409):
                raise

    # ---- ServiceAccounts and their tokens -----------------------------------------------

    def _do_default_sa(self, namespace: str) -> None:
        ns = self.store.get(NAMESPACES, '', namespace)
        if ns is None or _is_terminating(ns):
            return
        if self.store.get(SERVICE_ACCOUNTS, namespace, 'default') is not None:
            return
        rt = self._view(SERVICE_ACCOUNTS)
        if rt is None:
            return
        try:
            self.api.create(rt, namespace, {'metadata': {'name': 'default'}}, _QUIET)
        except ApiError as exc:
            if exc.code not in (403, 404, 409):
                raise

    def _do_sa_deleted(self, namespace: str, name: str, uid: str) -> None:
        for secret in list(self.store.items(SECRETS, namespace)):
            annotations = secret['metadata'].get('annotations') or {}
            if (
                secret.get('type') == SA_TOKEN_TYPE
                and annotations.get(SA_NAME_ANNOTATION) == name
                and annotations.get(SA_UID_ANNOTATION) in (None, uid)
            ):
                self._delete(SECRETS, secret)

    def _do_token_secret(self, namespace: str, name: str) -> None:
        secret = self.store.get(SECRETS, namespace, name)
        if secret is None or secret['metadata'].get('deletionTimestamp'):
            return
        annotations = secret['metadata'].get('annotations') or {}
        account = self.store.get(
            SERVICE_ACCOUNTS, namespace, annotations.get(SA_NAME_ANNOTATION, '')
        )
        wanted_uid = annotations.get(SA_UID_ANNOTATION)
        if account is None or (wanted_uid and wanted_uid != account['metadata']['uid']):
            self._delete(SECRETS, secret)
            return
        data = secret.get('data') or {}
        if data.get('token'):
            return
        token, _expires = self.tokens.issuer.issue(
            namespace=namespace,
            name=account['metadata']['name'],
            uid=account['metadata']['uid'],
            audiences=self.tokens.api_audiences,
            expiration_seconds=LEGACY_TOKEN_SECONDS,
            now=self.api.clock(),
        )
        changed = copy.deepcopy(secret)
        changed['metadata']['annotations'] = dict(
            annotations, **{SA_UID_ANNOTATION: account['metadata']['uid']}
        )
        changed['data'] = dict(
            data,
            token=base64.b64encode(token.encode()).decode(),
            namespace=base64.b64encode(namespace.encode()).decode(),
        )
        self._write(SECRETS, secret, changed)
        self.tokens.legacy_tokens[token] = (SECRETS, namespace, name, secret['metadata']['uid'])

    # ---- namespaces ---------------------------------------------------------------------

    def _do_namespace(self, name: str) -> None:
        ns = self.store.get(NAMESPACES, '', name)
        if not _is_terminating(ns):
            return
        assert ns is not None
        for table, _count in self.store.namespace_tables(name):
            for obj in list(self.store.items(table, name)):
                if not obj['metadata'].get('deletionTimestamp'):
                    self._delete(table, obj, 'Background')
        remaining = self.store.namespace_tables(name)
        ns = self.store.get(NAMESPACES, '', name)
        if ns is None:
            return
        if remaining:
            self._write(NAMESPACES, ns, self._with_conditions(ns, remaining), subresource='status')
            return
        changed = self._with_conditions(ns, [])
        if changed != ns:
            self._write(NAMESPACES, ns, changed, subresource='status')
            ns = self.store.get(NAMESPACES, '', name)
            assert ns is not None
        finalizers = (ns.get('spec') or {}).get('finalizers') or []
        if NAMESPACE_FINALIZER in finalizers:
            finalized = copy.deepcopy(ns)
            finalized['spec']['finalizers'] = [f for f in finalizers if f != NAMESPACE_FINALIZER]
            self._write(NAMESPACES, ns, finalized, subresource='finalize')
            ns = self.store.get(NAMESPACES, '', name)
        if ns is not None and not (ns.get('spec') or {}).get('finalizers'):
            self._delete(NAMESPACES, ns)

    def _with_conditions(self, ns: Obj, remaining: Iterable[tuple[str, int]]) -> Obj:
        """The namespace controller's deletion conditions (NamespaceContentRemaining, ...)."""
        remaining = list(remaining)
        counts = []
        finalizer_counts: dict[str, int] = {}
        for table, count in remaining:
            rt = self._view(table)
            counts.append(f'{rt.group_resource if rt else table} has {count} resource instances')
            for obj in self.store.items(table, ns['metadata']['name']):
                for finalizer in obj['metadata'].get('finalizers') or ():
                    finalizer_counts[finalizer] = finalizer_counts.get(finalizer, 0) + 1
        now = self.api.now()
        old = {c.get('type'): c for c in (ns.get('status') or {}).get('conditions') or []}

        def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
            before = old.get(kind)
            since = (
                before['lastTransitionTime'] if before and before.get('status') == status else now
            )
            return {
                'type': kind,
                'status': status,
                'lastTransitionTime': since,
                'reason': reason,
                'message': message,
            }

        conditions = [
            condition(
                'NamespaceDeletionDiscoveryFailure',
                'False',
                'ResourcesDiscovered',
                'All resources successfully discovered',
            ),
            condition(
                'NamespaceDeletionGroupVersionParsingFailure',
                'False',
                'ParsedGroupVersions',
                'All legacy kube types successfully parsed',
            ),
            condition(
                'NamespaceDeletionContentFailure',
                'False',
                'ContentDeleted',
                'All content successfully deleted, may be waiting on finalization',
            ),
        ]
        if counts:
            conditions.append(
                condition(
                    'NamespaceContentRemaining',
                    'True',
                    'SomeResourcesRemain',
                    'Some resources are remaining: ' + ', '.join(sorted(counts)),
                )
            )
        else:
            conditions.append(
                condition(
                    'NamespaceContentRemaining',
                    'False',
                    'ContentRemoved',
                    'All content successfully removed',
                )
            )
        if finalizer_counts:
            listed = ', '.join(
                f'{f} in {n} resource instances' for f, n in sorted(finalizer_counts.items())
            )
            conditions.append(
                condition(
                    'NamespaceFinalizersRemaining',
                    'True',
                    'SomeFinalizersRemain',
                    f'Some content in the namespace has finalizers remaining: {listed}',
                )
            )
        else:
            conditions.append(
                condition(
                    'NamespaceFinalizersRemaining',
                    'False',
                    'ContentHasNoFinalizers',
                    'All content-preserving finalizers finished',
                )
            )
        changed = copy.deepcopy(ns)
        changed['status'] = dict(
            changed.get('status') or {}, phase='Terminating', conditions=conditions
        )
        return changed

    # ---- garbage collector --------------------------------------------------------------

    def _owner_state(self, ref: dict[str, Any], dependent: Obj) -> str:
        """classifyReferences: 'solid', 'dangling' or 'waiting' (for foreground deletion)."""
        found = self.store.by_uid(ref.get('uid', ''))
        if found is None:
            return 'dangling'
        (_table, owner_ns, _name), owner = found
        owner_meta = owner['metadata']
        if owner_meta['name'] != ref.get('name') or owner.get('kind') != ref.get('kind'):
            return 'dangling'
        if owner_ns and owner_ns != dependent['metadata'].get('namespace', ''):
            return 'dangling'  # the GC looks namespaced owners up in the dependent's namespace
        if (
            ref.get('blockOwnerDeletion')
            and owner_meta.get('deletionTimestamp')
            and FINALIZER_FOREGROUND in (owner_meta.get('finalizers') or ())
        ):
            return 'waiting'
        return 'solid'

    def _do_gc_owner(self, uid: str) -> None:
        for key, _obj in self.store.dependents(uid):
            self._do_gc_item(*key)

    def _do_gc_item(self, table: str, namespace: str, name: str) -> None:
        obj = self.store.get(table, namespace, name)
        if obj is None:
            return
        metadata = obj['metadata']
        refs = metadata.get('ownerReferences') or []
        if not refs:
            return
        states = [self._owner_state(ref, obj) for ref in refs]
        if 'solid' in states:
            if 'dangling' in states or 'waiting' in states:
                changed = copy.deepcopy(obj)
                kept = []
                for ref, state in zip(refs, states, strict=True):
                    if state == 'dangling':
                        continue
                    ref = dict(ref)
                    if state == 'waiting':
                        ref['blockOwnerDeletion'] = False
                    kept.append(ref)
                changed['metadata']['ownerReferences'] = kept
                self._write(table, obj, changed)
            return
        if metadata.get('deletionTimestamp'):
            return
        finalizers = metadata.get('finalizers') or ()
        if 'waiting' in states and self.store.dependents(metadata.get('uid', '')):
            policy = 'Foreground'
        elif FINALIZER_ORPHAN in finalizers:
            policy = 'Orphan'
        elif FINALIZER_FOREGROUND in finalizers:
            policy = 'Foreground'
        else:
            policy = 'Background'
        self._delete(table, obj, policy)

    def _do_gc_deleting(self, table: str, namespace: str, name: str) -> None:
        obj = self.store.get(table, namespace, name)
        if obj is None or not obj['metadata'].get('deletionTimestamp'):
            return
        uid = obj['metadata']['uid']
        finalizers = list(obj['metadata'].get('finalizers') or [])
        if FINALIZER_ORPHAN in finalizers:
            for key, dependent in self.store.dependents(uid):
                changed = copy.deepcopy(dependent)
                changed['metadata']['ownerReferences'] = [
                    r
                    for r in dependent['metadata'].get('ownerReferences') or []
                    if r.get('uid') != uid
                ]
                self._write(key[0], dependent, changed)
            self._drop_finalizer(table, namespace, name, FINALIZER_ORPHAN)
        elif FINALIZER_FOREGROUND in finalizers:
            blocking = []
            for key, dependent in self.store.dependents(uid):
                refs = dependent['metadata'].get('ownerReferences') or []
                if any(r.get('uid') == uid and r.get('blockOwnerDeletion') for r in refs):
                    blocking.append(key)
                if not dependent['metadata'].get('deletionTimestamp'):
                    self._do_gc_item(*key)
            if not any(self.store.get(*key) is not None for key in blocking):
                self._drop_finalizer(table, namespace, name, FINALIZER_FOREGROUND)

    def _drop_finalizer(self, table: str, namespace: str, name: str, finalizer: str) -> None:
        obj = self.store.get(table, namespace, name)
        if obj is None:
            return
        changed = copy.deepcopy(obj)
        changed['metadata']['finalizers'] = [
            f for f in obj['metadata'].get('finalizers') or [] if f != finalizer
        ]
        self._write(table, obj, changed)

    # ---- CustomResourceDefinitions ------------------------------------------------------

    def _do_crd(self, name: str) -> None:
        crd = self.store.get(crds.CRD_TABLE, '', name)
        if crd is None:
            return
        spec = crd['spec']
        storage = f'{spec["group"]}/{spec["names"]["plural"]}'
        now = self.api.now()
        if crd['metadata'].get('deletionTimestamp'):
            self.api.terminating_crds.add(name)
            status = crds.established_status(crd, now, terminating=True)
            if status != crd.get('status'):
                self._write(
                    crds.CRD_TABLE,
                    crd,
                    dict(copy.deepcopy(crd), status=status),
                    subresource='status',
                )
            for obj in list(self.store.items(storage)):
                if not obj['metadata'].get('deletionTimestamp'):
                    self._delete(storage, obj)
            if not any(True for _ in self.store.items(storage)):
                self._drop_finalizer(crds.CRD_TABLE, '', name, crds.CLEANUP_FINALIZER)
            return
        conflict = self._name_conflict(crd)
        if not conflict:
            self.registry.set_crd_types(name, crds.resource_types(crd))
            self.store.table(storage)
            if crds.CLEANUP_FINALIZER not in (crd['metadata'].get('finalizers') or []):
                changed = copy.deepcopy(crd)
                changed['metadata']['finalizers'] = [
                    *(crd['metadata'].get('finalizers') or []),
                    crds.CLEANUP_FINALIZER,
                ]
                self._write(crds.CRD_TABLE, crd, changed)
                crd = self.store.get(crds.CRD_TABLE, '', name)
                assert crd is not None
        status = crds.established_status(crd, now, conflict=conflict)
        if status != crd.get('status'):
            self._write(
                crds.CRD_TABLE, crd, dict(copy.deepcopy(crd), status=status), subresource='status'
            )

    def _name_conflict(self, crd: Obj) -> str:
        """NamesAccepted=False when another CRD of the group already serves these names."""
        spec = crd['spec']
        names = spec['names']
        mine = {names['plural'], names.get('singular') or '', *(names.get('shortNames') or [])} - {
            ''
        }
        for rt in self.registry.all():
            if rt.group != spec['group'] or rt.crd_name == crd['metadata']['name']:
                continue
            theirs = {rt.plural, rt.singular, *rt.short_names}
            if mine & theirs:
                return f'{sorted(mine & theirs)[0]!r} is already in use'
            if rt.kind == names['kind']:
                return f'{names["kind"]!r} is already in use'
        return ''

    def _do_crd_gone(self, name: str, storage: str) -> None:
        self.registry.set_crd_types(name, [])
        self.api.terminating_crds.discard(name)
        self.store.drop_table(storage)

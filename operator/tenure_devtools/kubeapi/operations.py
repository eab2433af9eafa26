"""The REST semantics of the Kubernetes API emulator: get, list, create, update, patch, delete.

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

This is the apiserver's generic registry (k8s.io/apiserver/pkg/registry/generic/registry/
store.go and rest/{create,update,delete}.go) on top of the in-memory `Store`, independent of
HTTP. Behaviour reproduced, with the documents that define it:

- https://kubernetes.io/docs/reference/using-api/api-concepts/ (resourceVersion semantics,
  lists with limit/continue, dry run, field validation, patch types);
- https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/ and
  https://kubernetes.io/docs/concepts/architecture/garbage-collection/ (deletion);
- https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/ (a namespace
  must exist and not be terminating for anything to be created in it).

Controllers (namespace lifecycle, garbage collector, CRD establishment) act through this same
class, as the real ones act through the API.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import errors, meta, patch, selectors
from .errors import ApiError, Cause, GroupResource
from .meta import FINALIZER_FOREGROUND, FINALIZER_ORPHAN
from .resources import Registry, ResourceType
from .store import Obj, Store

NAMESPACES = 'core/namespaces'
NAMESPACES_GR = GroupResource('', 'namespaces')
IMMORTAL_NAMESPACES = frozenset({'default', 'kube-system', 'kube-public'})

MERGE_PATCH = 'application/merge-patch+json'
JSON_PATCH = 'application/json-patch+json'
STRATEGIC_PATCH = 'application/strategic-merge-patch+json'
APPLY_PATCH = 'application/apply-patch+yaml'

Predicate = Callable[[Obj], bool]


@dataclass
class ListOptions:
    """The query of a list or watch (metav1.ListOptions)."""

    label_selector: str = ''
    field_selector: str = ''
    limit: int = 0
    continue_token: str = ''
    resource_version: str | None = None
    resource_version_match: str = ''
    allow_bookmarks: bool = False
    timeout_seconds: int | None = None
    send_initial_events: bool | None = None


@dataclass
class WriteOptions:
    dry_run: bool = False
    field_validation: str = 'Warn'  # the server default since 1.27 when the client sends none


@dataclass
class Outcome:
    """A write's answer: HTTP code, body, and `Warning` header texts."""

    code: int
    body: Obj
    warnings: list[str] = field(default_factory=list)


def parse_rv(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise errors.bad_request(f'invalid resource version: {text!r}') from None
    if value < 0:
        raise errors.bad_request(f'invalid resource version: {text!r}')
    return value


def _list_options_invalid(problems: list[Cause]) -> ApiError:
    return errors.invalid('meta.k8s.io', 'ListOptions', '', problems)


def _key(obj: Obj) -> str:
    """The etcd key order of list results: `<namespace>/<name>` or `<name>`."""
    metadata = obj['metadata']
    namespace = metadata.get('namespace')
    return f'{namespace}/{metadata["name"]}' if namespace else metadata['name']


def encode_continue(rv: int, start: str) -> str:
    token = json.dumps({'v': 'meta.k8s.io/v1', 'rv': rv, 'start': start + '\x00'})
    return base64.urlsafe_b64encode(token.encode()).decode().rstrip('=')


def decode_continue(token: str) -> tuple[int, str]:
    try:
        padded = token + '=' * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if data.get('v') != 'meta.k8s.io/v1':
            raise ValueError('unknown version')
        return int(data['rv']), str(data['start'])
    except (ValueError, KeyError, TypeError) as exc:
        raise errors.bad_request(f'continue key is not valid: {exc}') from None


def field_selector_keys(selector: str) -> list[str]:
    """The field labels a field selector names (fields.ParseSelector splits on `,` and ops)."""
    keys = []
    for term in _split_unescaped(selector, ','):
        for op in ('!=', '==', '='):
            if op in term:
                keys.append(term.split(op, 1)[0].strip())
                break
        else:
            keys.append(term.strip())
    return [k for k in keys if k]


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, escaped = [], '', False
    for char in text:
        if escaped:
            current += char
            escaped = False
        elif char == '\\':
            current += char
            escaped = True
        elif char == sep:
            parts.append(current)
            current = ''
        else:
            current += char
    parts.append(current)
    return parts


def strip_type_meta(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ('apiVersion', 'kind')}


class Api:
    """Kubernetes REST semantics over the store."""

    def __init__(self, store: Store, registry: Registry, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.terminating_crds: set[str] = set()

    def now(self) -> str:
        return meta.format_time(self.clock())

    # ---- reads --------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.store.get(rt.table, namespace, name)
        if obj is None:
            raise errors.not_found(rt.group_resource, name)
        return rt.external(obj)

    def predicate(self, rt: ResourceType, options: ListOptions) -> Predicate | None:
        """The label and field selectors of a request as one predicate (None: everything)."""
        checks: list[Predicate] = []
        if options.label_selector:
            try:
                labels_match = selectors.parse_label_selector(options.label_selector)
            except selectors.SelectorError as exc:
                raise errors.bad_request(str(exc)) from None
            checks.append(lambda o: labels_match(o['metadata'].get('labels') or {}))
        if options.field_selector:
            supported = rt.supported_fields()
            for label in field_selector_keys(options.field_selector):
                if label not in supported:
                    raise errors.bad_request(rt.unsupported_field_message(label))
            try:
                fields_match = selectors.parse_field_selector(
                    options.field_selector, rt.field_labels
                )
            except selectors.SelectorError as exc:
                raise errors.bad_request(str(exc)) from None
            checks.append(fields_match)
        if not checks:
            return None
        if len(checks) == 1:
            return checks[0]
        return lambda o: all(check(o) for check in checks)

    async def list_objects(
        self, rt: ResourceType, namespace: str | None, options: ListOptions
    ) -> Obj:
        matches = self.predicate(rt, options)
        rv_text, match = options.resource_version, options.resource_version_match
        problems: list[Cause] = []
        if match and not rv_text:
            problems.append(
                meta.forbidden(
                    'resourceVersionMatch',
                    'resourceVersionMatch is forbidden unless resourceVersion is provided',
                )
            )
        if options.continue_token and rv_text and rv_text != '0':
            problems.append(
                meta.forbidden(
                    'resourceVersion',
                    'specifying resource version is not allowed when using continue',
                )
            )
        if match and match not in ('Exact', 'NotOlderThan'):
            problems.append(
                meta.not_supported('resourceVersionMatch', match, ['Exact', 'NotOlderThan'])
            )
        if match == 'Exact' and rv_text == '0':
            problems.append(
                meta.forbidden(
                    'resourceVersionMatch',
                    'resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                )
            )
        if problems:
            raise _list_options_invalid(problems)
        start = ''
        snapshot_rv: int | None = None
        if options.continue_token:
            snapshot_rv, start = decode_continue(options.continue_token)
            try:
                state = self.store.snapshot(rt.table, namespace, snapshot_rv)
            except ApiError:
                raise errors.expired(
                    'The provided continue parameter is too old to display a consistent list '
                    'result. You can start a new list without the continue parameter, or use '
                    'the continue token in this response to retrieve the remainder of the results.',
                    {'continue': encode_continue(self.store.rv, start.rstrip('\x00'))},
                ) from None
            items = list(state.values())
        else:
            exact = match == 'Exact' or (
                bool(options.limit) and rv_text not in (None, '', '0') and not match
            )
            requested = parse_rv(rv_text) if rv_text not in (None, '') else 0
            if requested > self.store.rv and not await self.store.wait_for_rv(requested, 3.0):
                raise errors.too_large_resource_version(requested, self.store.rv)
            if exact and requested:
                snapshot_rv = requested
                items = list(self.store.snapshot(rt.table, namespace, requested).values())
            else:
                items = list(self.store.items(rt.table, namespace))
        list_rv = snapshot_rv if snapshot_rv is not None else self.store.rv
        keyed = sorted(((_key(o), o) for o in items), key=lambda pair: pair[0])
        if start:
            keyed = [(k, o) for k, o in keyed if k >= start]
        selected: list[Obj] = []
        list_meta: dict[str, Any] = {'resourceVersion': str(list_rv)}
        for index, (_, obj) in enumerate(keyed):
            if matches is not None and not matches(obj):
                continue
            if options.limit and len(selected) == options.limit:
                # etcd pagination: the next page starts after the last returned key.
                list_meta['continue'] = encode_continue(list_rv, _key(selected[-1]))
                if matches is None:
                    list_meta['remainingItemCount'] = len(keyed) - index
                break
            selected.append(obj)
        typed = not rt.crd_name
        out_items = [strip_type_meta(rt.external(o)) if typed else rt.external(o) for o in selected]
        return {
            'kind': rt.list_kind,
            'apiVersion': rt.api_version,
            'metadata': list_meta,
            'items': out_items,
        }

    # ---- decoding -----------------------------------------------------------------------

    def _decode(self, rt: ResourceType, body: Any, options: WriteOptions) -> tuple[Obj, list[str]]:
        """Check a request body's type, then decode it as the apiserver does."""
        if not isinstance(body, dict):
            raise errors.bad_request(
                f'the body of the request could not be decoded into a {rt.kind}: '
                'expected a JSON object'
            )
        obj = copy.deepcopy(body)
        api_version, kind = obj.get('apiVersion'), obj.get('kind')
        if rt.crd_name:
            # Custom resources decode as unstructured objects: the type must be in the body.
            if not kind:
                raise errors.bad_request(
                    f"Object 'Kind' is missing in '{json.dumps(body, separators=(',', ':'))}'"
                )
            if not api_version:
                raise errors.bad_request(
                    f"Object 'apiVersion' is missing in '{json.dumps(body, separators=(',', ':'))}'"
                )
        if api_version and api_version != rt.api_version:
            raise errors.bad_request(
                f'the API version in the data ({api_version}) does not match the expected API '
                f'version ({rt.api_version})'
            )
        if kind and kind != rt.kind:
            raise errors.bad_request(
                f'the kind in the data ({kind}) does not match the expected kind ({rt.kind})'
            )
        obj['apiVersion'], obj['kind'] = rt.api_version, rt.kind
        if not isinstance(obj.get('metadata'), dict):
            obj['metadata'] = {}
        decoded, dropped = rt.strategy.decode(rt, obj)
        if dropped and options.field_validation == 'Strict':
            raise errors.bad_request(
                'strict decoding error: ' + ', '.join(f'unknown field "{p}"' for p in dropped)
            )
        warnings = (
            []
            if options.field_validation == 'Ignore'
            else [f'unknown field "{p}"' for p in dropped]
        )
        return decoded, warnings

    def _invalid(self, rt: ResourceType, name: str, problems: list[Cause]) -> ApiError:
        return errors.invalid(rt.group, rt.kind, name, problems)

    # ---- create -------------------------------------------------------------------------

    def _admit_create(self, rt: ResourceType, namespace: str, name: str) -> None:
        """The NamespaceLifecycle admission plugin and the terminating-CRD rule."""
        if rt.crd_name in self.terminating_crds:
            err = errors.method_not_supported(rt.group_resource, 'create')
            err.message = 'create not allowed while custom resource definition is terminating'
            raise err
        if not rt.namespaced:
            return
        ns = self.store.get(NAMESPACES, '', namespace)
        if ns is None:
            raise errors.not_found(NAMESPACES_GR, namespace)
        if (
            ns['metadata'].get('deletionTimestamp')
            or (ns.get('status') or {}).get('phase') == 'Terminating'
        ):
            raise errors.forbidden(
                rt.group_resource,
                name,
                f'unable to create new content in namespace {namespace} because it is being '
                'terminated',
                [
                    {
                        'reason': 'NamespaceTerminating',
                        'message': f'namespace {namespace} is being terminated',
                        'field': 'metadata.namespace',
                    }
                ],
            )

    def create(self, rt: ResourceType, namespace: str, body: Any, options: WriteOptions) -> Outcome:
        decoded, warnings = self._decode(rt, body, options)
        obj = rt.internal(decoded)
        metadata = obj['metadata']
        if rt.namespaced:
            if metadata.get('namespace') and metadata['namespace'] != namespace:
                raise errors.bad_request(
                    'the namespace of the provided object does not match the namespace sent on '
                    'the request'
                )
            metadata['namespace'] = namespace
        else:
            metadata.pop('namespace', None)
        if metadata.get('resourceVersion'):
            raise ApiError(
                500, 'Unknown', 'resourceVersion should not be set on objects to be created'
            )
        generate = not metadata.get('name') and bool(metadata.get('generateName'))
        for _attempt in range(8):  # maxNameGenerationCreateAttempts
            if generate:
                metadata['name'] = meta.generate_name(metadata['generateName'])
            name = metadata.get('name') or ''
            self._admit_create(rt, namespace, name)
            result = self._create_prepared(rt, copy.deepcopy(obj), options)
            if result is not None:
                return Outcome(201, rt.external(result), warnings)
            if not generate:
                break
        raise errors.already_exists(rt.group_resource, metadata.get('name') or '')

    def _create_prepared(self, rt: ResourceType, obj: Obj, options: WriteOptions) -> Obj | None:
        """BeforeCreate, validation and the store write; None if the name is taken."""
        metadata = obj['metadata']
        for key in ('deletionTimestamp', 'deletionGracePeriodSeconds', 'managedFields', 'selfLink'):
            metadata.pop(key, None)
        rt.strategy.prepare_for_create(rt, obj)
        metadata['uid'] = str(uuid.uuid4())
        metadata['creationTimestamp'] = self.now()
        if rt.strategy.generation != 'none':
            metadata['generation'] = 1
        else:
            metadata.pop('generation', None)
        problems: list[Cause] = [
            *meta.validate_object_meta(
                metadata, namespaced=rt.namespaced, name_validator=rt.strategy.name_errors
            )
        ]
        problems.extend(rt.strategy.validate(rt, obj))
        if problems:
            raise self._invalid(rt, metadata.get('name') or '', problems)
        existing = self.store.get(rt.table, metadata.get('namespace', ''), metadata['name'])
        if existing is not None:
            if existing['metadata'].get('deletionTimestamp') and not metadata.get('generateName'):
                err = errors.already_exists(rt.group_resource, metadata['name'])
                err.message = f'object is being deleted: {err.message}'
                raise err
            return None
        if options.dry_run:
            return obj
        return self.store.put(rt.table, obj)

    # ---- update and patch ---------------------------------------------------------------

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        options: WriteOptions,
        *,
        subresource: str = '',
    ) -> Outcome:
        if isinstance(body, dict) and isinstance(body.get('metadata'), dict):
            body_meta = body['metadata']
            if body_meta.get('name') and body_meta['name'] != name:
                raise errors.bad_request(
                    f'the name of the object ({body_meta["name"]}) does not match the name on '
                    f'the URL ({name})'
                )
            if rt.namespaced and body_meta.get('namespace') and body_meta['namespace'] != namespace:
                raise errors.bad_request(
                    'the namespace of the provided object does not match the namespace sent on '
                    'the request'
                )
        current = self.store.get(rt.table, namespace, name)
        if current is None:
            if rt.allow_create_on_update and not subresource:
                return self.create(rt, namespace, body, options)
            raise errors.not_found(rt.group_resource, name)
        decoded, warnings = self._decode(rt, body, options)
        decoded['metadata'].setdefault('name', name)
        new = rt.internal(decoded)
        result = self._update(rt, current, new, options, subresource=subresource)
        return Outcome(200, result, warnings)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        body: Any,
        options: WriteOptions,
        *,
        subresource: str = '',
    ) -> Outcome:
        current = self.store.get(rt.table, namespace, name)
        if current is None:
            raise errors.not_found(rt.group_resource, name)
        original = rt.external(current)
        try:
            if content_type == MERGE_PATCH:
                patched = patch.apply_merge_patch(original, body)
            elif content_type == JSON_PATCH:
                patched = patch.apply_json_patch(original, body)
            elif content_type == STRATEGIC_PATCH and rt.merge_keys is not None:
                patched = patch.apply_strategic_merge_patch(original, body, rt.merge_keys)
            else:
                raise errors.unsupported_media_type(patch_types(rt))
        except patch.PatchError as exc:
            reason = exc.reason or (
                'BadRequest' if exc.status == 400 else 'Invalid' if exc.status == 422 else 'Unknown'
            )
            details = {'causes': [{'message': exc.detail}]} if exc.status == 422 else None
            raise ApiError(exc.status, reason, exc.message, details) from None
        for key, expected in (('apiVersion', rt.api_version), ('kind', rt.kind)):
            if patched.get(key) != expected:
                raise errors.bad_request(
                    f'the patch may not change {key} ({patched.get(key)!r} is not {expected!r})'
                )
        decoded, warnings = self._decode(rt, patched, options)
        new = rt.internal(decoded)
        result = self._update(rt, current, new, options, subresource=subresource)
        return Outcome(200, result, warnings)

    def _update(
        self, rt: ResourceType, old: Obj, new: Obj, options: WriteOptions, *, subresource: str
    ) -> Obj:
        """Preconditions, BeforeUpdate, validation, finalizer-driven deletion, the write."""
        old_meta = old['metadata']
        name = old_meta['name']
        requested_rv = new['metadata'].get('resourceVersion') or ''
        if not requested_rv:
            if not rt.allow_unconditional_update:
                # store.go names the resource where the kind goes ("TODO: ... field for Resource").
                message = (
                    'metadata.resourceVersion: Invalid value: 0x0: must be specified for an update'
                )
                raise errors.invalid(
                    rt.group,
                    rt.plural,
                    name,
                    [meta.FieldViolation('metadata.resourceVersion', 'FieldValueInvalid', message)],
                )
        elif requested_rv != old_meta['resourceVersion']:
            raise errors.conflict(rt.group_resource, name)
        if subresource == 'status':
            new = rt.strategy.prepare_for_status_update(rt, new, old)
        elif subresource == 'finalize':
            finalizers = (new.get('spec') or {}).get('finalizers')
            new = copy.deepcopy(old)
            new['spec'] = dict(new.get('spec') or {}, finalizers=list(finalizers or []))
        else:
            rt.strategy.prepare_for_update(rt, new, old)
        new_meta = new['metadata']
        # rest.BeforeUpdate: system fields cannot be changed by an update.
        if rt.namespaced:
            new_meta['namespace'] = old_meta.get('namespace', '')
        else:
            new_meta.pop('namespace', None)
        for key in (
            'generation',
            'creationTimestamp',
            'deletionTimestamp',
            'deletionGracePeriodSeconds',
        ):
            if key in old_meta:
                new_meta[key] = old_meta[key]
            else:
                new_meta.pop(key, None)
        if not new_meta.get('uid'):
            new_meta['uid'] = old_meta['uid']
        new_meta.pop('managedFields', None)
        new_meta.pop('selfLink', None)
        new_meta['resourceVersion'] = old_meta['resourceVersion']
        if 'generation' in old_meta and rt.strategy.generation_changed(new, old):
            new_meta['generation'] = old_meta['generation'] + 1
        problems: list[Cause] = [
            *meta.validate_object_meta(
                new_meta, namespaced=rt.namespaced, name_validator=rt.strategy.name_errors
            )
        ]
        problems.extend(meta.validate_object_meta_update(new_meta, old_meta))
        problems.extend(rt.strategy.validate_update(rt, new, old))
        if problems:
            raise self._invalid(rt, name, problems)
        if (
            old_meta.get('deletionTimestamp')
            and not new_meta.get('finalizers')
            and rt.strategy.may_delete_on_update(new)
        ):
            # The last finalizer is gone from an object being deleted: it is deleted now.
            if not options.dry_run:
                self.store.remove(rt.table, old_meta.get('namespace', ''), name)
            return rt.external(new)
        if new == old:
            return rt.external(old)  # no-op: no new resourceVersion, no watch event
        if options.dry_run:
            return rt.external(new)
        return rt.external(self.store.put(rt.table, new))

    # ---- delete -------------------------------------------------------------------------

    def delete(
        self, rt: ResourceType, namespace: str, name: str, body: Any, options: WriteOptions
    ) -> Outcome:
        current = self.store.get(rt.table, namespace, name)
        if current is None:
            raise errors.not_found(rt.group_resource, name)
        delete_options = body if isinstance(body, dict) else {}
        policy = self._propagation(delete_options)
        preconditions = delete_options.get('preconditions') or {}
        current_meta = current['metadata']
        gr_kind = GroupResource(rt.group, rt.kind)
        if preconditions.get('uid') and preconditions['uid'] != current_meta.get('uid'):
            raise errors.conflict(
                gr_kind,
                name,
                f'the UID in the precondition ({preconditions["uid"]}) does not match the UID in '
                f'record ({current_meta.get("uid")}). The object might have been deleted and then '
                'recreated',
            )
        if (
            preconditions.get('resourceVersion')
            and preconditions['resourceVersion'] != current_meta['resourceVersion']
        ):
            raise errors.conflict(
                gr_kind,
                name,
                f'the ResourceVersion in the precondition ({preconditions["resourceVersion"]}) '
                'does not match the ResourceVersion in record '
                f'({current_meta["resourceVersion"]}). The object might have been modified',
            )
        if rt.table == NAMESPACES:
            early = self._delete_namespace(rt, current, options)
            if early is not None:
                return early
        finalizers = list(current_meta.get('finalizers') or [])
        wanted = self._gc_finalizers(finalizers, policy)
        if wanted:
            # Finalizers pending: mark the object as being deleted and keep it
            # (store.go updateForGracefulDeletionAndFinalizers + markAsDeleting).
            updated = copy.deepcopy(current)
            updated_meta = updated['metadata']
            updated_meta['finalizers'] = wanted
            if not updated_meta.get('deletionTimestamp'):
                updated_meta['deletionTimestamp'] = self.now()
                if updated_meta.get('generation'):
                    updated_meta['generation'] += 1
            updated_meta['deletionGracePeriodSeconds'] = 0
            if updated == current or options.dry_run:
                return Outcome(200, rt.external(updated))
            return Outcome(200, rt.external(self.store.put(rt.table, updated)))
        gone = current if options.dry_run else self.store.remove(rt.table, namespace, name)
        if rt.return_deleted_object:
            return Outcome(200, rt.external(gone))
        details = {
            'name': name,
            'group': rt.group,
            'kind': rt.plural,
            'uid': current_meta.get('uid'),
        }
        if not rt.group:
            del details['group']
        return Outcome(
            200,
            {
                'kind': 'Status',
                'apiVersion': 'v1',
                'metadata': {},
                'status': 'Success',
                'details': details,
            },
        )

    @staticmethod
    def _propagation(options: Mapping[str, Any]) -> str | None:
        policy = options.get('propagationPolicy')
        orphan = options.get('orphanDependents')
        problems: list[Cause] = []
        if policy is not None and policy not in ('Foreground', 'Background', 'Orphan'):
            problems.append(
                meta.not_supported(
                    'propagationPolicy', policy, ['Foreground', 'Background', 'Orphan', 'nil']
                )
            )
        if policy is not None and orphan is not None:
            problems.append(
                meta.invalid(
                    'propagationPolicy',
                    policy,
                    'orphanDependents and deletionPropagation cannot be both set',
                )
            )
        dry_run = options.get('dryRun') or []
        for value in dry_run:
            if value != 'All':
                problems.append(meta.not_supported('dryRun', dry_run, ['All']))
        if problems:
            raise errors.invalid('meta.k8s.io', 'DeleteOptions', '', problems)
        if orphan is not None:
            return 'Orphan' if orphan else 'Background'
        return policy if isinstance(policy, str) else None

    @staticmethod
    def _gc_finalizers(finalizers: list[str], policy: str | None) -> list[str]:
        """deletionFinalizersForGarbageCollection: the orphan/foreground finalizers to set."""
        if policy is None:
            return finalizers
        kept = [f for f in finalizers if f not in (FINALIZER_ORPHAN, FINALIZER_FOREGROUND)]
        if policy == 'Orphan':
            kept.append(FINALIZER_ORPHAN)
        elif policy == 'Foreground':
            kept.append(FINALIZER_FOREGROUND)
        return kept

    def _delete_namespace(
        self, rt: ResourceType, current: Obj, options: WriteOptions
    ) -> Outcome | None:
        """The namespace REST's own Delete: mark Terminating first, delete once finalized."""
        name = current['metadata']['name']
        if name in IMMORTAL_NAMESPACES:
            raise errors.forbidden(NAMESPACES_GR, name, 'this namespace may not be deleted')
        if not current['metadata'].get('deletionTimestamp'):
            updated = copy.deepcopy(current)
            updated['metadata']['deletionTimestamp'] = self.now()
            updated['status'] = dict(updated.get('status') or {}, phase='Terminating')
            if options.dry_run:
                return Outcome(200, updated)
            return Outcome(200, self.store.put(rt.table, updated))
        if (current.get('spec') or {}).get('finalizers'):
            return Outcome(200, current)
        return None

    def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        list_options: ListOptions,
        body: Any,
        options: WriteOptions,
    ) -> Outcome:
        matches = self.predicate(rt, list_options)
        victims = [
            o for o in list(self.store.items(rt.table, namespace)) if matches is None or matches(o)
        ]
        victims.sort(key=_key)
        for obj in victims:
            metadata = obj['metadata']
            try:
                self.delete(rt, metadata.get('namespace', ''), metadata['name'], body, options)
            except ApiError as exc:
                if exc.code != 404:
                    raise
        typed = not rt.crd_name
        items = [strip_type_meta(rt.external(o)) if typed else rt.external(o) for o in victims]
        return Outcome(
            200,
            {
                'kind': rt.list_kind,
                'apiVersion': rt.api_version,
                'metadata': {'resourceVersion': str(self.store.rv)},
                'items': items,
            },
        )


def patch_types(rt: ResourceType) -> list[str]:
    """The PATCH media types the real server accepts for this resource."""
    types = [JSON_PATCH, MERGE_PATCH]
    if rt.merge_keys is not None:
        types.append(STRATEGIC_PATCH)
    types.append(APPLY_PATCH)
    return types

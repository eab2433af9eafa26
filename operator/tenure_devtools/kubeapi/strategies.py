"""Per-kind write strategies of the Kubernetes API emulator (the apiserver's `RESTStrategy`s).

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

A strategy says what the apiserver does to an object of its kind on the way in: typed decoding
(unknown fields dropped, defaults applied), `PrepareForCreate` / `PrepareForUpdate` (e.g. status
reset on the main resource when a status subresource exists), `metadata.generation` rules and
validation. Sources mirrored: k8s.io/apiserver/pkg/registry/rest (create.go, update.go),
pkg/registry/core/{secret,configmap,namespace,pod}/strategy.go, pkg/apis/rbac/validation,
k8s.io/apiextensions-apiserver/pkg/registry/{customresource,customresourcedefinition}.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from . import errors, meta
from .errors import Cause
from .meta import FieldViolation

if TYPE_CHECKING:
    from .resources import ResourceType

Obj = dict[str, Any]
GenerationPolicy = Literal['none', 'spec', 'non-metadata']

ROOT_FIELDS = frozenset({'apiVersion', 'kind', 'metadata'})


def dropped_paths(before: Any, after: Any, path: str = '') -> list[str]:
    """Paths present in `before` but pruned from `after` (for unknown-field warnings)."""
    found: list[str] = []
    if isinstance(before, dict) and isinstance(after, dict):
        for key, value in before.items():
            sub = f'{path}.{key}' if path else key
            if key not in after:
                found.append(sub)
            else:
                found.extend(dropped_paths(value, after[key], sub))
    elif isinstance(before, list) and isinstance(after, list):
        for index, (b, a) in enumerate(zip(before, after, strict=False)):
            found.extend(dropped_paths(b, a, f'{path}[{index}]'))
    return found


def without(obj: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


class Strategy:
    """Defaults: a plain object, no generation, no status subresource, DNS-subdomain names."""

    generation: GenerationPolicy = 'none'
    status_subresource = False
    # Built-in status updates may still change labels and annotations (pods, namespaces);
    # custom resources' /status ignores everything but status.
    status_update_keeps_metadata = True
    known_fields: frozenset[str] | None = None

    def name_errors(self, name: str) -> list[str]:
        return meta.dns1123_subdomain(name)

    def decode(self, rt: ResourceType, obj: Obj) -> tuple[Obj, list[str]]:
        """Typed decoding: drop unknown fields (returned as paths) and apply defaults."""
        dropped: list[str] = []
        if self.known_fields is not None:
            allowed = self.known_fields | ROOT_FIELDS
            dropped.extend(k for k in obj if k not in allowed)
            obj = {k: v for k, v in obj.items() if k in allowed}
        if isinstance(obj.get('metadata'), dict):
            obj['metadata'], lost = meta.prune_object_meta(obj['metadata'])
            dropped.extend(lost)
        return obj, dropped

    def prepare_for_create(self, rt: ResourceType, obj: Obj) -> None:
        if self.status_subresource:
            self.reset_status_on_create(obj)

    def reset_status_on_create(self, obj: Obj) -> None:
        obj.pop('status', None)

    def prepare_for_update(self, rt: ResourceType, new: Obj, old: Obj) -> None:
        if self.status_subresource:
            if 'status' in old:
                new['status'] = copy.deepcopy(old['status'])
            else:
                new.pop('status', None)

    def prepare_for_status_update(self, rt: ResourceType, new: Obj, old: Obj) -> Obj:
        """Only the status (and, for built-ins, metadata) of `new` survives a /status write."""
        result = copy.deepcopy(old)
        if self.status_update_keeps_metadata:
            metadata = copy.deepcopy(new.get('metadata') or {})
            # pods/status may not touch owner references (pkg/registry/core/pod/strategy.go).
            if 'ownerReferences' in old['metadata']:
                metadata['ownerReferences'] = copy.deepcopy(old['metadata']['ownerReferences'])
            else:
                metadata.pop('ownerReferences', None)
            result['metadata'] = metadata
        if 'status' in new:
            result['status'] = copy.deepcopy(new['status'])
        else:
            result.pop('status', None)
        return result

    def may_delete_on_update(self, obj: Obj) -> bool:
        """Whether an update that empties metadata.finalizers of a deleting object deletes it."""
        return True

    def generation_changed(self, new: Obj, old: Obj) -> bool:
        if self.generation == 'spec':
            return bool(new.get('spec') != old.get('spec'))
        if self.generation == 'non-metadata':
            ignored = ('metadata', 'status') if self.status_subresource else ('metadata',)
            return without(new, *ignored) != without(old, *ignored)
        return False

    def validate(self, rt: ResourceType, obj: Obj) -> list[Cause]:
        return []

    def validate_update(self, rt: ResourceType, new: Obj, old: Obj) -> list[Cause]:
        return self.validate(rt, new)


# ---- core/v1 -------------------------------------------------------------------------------

_CONFIG_KEY = r'[-._a-zA-Z0-9]+'
_CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
    f"'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '{_CONFIG_KEY}')"
)
_DATA_LIMIT = 1024 * 1024
_IMMUTABLE_DATA = 'field is immutable when `immutable` is set'


def _config_key_errors(field: str, key: str) -> list[Cause]:
    problems: list[Cause] = []
    if len(key) > 253:
        problems.append(meta.invalid(field, key, 'must be no more than 253 characters'))
    if not re.fullmatch(_CONFIG_KEY, key):
        problems.append(meta.invalid(field, key, _CONFIG_KEY_MSG))
    return problems


def _check_base64(kind: str, values: Any) -> None:
    if not isinstance(values, dict):
        return
    for value in values.values():
        if not isinstance(value, str):
            raise errors.bad_request(
                f'{kind} in version "v1" cannot be handled as a {kind}: json: cannot unmarshal '
                f'{type(value).__name__} into Go struct field {kind}.data of type []uint8'
            )
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise errors.bad_request(
                f'{kind} in version "v1" cannot be handled as a {kind}: illegal base64 data: {exc}'
            ) from exc


def _immutable_data_errors(new: Obj, old: Obj, fields: tuple[str, ...]) -> list[Cause]:
    problems: list[Cause] = []
    if old.get('immutable'):
        if not new.get('immutable'):
            problems.append(meta.forbidden('immutable', _IMMUTABLE_DATA))
        for name in fields:
            if new.get(name) != old.get(name):
                problems.append(meta.forbidden(name, _IMMUTABLE_DATA))
    return problems


class SecretStrategy(Strategy):
    known_fields = frozenset({'data', 'stringData', 'type', 'immutable'})

    def decode(self, rt: ResourceType, obj: Obj) -> tuple[Obj, list[str]]:
        obj, dropped = super().decode(rt, obj)
        _check_base64('Secret', obj.get('data'))
        # stringData is write-only: merged into data (base64) and never stored or returned.
        string_data = obj.pop('stringData', None)
        if isinstance(string_data, dict) and string_data:
            data = dict(obj.get('data') or {})
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            obj['data'] = data
        if not obj.get('type'):
            obj['type'] = 'Opaque'
        return obj, dropped

    def validate(self, rt: ResourceType, obj: Obj) -> list[Cause]:
        problems: list[Cause] = []
        data = obj.get('data') or {}
        size = 0
        for key, value in data.items():
            problems.extend(_config_key_errors(f'data[{key}]', key))
            size += len(value) * 3 // 4
        if size > _DATA_LIMIT:
            problems.append(meta.too_long('data', _DATA_LIMIT))
        secret_type = obj.get('type')
        annotations = obj['metadata'].get('annotations') or {}
        if secret_type == 'kubernetes.io/service-account-token':
            if not annotations.get('kubernetes.io/service-account.name'):
                problems.append(
                    meta.required('metadata.annotations[kubernetes.io/service-account.name]')
                )
        elif secret_type == 'kubernetes.io/tls':
            for key in ('tls.crt', 'tls.key'):
                if key not in data:
                    problems.append(meta.required(f'data[{key}]'))
        elif secret_type == 'kubernetes.io/dockerconfigjson' and '.dockerconfigjson' not in data:
            problems.append(meta.required('data[.dockerconfigjson]'))
        return problems

    def validate_update(self, rt: ResourceType, new: Obj, old: Obj) -> list[Cause]:
        problems = self.validate(rt, new)
        if new.get('type') != old.get('type'):
            problems.append(meta.immutable('type', new.get('type')))
        problems.extend(_immutable_data_errors(new, old, ('data',)))
        return problems


class ConfigMapStrategy(Strategy):
    known_fields = frozenset({'data', 'binaryData', 'immutable'})

    def decode(self, rt: ResourceType, obj: Obj) -> tuple[Obj, list[str]]:
        obj, dropped = super().decode(rt, obj)
        _check_base64('ConfigMap', obj.get('binaryData'))
        return obj, dropped

    def validate(self, rt: ResourceType, obj: Obj) -> list[Cause]:
        problems: list[Cause] = []
        data = obj.get('data') or {}
        binary = obj.get('binaryData') or {}
        size = 0
        for key, value in data.items():
            problems.extend(_config_key_errors(f'data[{key}]', key))
            if key in binary:
                problems.append(
                    meta.invalid(f'data[{key}]', key, 'duplicate of key present in binaryData')
                )
            size += len(value) if isinstance(value, str) else 0
        for key, value in binary.items():
            problems.extend(_config_key_errors(f'binaryData[{key}]', key))
            size += len(value) * 3 // 4
        if size > _DATA_LIMIT:
            problems.append(meta.too_long('', _DATA_LIMIT))
        return problems

    def validate_update(self, rt: ResourceType, new: Obj, old: Obj) -> list[Cause]:
        problems = self.validate(rt, new)
        problems.extend(_immutable_data_errors(new, old, ('data', 'binaryData')))
        return problems


NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name'
NAMESPACE_FINALIZER = 'kubernetes'


class NamespaceStrategy(Strategy):
    known_fields = frozenset({'spec', 'status'})
    status_subresource = True

    def name_errors(self, name: str) -> list[str]:
        return meta.dns1123_label(name)

    def decode(self, rt: ResourceType, obj: Obj) -> tuple[Obj, list[str]]:
        obj, dropped = super().decode(rt, obj)
        # The immutable name label is set on every write (KEP-2161).
        metadata = obj.get('metadata')
        if isinstance(metadata, dict) and metadata.get('name'):
            labels = dict(metadata.get('labels') or {})
            labels[NAMESPACE_NAME_LABEL] = metadata['name']
            metadata['labels'] = labels
        return obj, dropped

    def prepare_for_create(self, rt: ResourceType, obj: Obj) -> None:
        spec = obj.setdefault('spec', {})
        finalizers = list(spec.get('finalizers') or [])
        if NAMESPACE_FINALIZER not in finalizers:
            finalizers.append(NAMESPACE_FINALIZER)
        spec['finalizers'] = finalizers
        obj['status'] = {'phase': 'Active'}

    def prepare_for_update(self, rt: ResourceType, new: Obj, old: Obj) -> None:
        # spec.finalizers change only through /finalize, status only through /status.
        spec = dict(new.get('spec') or {})
        old_finalizers = (old.get('spec') or {}).get('finalizers')
        if old_finalizers is None:
            spec.pop('finalizers', None)
        else:
            spec['finalizers'] = list(old_finalizers)
        new['spec'] = spec
        new['status'] = copy.deepcopy(old.get('status') or {})

    def may_delete_on_update(self, obj: Obj) -> bool:
        # namespace storage's ShouldDeleteDuringUpdate: spec.finalizers must be empty too.
        return not (obj.get('spec') or {}).get('finalizers')

    def validate(self, rt: ResourceType, obj: Obj) -> list[Cause]:
        problems: list[Cause] = []
        for finalizer in (obj.get('spec') or {}).get('finalizers') or []:
            problems.extend(
                meta.invalid('spec.finalizers', finalizer, m)
                for m in meta.qualified_name(finalizer)
            )
        return problems


class ServiceAccountStrategy(Strategy):
    known_fields = frozenset({'secrets', 'imagePullSecrets', 'automountServiceAccountToken'})


class PodStrategy(Strategy):
    known_fields = frozenset({'spec', 'status'})
    status_subresource = True

    def reset_status_on_create(self, obj: Obj) -> None:
        obj['status'] = {'phase': 'Pending', 'qosClass': 'BestEffort'}

    def validate(self, rt: ResourceType, obj: Obj) -> list[Cause]:
        containers = (obj.get('spec') or {}).get('containers')
        return [] if containers else [meta.required('spec.containers')]


class CoreEventStrategy(Strategy):
    known_fields = frozenset(
        {
            'involvedObject',
            'reason',
            'message',
            'source',
            'firstTimestamp',
            'lastTimestamp',
            'count',
            'type',
            'eventTime',
            'series',
            'action',
            'related',
            'reportingComponent',
            'reportingInstance',
        }
    )

    def validate(self, rt: ResourceType, obj: Obj) -> list[Cause]:
        involved = obj.get('involvedObject') or {}
        namespace = obj['metadata'].get('namespace')
        involved_ns = involved.get('namespace')
        if involved_ns and namespace and involved_ns != namespace:
            return [
                meta.invalid(
                    'involvedObject.namespace', involved_ns, 'does not match event.namespace'
                )
            ]
        return []


class EventsV1Strategy(CoreEventStrategy):
    """events.k8s.io/v1 decodes its own field names; validation sees the stored core form.

    Events written through events.k8s.io/v1 must carry the fields of the new API
    (pkg/apis/core/validation/events.go, for requests of that version).
    """

    # stored (core) field -> the events.k8s.io/v1 name a client sees in errors
    _REQUIRED = (
        ('eventTime', 'eventTime'),
        ('reportingComponent', 'reportingController'),
        ('reportingInstance', 'reportingInstance'),
        ('action', 'action'),
        ('reason', 'reason'),
    )

    def validate(self, rt: ResourceType, obj: Obj) -> list[Cause]:
        problems = super().validate(rt, obj)
        problems.extend(
            meta.required(shown) for stored, shown in self._REQUIRED if not obj.get(stored)
        )
        if obj.get('type') not in ('Normal', 'Warning'):
            problems.append(
                meta.not_supported('type', obj.get('type') or '', ['Normal', 'Warning'])
            )
        return problems

    known_fields = frozenset(
        {
            'eventTime',
            'series',
            'reportingController',
            'reportingInstance',
            'action',
            'reason',
            'regarding',
            'related',
            'note',
            'type',
            'deprecatedSource',
            'deprecatedFirstTimestamp',
            'deprecatedLastTimestamp',
            'deprecatedCount',
        }
    )


class LeaseStrategy(Strategy):
    known_fields = frozenset({'spec'})


# ---- rbac.authorization.k8s.io/v1 ----------------------------------------------------------

RBAC_GROUP = 'rbac.authorization.k8s.io'


class RoleStrategy(Strategy):
    known_fields = frozenset({'rules'})

    def name_errors(self, name: str) -> list[str]:
        return meta.path_segment_name(name)

    def validate(self, rt: ResourceType, obj: Obj) -> list[Cause]:
        return _rules_errors(obj.get('rules') or [], namespaced=rt.namespaced)


class ClusterRoleStrategy(RoleStrategy):
    known_fields = frozenset({'rules', 'aggregationRule'})


def _rules_errors(rules: list[Any], *, namespaced: bool) -> list[Cause]:
    problems: list[Cause] = []
    for index, rule in enumerate(rules):
        path = f'rules[{index}]'
        if not isinstance(rule, dict):
            problems.append(meta.invalid(path, rule, 'must be an object'))
            continue
        if not rule.get('verbs'):
            problems.append(meta.required(f'{path}.verbs', 'verbs must contain at least one value'))
        resources, urls = rule.get('resources'), rule.get('nonResourceURLs')
        if urls:
            if namespaced:
                problems.append(
                    meta.invalid(
                        f'{path}.nonResourceURLs',
                        urls,
                        'namespaced rules cannot apply to non-resource URLs',
                    )
                )
            if resources or rule.get('apiGroups'):
                problems.append(
                    meta.invalid(
                        f'{path}.nonResourceURLs',
                        urls,
                        'rules cannot apply to both regular resources and non-resource URLs',
                    )
                )
            continue
        if not rule.get('apiGroups'):
            problems.append(
                meta.required(
                    f'{path}.apiGroups', 'resource rules must supply at least one api group'
                )
            )
        if not resources:
            problems.append(
                meta.required(
                    f'{path}.resources', 'resource rules must supply at least one resource'
                )
            )
    return problems


class RoleBindingStrategy(Strategy):
    known_fields = frozenset({'subjects', 'roleRef'})
    role_kinds: tuple[str, ...] = ('Role', 'ClusterRole')

    def name_errors(self, name: str) -> list[str]:
        return meta.path_segment_name(name)

    def validate(self, rt: ResourceType, obj: Obj) -> list[Cause]:
        problems: list[Cause] = []
        ref = obj.get('roleRef')
        if not isinstance(ref, dict):
            ref = {}
        if ref.get('apiGroup') != RBAC_GROUP:
            problems.append(
                meta.not_supported('roleRef.apiGroup', ref.get('apiGroup', ''), [RBAC_GROUP])
            )
        if ref.get('kind') not in self.role_kinds:
            problems.append(
                meta.not_supported('roleRef.kind', ref.get('kind', ''), self.role_kinds)
            )
        if not ref.get('name'):
            problems.append(meta.required('roleRef.name'))
        else:
            problems.extend(
                meta.invalid('roleRef.name', ref['name'], m)
                for m in meta.path_segment_name(ref['name'])
            )
        for index, subject in enumerate(obj.get('subjects') or []):
            problems.extend(
                _subject_errors(f'subjects[{index}]', subject, namespaced=rt.namespaced)
            )
        return problems

    def validate_update(self, rt: ResourceType, new: Obj, old: Obj) -> list[Cause]:
        problems = self.validate(rt, new)
        if new.get('roleRef') != old.get('roleRef'):
            ref = new.get('roleRef') or {}
            shown = (
                f'rbac.RoleRef{{APIGroup:{json.dumps(ref.get("apiGroup", ""))}, '
                f'Kind:{json.dumps(ref.get("kind", ""))}, Name:{json.dumps(ref.get("name", ""))}}}'
            )
            problems.append(
                FieldViolation(
                    'roleRef',
                    'FieldValueInvalid',
                    f'roleRef: Invalid value: {shown}: cannot change roleRef',
                )
            )
        return problems


class ClusterRoleBindingStrategy(RoleBindingStrategy):
    role_kinds = ('ClusterRole',)


def _subject_errors(path: str, subject: Any, *, namespaced: bool) -> list[Cause]:
    if not isinstance(subject, dict):
        return [meta.invalid(path, subject, 'must be an object')]
    problems: list[Cause] = []
    kind = subject.get('kind', '')
    if not subject.get('name'):
        problems.append(meta.required(f'{path}.name'))
    if kind == 'ServiceAccount':
        if subject.get('apiGroup'):
            problems.append(meta.not_supported(f'{path}.apiGroup', subject['apiGroup'], ['']))
        if not namespaced and not subject.get('namespace'):
            problems.append(meta.required(f'{path}.namespace'))
        if subject.get('name'):
            problems.extend(
                meta.invalid(f'{path}.name', subject['name'], m)
                for m in meta.dns1123_subdomain(subject['name'])
            )
    elif kind in ('User', 'Group'):
        if subject.get('apiGroup') != RBAC_GROUP:
            problems.append(
                meta.not_supported(f'{path}.apiGroup', subject.get('apiGroup', ''), [RBAC_GROUP])
            )
    else:
        problems.append(
            meta.not_supported(f'{path}.kind', kind, ['ServiceAccount', 'User', 'Group'])
        )
    return problems


# ---- apiextensions.k8s.io/v1 ---------------------------------------------------------------


class CustomResourceDefinitionStrategy(Strategy):
    known_fields = frozenset({'spec', 'status'})
    status_subresource = True
    generation = 'spec'

    def decode(self, rt: ResourceType, obj: Obj) -> tuple[Obj, list[str]]:
        obj, dropped = super().decode(rt, obj)
        spec = obj.get('spec')
        if isinstance(spec, dict):
            names = spec.get('names')
            if isinstance(names, dict) and names.get('kind'):
                names.setdefault('singular', names['kind'].lower())
                names.setdefault('listKind', names['kind'] + 'List')
            spec.setdefault('conversion', {'strategy': 'None'})
        return obj, dropped

    def reset_status_on_create(self, obj: Obj) -> None:
        obj['status'] = {
            'conditions': [],
            'acceptedNames': {'plural': '', 'kind': ''},
            'storedVersions': [],
        }

    def validate(self, rt: ResourceType, obj: Obj) -> list[Cause]:
        from . import crds  # the CRD rules live with the CRD machinery

        return crds.validate_crd(obj)

    def validate_update(self, rt: ResourceType, new: Obj, old: Obj) -> list[Cause]:
        from . import crds

        problems = crds.validate_crd(new)
        problems.extend(crds.validate_crd_update(new, old))
        return problems

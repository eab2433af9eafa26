"""The registry of resources the Kubernetes API emulator serves: built-ins and CRD-defined.

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

A `ResourceType` is one served group/version/resource with what discovery announces about it
(https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-types, and the
APIResourceList of `kubectl api-resources`), where its objects are stored, which field selectors
it supports (https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/)
and its write strategy. Two served versions may share one storage table: core `v1` events and
`events.k8s.io/v1` events are the same objects, as are all served versions of a CRD.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import patch, strategies
from .errors import GroupResource
from .strategies import Strategy

Obj = dict[str, Any]

ALL_VERBS = ('create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch')
STATUS_VERBS = ('get', 'patch', 'update')
CORE_STYLE = 'core'  # "field label not supported: x"
META_STYLE = 'meta'  # "\"x\" is not a known field selector: only ..."


class Converter:
    """Between the served representation and the stored one (conversion strategy None)."""

    def __init__(self, external: str, storage: str) -> None:
        self.external = external
        self.storage = storage

    def to_external(self, obj: Obj) -> Obj:
        if obj.get('apiVersion') == self.external:
            return obj
        return dict(obj, apiVersion=self.external)

    def to_storage(self, obj: Obj) -> Obj:
        return dict(obj, apiVersion=self.storage)


# events.k8s.io/v1 Event <-> core/v1 Event (pkg/apis/events/v1/conversion.go).
_EVENT_RENAMES = (
    ('regarding', 'involvedObject'),
    ('note', 'message'),
    ('deprecatedSource', 'source'),
    ('deprecatedFirstTimestamp', 'firstTimestamp'),
    ('deprecatedLastTimestamp', 'lastTimestamp'),
    ('deprecatedCount', 'count'),
    ('reportingController', 'reportingComponent'),
)


class EventsConverter(Converter):
    def __init__(self) -> None:
        super().__init__('events.k8s.io/v1', 'v1')

    def to_external(self, obj: Obj) -> Obj:
        out = dict(obj, apiVersion=self.external)
        for new, old in _EVENT_RENAMES:
            if old in out:
                out[new] = out.pop(old)
        return out

    def to_storage(self, obj: Obj) -> Obj:
        out = dict(obj, apiVersion=self.storage)
        for new, old in _EVENT_RENAMES:
            if new in out:
                out[old] = out.pop(new)
        return out


@dataclass(frozen=True, eq=False)
class ResourceType:
    """One served group/version/resource."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    strategy: Strategy
    verbs: tuple[str, ...] = ALL_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    storage: str = ''
    converter: Converter | None = None
    # Field selectors beyond metadata.name/metadata.namespace: label -> dotted object path.
    field_labels: Mapping[str, str] = field(default_factory=dict)
    field_error_style: str = CORE_STYLE
    # Strategic merge patch: list paths -> patchMergeKey; None when not supported (CRs).
    merge_keys: Mapping[str, str] | None = None
    return_deleted_object: bool = False
    allow_unconditional_update: bool = True
    allow_create_on_update: bool = False
    stored: bool = True  # False for virtual resources (tokenreviews)
    crd_name: str = ''
    schema: Mapping[str, Any] | None = None
    printer_columns: tuple[Mapping[str, Any], ...] = ()

    @property
    def api_version(self) -> str:
        return f'{self.group}/{self.version}' if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + 'List'

    @property
    def group_resource(self) -> GroupResource:
        return GroupResource(self.group, self.plural)

    @property
    def table(self) -> str:
        return self.storage or f'{self.group or "core"}/{self.plural}'

    def external(self, obj: Obj) -> Obj:
        return obj if self.converter is None else self.converter.to_external(obj)

    def internal(self, obj: Obj) -> Obj:
        return obj if self.converter is None else self.converter.to_storage(obj)

    def supported_fields(self) -> tuple[str, ...]:
        return ('metadata.name', 'metadata.namespace', *self.field_labels)

    def unsupported_field_message(self, label: str) -> str:
        if self.field_error_style == META_STYLE:
            only = '"metadata.name", "metadata.namespace"'
            return f'"{label}" is not a known field selector: only {only}'
        return f'field label not supported: {label}'

    def discovery(self) -> list[dict[str, Any]]:
        """APIResourceList entries: the resource and its subresources."""
        entry: dict[str, Any] = {
            'name': self.plural,
            'singularName': self.singular,
            'namespaced': self.namespaced,
            'kind': self.kind,
            'verbs': list(self.verbs),
        }
        if self.short_names:
            entry['shortNames'] = list(self.short_names)
        if self.categories:
            entry['categories'] = list(self.categories)
        entries = [entry]
        for sub in self.subresources:
            sub_entry: dict[str, Any] = {
                'name': f'{self.plural}/{sub}',
                'singularName': '',
                'namespaced': self.namespaced,
                'kind': self.kind,
                'verbs': list(STATUS_VERBS),
            }
            if sub == 'token':
                sub_entry.update(group='authentication.k8s.io', version='v1', kind='TokenRequest')
                sub_entry['verbs'] = ['create']
            elif sub == 'finalize':
                sub_entry['verbs'] = ['update']
            entries.append(sub_entry)
        return entries


_MERGE_KEYS = patch.BUILTIN_MERGE_KEYS
# CustomResourceDefinition is a typed built-in too: conditions merge by type
# (apiextensions/v1 types.go).
_CRD_MERGE_KEYS = {
    'metadata.finalizers': '',
    'metadata.ownerReferences': 'uid',
    'status.conditions': 'type',
}
_CORE_EVENT_FIELDS = {
    'involvedObject.kind': 'involvedObject.kind',
    'involvedObject.namespace': 'involvedObject.namespace',
    'involvedObject.name': 'involvedObject.name',
    'involvedObject.uid': 'involvedObject.uid',
    'involvedObject.apiVersion': 'involvedObject.apiVersion',
    'involvedObject.resourceVersion': 'involvedObject.resourceVersion',
    'involvedObject.fieldPath': 'involvedObject.fieldPath',
    'reason': 'reason',
    'reportingComponent': 'reportingComponent',
    'source': 'source.component',
    'type': 'type',
}
_POD_FIELDS = {
    'spec.nodeName': 'spec.nodeName',
    'spec.restartPolicy': 'spec.restartPolicy',
    'spec.schedulerName': 'spec.schedulerName',
    'spec.serviceAccountName': 'spec.serviceAccountName',
    'spec.hostNetwork': 'spec.hostNetwork',
    'status.phase': 'status.phase',
    'status.podIP': 'status.podIP',
    'status.nominatedNodeName': 'status.nominatedNodeName',
}


def builtin_types() -> list[ResourceType]:
    """The built-in resources (a subset of a real cluster's, enough for Tenure and kopf)."""
    rbac = strategies.RBAC_GROUP
    return [
        ResourceType(
            '',
            'v1',
            'namespaces',
            'namespace',
            'Namespace',
            False,
            strategies.NamespaceStrategy(),
            verbs=('create', 'delete', 'get', 'list', 'patch', 'update', 'watch'),
            short_names=('ns',),
            subresources=('finalize', 'status'),
            field_labels={'status.phase': 'status.phase'},
            merge_keys=_MERGE_KEYS['Namespace'],
            return_deleted_object=True,
        ),
        ResourceType(
            '',
            'v1',
            'serviceaccounts',
            'serviceaccount',
            'ServiceAccount',
            True,
            strategies.ServiceAccountStrategy(),
            short_names=('sa',),
            subresources=('token',),
            merge_keys=_MERGE_KEYS['ServiceAccount'],
            return_deleted_object=True,
        ),
        ResourceType(
            '',
            'v1',
            'secrets',
            'secret',
            'Secret',
            True,
            strategies.SecretStrategy(),
            field_labels={'type': 'type'},
            merge_keys=_MERGE_KEYS['Secret'],
        ),
        ResourceType(
            '',
            'v1',
            'configmaps',
            'configmap',
            'ConfigMap',
            True,
            strategies.ConfigMapStrategy(),
            short_names=('cm',),
            merge_keys=_MERGE_KEYS['ConfigMap'],
        ),
        ResourceType(
            '',
            'v1',
            'events',
            'event',
            'Event',
            True,
            strategies.CoreEventStrategy(),
            short_names=('ev',),
            field_labels=_CORE_EVENT_FIELDS,
            merge_keys=_MERGE_KEYS['Event'],
            allow_create_on_update=True,
        ),
        ResourceType(
            '',
            'v1',
            'pods',
            'pod',
            'Pod',
            True,
            strategies.PodStrategy(),
            short_names=('po',),
            categories=('all',),
            subresources=('status',),
            field_labels=_POD_FIELDS,
            merge_keys=_MERGE_KEYS['Pod'],
            return_deleted_object=True,
        ),
        ResourceType(
            'events.k8s.io',
            'v1',
            'events',
            'event',
            'Event',
            True,
            strategies.EventsV1Strategy(),
            short_names=('ev',),
            storage='core/events',
            converter=EventsConverter(),
            field_error_style=META_STYLE,
            merge_keys=_MERGE_KEYS['Event'],
            allow_create_on_update=True,
        ),
        ResourceType(
            rbac,
            'v1',
            'roles',
            'role',
            'Role',
            True,
            strategies.RoleStrategy(),
            field_error_style=META_STYLE,
            merge_keys=_MERGE_KEYS['Role'],
        ),
        ResourceType(
            rbac,
            'v1',
            'rolebindings',
            'rolebinding',
            'RoleBinding',
            True,
            strategies.RoleBindingStrategy(),
            field_error_style=META_STYLE,
            merge_keys=_MERGE_KEYS['RoleBinding'],
        ),
        ResourceType(
            rbac,
            'v1',
            'clusterroles',
            'clusterrole',
            'ClusterRole',
            False,
            strategies.ClusterRoleStrategy(),
            field_error_style=META_STYLE,
            merge_keys=_MERGE_KEYS['ClusterRole'],
        ),
        ResourceType(
            rbac,
            'v1',
            'clusterrolebindings',
            'clusterrolebinding',
            'ClusterRoleBinding',
            False,
            strategies.ClusterRoleBindingStrategy(),
            field_error_style=META_STYLE,
            merge_keys=_MERGE_KEYS['ClusterRoleBinding'],
        ),
        ResourceType(
            'authentication.k8s.io',
            'v1',
            'tokenreviews',
            'tokenreview',
            'TokenReview',
            False,
            strategies.Strategy(),
            verbs=('create',),
            stored=False,
        ),
        ResourceType(
            'coordination.k8s.io',
            'v1',
            'leases',
            'lease',
            'Lease',
            True,
            strategies.LeaseStrategy(),
            field_error_style=META_STYLE,
            merge_keys=_MERGE_KEYS['Lease'],
        ),
        ResourceType(
            'apiextensions.k8s.io',
            'v1',
            'customresourcedefinitions',
            'customresourcedefinition',
            'CustomResourceDefinition',
            False,
            strategies.CustomResourceDefinitionStrategy(),
            short_names=('crd', 'crds'),
            categories=('api-extensions',),
            subresources=('status',),
            field_error_style=META_STYLE,
            merge_keys=_CRD_MERGE_KEYS,
            allow_unconditional_update=False,
        ),
    ]


_KUBE_VERSION = re.compile(r'v(\d+)(?:(alpha|beta)(\d+))?')


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key: GA before beta before alpha, higher numbers first, others last (by name)."""
    match = _KUBE_VERSION.fullmatch(version)
    if match is None:
        return (3, 0, 0, version)
    major, level, minor = match.groups()
    rank = {None: 0, 'beta': 1, 'alpha': 2}[level]
    return (rank, -int(major), -int(minor or 0), '')


# Discovery lists the built-in groups in this order, custom groups after them by name.
_BUILTIN_GROUP_ORDER = (
    'apiextensions.k8s.io',
    'authentication.k8s.io',
    'rbac.authorization.k8s.io',
    'coordination.k8s.io',
    'events.k8s.io',
)


class Registry:
    """All served resources, by (group, version, plural)."""

    def __init__(self, types: Iterable[ResourceType] = ()) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._by_crd: dict[str, list[ResourceType]] = {}
        self._listeners: list[Callable[[], None]] = []
        for rt in types:
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        self._types[(rt.group, rt.version, rt.plural)] = rt
        if rt.crd_name:
            self._by_crd.setdefault(rt.crd_name, []).append(rt)

    def set_crd_types(self, crd_name: str, types: list[ResourceType]) -> None:
        """Replace what one CRD serves (its versions, schemas, columns)."""
        for old in self._by_crd.pop(crd_name, []):
            self._types.pop((old.group, old.version, old.plural), None)
        for rt in types:
            self.add(rt)

    def crd_types(self, crd_name: str) -> list[ResourceType]:
        return list(self._by_crd.get(crd_name, []))

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._types.values() if rt.group == group and rt.version == version]

    def groups(self) -> dict[str, list[str]]:
        """Group -> served versions, preferred first."""
        found: dict[str, set[str]] = {}
        for rt in self._types.values():
            found.setdefault(rt.group, set()).add(rt.version)
        order = {g: i for i, g in enumerate(_BUILTIN_GROUP_ORDER)}
        names = sorted(found, key=lambda g: (g != '', order.get(g, len(order)), g))
        return {g: sorted(found[g], key=version_priority) for g in names}

    def storage_view(self, table: str) -> ResourceType | None:
        """The served type whose representation is the stored one (for controllers)."""
        for rt in self._types.values():
            if rt.table == table and rt.stored and (rt.converter is None):
                return rt
        for rt in self._types.values():
            if rt.table == table and rt.stored:
                return rt
        return None

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        for rt in self._types.values():
            if rt.api_version == api_version and rt.kind == kind:
                return rt
        return None

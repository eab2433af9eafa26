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

from . import meta, patch, selectors, strategies
from .errors import Cause, GroupResource
from .meta import FieldViolation, go_value
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


# ---- Kinds an installation manifest carries (deploy/): stored, defaulted and validated --------
#
# The emulator runs no workload: a Deployment never gets a ReplicaSet or pods, a Service gets no
# cluster IP and no endpoints, and the API server here calls no admission webhook. They are
# stored so that `kubectl apply -k deploy/` works against it, with the defaults and the
# validation that reject a malformed manifest on a real server.


def _duplicate(field: str, value: Any) -> FieldViolation:
    return FieldViolation(
        field, 'FieldValueDuplicate', f'{field}: Duplicate value: {go_value(value)}'
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class DeploymentStrategy(strategies.Strategy):
    """apps/v1 Deployment (pkg/registry/apps/deployment/strategy.go, apps/v1 defaults.go and
    pkg/apis/apps/validation): a spec change bumps `metadata.generation`, status is a subresource,
    the selector is required, must select the pod template's labels and cannot change."""

    known_fields = frozenset({'spec', 'status'})
    status_subresource = True
    generation: strategies.GenerationPolicy = 'spec'

    def decode(self, rt: ResourceType, obj: Obj) -> tuple[Obj, list[str]]:
        obj, dropped = super().decode(rt, obj)
        spec = obj.get('spec')
        if isinstance(spec, dict):
            # SetDefaults_Deployment: one replica, RollingUpdate 25%/25%, 10 old ReplicaSets kept,
            # a rollout judged stuck after 600 seconds.
            spec.setdefault('replicas', 1)
            strategy = spec.setdefault('strategy', {})
            if isinstance(strategy, dict):
                strategy.setdefault('type', 'RollingUpdate')
                if strategy['type'] == 'RollingUpdate':
                    rolling = strategy.setdefault('rollingUpdate', {})
                    if isinstance(rolling, dict):
                        rolling.setdefault('maxUnavailable', '25%')
                        rolling.setdefault('maxSurge', '25%')
            spec.setdefault('revisionHistoryLimit', 10)
            spec.setdefault('progressDeadlineSeconds', 600)
        return obj, dropped

    def validate(self, rt: ResourceType, obj: Obj) -> list[Cause]:
        spec = _mapping(obj.get('spec'))
        problems: list[Cause] = []
        replicas = spec.get('replicas')
        if isinstance(replicas, int) and replicas < 0:
            problems.append(
                meta.invalid('spec.replicas', replicas, 'must be greater than or equal to 0')
            )
        template = _mapping(spec.get('template'))
        if not _mapping(template.get('spec')).get('containers'):
            problems.append(meta.required('spec.template.spec.containers'))
        selector = spec.get('selector')
        if not isinstance(selector, dict):
            problems.append(meta.required('spec.selector'))
            return problems
        if not selector.get('matchLabels') and not selector.get('matchExpressions'):
            problems.append(
                meta.invalid('spec.selector', selector, 'empty selector is invalid for deployment')
            )
            return problems
        labels = _mapping(_mapping(template.get('metadata')).get('labels'))
        try:
            matches = selectors.label_selector_from_object(selector)(labels)
        except selectors.SelectorError as e:
            problems.append(meta.invalid('spec.selector', selector, str(e)))
            return problems
        if not matches:
            problems.append(
                meta.invalid(
                    'spec.template.metadata.labels',
                    labels,
                    '`selector` does not match template `labels`',
                )
            )
        return problems

    def validate_update(self, rt: ResourceType, new: Obj, old: Obj) -> list[Cause]:
        problems = self.validate(rt, new)
        selector = _mapping(new.get('spec')).get('selector')
        if selector != _mapping(old.get('spec')).get('selector'):
            # apps/v1 made the selector immutable (it names the ReplicaSets the Deployment owns).
            problems.append(meta.immutable('spec.selector', selector))
        return problems


_UNHEALTHY_POD_EVICTION_POLICIES = ('AlwaysAllow', 'IfHealthyBudget')
_PERCENT = re.compile(r'[0-9]+%')
_PERCENT_MSG = (
    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or "
    "'93%', regex used for validation is '[0-9]+%')"
)


def _int_or_percent_errors(field: str, value: Any) -> list[Cause]:
    """ValidatePositiveIntOrPercent and IsNotMoreThan100Percent (pkg/apis/apps/validation)."""
    if isinstance(value, str):
        if not _PERCENT.fullmatch(value):
            return [meta.invalid(field, value, _PERCENT_MSG)]
        if int(value[:-1]) > 100:
            return [meta.invalid(field, value, 'must not be greater than 100%')]
    elif isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return [meta.invalid(field, value, 'must be greater than or equal to 0')]
    return []


class PodDisruptionBudgetStrategy(strategies.Strategy):
    """policy/v1 PodDisruptionBudget (pkg/registry/policy/poddisruptionbudget/strategy.go and
    pkg/apis/policy/validation ValidatePodDisruptionBudgetSpec): a spec change bumps
    `metadata.generation`, status is a subresource, zeroed on create; minAvailable and
    maxUnavailable exclude each other, each a non-negative count or a percentage up to 100%."""

    known_fields = frozenset({'spec', 'status'})
    status_subresource = True
    generation: strategies.GenerationPolicy = 'spec'

    def reset_status_on_create(self, obj: Obj) -> None:
        # PodDisruptionBudgetStatus{}: the four counters have no omitempty, the rest has.
        obj['status'] = {
            'disruptionsAllowed': 0,
            'currentHealthy': 0,
            'desiredHealthy': 0,
            'expectedPods': 0,
        }

    def validate(self, rt: ResourceType, obj: Obj) -> list[Cause]:
        spec = _mapping(obj.get('spec'))
        problems: list[Cause] = []
        if spec.get('minAvailable') is not None and spec.get('maxUnavailable') is not None:
            problems.append(
                meta.invalid('spec', spec, 'minAvailable and maxUnavailable cannot be both set')
            )
        for name in ('minAvailable', 'maxUnavailable'):
            if spec.get(name) is not None:
                problems.extend(_int_or_percent_errors(f'spec.{name}', spec[name]))
        selector = spec.get('selector')
        if isinstance(selector, dict):
            try:
                selectors.label_selector_from_object(selector)
            except selectors.SelectorError as e:
                problems.append(meta.invalid('spec.selector', selector, str(e)))
        policy = spec.get('unhealthyPodEvictionPolicy')
        if policy is not None and policy not in _UNHEALTHY_POD_EVICTION_POLICIES:
            problems.append(
                meta.not_supported(
                    'spec.unhealthyPodEvictionPolicy', policy, _UNHEALTHY_POD_EVICTION_POLICIES
                )
            )
        return problems


_SERVICE_TYPES = ('ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName')
_PROTOCOLS = ('TCP', 'UDP', 'SCTP')


class ServiceStrategy(strategies.Strategy):
    """core/v1 Service (pkg/registry/core/service/strategy.go, core/v1 defaults.go and
    ValidateService): type, protocol, targetPort and session affinity defaulted; ports required
    (except ExternalName and headless Services), named when there are several, names unique."""

    known_fields = frozenset({'spec', 'status'})
    status_subresource = True

    def decode(self, rt: ResourceType, obj: Obj) -> tuple[Obj, list[str]]:
        obj, dropped = super().decode(rt, obj)
        spec = obj.get('spec')
        if isinstance(spec, dict):
            spec.setdefault('type', 'ClusterIP')
            spec.setdefault('sessionAffinity', 'None')
            for port in spec.get('ports') or []:
                if isinstance(port, dict):
                    port.setdefault('protocol', 'TCP')
                    if 'port' in port:
                        port.setdefault('targetPort', port['port'])
        return obj, dropped

    def reset_status_on_create(self, obj: Obj) -> None:
        obj['status'] = {'loadBalancer': {}}

    def validate(self, rt: ResourceType, obj: Obj) -> list[Cause]:
        spec = _mapping(obj.get('spec'))
        problems: list[Cause] = []
        kind = spec.get('type', 'ClusterIP')
        if kind not in _SERVICE_TYPES:
            problems.append(meta.not_supported('spec.type', kind, _SERVICE_TYPES))
        ports = spec.get('ports') or []
        headless = spec.get('clusterIP') == 'None'
        if not ports and kind != 'ExternalName' and not headless:
            problems.append(meta.required('spec.ports'))
        names: set[str] = set()
        for index, port in enumerate(ports):
            path = f'spec.ports[{index}]'
            port = _mapping(port)
            name = port.get('name', '')
            if len(ports) > 1 and not name:
                problems.append(meta.required(f'{path}.name'))
            elif name:
                problems.extend(
                    meta.invalid(f'{path}.name', name, m) for m in meta.dns1123_label(name)
                )
                if name in names:
                    problems.append(_duplicate(f'{path}.name', name))
                names.add(name)
            number = port.get('port')
            if not isinstance(number, int) or not 1 <= number <= 65535:
                problems.append(
                    meta.invalid(f'{path}.port', number, 'must be between 1 and 65535, inclusive')
                )
            if port.get('protocol') not in _PROTOCOLS:
                problems.append(
                    meta.not_supported(f'{path}.protocol', port.get('protocol'), _PROTOCOLS)
                )
        return problems


_FAILURE_POLICIES = ('Ignore', 'Fail')
_SIDE_EFFECTS = ('None', 'NoneOnDryRun')
_REVIEW_VERSIONS = ('v1', 'v1beta1')


class ValidatingWebhookConfigurationStrategy(strategies.Strategy):
    """admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration
    (pkg/registry/admissionregistration/validatingwebhookconfiguration/strategy.go, v1 defaults.go
    and ValidateValidatingWebhookConfiguration): the generation moves when `webhooks` change;
    each webhook gets Fail, Equivalent, empty selectors, 10 seconds and port 443 by default, and
    must be uniquely named as a domain of three or more segments, say its side effects and the
    AdmissionReview versions it speaks, and point at exactly one of a URL or a Service."""

    known_fields = frozenset({'webhooks'})
    generation: strategies.GenerationPolicy = 'non-metadata'

    def decode(self, rt: ResourceType, obj: Obj) -> tuple[Obj, list[str]]:
        obj, dropped = super().decode(rt, obj)
        for hook in obj.get('webhooks') or []:
            if not isinstance(hook, dict):
                continue
            hook.setdefault('failurePolicy', 'Fail')
            hook.setdefault('matchPolicy', 'Equivalent')
            hook.setdefault('namespaceSelector', {})
            hook.setdefault('objectSelector', {})
            hook.setdefault('timeoutSeconds', 10)
            for rule in hook.get('rules') or []:
                if isinstance(rule, dict):
                    rule.setdefault('scope', '*')
            service = _mapping(hook.get('clientConfig')).get('service')
            if isinstance(service, dict):
                service.setdefault('port', 443)
        return obj, dropped

    def validate(self, rt: ResourceType, obj: Obj) -> list[Cause]:
        problems: list[Cause] = []
        names: set[str] = set()
        for index, hook in enumerate(obj.get('webhooks') or []):
            path = f'webhooks[{index}]'
            hook = _mapping(hook)
            name = hook.get('name', '')
            if not name:
                problems.append(meta.required(f'{path}.name'))
            else:
                problems.extend(
                    meta.invalid(f'{path}.name', name, m) for m in meta.dns1123_subdomain(name)
                )
                if len(name.split('.')) < 3:
                    problems.append(
                        meta.invalid(
                            f'{path}.name',
                            name,
                            'should be a domain with at least three segments separated by dots',
                        )
                    )
                if name in names:
                    problems.append(_duplicate(f'{path}.name', name))
                names.add(name)
            versions = hook.get('admissionReviewVersions') or []
            if not any(v in _REVIEW_VERSIONS for v in versions):
                problems.append(
                    meta.required(
                        f'{path}.admissionReviewVersions', 'must specify one of v1, v1beta1'
                    )
                )
            side_effects = hook.get('sideEffects')
            if side_effects not in _SIDE_EFFECTS:
                problems.append(
                    meta.not_supported(f'{path}.sideEffects', side_effects, _SIDE_EFFECTS)
                )
            failure = hook.get('failurePolicy')
            if failure not in _FAILURE_POLICIES:
                problems.append(
                    meta.not_supported(f'{path}.failurePolicy', failure, _FAILURE_POLICIES)
                )
            timeout = hook.get('timeoutSeconds')
            if not isinstance(timeout, int) or not 1 <= timeout <= 30:
                problems.append(
                    meta.invalid(
                        f'{path}.timeoutSeconds',
                        timeout,
                        'the timeout value must be between 1 and 30 seconds',
                    )
                )
            config = _mapping(hook.get('clientConfig'))
            if ('url' in config) == ('service' in config):
                problems.append(
                    meta.required(
                        f'{path}.clientConfig', 'exactly one of url or service is required'
                    )
                )
            service = _mapping(config.get('service'))
            if 'service' in config:
                for field in ('namespace', 'name'):
                    if not service.get(field):
                        problems.append(meta.required(f'{path}.clientConfig.service.{field}'))
                port = service.get('port')
                if not isinstance(port, int) or not 1 <= port <= 65535:
                    problems.append(
                        meta.invalid(
                            f'{path}.clientConfig.service.port',
                            port,
                            'port is not valid: must be between 1 and 65535, inclusive',
                        )
                    )
        return problems


# Strategic merge patch keys from the Go struct tags (k8s.io/api apps/v1, core/v1 and
# admissionregistration/v1 types.go): a Deployment's pod template merges like a Pod's spec.
_DEPLOYMENT_MERGE_KEYS = {
    'metadata.finalizers': '',
    'metadata.ownerReferences': 'uid',
    'spec.template.metadata.finalizers': '',
    'spec.template.metadata.ownerReferences': 'uid',
    **{f'spec.template.{k}': v for k, v in _MERGE_KEYS['Pod'].items() if k.startswith('spec.')},
    'status.conditions': 'type',
}
_SERVICE_MERGE_KEYS = {
    'metadata.finalizers': '',
    'metadata.ownerReferences': 'uid',
    'spec.ports': 'port',
    'status.conditions': 'type',
}
_PDB_MERGE_KEYS = {
    'metadata.finalizers': '',
    'metadata.ownerReferences': 'uid',
    # policy/v1 PodDisruptionBudgetSpec.Selector: +patchStrategy=replace (kubernetes#108138). So
    # kubectl's computed patch always carries it, and `kubectl apply` of an unchanged budget
    # says "configured", as against a real server.
    'spec.selector': patch.REPLACE_MAP,
    'status.conditions': 'type',
}
_WEBHOOK_CONFIGURATION_MERGE_KEYS = {
    'metadata.finalizers': '',
    'metadata.ownerReferences': 'uid',
    'webhooks': 'name',
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
            'apps',
            'v1',
            'deployments',
            'deployment',
            'Deployment',
            True,
            DeploymentStrategy(),
            short_names=('deploy',),
            categories=('all',),
            # A real server also serves deployments/scale (kind autoscaling/v1 Scale); the
            # emulator does not, so discovery does not announce it.
            subresources=('status',),
            field_error_style=META_STYLE,
            merge_keys=_DEPLOYMENT_MERGE_KEYS,
        ),
        ResourceType(
            'policy',
            'v1',
            'poddisruptionbudgets',
            'poddisruptionbudget',
            'PodDisruptionBudget',
            True,
            PodDisruptionBudgetStrategy(),
            short_names=('pdb',),
            subresources=('status',),
            field_error_style=META_STYLE,
            merge_keys=_PDB_MERGE_KEYS,
        ),
        ResourceType(
            '',
            'v1',
            'services',
            'service',
            'Service',
            True,
            ServiceStrategy(),
            # DELETE answers with the Service itself (200, or 202 while finalizers hold it):
            # https://kubernetes.io/docs/reference/kubernetes-api/service-resources/service-v1/
            short_names=('svc',),
            categories=('all',),
            subresources=('status',),
            merge_keys=_SERVICE_MERGE_KEYS,
            return_deleted_object=True,
        ),
        ResourceType(
            'admissionregistration.k8s.io',
            'v1',
            'validatingwebhookconfigurations',
            'validatingwebhookconfiguration',
            'ValidatingWebhookConfiguration',
            False,
            ValidatingWebhookConfigurationStrategy(),
            categories=('api-extensions',),
            field_error_style=META_STYLE,
            merge_keys=_WEBHOOK_CONFIGURATION_MERGE_KEYS,
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
    'apps',
    'admissionregistration.k8s.io',
    'apiextensions.k8s.io',
    'authentication.k8s.io',
    'policy',
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

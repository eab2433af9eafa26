"""The default roles and bindings every RBAC cluster starts with (the part API clients notice).

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

https://kubernetes.io/docs/reference/access-authn-authz/rbac/#default-roles-and-role-bindings ;
the content is that of kube-apiserver's bootstrap policy
(plugin/pkg/auth/authorizer/rbac/bootstrappolicy, testdata/cluster-roles.yaml and
cluster-role-bindings.yaml): discovery and public information for every authenticated user, the
service account issuer documents for ServiceAccounts, `cluster-admin` for `system:masters`, the
user-facing `admin`/`edit`/`view` built by aggregation, and `system:auth-delegator` (TokenReview,
SubjectAccessReview). The controllers' and nodes' own roles are left out: nothing in the emulator
acts as a node or a kube-controller-manager.
"""

from __future__ import annotations

from typing import Any, Final

from .rbac import RBAC_GROUP

Obj = dict[str, Any]

_READ: Final = ['get', 'list', 'watch']
_WRITE: Final = ['create', 'delete', 'deletecollection', 'patch', 'update']
_ALL_VERBS: Final = sorted([*_READ, *_WRITE])


def _rule(verbs: list[str], groups: list[str], resources: list[str]) -> Obj:
    return {'apiGroups': groups, 'resources': resources, 'verbs': verbs}


def _urls(verbs: list[str], urls: list[str]) -> Obj:
    return {'nonResourceURLs': urls, 'verbs': verbs}


def _to(role: str) -> dict[str, str]:
    return {f'rbac.authorization.k8s.io/aggregate-to-{role}': 'true'}


def _cluster_role(
    name: str,
    rules: list[Obj] | None,
    *,
    labels: dict[str, str] | None = None,
    aggregate_from: str | None = None,
) -> Obj:
    role: Obj = {
        'apiVersion': f'{RBAC_GROUP}/v1',
        'kind': 'ClusterRole',
        'metadata': {
            'name': name,
            'labels': {'kubernetes.io/bootstrapping': 'rbac-defaults', **(labels or {})},
            'annotations': {'rbac.authorization.kubernetes.io/autoupdate': 'true'},
        },
    }
    if aggregate_from is not None:
        role['aggregationRule'] = {'clusterRoleSelectors': [{'matchLabels': _to(aggregate_from)}]}
    if rules is not None:
        role['rules'] = rules
    return role


def _binding(name: str, role: str, groups: list[str]) -> Obj:
    return {
        'apiVersion': f'{RBAC_GROUP}/v1',
        'kind': 'ClusterRoleBinding',
        'metadata': {
            'name': name,
            'labels': {'kubernetes.io/bootstrapping': 'rbac-defaults'},
            'annotations': {'rbac.authorization.kubernetes.io/autoupdate': 'true'},
        },
        'roleRef': {'apiGroup': RBAC_GROUP, 'kind': 'ClusterRole', 'name': role},
        'subjects': [{'apiGroup': RBAC_GROUP, 'kind': 'Group', 'name': g} for g in groups],
    }


CLUSTER_ROLES: Final[list[Obj]] = [
    _cluster_role(
        'cluster-admin',
        [_rule(['*'], ['*'], ['*']), _urls(['*'], ['*'])],
    ),
    _cluster_role('admin', None, aggregate_from='admin'),
    _cluster_role('edit', None, labels=_to('admin'), aggregate_from='edit'),
    _cluster_role('view', None, labels=_to('edit'), aggregate_from='view'),
    _cluster_role(
        'system:aggregate-to-admin',
        [
            _rule(['create'], ['authorization.k8s.io'], ['localsubjectaccessreviews']),
            _rule(_ALL_VERBS, [RBAC_GROUP], ['rolebindings', 'roles']),
        ],
        labels=_to('admin'),
    ),
    _cluster_role(
        'system:aggregate-to-edit',
        [
            _rule(
                _READ,
                [''],
                [
                    'pods/attach',
                    'pods/exec',
                    'pods/portforward',
                    'pods/proxy',
                    'secrets',
                    'services/proxy',
                ],
            ),
            _rule(['impersonate'], [''], ['serviceaccounts']),
            _rule(
                _WRITE,
                [''],
                ['pods', 'pods/attach', 'pods/exec', 'pods/portforward', 'pods/proxy'],
            ),
            _rule(['create'], [''], ['pods/eviction']),
            _rule(
                _WRITE,
                [''],
                [
                    'configmaps',
                    'events',
                    'persistentvolumeclaims',
                    'replicationcontrollers',
                    'replicationcontrollers/scale',
                    'secrets',
                    'serviceaccounts',
                    'services',
                    'services/proxy',
                ],
            ),
            _rule(['create'], [''], ['serviceaccounts/token']),
            _rule(
                _WRITE,
                ['apps'],
                [
                    'daemonsets',
                    'deployments',
                    'deployments/rollback',
                    'deployments/scale',
                    'replicasets',
                    'replicasets/scale',
                    'statefulsets',
                    'statefulsets/scale',
                ],
            ),
            _rule(_WRITE, ['autoscaling'], ['horizontalpodautoscalers']),
            _rule(_WRITE, ['batch'], ['cronjobs', 'jobs']),
            _rule(_WRITE, ['policy'], ['poddisruptionbudgets']),
            _rule(_WRITE, ['networking.k8s.io'], ['ingresses', 'networkpolicies']),
            _rule(_ALL_VERBS, ['coordination.k8s.io'], ['leases']),
        ],
        labels=_to('edit'),
    ),
    _cluster_role(
        'system:aggregate-to-view',
        [
            _rule(
                _READ,
                [''],
                [
                    'configmaps',
                    'endpoints',
                    'persistentvolumeclaims',
                    'persistentvolumeclaims/status',
                    'pods',
                    'replicationcontrollers',
                    'replicationcontrollers/scale',
                    'serviceaccounts',
                    'services',
                    'services/status',
                ],
            ),
            _rule(
                _READ,
                [''],
                [
                    'bindings',
                    'events',
                    'limitranges',
                    'namespaces/status',
                    'pods/log',
                    'pods/status',
                    'replicationcontrollers/status',
                    'resourcequotas',
                    'resourcequotas/status',
                ],
            ),
            _rule(_READ, [''], ['namespaces']),
            _rule(_READ, ['discovery.k8s.io'], ['endpointslices']),
            _rule(
                _READ,
                ['apps'],
                [
                    'controllerrevisions',
                    'daemonsets',
                    'daemonsets/status',
                    'deployments',
                    'deployments/scale',
                    'deployments/status',
                    'replicasets',
                    'replicasets/scale',
                    'replicasets/status',
                    'statefulsets',
                    'statefulsets/scale',
                    'statefulsets/status',
                ],
            ),
            _rule(
                _READ,
                ['autoscaling'],
                ['horizontalpodautoscalers', 'horizontalpodautoscalers/status'],
            ),
            _rule(_READ, ['batch'], ['cronjobs', 'cronjobs/status', 'jobs', 'jobs/status']),
            _rule(_READ, ['policy'], ['poddisruptionbudgets', 'poddisruptionbudgets/status']),
            _rule(
                _READ, ['networking.k8s.io'], ['ingresses', 'ingresses/status', 'networkpolicies']
            ),
        ],
        labels=_to('view'),
    ),
    _cluster_role(
        'system:auth-delegator',
        [
            _rule(['create'], ['authentication.k8s.io'], ['tokenreviews']),
            _rule(['create'], ['authorization.k8s.io'], ['subjectaccessreviews']),
        ],
    ),
    _cluster_role(
        'system:basic-user',
        [
            _rule(
                ['create'],
                ['authorization.k8s.io'],
                ['selfsubjectaccessreviews', 'selfsubjectrulesreviews'],
            ),
            _rule(['create'], ['authentication.k8s.io'], ['selfsubjectreviews']),
        ],
    ),
    _cluster_role(
        'system:discovery',
        [
            _urls(
                ['get'],
                [
                    '/api',
                    '/api/*',
                    '/apis',
                    '/apis/*',
                    '/healthz',
                    '/livez',
                    '/openapi',
                    '/openapi/*',
                    '/readyz',
                    '/version',
                    '/version/',
                ],
            )
        ],
    ),
    _cluster_role(
        'system:public-info-viewer',
        [_urls(['get'], ['/healthz', '/livez', '/readyz', '/version', '/version/'])],
    ),
    _cluster_role(
        'system:service-account-issuer-discovery',
        [_urls(['get'], ['/.well-known/openid-configuration', '/openid/v1/jwks'])],
    ),
]
"""The bootstrap ClusterRoles the emulator creates (aggregated ones are filled by aggregation)."""

CLUSTER_ROLE_BINDINGS: Final[list[Obj]] = [
    _binding('cluster-admin', 'cluster-admin', ['system:masters']),
    _binding('system:basic-user', 'system:basic-user', ['system:authenticated']),
    _binding('system:discovery', 'system:discovery', ['system:authenticated']),
    _binding(
        'system:public-info-viewer',
        'system:public-info-viewer',
        ['system:authenticated', 'system:unauthenticated'],
    ),
    _binding(
        'system:service-account-issuer-discovery',
        'system:service-account-issuer-discovery',
        ['system:serviceaccounts'],
    ),
]
"""The bootstrap ClusterRoleBindings."""

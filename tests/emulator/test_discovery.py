"""Discovery: what a client learns about the served resources before it uses them."""

from __future__ import annotations

import pytest
from kubernetes import client, dynamic

from tenure_devtools.kubeapi import KubeApiEmulator

from .conftest import WIDGETS, http


def _by_name(resource_list: dict[str, object]) -> dict[str, dict[str, object]]:
    return {r['name']: r for r in resource_list['resources']}  # type: ignore[index,attr-defined]


def test_core_group_announces_builtins_with_their_verbs_and_short_names(
    emulator: KubeApiEmulator,
) -> None:
    """https://kubernetes.io/docs/reference/using-api/api-concepts/#discovery-api:
    `/api` lists the core versions, `/api/v1` is an APIResourceList with subresource entries."""
    versions = http(emulator, 'GET', '/api').body
    assert versions['kind'] == 'APIVersions'
    assert versions['versions'] == ['v1']
    resource_list = http(emulator, 'GET', '/api/v1').body
    assert resource_list['kind'] == 'APIResourceList'
    assert resource_list['groupVersion'] == 'v1'
    resources = _by_name(resource_list)
    assert resources['namespaces']['namespaced'] is False
    assert resources['namespaces']['shortNames'] == ['ns']
    assert resources['serviceaccounts'] == {
        'name': 'serviceaccounts',
        'singularName': 'serviceaccount',
        'namespaced': True,
        'kind': 'ServiceAccount',
        'verbs': [
            'create',
            'delete',
            'deletecollection',
            'get',
            'list',
            'patch',
            'update',
            'watch',
        ],
        'shortNames': ['sa'],
    }
    token = resources['serviceaccounts/token']
    assert (token['group'], token['version'], token['kind'], token['verbs']) == (
        'authentication.k8s.io',
        'v1',
        'TokenRequest',
        ['create'],
    )
    assert resources['pods/status']['verbs'] == ['get', 'patch', 'update']
    assert resources['namespaces/finalize']['verbs'] == ['update']
    for name in ('secrets', 'configmaps', 'events', 'pods'):
        assert name in resources


@pytest.mark.parametrize(
    ('group', 'resources'),
    [
        pytest.param(
            'rbac.authorization.k8s.io',
            {'roles', 'rolebindings', 'clusterroles', 'clusterrolebindings'},
            id='rbac',
        ),
        pytest.param('authentication.k8s.io', {'tokenreviews'}, id='authentication'),
        pytest.param('coordination.k8s.io', {'leases'}, id='coordination'),
        pytest.param('events.k8s.io', {'events'}, id='events'),
        pytest.param(
            'apiextensions.k8s.io',
            {'customresourcedefinitions', 'customresourcedefinitions/status'},
            id='apiextensions',
        ),
    ],
)
def test_named_groups_are_discoverable(
    emulator: KubeApiEmulator, group: str, resources: set[str]
) -> None:
    """https://kubernetes.io/docs/reference/using-api/api-concepts/#discovery-api:
    `/apis` (APIGroupList), `/apis/<group>` (APIGroup) and `/apis/<group>/<version>`."""
    groups = {g['name']: g for g in http(emulator, 'GET', '/apis').body['groups']}
    assert groups[group]['preferredVersion'] == {'groupVersion': f'{group}/v1', 'version': 'v1'}
    single = http(emulator, 'GET', f'/apis/{group}').body
    assert single['kind'] == 'APIGroup'
    assert single['name'] == group
    listed = http(emulator, 'GET', f'/apis/{group}/v1').body
    assert listed['groupVersion'] == f'{group}/v1'
    assert resources <= set(_by_name(listed))


def test_tokenreviews_can_only_be_created(emulator: KubeApiEmulator) -> None:
    """TokenReview is create-only (authentication.k8s.io/v1 API reference)."""
    resources = _by_name(http(emulator, 'GET', '/apis/authentication.k8s.io/v1').body)
    assert resources['tokenreviews']['verbs'] == ['create']
    answer = http(emulator, 'GET', '/apis/authentication.k8s.io/v1/tokenreviews')
    assert answer.status == 405
    assert answer.body['reason'] == 'MethodNotAllowed'


def test_a_created_crd_becomes_established_and_discoverable(
    emulator: KubeApiEmulator, api_client: client.ApiClient, widgets: str
) -> None:
    """https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#create-a-customresourcedefinition:
    the CRD gets NamesAccepted and Established conditions and its resource is served."""
    crd = client.ApiextensionsV1Api(api_client).read_custom_resource_definition(widgets)
    conditions = {c.type: (c.status, c.reason) for c in crd.status.conditions}
    assert conditions['NamesAccepted'] == ('True', 'NoConflicts')
    assert conditions['Established'] == ('True', 'InitialNamesAccepted')
    assert crd.status.accepted_names.kind == 'Widget'
    assert crd.status.stored_versions == ['v1']
    assert 'customresourcecleanup.apiextensions.k8s.io' in crd.metadata.finalizers
    assert crd.metadata.generation == 1
    groups = {g['name'] for g in http(emulator, 'GET', '/apis').body['groups']}
    assert 'example.com' in groups
    resources = _by_name(http(emulator, 'GET', '/apis/example.com/v1').body)
    assert resources['widgets']['kind'] == 'Widget'
    assert resources['widgets']['singularName'] == 'widget'
    assert resources['widgets']['shortNames'] == ['wd']
    assert resources['widgets']['categories'] == ['gadgets']
    assert resources['widgets/status']['verbs'] == ['get', 'patch', 'update']


def test_the_dynamic_client_finds_resources_through_discovery(
    api_client: client.ApiClient, widgets: str
) -> None:
    """The official client's discovery (kubernetes.dynamic) resolves built-ins and CRDs."""
    found = dynamic.DynamicClient(api_client)
    widget_type = found.resources.get(api_version='example.com/v1', kind='Widget')
    assert widget_type.name == 'widgets'
    assert widget_type.namespaced is True
    secrets = found.resources.get(api_version='v1', kind='Secret')
    assert secrets.name == 'secrets'


def test_version_and_health_endpoints_answer(emulator: KubeApiEmulator) -> None:
    """`/version` (version.Info), and the health endpoints `/healthz`, `/readyz`, `/livez`
    (https://kubernetes.io/docs/reference/using-api/health-checks/)."""
    version = http(emulator, 'GET', '/version').body
    assert http(emulator, 'GET', '/version/').body == version  # go-restful serves both
    assert version['major'] == '1'
    assert version['gitVersion'].startswith('v1.')
    for path in ('/healthz', '/readyz', '/livez'):
        answer = http(emulator, 'GET', path)
        assert (answer.status, answer.body) == (200, 'ok')


@pytest.mark.parametrize(
    'path',
    [
        pytest.param('/apis/nope.example.com/v1', id='unknown-group'),
        pytest.param('/apis/example.com/v9/widgets', id='unknown-version'),
        pytest.param('/api/v1/nothings', id='unknown-resource'),
    ],
)
def test_unknown_api_paths_answer_a_404_status(
    emulator: KubeApiEmulator, widgets: str, path: str
) -> None:
    """Unknown resources are 404 NotFound `Status` objects
    (https://kubernetes.io/docs/reference/using-api/api-concepts/#status-object)."""
    answer = http(emulator, 'GET', path)
    assert answer.status == 404
    assert answer.body['kind'] == 'Status'
    assert answer.body['reason'] == 'NotFound'
    assert WIDGETS  # the CRD exists: the 404 is about the path, not a missing group


def test_openapi_v3_tells_kubectl_that_the_server_validates_fields(
    emulator: KubeApiEmulator, widgets: str
) -> None:
    """https://kubernetes.io/docs/concepts/overview/kubernetes-api/#openapi-v3: a root index of
    group/version documents; kubectl looks for `fieldValidation` on the PATCH operation of the
    kind it applies (cli-runtime query_param_verifier_v3.go)."""
    root = http(emulator, 'GET', '/openapi/v3').body
    url = root['paths']['apis/example.com/v1']['serverRelativeURL']
    assert url.startswith('/openapi/v3/apis/example.com/v1?hash=')
    assert 'api/v1' in root['paths']
    document = http(emulator, 'GET', url).body
    patch = document['paths']['/apis/example.com/v1/namespaces/{namespace}/widgets/{name}']['patch']
    assert patch['x-kubernetes-group-version-kind'] == {
        'group': 'example.com',
        'version': 'v1',
        'kind': 'Widget',
    }
    assert 'fieldValidation' in [p['name'] for p in patch['parameters']]
    schema = document['components']['schemas']['com.example.v1.Widget']
    assert schema['properties']['spec']['required'] == ['size', 'color']
    assert http(emulator, 'GET', '/openapi/v3/apis/nope.example.com/v1').status == 404

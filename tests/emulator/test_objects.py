"""Creating, reading, updating objects: server-set metadata, resourceVersions, errors."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from tenure_devtools.kubeapi import KubeApiEmulator

from .conftest import WIDGET_PATH, http, widget


def test_created_objects_get_server_set_metadata(core: client.CoreV1Api, namespace: str) -> None:
    """https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions and
    ObjectMeta: uid, creationTimestamp and resourceVersion are set by the server."""
    created = core.create_namespaced_config_map(
        namespace,
        {
            'metadata': {
                'name': 'settings',
                'uid': 'mine',
                'creationTimestamp': '2001-01-01T00:00:00Z',
            }
        },
    )
    assert created.metadata.uid
    assert created.metadata.uid != 'mine'
    assert created.metadata.creation_timestamp.year > 2001
    assert int(created.metadata.resource_version) > 0
    assert created.metadata.namespace == namespace
    # Built-ins without spec semantics carry no generation.
    assert created.metadata.generation is None


def test_generate_name_appends_five_random_characters(
    core: client.CoreV1Api, namespace: str
) -> None:
    """https://kubernetes.io/docs/reference/using-api/api-concepts/#generated-values"""
    first = core.create_namespaced_secret(namespace, {'metadata': {'generateName': 'token-'}})
    second = core.create_namespaced_secret(namespace, {'metadata': {'generateName': 'token-'}})
    for created in (first, second):
        assert created.metadata.name.startswith('token-')
        assert len(created.metadata.name) == len('token-') + 5
    assert first.metadata.name != second.metadata.name


def test_resource_versions_grow_across_all_resources(
    core: client.CoreV1Api, namespace: str
) -> None:
    """resourceVersion is one cluster-wide, monotonic sequence (etcd revision); a list carries
    the version it was read at (https://kubernetes.io/docs/reference/using-api/api-concepts/#resourceversion-in-metadata)."""
    secret = core.create_namespaced_secret(namespace, {'metadata': {'name': 'a'}})
    config_map = core.create_namespaced_config_map(namespace, {'metadata': {'name': 'b'}})
    assert int(config_map.metadata.resource_version) > int(secret.metadata.resource_version)
    listed = core.list_namespaced_secret(namespace)
    assert int(listed.metadata.resource_version) >= int(config_map.metadata.resource_version)


def test_creating_an_existing_name_is_409_already_exists(
    emulator: KubeApiEmulator, namespace: str
) -> None:
    """Errors are `Status` objects (https://kubernetes.io/docs/reference/using-api/api-concepts/#status-object)."""
    path = f'/api/v1/namespaces/{namespace}/configmaps'
    assert http(emulator, 'POST', path, {'metadata': {'name': 'twice'}}).status == 201
    answer = http(emulator, 'POST', path, {'metadata': {'name': 'twice'}})
    assert answer.status == 409
    assert answer.body == {
        'kind': 'Status',
        'apiVersion': 'v1',
        'metadata': {},
        'status': 'Failure',
        'message': 'configmaps "twice" already exists',
        'reason': 'AlreadyExists',
        'details': {'name': 'twice', 'kind': 'configmaps'},
        'code': 409,
    }


def test_reading_a_missing_object_is_404_not_found(
    emulator: KubeApiEmulator, namespace: str, widgets: str
) -> None:
    """NotFound names the resource (and group for named groups) in message and details."""
    answer = http(emulator, 'GET', WIDGET_PATH.format(ns=namespace) + '/ghost')
    assert answer.status == 404
    assert answer.body['message'] == 'widgets.example.com "ghost" not found'
    assert answer.body['details'] == {'name': 'ghost', 'group': 'example.com', 'kind': 'widgets'}


def test_creating_in_a_missing_namespace_is_404_for_the_namespace(core: client.CoreV1Api) -> None:
    """The NamespaceLifecycle admission plugin
    (https://kubernetes.io/docs/reference/access-authn-authz/admission-controllers/#namespacelifecycle)."""
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_secret('no-such-namespace', {'metadata': {'name': 'x'}})
    assert caught.value.status == 404
    assert json.loads(caught.value.body)['message'] == 'namespaces "no-such-namespace" not found'


@pytest.mark.parametrize(
    ('name', 'field'),
    [
        pytest.param('Upper', 'metadata.name', id='uppercase-name'),
        pytest.param('', 'metadata.name', id='no-name'),
    ],
)
def test_invalid_names_are_422_with_causes(
    emulator: KubeApiEmulator, namespace: str, name: str, field: str
) -> None:
    """Names are DNS subdomains (https://kubernetes.io/docs/concepts/overview/working-with-objects/names/);
    422 Invalid lists each problem in details.causes."""
    answer = http(
        emulator, 'POST', f'/api/v1/namespaces/{namespace}/secrets', {'metadata': {'name': name}}
    )
    assert answer.status == 422
    assert answer.body['reason'] == 'Invalid'
    assert answer.body['message'].startswith(f'Secret "{name}" is invalid: {field}: ')
    assert answer.body['details']['causes'][0]['field'] == field


def test_labels_must_be_valid(emulator: KubeApiEmulator, namespace: str) -> None:
    """https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set"""
    body = {'metadata': {'name': 'x', 'labels': {'ok': 'not valid!'}}}
    answer = http(emulator, 'POST', f'/api/v1/namespaces/{namespace}/configmaps', body)
    assert answer.status == 422
    assert answer.body['details']['causes'][0]['field'] == 'metadata.labels'


def test_resource_version_on_create_is_refused(emulator: KubeApiEmulator, namespace: str) -> None:
    """etcd3 store: "resourceVersion should not be set on objects to be created"."""
    body = {'metadata': {'name': 'x', 'resourceVersion': '5'}}
    answer = http(emulator, 'POST', f'/api/v1/namespaces/{namespace}/configmaps', body)
    assert answer.status == 500
    assert answer.body['message'] == 'resourceVersion should not be set on objects to be created'


def test_update_with_a_stale_resource_version_is_409_conflict(
    core: client.CoreV1Api, namespace: str
) -> None:
    """Optimistic concurrency (https://kubernetes.io/docs/reference/using-api/api-concepts/#conflicts)."""
    created = core.create_namespaced_config_map(
        namespace, {'metadata': {'name': 'c'}, 'data': {'a': '1'}}
    )
    created.data = {'a': '2'}
    core.replace_namespaced_config_map('c', namespace, created)
    created.data = {'a': '3'}
    with pytest.raises(client.ApiException) as caught:
        core.replace_namespaced_config_map('c', namespace, created)
    assert caught.value.status == 409
    status = json.loads(caught.value.body)
    assert status['reason'] == 'Conflict'
    assert status['message'] == (
        'Operation cannot be fulfilled on configmaps "c": the object has been modified; please '
        'apply your changes to the latest version and try again'
    )


def test_update_without_resource_version_is_unconditional_for_builtins_only(
    emulator: KubeApiEmulator, namespace: str, widgets: str
) -> None:
    """ConfigMap's strategy allows unconditional updates; custom resources require the
    resourceVersion (customresource strategy AllowUnconditionalUpdate is false)."""
    path = f'/api/v1/namespaces/{namespace}/configmaps'
    http(emulator, 'POST', path, {'metadata': {'name': 'c'}})
    answer = http(emulator, 'PUT', path + '/c', {'metadata': {'name': 'c'}, 'data': {'k': 'v'}})
    assert answer.status == 200
    assert answer.body['data'] == {'k': 'v'}
    widgets_path = WIDGET_PATH.format(ns=namespace)
    http(emulator, 'POST', widgets_path, widget('w'))
    answer = http(emulator, 'PUT', widgets_path + '/w', widget('w', size=4))
    assert answer.status == 422
    assert answer.body['message'] == (
        'widgets.example.com "w" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
        'must be specified for an update'
    )


def test_update_with_a_different_name_in_the_body_is_400(
    emulator: KubeApiEmulator, namespace: str
) -> None:
    """The update handler refuses a body naming another object than the URL."""
    path = f'/api/v1/namespaces/{namespace}/configmaps'
    http(emulator, 'POST', path, {'metadata': {'name': 'c'}})
    answer = http(emulator, 'PUT', path + '/c', {'metadata': {'name': 'd'}})
    assert answer.status == 400
    assert (
        answer.body['message']
        == 'the name of the object (d) does not match the name on the URL (c)'
    )


def test_uid_is_immutable(emulator: KubeApiEmulator, namespace: str) -> None:
    """ValidateObjectMetaUpdate: metadata.uid is immutable."""
    path = f'/api/v1/namespaces/{namespace}/configmaps'
    created = http(emulator, 'POST', path, {'metadata': {'name': 'c'}}).body
    created['metadata']['uid'] = 'another'
    answer = http(emulator, 'PUT', path + '/c', created)
    assert answer.status == 422
    assert answer.body['details']['causes'] == [
        {
            'reason': 'FieldValueInvalid',
            'message': 'Invalid value: "another": field is immutable',
            'field': 'metadata.uid',
        }
    ]


def test_unchanged_writes_keep_the_resource_version(core: client.CoreV1Api, namespace: str) -> None:
    """A no-op update is not written (no new resourceVersion, no watch event)."""
    created = core.create_namespaced_config_map(
        namespace, {'metadata': {'name': 'c'}, 'data': {'a': '1'}}
    )
    replaced = core.replace_namespaced_config_map('c', namespace, created)
    patched = core.patch_namespaced_config_map('c', namespace, {'data': {'a': '1'}})
    assert replaced.metadata.resource_version == created.metadata.resource_version
    assert patched.metadata.resource_version == created.metadata.resource_version


@pytest.mark.parametrize(
    'method',
    [
        pytest.param('POST', id='create'),
        pytest.param('PUT', id='update'),
        pytest.param('DELETE', id='delete'),
    ],
)
def test_dry_run_validates_without_persisting(
    emulator: KubeApiEmulator, namespace: str, method: str
) -> None:
    """https://kubernetes.io/docs/reference/using-api/api-concepts/#dry-run"""
    path = f'/api/v1/namespaces/{namespace}/configmaps'
    if method != 'POST':
        http(emulator, 'POST', path, {'metadata': {'name': 'c'}, 'data': {'a': '1'}})
    before = http(emulator, 'GET', path).body
    target = path if method == 'POST' else path + '/c'
    body = {'metadata': {'name': 'c'}, 'data': {'a': '2'}} if method != 'DELETE' else None
    answer = http(emulator, method, target + '?dryRun=All', body)
    assert answer.status in (200, 201)
    after = http(emulator, 'GET', path).body
    assert after['items'] == before['items']
    assert after['metadata']['resourceVersion'] == before['metadata']['resourceVersion']
    invalid = http(emulator, method, target + '?dryRun=Sometimes', body)
    assert invalid.status == 422


def test_list_items_of_builtins_omit_kind_but_custom_resources_keep_it(
    core: client.CoreV1Api, emulator: KubeApiEmulator, namespace: str, widgets: str
) -> None:
    """Typed lists are encoded without per-item TypeMeta; custom resource lists are unstructured
    and keep it (clients such as kopf fill it in from the list kind)."""
    core.create_namespaced_config_map(namespace, {'metadata': {'name': 'c'}})
    listed = http(emulator, 'GET', f'/api/v1/namespaces/{namespace}/configmaps').body
    assert listed['kind'] == 'ConfigMapList'
    assert 'kind' not in listed['items'][0]
    http(emulator, 'POST', WIDGET_PATH.format(ns=namespace), widget('w'))
    listed = http(emulator, 'GET', WIDGET_PATH.format(ns=namespace)).body
    assert listed['kind'] == 'WidgetList'
    assert listed['items'][0]['kind'] == 'Widget'
    assert listed['items'][0]['apiVersion'] == 'example.com/v1'


def test_unknown_fields_of_builtins_are_dropped_with_a_warning(
    emulator: KubeApiEmulator, namespace: str
) -> None:
    """https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation: by
    default (Warn) unknown fields are dropped and reported in `Warning` headers; Strict refuses."""
    path = f'/api/v1/namespaces/{namespace}/configmaps'
    answer = http(
        emulator, 'POST', path, {'metadata': {'name': 'c', 'colour': 'x'}, 'shape': 'round'}
    )
    assert answer.status == 201
    assert 'shape' not in answer.body
    assert 'colour' not in answer.body['metadata']
    assert sorted(answer.headers.get_all('Warning')) == [
        '299 - "unknown field \\"metadata.colour\\""',
        '299 - "unknown field \\"shape\\""',
    ]
    strict = http(
        emulator,
        'POST',
        path + '?fieldValidation=Strict',
        {'metadata': {'name': 'd'}, 'shape': 'round'},
    )
    assert strict.status == 400
    assert strict.body['message'] == 'strict decoding error: unknown field "shape"'

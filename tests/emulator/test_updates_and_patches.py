"""PATCH requests: the media types, preconditions and failures clients rely on."""

from __future__ import annotations

import pytest
from kubernetes import client

from tenure_devtools.kubeapi import KubeApiEmulator

from .conftest import WIDGET_PATH, http, widget

MERGE = 'application/merge-patch+json'
JSON_PATCH = 'application/json-patch+json'
STRATEGIC = 'application/strategic-merge-patch+json'
APPLY = 'application/apply-patch+yaml'
PROTOBUF = 'application/vnd.kubernetes.protobuf'


def _config_map(emulator: KubeApiEmulator, namespace: str, **fields: object) -> str:
    path = f'/api/v1/namespaces/{namespace}/configmaps'
    http(emulator, 'POST', path, {'metadata': {'name': 'c', 'labels': {'keep': 'yes'}}, **fields})
    return path + '/c'


def test_merge_patch_merges_maps_and_null_deletes(
    emulator: KubeApiEmulator, namespace: str
) -> None:
    """https://kubernetes.io/docs/reference/using-api/api-concepts/#patch-and-apply (RFC 7386)."""
    path = _config_map(emulator, namespace, data={'a': '1', 'b': '2'})
    answer = http(emulator, 'PATCH', path, {'data': {'a': None, 'c': '3'}}, content_type=MERGE)
    assert answer.status == 200
    assert answer.body['data'] == {'b': '2', 'c': '3'}
    assert answer.body['metadata']['labels'] == {'keep': 'yes'}


def test_json_patch_with_a_failing_test_is_422(emulator: KubeApiEmulator, namespace: str) -> None:
    """RFC 6902 `test` op: kopf guards its JSON patches with a test of metadata.resourceVersion
    and expects 422 when the object moved on."""
    path = _config_map(emulator, namespace, data={'a': '1'})
    rv = http(emulator, 'GET', path).body['metadata']['resourceVersion']
    ok = [
        {'op': 'test', 'path': '/metadata/resourceVersion', 'value': rv},
        {'op': 'add', 'path': '/data/b', 'value': '2'},
    ]
    answer = http(emulator, 'PATCH', path, ok, content_type=JSON_PATCH)
    assert answer.status == 200
    assert answer.body['data'] == {'a': '1', 'b': '2'}
    stale = [
        {'op': 'test', 'path': '/metadata/resourceVersion', 'value': rv},
        {'op': 'remove', 'path': '/data/a'},
    ]
    answer = http(emulator, 'PATCH', path, stale, content_type=JSON_PATCH)
    assert answer.status == 422
    assert answer.body['reason'] == 'Invalid'


def test_strategic_merge_patch_merges_lists_by_key_on_builtins(
    core: client.CoreV1Api, namespace: str
) -> None:
    """https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/:
    ServiceAccount.secrets merges by name; the Python client sends dict patches as strategic."""
    core.create_namespaced_service_account(
        namespace, {'metadata': {'name': 'robot'}, 'secrets': [{'name': 'one'}]}
    )
    patched = core.patch_namespaced_service_account(
        'robot', namespace, {'secrets': [{'name': 'two'}]}
    )
    assert sorted(s.name for s in patched.secrets) == ['one', 'two']


def test_strategic_merge_patch_on_a_custom_resource_is_415(
    emulator: KubeApiEmulator, namespace: str, widgets: str
) -> None:
    """Custom resources do not support strategic merge patch
    (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#advanced-topics)."""
    path = WIDGET_PATH.format(ns=namespace)
    http(emulator, 'POST', path, widget('w'))
    answer = http(emulator, 'PATCH', path + '/w', {'spec': {'size': 4}}, content_type=STRATEGIC)
    assert answer.status == 415
    assert answer.body['reason'] == 'UnsupportedMediaType'
    assert answer.body['message'] == (
        'the body of the request was in an unknown format - accepted media types include: '
        'application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml'
    )


@pytest.mark.parametrize(
    ('content_type', 'status'),
    [
        pytest.param(APPLY, 415, id='server-side-apply-not-implemented'),
        pytest.param(PROTOBUF, 415, id='protobuf'),
        pytest.param('text/plain', 415, id='unknown'),
    ],
)
def test_unsupported_patch_types_are_415(
    emulator: KubeApiEmulator, namespace: str, content_type: str, status: int
) -> None:
    """Unsupported media types are refused with a Status, never a crash."""
    path = _config_map(emulator, namespace)
    answer = http(emulator, 'PATCH', path, raw=b'{"data":{"a":"1"}}', content_type=content_type)
    assert answer.status == status
    assert answer.body['kind'] == 'Status'
    assert answer.body['reason'] == 'UnsupportedMediaType'


def test_resource_version_in_a_patch_is_a_precondition(
    emulator: KubeApiEmulator, namespace: str
) -> None:
    """https://kubernetes.io/docs/reference/using-api/api-concepts/#patch-and-apply: a
    metadata.resourceVersion in the patch must match the stored one, or 409 Conflict."""
    path = _config_map(emulator, namespace)
    rv = http(emulator, 'GET', path).body['metadata']['resourceVersion']
    http(emulator, 'PATCH', path, {'data': {'a': '1'}}, content_type=MERGE)
    answer = http(
        emulator,
        'PATCH',
        path,
        {'metadata': {'resourceVersion': rv}, 'data': {'a': '2'}},
        content_type=MERGE,
    )
    assert answer.status == 409
    assert answer.body['reason'] == 'Conflict'


def test_patching_a_missing_object_is_404(emulator: KubeApiEmulator, namespace: str) -> None:
    answer = http(
        emulator,
        'PATCH',
        f'/api/v1/namespaces/{namespace}/configmaps/nope',
        {'data': {}},
        content_type=MERGE,
    )
    assert answer.status == 404


def test_malformed_patch_json_is_400(emulator: KubeApiEmulator, namespace: str) -> None:
    path = _config_map(emulator, namespace)
    answer = http(emulator, 'PATCH', path, raw=b'{not json', content_type=MERGE)
    assert answer.status == 400
    assert answer.body['reason'] == 'BadRequest'

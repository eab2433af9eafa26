"""Content negotiation: JSON and YAML in and out, protobuf refused, tables for kubectl."""

from __future__ import annotations

import urllib.request

import pytest
import yaml

from tenure_devtools.kubeapi import KubeApiEmulator

from .conftest import http

PROTOBUF = 'application/vnd.kubernetes.protobuf'
TABLE = (
    'application/json;as=Table;v=v1;g=meta.k8s.io,'
    'application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json'
)


@pytest.mark.parametrize(
    'content_type',
    [pytest.param(PROTOBUF, id='protobuf'), pytest.param('text/csv', id='unknown')],
)
def test_bodies_in_unsupported_media_types_are_415(
    emulator: KubeApiEmulator, namespace: str, content_type: str
) -> None:
    """https://kubernetes.io/docs/reference/using-api/api-concepts/#alternate-representations-of-resources:
    the emulator speaks JSON and YAML; anything else is 415 UnsupportedMediaType, never a crash."""
    answer = http(
        emulator,
        'POST',
        f'/api/v1/namespaces/{namespace}/configmaps',
        raw=b'\x0a\x02k8s\x00',
        content_type=content_type,
    )
    assert answer.status == 415
    assert answer.body['reason'] == 'UnsupportedMediaType'
    assert 'application/json' in answer.body['message']


def test_a_protobuf_accept_header_falls_back_to_json(emulator: KubeApiEmulator) -> None:
    """Clients ask for protobuf with a JSON fallback (`application/vnd.kubernetes.protobuf,
    application/json`); kinds without protobuf answer JSON."""
    answer = http(
        emulator, 'GET', '/api/v1/namespaces/default', accept=f'{PROTOBUF},application/json'
    )
    assert answer.headers['Content-Type'].startswith('application/json')
    assert answer.body['kind'] == 'Namespace'
    only = http(emulator, 'GET', '/api/v1/namespaces/default', accept=PROTOBUF)
    assert only.headers['Content-Type'].startswith('application/json')


def test_an_unacceptable_accept_header_is_406(emulator: KubeApiEmulator) -> None:
    answer = http(emulator, 'GET', '/api/v1/namespaces/default', accept='text/html')
    assert answer.status == 406
    assert answer.body['reason'] == 'NotAcceptable'


def test_yaml_in_and_out(emulator: KubeApiEmulator, namespace: str) -> None:
    """application/yaml is accepted for bodies and served on request."""
    body = yaml.safe_dump(
        {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'y'}, 'data': {'k': 'v'}}
    ).encode()
    created = http(
        emulator,
        'POST',
        f'/api/v1/namespaces/{namespace}/configmaps',
        raw=body,
        content_type='application/yaml',
    )
    assert created.status == 201
    request = urllib.request.Request(
        f'{emulator.url}/api/v1/namespaces/{namespace}/configmaps/y',
        headers={'Accept': 'application/yaml'},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers['Content-Type'].startswith('application/yaml')
        assert yaml.safe_load(response.read())['data'] == {'k': 'v'}


def test_builtins_render_as_tables_with_name_and_age(
    emulator: KubeApiEmulator, namespace: str
) -> None:
    """https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables"""
    http(
        emulator,
        'POST',
        f'/api/v1/namespaces/{namespace}/secrets',
        {'metadata': {'name': 's'}, 'stringData': {'a': 'b'}},
    )
    table = http(emulator, 'GET', f'/api/v1/namespaces/{namespace}/secrets', accept=TABLE).body
    assert table['kind'] == 'Table'
    assert [c['name'] for c in table['columnDefinitions']] == ['Name', 'Type', 'Data', 'Age']
    assert table['rows'][0]['cells'][:3] == ['s', 'Opaque', 1]
    single = http(emulator, 'GET', '/api/v1/namespaces/default', accept=TABLE).body
    assert single['rows'][0]['cells'][:2] == ['default', 'Active']


def test_oversized_bodies_are_413(emulator: KubeApiEmulator, namespace: str) -> None:
    """The apiserver limits request bodies (3 MiB)."""
    huge = b'{"metadata":{"name":"big"},"data":{"k":"' + b'x' * (3 * 1024 * 1024) + b'"}}'
    answer = http(emulator, 'POST', f'/api/v1/namespaces/{namespace}/configmaps', raw=huge)
    assert answer.status == 413
    assert answer.body['reason'] == 'RequestEntityTooLarge'


def test_paths_outside_the_api_are_plain_404(emulator: KubeApiEmulator) -> None:
    answer = http(emulator, 'GET', '/nowhere')
    assert (answer.status, answer.body) == (404, '404 page not found\n')

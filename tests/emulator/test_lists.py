"""Lists: selectors, pagination, resourceVersion semantics, cluster-wide lists."""

from __future__ import annotations

import pytest
from kubernetes import client

from tenure_devtools.kubeapi import KubeApiEmulator, running_emulator

from .conftest import http


def _names(listing: dict[str, object]) -> list[str]:
    return [item['metadata']['name'] for item in listing['items']]  # type: ignore[attr-defined,index]


@pytest.fixture
def labelled(emulator: KubeApiEmulator, namespace: str) -> str:
    path = f'/api/v1/namespaces/{namespace}/secrets'
    for name, labels, kind in [
        ('gold-1', {'tier': 'gold', 'app': 'a'}, 'Opaque'),
        ('gold-2', {'tier': 'gold'}, 'example.com/token'),
        ('tin-1', {'tier': 'tin', 'app': 'a'}, 'Opaque'),
        ('plain', {}, 'Opaque'),
    ]:
        http(emulator, 'POST', path, {'metadata': {'name': name, 'labels': labels}, 'type': kind})
    return path


@pytest.mark.parametrize(
    ('selector', 'expected'),
    [
        pytest.param('tier=gold', ['gold-1', 'gold-2'], id='equality'),
        pytest.param('tier!=gold', ['plain', 'tin-1'], id='inequality'),
        pytest.param('tier in (gold,tin),app', ['gold-1', 'tin-1'], id='set-and-exists'),
        pytest.param('!app', ['gold-2', 'plain'], id='does-not-exist'),
    ],
)
def test_label_selectors_filter_lists(
    emulator: KubeApiEmulator, labelled: str, selector: str, expected: list[str]
) -> None:
    """https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"""
    from urllib.parse import quote

    listing = http(emulator, 'GET', f'{labelled}?labelSelector={quote(selector)}').body
    assert _names(listing) == expected


@pytest.mark.parametrize(
    ('selector', 'expected'),
    [
        pytest.param('metadata.name=tin-1', ['tin-1'], id='name'),
        pytest.param('type=example.com/token', ['gold-2'], id='secret-type'),
        pytest.param('type!=Opaque,metadata.name!=plain', ['gold-2'], id='combined'),
    ],
)
def test_field_selectors_filter_lists(
    emulator: KubeApiEmulator, labelled: str, selector: str, expected: list[str]
) -> None:
    """https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/
    (Secrets also support `type`)."""
    from urllib.parse import quote

    listing = http(emulator, 'GET', f'{labelled}?fieldSelector={quote(selector)}').body
    assert _names(listing) == expected


@pytest.mark.parametrize(
    ('path', 'message'),
    [
        pytest.param(
            '/api/v1/secrets', 'field label not supported: spec.owner', id='core-resource'
        ),
        pytest.param(
            '/apis/rbac.authorization.k8s.io/v1/roles',
            '"spec.owner" is not a known field selector: only "metadata.name", '
            '"metadata.namespace"',
            id='named-group',
        ),
    ],
)
def test_unsupported_field_selectors_are_400(
    emulator: KubeApiEmulator, path: str, message: str
) -> None:
    """Using an unsupported field selector is an error (field-selectors "Supported fields")."""
    answer = http(emulator, 'GET', f'{path}?fieldSelector=spec.owner%3Dme')
    assert answer.status == 400
    assert answer.body['reason'] == 'BadRequest'
    assert answer.body['message'] == message


def test_cluster_wide_lists_span_namespaces(core: client.CoreV1Api, namespace: str) -> None:
    """`/api/v1/secrets` lists every namespace's secrets."""
    core.create_namespaced_secret(
        namespace, {'metadata': {'name': 'mine', 'labels': {'probe': namespace}}}
    )
    listing = core.list_secret_for_all_namespaces(label_selector=f'probe={namespace}')
    assert [(s.metadata.namespace, s.metadata.name) for s in listing.items] == [(namespace, 'mine')]


def test_pages_form_a_consistent_snapshot(emulator: KubeApiEmulator, namespace: str) -> None:
    """limit/continue (https://kubernetes.io/docs/reference/using-api/api-concepts/#retrieving-large-results-sets-in-chunks):
    every page is read at the first page's resourceVersion; remainingItemCount counts the rest."""
    path = f'/api/v1/namespaces/{namespace}/configmaps'
    for index in range(5):
        http(emulator, 'POST', path, {'metadata': {'name': f'c{index}'}})
    first = http(emulator, 'GET', f'{path}?limit=2').body
    assert _names(first) == ['c0', 'c1']
    assert first['metadata']['remainingItemCount'] == 3
    http(emulator, 'DELETE', path + '/c2')
    http(emulator, 'POST', path, {'metadata': {'name': 'c9'}})
    second = http(emulator, 'GET', f'{path}?limit=2&continue={first["metadata"]["continue"]}').body
    assert _names(second) == ['c2', 'c3']
    assert second['metadata']['resourceVersion'] == first['metadata']['resourceVersion']
    last = http(emulator, 'GET', f'{path}?limit=2&continue={second["metadata"]["continue"]}').body
    assert _names(last) == ['c4']
    assert 'continue' not in last['metadata']


def test_the_client_pages_through_lists(core: client.CoreV1Api, namespace: str) -> None:
    for index in range(3):
        core.create_namespaced_config_map(namespace, {'metadata': {'name': f'c{index}'}})
    page = core.list_namespaced_config_map(namespace, limit=2)
    rest = core.list_namespaced_config_map(namespace, limit=2, _continue=page.metadata._continue)
    assert [c.metadata.name for c in page.items + rest.items] == ['c0', 'c1', 'c2']


def test_a_continue_token_older_than_the_window_is_410() -> None:
    """An expired continue token is 410 Expired
    (https://kubernetes.io/docs/reference/using-api/api-concepts/#retrieving-large-results-sets-in-chunks)."""
    with running_emulator(watch_window=3) as small:
        path = '/api/v1/namespaces/default/configmaps'
        for index in range(3):
            http(small, 'POST', path, {'metadata': {'name': f'c{index}'}})
        first = http(small, 'GET', f'{path}?limit=1').body
        for index in range(3, 8):
            http(small, 'POST', path, {'metadata': {'name': f'c{index}'}})
        answer = http(small, 'GET', f'{path}?limit=1&continue={first["metadata"]["continue"]}')
    assert answer.status == 410
    assert answer.body['reason'] == 'Expired'
    assert answer.body['metadata']['continue']


def test_exact_resource_version_lists_the_past(emulator: KubeApiEmulator, namespace: str) -> None:
    """resourceVersionMatch=Exact (https://kubernetes.io/docs/reference/using-api/api-concepts/#semantics-for-get-and-list)."""
    path = f'/api/v1/namespaces/{namespace}/configmaps'
    rv = http(emulator, 'POST', path, {'metadata': {'name': 'old'}}).body['metadata'][
        'resourceVersion'
    ]
    http(emulator, 'POST', path, {'metadata': {'name': 'new'}})
    http(emulator, 'DELETE', path + '/old')
    past = http(emulator, 'GET', f'{path}?resourceVersion={rv}&resourceVersionMatch=Exact').body
    assert _names(past) == ['old']
    assert past['metadata']['resourceVersion'] == rv
    invalid = http(emulator, 'GET', f'{path}?resourceVersionMatch=Exact')
    assert invalid.status == 422
    assert [c['field'] for c in invalid.body['details']['causes']] == ['resourceVersionMatch']

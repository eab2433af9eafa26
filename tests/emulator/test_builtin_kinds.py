"""Built-in kinds with behaviour of their own: Secrets, ConfigMaps, RBAC, Events, Leases."""

from __future__ import annotations

import base64
import json

import pytest
from kubernetes import client

from tenure_devtools.kubeapi import KubeApiEmulator

from .conftest import http


def test_secret_string_data_is_merged_into_data_and_never_stored(
    core: client.CoreV1Api, namespace: str
) -> None:
    """https://kubernetes.io/docs/concepts/configuration/secret/#editing-a-secret: stringData is
    write-only, merged into base64 `data` (winning over it); the type defaults to Opaque."""
    created = core.create_namespaced_secret(
        namespace,
        {
            'metadata': {'name': 's'},
            'data': {'a': base64.b64encode(b'old').decode()},
            'stringData': {'a': 'new', 'b': 'two'},
        },
    )
    assert created.type == 'Opaque'
    assert created.string_data is None
    assert {k: base64.b64decode(v).decode() for k, v in created.data.items()} == {
        'a': 'new',
        'b': 'two',
    }
    patched = core.patch_namespaced_secret('s', namespace, {'stringData': {'c': 'three'}})
    assert sorted(patched.data) == ['a', 'b', 'c']
    assert core.read_namespaced_secret('s', namespace).string_data is None


def test_secret_type_is_immutable(emulator: KubeApiEmulator, namespace: str) -> None:
    path = f'/api/v1/namespaces/{namespace}/secrets'
    http(emulator, 'POST', path, {'metadata': {'name': 's'}})
    answer = http(
        emulator,
        'PATCH',
        path + '/s',
        {'type': 'example.com/other'},
        content_type='application/merge-patch+json',
    )
    assert answer.status == 422
    assert answer.body['details']['causes'] == [
        {
            'reason': 'FieldValueInvalid',
            'message': 'Invalid value: "example.com/other": field is immutable',
            'field': 'type',
        }
    ]


def test_secret_data_must_be_base64(emulator: KubeApiEmulator, namespace: str) -> None:
    answer = http(
        emulator,
        'POST',
        f'/api/v1/namespaces/{namespace}/secrets',
        {'metadata': {'name': 's'}, 'data': {'a': 'not base64!'}},
    )
    assert answer.status == 400


@pytest.mark.parametrize(
    'kind',
    [pytest.param('secrets', id='secret'), pytest.param('configmaps', id='configmap')],
)
def test_immutable_data_cannot_change(emulator: KubeApiEmulator, namespace: str, kind: str) -> None:
    """https://kubernetes.io/docs/concepts/configuration/configmap/#configmap-immutable"""
    path = f'/api/v1/namespaces/{namespace}/{kind}'
    value = base64.b64encode(b'v').decode() if kind == 'secrets' else 'v'
    http(
        emulator, 'POST', path, {'metadata': {'name': 'x'}, 'data': {'k': value}, 'immutable': True}
    )
    answer = http(
        emulator,
        'PATCH',
        path + '/x',
        {'data': {'k': None}},
        content_type='application/merge-patch+json',
    )
    assert answer.status == 422
    assert answer.body['details']['causes'][0]['field'] == 'data'
    assert (
        http(
            emulator,
            'PATCH',
            path + '/x',
            {'metadata': {'labels': {'a': 'b'}}},
            content_type='application/merge-patch+json',
        ).status
        == 200
    )


def test_role_binding_role_ref_is_immutable(
    rbac: client.RbacAuthorizationV1Api, namespace: str
) -> None:
    """https://kubernetes.io/docs/reference/access-authn-authz/rbac/#clusterrolebinding-example:
    "After you create a binding, you cannot change the Role or ClusterRole that it refers to"."""
    rbac.create_namespaced_role(
        namespace,
        {
            'metadata': {'name': 'reader'},
            'rules': [{'apiGroups': [''], 'resources': ['pods'], 'verbs': ['get']}],
        },
    )
    subject = {'kind': 'ServiceAccount', 'name': 'robot', 'namespace': namespace}
    rbac.create_namespaced_role_binding(
        namespace,
        {
            'metadata': {'name': 'b'},
            'subjects': [subject],
            'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'Role', 'name': 'reader'},
        },
    )
    with pytest.raises(client.ApiException) as caught:
        rbac.patch_namespaced_role_binding('b', namespace, {'roleRef': {'name': 'writer'}})
    assert caught.value.status == 422
    assert json.loads(caught.value.body)['details']['causes'][0]['message'].endswith(
        'cannot change roleRef'
    )
    changed = rbac.patch_namespaced_role_binding(
        'b', namespace, {'subjects': [subject, dict(subject, name='other')]}
    )
    assert len(changed.subjects) == 2


@pytest.mark.parametrize(
    ('body', 'field'),
    [
        pytest.param(
            {
                'roleRef': {
                    'apiGroup': 'rbac.authorization.k8s.io',
                    'kind': 'Deployment',
                    'name': 'x',
                }
            },
            'roleRef.kind',
            id='role-kind',
        ),
        pytest.param(
            {
                'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'Role', 'name': 'x'},
                'subjects': [{'kind': 'Robot', 'name': 'r'}],
            },
            'subjects[0].kind',
            id='subject-kind',
        ),
    ],
)
def test_invalid_role_bindings_are_422(
    emulator: KubeApiEmulator, namespace: str, body: dict[str, object], field: str
) -> None:
    answer = http(
        emulator,
        'POST',
        f'/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings',
        {'metadata': {'name': 'b'}, **body},
    )
    assert answer.status == 422
    assert field in [c['field'] for c in answer.body['details']['causes']]


def test_rbac_names_may_contain_colons(rbac: client.RbacAuthorizationV1Api) -> None:
    """RBAC objects are named by path segments (`system:controller:...`)."""
    role = rbac.create_cluster_role({'metadata': {'name': 'tenure:test:reader'}, 'rules': []})
    assert role.metadata.name == 'tenure:test:reader'
    rbac.delete_cluster_role('tenure:test:reader')


def test_core_events_are_also_served_by_events_k8s_io(
    emulator: KubeApiEmulator, core: client.CoreV1Api, namespace: str
) -> None:
    """core/v1 and events.k8s.io/v1 Events are the same objects in two shapes
    (https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/event-v1/). The body
    is the one kopf posts."""
    body = {
        'metadata': {'namespace': namespace, 'generateName': 'kopf-event-'},
        'action': 'Action',
        'type': 'Normal',
        'reason': 'Logging',
        'message': 'Handler succeeded.',
        'reportingComponent': 'kopf',
        'reportingInstance': 'dev',
        'source': {'component': 'kopf'},
        'firstTimestamp': '2026-01-01T00:00:00Z',
        'lastTimestamp': '2026-01-01T00:00:00Z',
        'eventTime': None,
        'involvedObject': {
            'apiVersion': 'example.com/v1',
            'kind': 'Widget',
            'name': 'w',
            'uid': 'u',
            'namespace': namespace,
        },
    }
    created = http(emulator, 'POST', f'/api/v1/namespaces/{namespace}/events', body)
    assert created.status == 201
    name = created.body['metadata']['name']
    assert name.startswith('kopf-event-')
    modern = http(
        emulator, 'GET', f'/apis/events.k8s.io/v1/namespaces/{namespace}/events/{name}'
    ).body
    assert modern['apiVersion'] == 'events.k8s.io/v1'
    assert modern['note'] == 'Handler succeeded.'
    assert modern['regarding']['name'] == 'w'
    assert modern['reportingController'] == 'kopf'
    found = core.list_namespaced_event(
        namespace, field_selector='involvedObject.name=w,reason=Logging'
    )
    assert [e.metadata.name for e in found.items] == [name]


def test_leases_round_trip(api_client: client.ApiClient, namespace: str) -> None:
    """coordination.k8s.io/v1 Lease (leader election)."""
    leases = client.CoordinationV1Api(api_client)
    leases.create_namespaced_lease(
        namespace,
        {
            'metadata': {'name': 'leader'},
            'spec': {'holderIdentity': 'me', 'leaseDurationSeconds': 15},
        },
    )
    renewed = leases.patch_namespaced_lease(
        'leader', namespace, {'spec': {'holderIdentity': 'you'}}
    )
    assert renewed.spec.holder_identity == 'you'
    assert renewed.spec.lease_duration_seconds == 15


def test_events_written_through_events_k8s_io_need_its_fields(
    emulator: KubeApiEmulator, namespace: str
) -> None:
    """events.k8s.io/v1 Events require eventTime, reportingController, reportingInstance,
    action, reason and a Normal/Warning type; they read back through core/v1 too."""
    path = f'/apis/events.k8s.io/v1/namespaces/{namespace}/events'
    body = {
        'apiVersion': 'events.k8s.io/v1',
        'kind': 'Event',
        'metadata': {'name': 'e'},
        'eventTime': '2026-01-01T00:00:00.000000Z',
        'reportingController': 'tenure.dev/operator',
        'reportingInstance': 'tenure-0',
        'action': 'Revoke',
        'reason': 'Expired',
        'type': 'Normal',
        'note': 'access expired',
        'regarding': {'kind': 'ServiceIdentity', 'name': 'a', 'namespace': namespace},
    }
    assert http(emulator, 'POST', path, body).status == 201
    core = http(emulator, 'GET', f'/api/v1/namespaces/{namespace}/events/e').body
    assert (core['message'], core['involvedObject']['name']) == ('access expired', 'a')
    incomplete = {k: v for k, v in body.items() if k not in ('reportingController', 'action')}
    answer = http(emulator, 'POST', path, dict(incomplete, metadata={'name': 'f'}))
    assert answer.status == 422
    fields = {c['field'] for c in answer.body['details']['causes']}
    assert fields == {'reportingController', 'action'}

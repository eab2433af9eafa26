"""Custom resources: schema validation, pruning, defaulting, status subresource, generation."""

from __future__ import annotations

import copy
import json
import uuid

import pytest
from kubernetes import client

from tenure_devtools.kubeapi import KubeApiEmulator

from .conftest import WIDGET_CRD, WIDGET_PATH, eventually, http, widget

GROUP, VERSION, PLURAL = 'example.com', 'v1', 'widgets'


def _create(
    custom: client.CustomObjectsApi, namespace: str, body: dict[str, object]
) -> dict[str, object]:
    created: dict[str, object] = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return created


@pytest.mark.parametrize(
    ('spec', 'field', 'reason'),
    [
        pytest.param({'color': 'red'}, 'spec.size', 'FieldValueRequired', id='required'),
        pytest.param(
            {'size': 3, 'color': 'pink'}, 'spec.color', 'FieldValueNotSupported', id='enum'
        ),
        pytest.param(
            {'size': 3, 'color': 'red', 'sku': 'nope'},
            'spec.sku',
            'FieldValueInvalid',
            id='pattern',
        ),
        pytest.param({'size': 0, 'color': 'red'}, 'spec.size', 'FieldValueInvalid', id='minimum'),
        pytest.param({'size': 300, 'color': 'red'}, 'spec', 'FieldValueInvalid', id='cel-rule'),
    ],
)
def test_schema_violations_are_422_with_causes(
    emulator: KubeApiEmulator,
    namespace: str,
    widgets: str,
    spec: dict[str, object],
    field: str,
    reason: str,
) -> None:
    """https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation
    (OpenAPI v3 and x-kubernetes-validations): 422 Invalid, one cause per violation."""
    body = widget('bad')
    body['spec'] = spec
    answer = http(emulator, 'POST', WIDGET_PATH.format(ns=namespace), body)
    assert answer.status == 422
    assert answer.body['reason'] == 'Invalid'
    assert answer.body['message'].startswith('Widget.example.com "bad" is invalid: ')
    assert answer.body['details']['group'] == 'example.com'
    assert answer.body['details']['kind'] == 'Widget'
    assert {'field': field, 'reason': reason} in [
        {'field': c['field'], 'reason': c['reason']} for c in answer.body['details']['causes']
    ]


def test_cel_message_is_reported(emulator: KubeApiEmulator, namespace: str, widgets: str) -> None:
    """A failed rule answers its `message`."""
    answer = http(emulator, 'POST', WIDGET_PATH.format(ns=namespace), widget('big', size=300))
    assert (
        answer.body['message']
        == 'Widget.example.com "big" is invalid: spec: Invalid value: "object": '
        'size must be at most 100'
    )


def test_transition_rules_compare_with_the_stored_object(
    custom: client.CustomObjectsApi, namespace: str, widgets: str
) -> None:
    """Transition rules (`oldSelf`) see the stored object on update
    (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#transition-rules)."""
    _create(custom, namespace, widget('w', color='red'))
    with pytest.raises(client.ApiException) as caught:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, 'w', {'spec': {'color': 'blue'}}
        )
    assert caught.value.status == 422
    assert 'color is immutable' in json.loads(caught.value.body)['message']
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, 'w', {'spec': {'size': 9}}
    )
    assert patched['spec']['size'] == 9


def test_unknown_fields_are_pruned_and_defaults_applied(
    emulator: KubeApiEmulator, namespace: str, widgets: str
) -> None:
    """Structural schemas prune unknown fields
    (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#field-pruning)
    and apply defaults (#defaulting); the dropped fields come back as warnings."""
    body = widget('w')
    body['spec']['extra'] = {'deep': 1}
    answer = http(emulator, 'POST', WIDGET_PATH.format(ns=namespace), body)
    assert answer.status == 201
    assert answer.body['spec'] == {'size': 3, 'color': 'red', 'replicas': 1}
    assert answer.headers.get_all('Warning') == ['299 - "unknown field \\"spec.extra\\""']
    strict = http(
        emulator,
        'POST',
        WIDGET_PATH.format(ns=namespace) + '?fieldValidation=Strict',
        dict(body, metadata={'name': 'v'}),
    )
    assert strict.status == 400
    assert strict.body['message'] == 'strict decoding error: unknown field "spec.extra"'


def test_status_is_ignored_on_create_and_main_resource_updates(
    custom: client.CustomObjectsApi, namespace: str, widgets: str
) -> None:
    """With the status subresource, the main resource ignores status changes
    (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#status-subresource)."""
    body = widget('w')
    body['status'] = {'phase': 'Forged'}
    created = _create(custom, namespace, body)
    assert 'status' not in created
    patched = custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        'w',
        {'status': {'phase': 'Forged'}, 'metadata': {'labels': {'a': 'b'}}},
    )
    assert 'status' not in patched
    assert patched['metadata']['labels'] == {'a': 'b'}


def test_status_writes_ignore_everything_but_status(
    custom: client.CustomObjectsApi, namespace: str, widgets: str
) -> None:
    """PUT/PATCH on /status change only the status stanza (metadata included: the
    customresource status strategy copies everything else from the stored object)."""
    created = _create(custom, namespace, widget('w'))
    patched = custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        'w',
        {'status': {'phase': 'Ready'}, 'spec': {'size': 50}, 'metadata': {'labels': {'a': 'b'}}},
    )
    assert patched['status'] == {'phase': 'Ready'}
    assert patched['spec']['size'] == 3
    assert 'labels' not in patched['metadata']
    assert patched['metadata']['generation'] == 1
    assert int(patched['metadata']['resourceVersion']) > int(created['metadata']['resourceVersion'])  # type: ignore[index]
    replaced = custom.replace_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, 'w', dict(patched, status={'phase': 'Done'})
    )
    assert replaced['status'] == {'phase': 'Done'}


def test_generation_moves_only_with_spec_changes(
    custom: client.CustomObjectsApi, namespace: str, widgets: str
) -> None:
    """metadata.generation starts at 1 and is incremented for changes outside .metadata and
    .status (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#status-subresource)."""
    assert _create(custom, namespace, widget('w'))['metadata']['generation'] == 1  # type: ignore[index]
    relabelled = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, 'w', {'metadata': {'labels': {'a': 'b'}}}
    )
    assert relabelled['metadata']['generation'] == 1
    status = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, 'w', {'status': {'phase': 'Ready'}}
    )
    assert status['metadata']['generation'] == 1
    resized = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, 'w', {'spec': {'size': 7}}
    )
    assert resized['metadata']['generation'] == 2
    forged = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, 'w', {'metadata': {'generation': 40}}
    )
    assert forged['metadata']['generation'] == 2


def test_the_body_must_name_the_served_type(
    emulator: KubeApiEmulator, namespace: str, widgets: str
) -> None:
    """Custom resources decode as unstructured objects: apiVersion and kind are required and
    must match the URL (400 BadRequest otherwise)."""
    path = WIDGET_PATH.format(ns=namespace)
    missing = widget('w')
    del missing['kind']
    assert http(emulator, 'POST', path, missing).status == 400
    wrong = dict(widget('w'), apiVersion='example.com/v2')
    answer = http(emulator, 'POST', path, wrong)
    assert answer.status == 400
    assert answer.body['message'] == (
        'the API version in the data (example.com/v2) does not match the expected API version '
        '(example.com/v1)'
    )


def test_selectable_fields_filter_custom_resources(
    custom: client.CustomObjectsApi, namespace: str, widgets: str
) -> None:
    """CRD selectableFields (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#crd-selectable-fields)."""
    _create(custom, namespace, widget('r', color='red'))
    _create(custom, namespace, widget('g', color='green'))
    found = custom.list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, field_selector='spec.color=green'
    )
    assert [w['metadata']['name'] for w in found['items']] == ['g']
    with pytest.raises(client.ApiException) as caught:
        custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, field_selector='spec.size=3'
        )
    assert caught.value.status == 400
    assert json.loads(caught.value.body)['message'] == 'field label not supported: spec.size'


@pytest.mark.parametrize(
    ('change', 'field'),
    [
        pytest.param(
            lambda crd: crd['spec']['versions'][0]['schema']['openAPIV3Schema']['properties'][
                'spec'
            ].pop('type'),
            'spec.versions[0].schema.openAPIV3Schema.properties[spec].type',
            id='untyped-property',
        ),
        pytest.param(
            lambda crd: crd['spec']['versions'][0]['schema']['openAPIV3Schema']['properties'][
                'spec'
            ]['x-kubernetes-validations'].append({'rule': 'self.size >'}),
            'spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[2].rule',
            id='cel-syntax',
        ),
        pytest.param(
            lambda crd: crd['spec']['versions'][0].update(storage=False),
            'spec.versions',
            id='no-storage-version',
        ),
        pytest.param(
            lambda crd: crd['metadata'].update(name='gadgets.example.com'),
            'metadata.name',
            id='name-mismatch',
        ),
    ],
)
def test_invalid_crds_are_refused_with_422(
    api_client: client.ApiClient, change: object, field: str
) -> None:
    """CRDs must be structural and their rules must compile
    (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema)."""
    crd = copy.deepcopy(WIDGET_CRD)
    suffix = uuid.uuid4().hex[:6]
    crd['spec']['group'] = f'g{suffix}.example.com'
    crd['metadata']['name'] = f'widgets.g{suffix}.example.com'
    change(crd)  # type: ignore[operator]
    with pytest.raises(client.ApiException) as caught:
        client.ApiextensionsV1Api(api_client).create_custom_resource_definition(crd)
    assert caught.value.status == 422
    causes = json.loads(caught.value.body)['details']['causes']
    assert field in [c['field'] for c in causes], causes


def test_deleting_a_crd_removes_its_resource_and_objects(
    emulator: KubeApiEmulator, api_client: client.ApiClient
) -> None:
    """Deleting a CRD deletes its custom resources and stops serving them
    (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#delete-a-customresourcedefinition)."""
    extensions = client.ApiextensionsV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    crd = copy.deepcopy(WIDGET_CRD)
    crd['spec']['group'] = 'doomed.example.com'
    crd['metadata']['name'] = 'widgets.doomed.example.com'
    extensions.create_custom_resource_definition(crd)

    def served() -> bool:
        return http(emulator, 'GET', '/apis/doomed.example.com/v1').status == 200

    eventually(served, what='the CRD to be served')
    custom.create_namespaced_custom_object(
        'doomed.example.com',
        'v1',
        'default',
        'widgets',
        dict(widget('w'), apiVersion='doomed.example.com/v1'),
    )
    extensions.delete_custom_resource_definition('widgets.doomed.example.com')
    eventually(
        lambda: http(emulator, 'GET', '/apis/doomed.example.com/v1').status == 404,
        what='the resource to go',
    )
    with pytest.raises(client.ApiException) as caught:
        extensions.read_custom_resource_definition('widgets.doomed.example.com')
    assert caught.value.status == 404
    # Re-created, it starts empty: the old objects went with the CRD.
    extensions.create_custom_resource_definition(crd)
    eventually(served, what='the CRD to be served again')
    listed = custom.list_namespaced_custom_object('doomed.example.com', 'v1', 'default', 'widgets')
    assert listed['items'] == []
    extensions.delete_custom_resource_definition('widgets.doomed.example.com')


def test_printer_columns_make_the_table_view(
    emulator: KubeApiEmulator, custom: client.CustomObjectsApi, namespace: str, widgets: str
) -> None:
    """`kubectl get` asks for a Table; CRDs contribute additionalPrinterColumns
    (https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables)."""
    _create(custom, namespace, widget('w', color='blue'))
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, 'w', {'status': {'phase': 'Ready'}}
    )
    answer = http(
        emulator,
        'GET',
        WIDGET_PATH.format(ns=namespace),
        accept='application/json;as=Table;v=v1;g=meta.k8s.io,application/json',
    )
    table = answer.body
    assert table['kind'] == 'Table'
    assert table['apiVersion'] == 'meta.k8s.io/v1'
    assert [c['name'] for c in table['columnDefinitions']] == ['Name', 'Color', 'Phase', 'Age']
    cells = table['rows'][0]['cells']
    assert cells[:3] == ['w', 'blue', 'Ready']
    assert cells[3].endswith('s')  # an age such as "0s"
    assert table['rows'][0]['object']['metadata']['name'] == 'w'

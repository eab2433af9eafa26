"""Deletion: finalizers, garbage collection through ownerReferences, namespace termination."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from tenure_devtools.kubeapi import KubeApiEmulator

from .conftest import WIDGET_PATH, eventually, http, stream, take, widget


def _gone(read: Any, *args: Any) -> bool:
    try:
        read(*args)
    except client.ApiException as exc:
        return exc.status == 404
    return False


def _owner_ref(owner: Any, **extra: Any) -> dict[str, Any]:
    return {
        'apiVersion': 'v1',
        'kind': 'ConfigMap',
        'name': owner.metadata.name,
        'uid': owner.metadata.uid,
        **extra,
    }


def test_finalizers_keep_a_deleted_object_until_they_are_removed(
    emulator: KubeApiEmulator, namespace: str, widgets: str
) -> None:
    """https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/: DELETE sets
    deletionTimestamp (grace period 0) and keeps the object; removing the last finalizer
    deletes it, which watchers see as DELETED."""
    path = WIDGET_PATH.format(ns=namespace)
    created = http(emulator, 'POST', path, widget('w', finalizers=['example.com/cleanup'])).body
    deleting = http(emulator, 'DELETE', path + '/w')
    assert deleting.status == 200
    assert deleting.body['metadata']['deletionTimestamp']
    assert deleting.body['metadata']['deletionGracePeriodSeconds'] == 0
    # A deletion is a spec change for controllers: the generation moves (store.go markAsDeleting).
    assert deleting.body['metadata']['generation'] == created['metadata']['generation'] + 1
    assert http(emulator, 'GET', path + '/w').status == 200
    again = http(emulator, 'DELETE', path + '/w')
    assert again.body['metadata']['resourceVersion'] == deleting.body['metadata']['resourceVersion']
    rv = deleting.body['metadata']['resourceVersion']
    removed = http(
        emulator,
        'PATCH',
        path + '/w',
        {'metadata': {'finalizers': None}},
        content_type='application/merge-patch+json',
    )
    assert removed.status == 200
    assert http(emulator, 'GET', path + '/w').status == 404
    with stream(emulator, f'{path}?watch=true&resourceVersion={rv}&timeoutSeconds=5') as events:
        (event,) = take(events, 1)
    assert (event['type'], event['object']['metadata']['name']) == ('DELETED', 'w')


def test_no_finalizer_can_join_a_deletion(emulator: KubeApiEmulator, namespace: str) -> None:
    """ValidateObjectMetaUpdate: "no new finalizers can be added if the object is being deleted"."""
    path = f'/api/v1/namespaces/{namespace}/configmaps'
    http(emulator, 'POST', path, {'metadata': {'name': 'c', 'finalizers': ['example.com/a']}})
    http(emulator, 'DELETE', path + '/c')
    answer = http(
        emulator,
        'PATCH',
        path + '/c',
        {'metadata': {'finalizers': ['example.com/a', 'example.com/b']}},
        content_type='application/merge-patch+json',
    )
    assert answer.status == 422
    assert answer.body['details']['causes'][0]['field'] == 'metadata.finalizers'
    assert 'no new finalizers can be added if the object is being deleted' in answer.body['message']


def test_delete_answers_a_status_or_the_object_per_resource(
    emulator: KubeApiEmulator, namespace: str
) -> None:
    """Most stores answer a Success Status with the uid; some (ServiceAccount, Pod, Namespace)
    return the deleted object (`ReturnDeletedObject`)."""
    path = f'/api/v1/namespaces/{namespace}'
    secret = http(emulator, 'POST', path + '/secrets', {'metadata': {'name': 's'}}).body
    answer = http(emulator, 'DELETE', path + '/secrets/s')
    assert answer.body == {
        'kind': 'Status',
        'apiVersion': 'v1',
        'metadata': {},
        'status': 'Success',
        'details': {'name': 's', 'kind': 'secrets', 'uid': secret['metadata']['uid']},
    }
    http(emulator, 'POST', path + '/serviceaccounts', {'metadata': {'name': 'robot'}})
    answer = http(emulator, 'DELETE', path + '/serviceaccounts/robot')
    assert answer.body['kind'] == 'ServiceAccount'


def test_delete_preconditions_must_match(emulator: KubeApiEmulator, namespace: str) -> None:
    """DeleteOptions.preconditions (uid, resourceVersion) guard against deleting a successor."""
    path = f'/api/v1/namespaces/{namespace}/configmaps'
    http(emulator, 'POST', path, {'metadata': {'name': 'c'}})
    answer = http(emulator, 'DELETE', path + '/c', {'preconditions': {'uid': 'someone-else'}})
    assert answer.status == 409
    assert answer.body['reason'] == 'Conflict'
    assert http(emulator, 'GET', path + '/c').status == 200


def test_dependents_are_collected_after_their_owner(core: client.CoreV1Api, namespace: str) -> None:
    """Background cascading deletion (https://kubernetes.io/docs/concepts/architecture/garbage-collection/#background-deletion)."""
    owner = core.create_namespaced_config_map(namespace, {'metadata': {'name': 'owner'}})
    core.create_namespaced_secret(
        namespace, {'metadata': {'name': 'dep', 'ownerReferences': [_owner_ref(owner)]}}
    )
    core.create_namespaced_service_account(
        namespace, {'metadata': {'name': 'dep', 'ownerReferences': [_owner_ref(owner)]}}
    )
    core.delete_namespaced_config_map('owner', namespace)
    eventually(
        lambda: _gone(core.read_namespaced_secret, 'dep', namespace), what='the dependent secret'
    )
    eventually(
        lambda: _gone(core.read_namespaced_service_account, 'dep', namespace),
        what='the dependent SA',
    )


def test_orphan_propagation_keeps_dependents_without_the_reference(
    core: client.CoreV1Api, namespace: str
) -> None:
    """propagationPolicy=Orphan (https://kubernetes.io/docs/concepts/architecture/garbage-collection/#orphaned-dependents)."""
    owner = core.create_namespaced_config_map(namespace, {'metadata': {'name': 'owner'}})
    core.create_namespaced_secret(
        namespace, {'metadata': {'name': 'dep', 'ownerReferences': [_owner_ref(owner)]}}
    )
    core.delete_namespaced_config_map('owner', namespace, propagation_policy='Orphan')
    eventually(lambda: _gone(core.read_namespaced_config_map, 'owner', namespace), what='the owner')
    assert core.read_namespaced_secret('dep', namespace).metadata.owner_references is None


def test_foreground_deletion_waits_for_blocking_dependents(
    core: client.CoreV1Api, namespace: str
) -> None:
    """propagationPolicy=Foreground (https://kubernetes.io/docs/concepts/architecture/garbage-collection/#foreground-deletion):
    the owner carries the foregroundDeletion finalizer until blocking dependents are gone."""
    owner = core.create_namespaced_config_map(namespace, {'metadata': {'name': 'owner'}})
    blocking = _owner_ref(owner, blockOwnerDeletion=True)
    core.create_namespaced_secret(
        namespace,
        {
            'metadata': {
                'name': 'dep',
                'finalizers': ['example.com/hold'],
                'ownerReferences': [blocking],
            }
        },
    )
    core.delete_namespaced_config_map('owner', namespace, propagation_policy='Foreground')
    held = core.read_namespaced_config_map('owner', namespace)
    assert 'foregroundDeletion' in held.metadata.finalizers
    eventually(
        lambda: core.read_namespaced_secret('dep', namespace).metadata.deletion_timestamp,
        what='dependent deletion',
    )
    assert core.read_namespaced_config_map('owner', namespace).metadata.deletion_timestamp
    core.patch_namespaced_secret('dep', namespace, {'metadata': {'finalizers': None}})
    eventually(lambda: _gone(core.read_namespaced_config_map, 'owner', namespace), what='the owner')


def test_dependents_of_a_missing_owner_are_collected(
    core: client.CoreV1Api, namespace: str
) -> None:
    """The garbage collector deletes objects whose owners do not exist (dangling references)."""
    ghost = {
        'apiVersion': 'v1',
        'kind': 'ConfigMap',
        'name': 'ghost',
        'uid': '00000000-0000-0000-0000-000000000000',
    }
    core.create_namespaced_secret(
        namespace, {'metadata': {'name': 'orphaned', 'ownerReferences': [ghost]}}
    )
    eventually(
        lambda: _gone(core.read_namespaced_secret, 'orphaned', namespace),
        what='the dangling dependent',
    )


def test_a_new_namespace_gets_a_default_service_account(
    core: client.CoreV1Api, namespace: str
) -> None:
    """The ServiceAccount controller creates `default` in every namespace
    (https://kubernetes.io/docs/concepts/security/service-accounts/#default-service-accounts)."""
    account = eventually(
        lambda: core.read_namespaced_service_account('default', namespace), what='default SA'
    )
    assert account.metadata.name == 'default'
    created = core.read_namespace(namespace)
    assert created.metadata.labels == {'kubernetes.io/metadata.name': namespace}
    assert created.spec.finalizers == ['kubernetes']
    assert created.status.phase == 'Active'


def test_deleting_a_namespace_terminates_its_content_first(
    core: client.CoreV1Api, namespace: str
) -> None:
    """https://kubernetes.io/docs/tasks/administer-cluster/namespaces/#deleting-a-namespace: the
    namespace is Terminating while its content goes (finalizers respected); nothing new can be
    created in it (403); then it is gone."""
    core.create_namespaced_secret(namespace, {'metadata': {'name': 'plain'}})
    core.create_namespaced_config_map(
        namespace, {'metadata': {'name': 'held', 'finalizers': ['example.com/hold']}}
    )
    # The first DELETE answers the Terminating namespace itself (namespace REST Delete).
    terminating = core.delete_namespace(namespace)
    assert terminating['status']['phase'] == 'Terminating'  # the client cannot type it as Status
    eventually(
        lambda: _gone(core.read_namespaced_secret, 'plain', namespace), what='the content to go'
    )
    held = core.read_namespaced_config_map('held', namespace)
    assert held.metadata.deletion_timestamp
    ns = core.read_namespace(namespace)
    assert ns.status.phase == 'Terminating'
    conditions = {c.type: c for c in ns.status.conditions}
    assert conditions['NamespaceContentRemaining'].status == 'True'
    assert (
        'example.com/hold in 1 resource instances'
        in conditions['NamespaceFinalizersRemaining'].message
    )
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_secret(namespace, {'metadata': {'name': 'late'}})
    assert caught.value.status == 403
    status = json.loads(caught.value.body)
    assert status['message'] == (
        f'secrets "late" is forbidden: unable to create new content in namespace {namespace} '
        'because it is being terminated'
    )
    assert status['details']['causes'][0]['reason'] == 'NamespaceTerminating'
    core.patch_namespaced_config_map('held', namespace, {'metadata': {'finalizers': None}})
    eventually(lambda: _gone(core.read_namespace, namespace), what='the namespace to go')


def test_system_namespaces_cannot_be_deleted(core: client.CoreV1Api) -> None:
    """NamespaceLifecycle keeps default, kube-system and kube-public."""
    with pytest.raises(client.ApiException) as caught:
        core.delete_namespace('default')
    assert caught.value.status == 403
    assert (
        json.loads(caught.value.body)['message']
        == 'namespaces "default" is forbidden: this namespace may not be deleted'
    )


def test_delete_collection_honours_the_selector(core: client.CoreV1Api, namespace: str) -> None:
    """DELETE on a collection (deletecollection) deletes what the selectors match."""
    for name, tier in (('a', 'gold'), ('b', 'gold'), ('c', 'tin')):
        core.create_namespaced_config_map(
            namespace, {'metadata': {'name': name, 'labels': {'tier': tier}}}
        )
    core.delete_collection_namespaced_config_map(namespace, label_selector='tier=gold')
    assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items] == ['c']

"""The local stack carries the real machinery: kopf sees and handles a ServiceIdentity created
through the official client on the Kubernetes API emulator, and OpenBao answers hvac calls.

The handlers here are the test's own (the lifecycle handlers arrive with issue 3); everything else
is the unmodified kopf engine talking HTTP to the emulator.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

import kopf
import kubernetes
import pytest

from tenure.api.v1alpha1 import GROUP, PLURAL, VERSION

pytestmark = pytest.mark.integration

NAMESPACE = 'smoke'
FINALIZER = 'tenure.dev/revocation'

MANIFEST: dict[str, Any] = {
    'apiVersion': 'tenure.dev/v1alpha1',
    'kind': 'ServiceIdentity',
    'metadata': {'name': 'smoke-exporter', 'namespace': NAMESPACE},
    'spec': {
        'ticket': {
            'id': 'CHG0000001',
            'system': 'servicenow',
            'state': 'Requested',
            'requester': 'alice@example.com',
            'approver': 'bob@example.com',
            'justification': 'Smoke test of the local stack.',
        },
        'owner': {'team': 'platform', 'contact': 'platform@example.com'},
        'service': 'smoke',
        'expiresAt': '2027-01-01T00:00:00Z',
    },
}


class RunningKopf:
    """The kopf engine in a background thread with its own event loop, stopped on exit."""

    def __init__(self, server: str) -> None:
        self.seen: queue.Queue[tuple[str, str]] = queue.Queue()
        self.registry = kopf.OperatorRegistry()
        self.settings = kopf.OperatorSettings()
        # Progress lives in annotations: a structural schema prunes `status.kopf` (kopf#574).
        self.settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix='tenure.dev'
        )
        self.settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix='tenure.dev', key='last-handled-configuration'
        )
        self.settings.persistence.finalizer = FINALIZER
        self.settings.watching.server_timeout = 30
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self._server = server
        self._register()
        self._thread = threading.Thread(target=self._run, name='kopf', daemon=True)

    def _register(self) -> None:
        @kopf.on.login(registry=self.registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=self._server, insecure=True)

        @kopf.on.create(GROUP, VERSION, PLURAL, registry=self.registry)
        def created(name: str, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
            patch.status['phase'] = 'Pending'
            kopf.info(body, reason='SmokeSeen', message='kopf saw the ServiceIdentity')
            self.seen.put(('create', name))

        @kopf.on.delete(GROUP, VERSION, PLURAL, registry=self.registry)
        def deleted(name: str, **_: Any) -> None:
            self.seen.put(('delete', name))

    def _run(self) -> None:
        asyncio.run(
            kopf.operator(
                registry=self.registry,
                settings=self.settings,
                # Only its own namespace: the session's emulator holds other tests' objects too.
                namespaces=[NAMESPACE],
                standalone=True,
                stop_flag=self.stop_flag,
                ready_flag=self.ready_flag,
            )
        )

    def __enter__(self) -> RunningKopf:
        self._thread.start()
        assert self.ready_flag.wait(30), 'kopf did not become ready'
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), 'kopf did not stop'


@pytest.fixture
def api(kube_api: kubernetes.client.ApiClient) -> kubernetes.client.ApiClient:
    return kube_api


def _wait_for(api: kubernetes.client.ApiClient, predicate: Any, *, deleted: bool = False) -> Any:
    """Watch the ServiceIdentity until `predicate(object)` holds, or with `deleted` until gone.

    The watch starts at the resourceVersion of a fresh read, so no change between the read and
    the watch is missed (and an object already gone needs no watch at all).
    """
    custom = kubernetes.client.CustomObjectsApi(api)
    name = MANIFEST['metadata']['name']
    try:
        current = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
    except kubernetes.client.ApiException as e:
        if deleted and e.status == 404:
            return None
        raise
    if not deleted and predicate(current):
        return current
    watch = kubernetes.watch.Watch()
    for event in watch.stream(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        NAMESPACE,
        PLURAL,
        field_selector=f'metadata.name={name}',
        resource_version=current['metadata']['resourceVersion'],
        timeout_seconds=20,
    ):
        obj = event['object']
        if (deleted and event['type'] == 'DELETED') or (not deleted and predicate(obj)):
            watch.stop()
            return obj
    raise AssertionError('the expected change did not happen within 20 s')


def test_kopf_handles_a_service_identity_created_through_the_official_client(
    kube_emulator: Any, api: kubernetes.client.ApiClient
) -> None:
    core = kubernetes.client.CoreV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    core.create_namespace({'metadata': {'name': NAMESPACE}})
    with RunningKopf(kube_emulator.url) as operator:
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, MANIFEST)
        assert operator.seen.get(timeout=20) == ('create', 'smoke-exporter')

        handled = _wait_for(api, lambda o: o.get('status', {}).get('phase') == 'Pending')
        assert FINALIZER in handled['metadata']['finalizers']
        assert handled['spec']['ticket']['onClose'] == 'Revoke', 'CRD defaults are applied'
        events = core.list_namespaced_event(NAMESPACE).items
        assert any(e.reason == 'SmokeSeen' for e in events)

        custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, 'smoke-exporter')
        assert operator.seen.get(timeout=20) == ('delete', 'smoke-exporter')
        _wait_for(api, None, deleted=True)


def test_openbao_answers_hvac_calls(openbao: Any) -> None:
    client = openbao.client()
    assert client.sys.read_health_status(method='GET')['sealed'] is False
    client.secrets.kv.v2.create_or_update_secret(path='smoke/check', secret={'k': 'v'})
    read = client.secrets.kv.v2.read_secret_version(
        path='smoke/check', raise_on_deleted_version=True
    )
    assert read['data']['data'] == {'k': 'v'}

"""Fixtures for the Kubernetes API emulator's contract tests.

One emulator serves the whole session (each test works in its own namespace); tests that need
a special emulator (tiny watch window, a clock they move) start their own with
`running_emulator`, which stops it even when the test fails. Requests go through the official
`kubernetes` client, or raw HTTP (`http`, `stream`) where the client hides what the API says
(status codes, headers, watch framing).
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config

from tenure_devtools.kubeapi import KubeApiEmulator, running_emulator

T = TypeVar('T')

WIDGETS = 'widgets.example.com'
WIDGET_PATH = '/apis/example.com/v1/namespaces/{ns}/widgets'

# A small CRD in the shape these tests need: a status subresource, printer columns, required
# fields, an enum, a pattern, a default and CEL rules (one of them a transition rule).
WIDGET_CRD: dict[str, Any] = {
    'apiVersion': 'apiextensions.k8s.io/v1',
    'kind': 'CustomResourceDefinition',
    'metadata': {'name': WIDGETS},
    'spec': {
        'group': 'example.com',
        'scope': 'Namespaced',
        'names': {
            'plural': 'widgets',
            'singular': 'widget',
            'kind': 'Widget',
            'shortNames': ['wd'],
            'categories': ['gadgets'],
        },
        'versions': [
            {
                'name': 'v1',
                'served': True,
                'storage': True,
                'subresources': {'status': {}},
                'additionalPrinterColumns': [
                    {'name': 'Color', 'type': 'string', 'jsonPath': '.spec.color'},
                    {'name': 'Phase', 'type': 'string', 'jsonPath': '.status.phase'},
                    {'name': 'Age', 'type': 'date', 'jsonPath': '.metadata.creationTimestamp'},
                ],
                'selectableFields': [{'jsonPath': '.spec.color'}],
                'schema': {
                    'openAPIV3Schema': {
                        'type': 'object',
                        'required': ['spec'],
                        'properties': {
                            'spec': {
                                'type': 'object',
                                'required': ['size', 'color'],
                                'x-kubernetes-validations': [
                                    {
                                        'rule': 'self.size <= 100',
                                        'message': 'size must be at most 100',
                                    },
                                    {
                                        'rule': 'self.color == oldSelf.color',
                                        'message': 'color is immutable',
                                    },
                                ],
                                'properties': {
                                    'size': {'type': 'integer', 'minimum': 1},
                                    'color': {'type': 'string', 'enum': ['red', 'green', 'blue']},
                                    'sku': {'type': 'string', 'pattern': '^[A-Z]{3}-[0-9]+$'},
                                    'replicas': {'type': 'integer', 'default': 1},
                                },
                            },
                            'status': {
                                'type': 'object',
                                'properties': {
                                    'phase': {'type': 'string'},
                                    'observedGeneration': {'type': 'integer'},
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, *, size: int = 3, color: str = 'red', **meta: Any) -> dict[str, Any]:
    return {
        'apiVersion': 'example.com/v1',
        'kind': 'Widget',
        'metadata': {'name': name, **meta},
        'spec': {'size': size, 'color': color},
    }


def eventually(
    check: Callable[[], T | None], *, timeout: float = 5.0, what: str = 'condition'
) -> T:
    """Poll `check` until it returns something truthy (the emulator's controllers are async)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out waiting for {what}')
        time.sleep(0.02)


@dataclass
class Reply:
    status: int
    headers: Message
    body: Any


def http(
    emulator: KubeApiEmulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = 'application/json',
    accept: str | None = None,
    raw: bytes | None = None,
) -> Reply:
    """One raw HTTP request; JSON bodies are decoded, errors are answers too."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(emulator.url + path, data=data, method=method)
    if data is not None:
        request.add_header('Content-Type', content_type)
    if accept:
        request.add_header('Accept', accept)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, headers, payload = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, payload = error.code, error.headers, error.read()
    try:
        decoded: Any = json.loads(payload) if payload else None
    except ValueError:
        decoded = payload.decode()
    return Reply(status, headers, decoded)


@contextlib.contextmanager
def stream(emulator: KubeApiEmulator, path: str) -> Iterator[Iterator[dict[str, Any]]]:
    """Open a watch and iterate its events (the socket times out rather than hang a test)."""
    with urllib.request.urlopen(emulator.url + path, timeout=10) as response:
        assert response.status == 200
        assert response.headers['Content-Type'].startswith('application/json')

        def events() -> Iterator[dict[str, Any]]:
            for line in response:
                yield json.loads(line)

        yield events()


def take(events: Iterator[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    return [next(events) for _ in range(count)]


@pytest.fixture(scope='session')
def emulator() -> Iterator[KubeApiEmulator]:
    with running_emulator(bookmark_interval=0.2) as emu:
        yield emu


@pytest.fixture(scope='session')
def api_client(
    emulator: KubeApiEmulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[client.ApiClient]:
    kubeconfig = emulator.write_kubeconfig(tmp_path_factory.mktemp('kube') / 'config')
    api = config.new_client_from_config(str(kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def rbac(api_client: client.ApiClient) -> client.RbacAuthorizationV1Api:
    return client.RbacAuthorizationV1Api(api_client)


@pytest.fixture
def namespace(api_client: client.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    core = client.CoreV1Api(api_client)
    name = f'test-{uuid.uuid4().hex[:10]}'
    core.create_namespace({'metadata': {'name': name}})
    try:
        yield name
    finally:
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(name)


@pytest.fixture(scope='session')
def widgets(api_client: client.ApiClient) -> str:
    """The widgets.example.com CRD, created through the API and Established."""
    extensions = client.ApiextensionsV1Api(api_client)
    extensions.create_custom_resource_definition(WIDGET_CRD)

    def established() -> bool:
        crd = extensions.read_custom_resource_definition(WIDGETS)
        conditions = {c.type: c.status for c in (crd.status.conditions or [])}
        return conditions.get('Established') == 'True'

    eventually(established, what='the widgets CRD to be Established')
    return WIDGETS


@pytest.fixture
def tmp_kubeconfig(emulator: KubeApiEmulator, tmp_path: Path) -> Path:
    return emulator.write_kubeconfig(tmp_path / 'kubeconfig')

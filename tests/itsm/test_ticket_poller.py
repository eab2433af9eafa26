"""The poller's webhook door and write-back, without a cluster (issue #7)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from tenure.adapters.itsm import Credentials, ItsmClient, TicketRead
from tenure.api.v1alpha1 import ServiceIdentityStatus, TicketSourceSpec
from tenure.domain.names import IdentityNames
from tenure.errors import TransientError
from tenure.ticketing import TicketPoller, signature_of, webhook_route

NOW = datetime(2026, 12, 1, tzinfo=UTC)
KEY = b'the-hmac-key'


class Kube:
    def __init__(self) -> None:
        self.secrets = {
            ('tenure-system', 'creds'): {'username': 'u', 'password': 'p'},
            ('tenure-system', 'hook'): {'hmac-key': KEY.decode()},
        }
        self.patches: list[tuple[IdentityNames, Mapping[str, Any]]] = []

    def read_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.secrets.get((namespace, name))

    def patch_status(self, names: IdentityNames, status: Mapping[str, Any]) -> None:
        self.patches.append((names, status))


class FailingClient:
    """An ITSM that never answers a note, slowly."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def read(self, ticket_id: str, *, approvals: bool) -> TicketRead:
        raise TransientError('down')

    def add_note(self, ticket_id: str, text: str) -> None:
        self.release.wait(5)
        raise TransientError('could not add a work note: server error (503)')

    def close(self) -> None:
        return


def source_body(webhook: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {
        'type': 'servicenow',
        'url': 'https://example.service-now.com',
        'credentialsSecretRef': {'name': 'creds', 'namespace': 'tenure-system'},
    }
    if webhook:
        spec['webhookSecret'] = {'name': 'hook', 'namespace': 'tenure-system'}
    return {
        'apiVersion': 'tenure.dev/v1alpha1',
        'kind': 'TicketSource',
        'metadata': {'name': 'snow'},
        'spec': spec,
    }


async def nothing(key: tuple[str, str]) -> None:
    return


@pytest.fixture
def poller() -> TicketPoller:
    poller = TicketPoller(Kube(), reconcile=nothing, clock=lambda: NOW)
    poller.set_source('snow', source_body())
    return poller


@pytest.mark.parametrize(
    ('name', 'signature', 'leading', 'code'),
    [
        pytest.param('snow', signature_of(KEY, b'{}'), True, 202, id='signed-is-accepted'),
        pytest.param('snow', None, True, 401, id='unsigned-is-refused'),
        pytest.param('snow', signature_of(b'guess', b'{}'), True, 401, id='wrong-key-is-refused'),
        pytest.param('snow', 'sha1=abc', True, 401, id='other-scheme-is-refused'),
        pytest.param('jira', signature_of(KEY, b'{}'), True, 404, id='unknown-source'),
        pytest.param('snow', signature_of(KEY, b'{}'), False, 503, id='standby-asks-for-a-retry'),
        pytest.param('snow/x', signature_of(KEY, b'{}'), True, 404, id='no-sub-paths'),
    ],
)
def test_webhook_answers(
    poller: TicketPoller, name: str, signature: str | None, leading: bool, code: int
) -> None:
    route = webhook_route(poller, lambda: leading)
    assert route(name, b'{}', signature)[0] == code


def test_a_source_without_webhook_secret_refuses_every_webhook(poller: TicketPoller) -> None:
    poller.set_source('snow', source_body(webhook=False))
    route = webhook_route(poller, lambda: True)
    assert route('snow', b'{}', signature_of(KEY, b'{}'))[0] == 401


def test_a_failing_write_back_neither_blocks_nor_fails_the_revocation() -> None:
    release = threading.Event()

    def client(spec: TicketSourceSpec, credentials: Credentials) -> ItsmClient:
        return FailingClient(release)

    poller = TicketPoller(Kube(), reconcile=nothing, clock=lambda: NOW, clients=client)
    poller.set_source('snow', source_body())
    status = ServiceIdentityStatus.model_validate(
        {
            'phase': 'Revoked',
            'revocation': {
                'reason': 'TicketCancelled',
                'requestedAt': '2026-12-01T00:00:00Z',
                'completedAt': '2026-12-01T00:00:01Z',
                'verified': True,
                'proof': [],
            },
        }
    )
    body = {'spec': {'ticket': {'system': 'snow', 'id': 'CHG1'}}}
    poller.revoked(('ns', 'name'), body, status)  # returns while the ITSM hangs
    release.set()
    poller.close()  # waits for the queued note: its failure is logged, nothing raises

"""The Kubernetes side of ticket sources, against the API emulator (issue #7).

A cluster without the TicketSource CRD answers 404 on the collection
(https://kubernetes.io/docs/reference/using-api/api-concepts/: an unknown resource is not found);
the operator then starts with no ticket source, since none can exist.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import kubernetes
import pytest

from tenure.adapters.kubernetes import KubeObjects
from tenure_devtools.kubeapi import KubeApiEmulator, running_emulator

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@contextlib.contextmanager
def objects(emulator: KubeApiEmulator, tmp_path: Path) -> Iterator[KubeObjects]:
    config = kubernetes.client.Configuration()
    kubeconfig = emulator.write_kubeconfig(tmp_path / 'kubeconfig')
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=config)
    with kubernetes.client.ApiClient(config) as api:
        yield KubeObjects(api, clock=lambda: datetime.now(UTC))


def test_without_the_ticketsource_crd_there_are_no_ticket_sources(tmp_path: Path) -> None:
    crd = REPO / 'crds' / 'serviceidentities.tenure.dev.yaml'
    with running_emulator(crd_paths=[crd]) as emulator, objects(emulator, tmp_path) as kube:
        assert kube.list_ticket_sources() == []


def test_ticket_sources_and_their_secrets_are_read(
    kube_emulator: KubeApiEmulator, tmp_path: Path
) -> None:
    with objects(kube_emulator, tmp_path) as kube:
        core = kubernetes.client.CoreV1Api(kube.api)
        custom = kubernetes.client.CustomObjectsApi(kube.api)
        core.create_namespace({'metadata': {'name': 'itsm-reads'}})
        core.create_namespaced_secret(
            'itsm-reads',
            {
                'metadata': {'name': 'creds'},
                'data': {'token': base64.b64encode(b'abc').decode()},
            },
        )
        custom.create_cluster_custom_object(
            'tenure.dev',
            'v1alpha1',
            'ticketsources',
            {
                'apiVersion': 'tenure.dev/v1alpha1',
                'kind': 'TicketSource',
                'metadata': {'name': 'reads'},
                'spec': {
                    'type': 'jira',
                    'url': 'https://example.atlassian.net',
                    'credentialsSecretRef': {'name': 'creds', 'namespace': 'itsm-reads'},
                },
            },
        )
        listed = {s['metadata']['name']: s for s in kube.list_ticket_sources()}
        # The API server stamps the schema's defaults.
        assert listed['reads']['spec']['pollInterval'] == '60s'
        # No default table: a webhook source must not have one (ServiceNow reads change_request).
        assert 'table' not in listed['reads']['spec']
        assert kube.read_secret_data('itsm-reads', 'creds') == {'token': 'abc'}
        assert kube.read_secret_data('itsm-reads', 'absent') is None

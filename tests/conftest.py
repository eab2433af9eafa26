"""Fixtures shared by every test tier: the Kubernetes API emulator and clients for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from tenure_devtools.kubeapi import KubeApiEmulator, running_emulator

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def kube_emulator() -> Iterator[KubeApiEmulator]:
    """The Kubernetes API emulator with Tenure's CRDs for the session, stopped at the end."""
    with running_emulator(crd_paths=[REPO / 'crds']) as emulator:
        yield emulator


@pytest.fixture(scope='session')
def kubeconfig(kube_emulator: KubeApiEmulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig file for the emulator (usable by the kubernetes client, kopf and kubectl)."""
    return kube_emulator.write_kubeconfig(tmp_path_factory.mktemp('kube') / 'kubeconfig')


@pytest.fixture
def kube_api(kubeconfig: Path) -> Iterator[kubernetes.client.ApiClient]:
    """An official-client ApiClient for the emulator."""
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=config)
    with kubernetes.client.ApiClient(config) as client:
        yield client

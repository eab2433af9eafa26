"""Fixtures shared by every test tier: the Kubernetes API emulator and clients for it, and the
local stack of the integration and ITSM tests (one OpenBao per session, the real operator).

The fault tests build their own stack (tests/faults/conftest.py): their faults must never reach
the servers shared here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from tenure_devtools.kubeapi import KubeApiEmulator, running_emulator
from tenure_devtools.openbao import OpenBaoDevServer, running_openbao
from tenure_devtools.operator_process import OperatorProcess
from tests.integration.stack import Stack

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


@pytest.fixture(scope='session')
def openbao() -> Iterator[OpenBaoDevServer]:
    """One OpenBao dev server shared by the session; tests that seal it start their own.

    At debug level the server log says why a login was refused (`bao.log_tail()`).
    """
    with running_openbao(log_level='debug') as server:
        yield server


@pytest.fixture(scope='session')
def vault_for_identities(
    openbao: OpenBaoDevServer, kube_emulator: KubeApiEmulator
) -> OpenBaoDevServer:
    """OpenBao with its Kubernetes auth method reviewing tokens against the emulator."""
    openbao.configure_kubernetes_auth(kubernetes_host=kube_emulator.url)
    return openbao


@pytest.fixture(scope='module')
def operator(
    kubeconfig: Path,
    vault_for_identities: OpenBaoDevServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """The real `tenure run`, as a child process, for the tests of one module."""
    with OperatorProcess(
        kubeconfig=kubeconfig,
        vault_addr=vault_for_identities.addr,
        vault_token=vault_for_identities.root_token,
        log_dir=tmp_path_factory.mktemp('operator'),
    ) as process:
        process.start()
        yield process


@pytest.fixture
def stack(kube_api: kubernetes.client.ApiClient, vault_for_identities: OpenBaoDevServer) -> Stack:
    return Stack(kube_api, vault_for_identities)

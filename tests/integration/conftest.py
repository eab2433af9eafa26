"""Fixtures for tests against the local stack: real OpenBao, the emulator, the real operator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from tenure_devtools.kubeapi import KubeApiEmulator
from tenure_devtools.openbao import OpenBaoDevServer, running_openbao
from tenure_devtools.operator_process import OperatorProcess
from tests.integration.stack import Stack


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

"""The fault tests' own stack: an emulator, an OpenBao behind a fault proxy, one real operator.

Everything here is the tests' own, never the session's shared servers: fault rules apply to a
whole emulator, the proxy breaks a whole Vault, and the operator (watching every namespace) is
killed and restarted. One operator process serves the package at DEBUG level, so that the secret
canary can read every line it ever wrote; a test that kills it gets it back before the next test.

The test's own Kubernetes client sends the emulator's exempt header (faults never reach it), and
its Vault client talks to OpenBao directly, never through the proxy.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from tenure_devtools.faultproxy import FaultProxy, ProxyMode, running_fault_proxy
from tenure_devtools.kubeapi import KubeApiEmulator, running_emulator
from tenure_devtools.kubeapi.faults import EXEMPT_HEADER
from tenure_devtools.openbao import OpenBaoDevServer, running_openbao
from tenure_devtools.operator_process import OperatorProcess
from tests.faults.invariants import World

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='package')
def emu() -> Iterator[KubeApiEmulator]:
    """An emulator for the fault tests alone (its fault rules apply to every client)."""
    with running_emulator(crd_paths=[REPO / 'crds']) as emulator:
        yield emulator


@pytest.fixture(scope='package')
def fault_kubeconfig(emu: KubeApiEmulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return emu.write_kubeconfig(tmp_path_factory.mktemp('faults-kube') / 'kubeconfig')


@pytest.fixture(scope='package')
def bao(emu: KubeApiEmulator) -> Iterator[OpenBaoDevServer]:
    """A dedicated OpenBao (the proxy breaks it at will), reviewing tokens against `emu`."""
    with running_openbao() as server:
        server.configure_kubernetes_auth(kubernetes_host=emu.url)
        yield server


@pytest.fixture(scope='package')
def proxy(bao: OpenBaoDevServer) -> Iterator[FaultProxy]:
    with running_fault_proxy(bao.addr) as running:
        yield running


@pytest.fixture(scope='package')
def operator_process(
    fault_kubeconfig: Path,
    proxy: FaultProxy,
    bao: OpenBaoDevServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """The real `tenure run` at DEBUG, reaching Vault only through the proxy."""
    with OperatorProcess(
        kubeconfig=fault_kubeconfig,
        vault_addr=proxy.url,
        vault_token=bao.root_token,
        args=['--log-level', 'DEBUG'],
        log_dir=tmp_path_factory.mktemp('faults-operator'),
    ) as process:
        process.start()
        yield process


@pytest.fixture
def operator(
    operator_process: OperatorProcess, emu: KubeApiEmulator, proxy: FaultProxy
) -> Iterator[OperatorProcess]:
    """The operator, running, with no fault in force; every fault is healed after the test,
    and an operator the test killed is started again."""
    emu.faults.clear()
    proxy.mode(ProxyMode.pass_through())
    if not operator_process.running:
        operator_process.start()
    try:
        yield operator_process
    finally:
        emu.faults.clear()
        proxy.mode(ProxyMode.pass_through())
        if not operator_process.running:
            operator_process.start()


@pytest.fixture
def kube(fault_kubeconfig: Path) -> Iterator[kubernetes.client.ApiClient]:
    """The test's official client for `emu`, exempt from every fault rule."""
    api = kubernetes.config.new_client_from_config(str(fault_kubeconfig))
    api.set_default_header(EXEMPT_HEADER, '1')
    with api:
        yield api


@pytest.fixture
def world(kube: kubernetes.client.ApiClient, bao: OpenBaoDevServer) -> World:
    return World(kube, bao)


@pytest.fixture
def ns(world: World, request: pytest.FixtureRequest) -> str:
    """A namespace of the test's own."""
    prefix = request.node.name.split('[')[0].removeprefix('test_')[:20].rstrip('_-')
    return world.namespace(f'{prefix.replace("_", "-")}-{uuid.uuid4().hex[:6]}')

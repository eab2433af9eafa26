"""Rendering deploy/ the way an admin does (`kubectl kustomize`), and finding objects in it.

kubectl is not a Python dependency: tests that render are skipped where it is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / 'deploy'
THIRD_PARTY_CRDS = Path(__file__).resolve().parent / 'third_party_crds.yaml'
OPERATOR_NAMESPACE = 'tenure-system'
OPERATOR_SERVICE_ACCOUNT = 'tenure'

Obj = dict[str, Any]


def kubectl_binary() -> str:
    found = shutil.which('kubectl')
    if found is None:
        pytest.skip('kubectl is not installed')
    return found


def kustomize(path: Path) -> list[Obj]:
    """`kubectl kustomize <path>`: the objects `kubectl apply -k <path>` would send."""
    result = subprocess.run(
        [kubectl_binary(), 'kustomize', str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def load(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding='utf-8')) if doc]


def find(objects: Iterable[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o['kind'] == kind and o['metadata']['name'] == name]
    assert len(matches) == 1, f'expected one {kind} {name}, found {len(matches)}'
    return matches[0]


def of_kind(objects: Iterable[Obj], *kinds: str) -> list[Obj]:
    return [o for o in objects if o['kind'] in kinds]


@pytest.fixture(scope='session')
def install() -> list[Obj]:
    """`kubectl apply -k deploy/`: the base and the cert-manager component."""
    return kustomize(DEPLOY)


@pytest.fixture(scope='session')
def base() -> list[Obj]:
    """`kubectl apply -k deploy/base/`: the install for clusters without cert-manager."""
    return kustomize(DEPLOY / 'base')


@pytest.fixture(scope='session')
def monitoring() -> list[Obj]:
    return kustomize(DEPLOY / 'monitoring')


@pytest.fixture(scope='session')
def tenant() -> list[Obj]:
    """`kubectl apply -n <ns> -k deploy/tenant-namespace/`."""
    return kustomize(DEPLOY / 'tenant-namespace')


@pytest.fixture(scope='session')
def token_reviewer() -> list[Obj]:
    """deploy/vault/token-reviewer.yaml (applied by hand, for a Vault outside the cluster)."""
    return load(DEPLOY / 'vault' / 'token-reviewer.yaml')


@pytest.fixture(scope='session')
def everything(
    install: list[Obj], monitoring: list[Obj], tenant: list[Obj], token_reviewer: list[Obj]
) -> list[Obj]:
    """Every object deploy/ can put in a cluster."""
    return [*install, *monitoring, *tenant, *token_reviewer]


@pytest.fixture(scope='session')
def deployment(install: list[Obj]) -> Obj:
    return find(install, 'Deployment', 'tenure')


@pytest.fixture(scope='session')
def pod_spec(deployment: Obj) -> Obj:
    spec: Obj = deployment['spec']['template']['spec']
    return spec


@pytest.fixture(scope='session')
def container(pod_spec: Obj) -> Obj:
    containers: list[Obj] = pod_spec['containers']
    assert [c['name'] for c in containers] == ['operator']
    return containers[0]

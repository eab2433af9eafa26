"""`tenure run` fails fast with a clear message, and can log in to Vault as its own ServiceAccount.

Issue #3: "It fails fast with a clear message when Kubernetes or Vault is unreachable at start,
or the auth mount does not exist."
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tenure.adapters.vault import operator_policy
from tenure_devtools.kubeapi import running_emulator
from tenure_devtools.openbao import OpenBaoDevServer
from tenure_devtools.operator_process import OperatorProcess
from tenure_devtools.ports import free_port
from tests.integration.stack import Stack, identity
from tests.integration.test_lifecycle import assert_active

pytestmark = pytest.mark.integration


def tenure_run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(('VAULT_', 'KUBE'))}
    return subprocess.run(
        [sys.executable, '-m', 'tenure', 'run', '--metrics-port', '0', '--health-port', '0', *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ('args', 'vault', 'message'),
    [
        pytest.param((), 'closed', 'could not', id='vault-unreachable'),
        pytest.param(
            ('--auth-mount', 'no-such-mount'),
            'real',
            "auth mount 'no-such-mount/'",
            id='auth-mount-missing',
        ),
        pytest.param(('--kv-mount', 'nokv'), 'real', 'nokv', id='kv-mount-missing'),
    ],
)
def test_vault_problems_stop_the_operator_at_start_with_a_clear_message(
    kubeconfig: Path,
    vault_for_identities: OpenBaoDevServer,
    args: tuple[str, ...],
    vault: str,
    message: str,
) -> None:
    addr = f'http://127.0.0.1:{free_port()}' if vault == 'closed' else vault_for_identities.addr
    result = tenure_run(
        '--kubeconfig',
        str(kubeconfig),
        *args,
        env={'VAULT_ADDR': addr, 'VAULT_TOKEN': vault_for_identities.root_token},
    )
    assert result.returncode == 1, result.stderr
    assert 'tenure: cannot start:' in result.stderr
    assert message in result.stderr
    assert vault_for_identities.root_token not in result.stderr + result.stdout


def test_an_unreachable_kubernetes_api_stops_the_operator_at_start(
    tmp_path: Path, vault_for_identities: OpenBaoDevServer
) -> None:
    kubeconfig = tmp_path / 'kubeconfig'
    with running_emulator(crd_paths=[]) as emulator:
        emulator.write_kubeconfig(kubeconfig)
    # The emulator is stopped: the kubeconfig now points at a closed port.
    result = tenure_run(
        '--kubeconfig',
        str(kubeconfig),
        env={
            'VAULT_ADDR': vault_for_identities.addr,
            'VAULT_TOKEN': vault_for_identities.root_token,
        },
    )
    assert result.returncode == 1
    assert 'cannot start: could not reach the Kubernetes API' in result.stderr


def test_a_cluster_without_the_crd_stops_the_operator_at_start(
    tmp_path: Path, vault_for_identities: OpenBaoDevServer
) -> None:
    with running_emulator(crd_paths=[]) as emulator:
        kubeconfig = emulator.write_kubeconfig(tmp_path / 'kubeconfig')
        result = tenure_run(
            '--kubeconfig',
            str(kubeconfig),
            env={
                'VAULT_ADDR': vault_for_identities.addr,
                'VAULT_TOKEN': vault_for_identities.root_token,
            },
        )
    assert result.returncode == 1
    assert 'kubectl apply -f crds/' in result.stderr


def test_missing_vault_credentials_are_a_usage_error(kubeconfig: Path) -> None:
    result = tenure_run('--kubeconfig', str(kubeconfig), env={'VAULT_ADDR': 'http://127.0.0.1:1'})
    assert result.returncode == 2
    assert 'no Vault credentials' in result.stderr


def test_the_operator_logs_in_to_vault_as_its_service_account_with_least_privilege(
    kubeconfig: Path,
    vault_for_identities: OpenBaoDevServer,
    stack: Stack,
    tmp_path: Path,
) -> None:
    """The deployment's way: Vault Kubernetes auth, and a token holding only operator_policy()."""
    system = stack.namespace(f'tenure-system-{uuid.uuid4().hex[:6]}')
    stack.core.create_namespaced_service_account(system, {'metadata': {'name': 'tenure'}})
    jwt = stack.service_account_token(system, 'tenure')
    jwt_file = tmp_path / 'token'
    jwt_file.write_text(jwt)
    root = vault_for_identities.client()
    root.sys.create_or_update_acl_policy('tenure_operator', operator_policy())
    # Not `tenure-*`: the operator may write roles of that pattern and must not edit its own.
    root.write(
        'auth/kubernetes/role/tenure_operator',
        bound_service_account_names=['tenure'],
        bound_service_account_namespaces=[system],
        token_policies=['tenure_operator'],
        token_no_default_policy=True,
        token_ttl=600,
    )
    ns = stack.namespace(f'auth-{uuid.uuid4().hex[:8]}')
    with OperatorProcess(
        kubeconfig=kubeconfig,
        vault_addr=vault_for_identities.addr,
        vault_token=None,
        args=[
            '--namespace',
            ns,
            '--vault-auth-role',
            'tenure_operator',
            '--vault-auth-jwt-file',
            str(jwt_file),
        ],
        log_dir=tmp_path,
    ) as operator:
        operator.start()
        stack.create(identity('least', ns))
        assert_active(stack, ns, 'least')
        assert 'logged in to Vault as role tenure_operator' in operator.log_text()
        stack.delete(ns, 'least')
        stack.wait_gone(ns, 'least')

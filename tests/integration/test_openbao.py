"""The OpenBao dev server the tests and the sandbox run against: a real server, really stopped."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import hvac.exceptions
import pytest
from kubernetes import client as k8s

from tenure_devtools.kubeapi import running_emulator
from tenure_devtools.openbao import (
    DEV_KV_MOUNT,
    AuditLogCounter,
    OpenBaoDevServer,
    OpenBaoError,
    running_openbao,
)

pytestmark = pytest.mark.integration


def _accepts_connections(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex(('127.0.0.1', port)) == 0


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- it starts, and behaves like the OpenBao the operator will meet ---------------------------


def test_server_listens_on_a_port_chosen_at_run_time(openbao: OpenBaoDevServer) -> None:
    assert openbao.addr == f'http://127.0.0.1:{openbao.port}'
    assert openbao.port != 8200, 'the default dev port would collide with a developer’s own Bao'
    health = openbao.client().sys.read_health_status(method='GET')
    assert health['initialized'] is True
    assert health['sealed'] is False


def test_root_token_is_random_per_run_and_authenticates(openbao: OpenBaoDevServer) -> None:
    assert openbao.root_token not in {'root', ''}
    client = openbao.client()
    assert client.is_authenticated()
    assert client.auth.token.lookup_self()['data']['policies'] == ['root']


def test_kv_v2_is_mounted_at_secret(openbao: OpenBaoDevServer) -> None:
    mounts = openbao.client().sys.list_mounted_secrets_engines()['data']
    assert mounts[f'{DEV_KV_MOUNT}/']['type'] == 'kv'
    assert mounts[f'{DEV_KV_MOUNT}/']['options']['version'] == '2'


def test_a_secret_round_trips_through_kv_v2(openbao: OpenBaoDevServer) -> None:
    kv = openbao.client().secrets.kv.v2
    kv.create_or_update_secret('tenure/ns1/app', secret={'password': 'first'})
    kv.create_or_update_secret('tenure/ns1/app', secret={'password': 'second'})

    latest = kv.read_secret_version('tenure/ns1/app', raise_on_deleted_version=True)['data']
    first = kv.read_secret_version('tenure/ns1/app', version=1, raise_on_deleted_version=True)

    assert latest['data'] == {'password': 'second'}
    assert latest['metadata']['version'] == 2, 'KV v2 keeps versions'
    assert first['data']['data'] == {'password': 'first'}


def test_a_policy_can_be_written_and_read_back(openbao: OpenBaoDevServer) -> None:
    policy = 'path "secret/data/tenure/ns1/app" {\n  capabilities = ["read"]\n}\n'
    client = openbao.client()
    client.sys.create_or_update_acl_policy(name='tenure-ns1-app', policy=policy)

    assert client.sys.read_acl_policy('tenure-ns1-app')['data']['policy'] == policy
    assert 'tenure-ns1-app' in client.sys.list_acl_policies()['data']['keys']


# -- failures are explained, and never leak the root token -------------------------------------


def test_startup_failure_shows_the_servers_own_reason(
    openbao: OpenBaoDevServer, tmp_path: Path
) -> None:
    """A second server on a taken port fails fast, with bao's own error in the message."""
    started = time.monotonic()
    with (
        pytest.raises(OpenBaoError, match=r'exited with code \d+(.|\n)*address already in use'),
        OpenBaoDevServer(tmp_path, port=openbao.port, startup_timeout=30),
    ):
        pass
    assert time.monotonic() - started < 15, 'an exited server is reported without waiting'


def test_error_text_never_contains_the_root_token() -> None:
    """The log tail shown on failure is scrubbed, though the server printed both secrets."""
    with running_openbao() as bao:
        raw_log = bao.log_path.read_text()
        assert bao.root_token in raw_log, 'the test only means something if bao logged it'
        assert bao.unseal_key in raw_log
        bao.seal()

        with pytest.raises(OpenBaoError, match='was not ready') as failure:
            bao.wait_until_ready(timeout=0.2)

        message = str(failure.value)
        assert 'Root Token: <redacted>' in message, 'the tail covers the lines with the secrets'
        assert bao.root_token not in message
        assert bao.unseal_key not in message
        assert bao.root_token not in repr(bao)


def test_the_audit_log_counts_each_request_the_server_handled_and_its_writes() -> None:
    """The benchmark counts Vault requests at the server (no proxy in the path measured)."""
    with running_openbao(audit_log=True) as bao:
        assert bao.audit_log_path is not None
        counter = AuditLogCounter(bao.audit_log_path)
        before = counter.counts()
        client = bao.client()
        client.secrets.kv.v2.create_or_update_secret('audited', secret={'k': 'canary-value'})
        client.secrets.kv.v2.read_secret_version('audited', raise_on_deleted_version=True)
        client.sys.list_acl_policies()
        client.secrets.kv.v2.delete_metadata_and_all_versions('audited')
        after = counter.counts()
        # OpenBao writes the entry before it answers: both are in the file by now.
        assert (after.requests - before.requests, after.writes - before.writes) == (4, 2)
        assert counter.counts() == after, 'each entry is counted once'
        assert 'canary-value' not in bao.audit_log_path.read_text(), 'values are HMAC-ed'


# -- seal and unseal, for outage tests ----------------------------------------------------------


def test_a_sealed_server_refuses_requests_until_unsealed() -> None:
    # Its own server: a failure half-way must not leave the shared one sealed.
    with running_openbao() as bao:
        client = bao.client()
        client.secrets.kv.v2.create_or_update_secret('before-outage', secret={'k': 'v'})

        bao.seal()
        assert client.sys.is_sealed()
        with pytest.raises(hvac.exceptions.VaultDown, match='sealed'):
            client.secrets.kv.v2.read_secret_version('before-outage', raise_on_deleted_version=True)

        bao.unseal()
        assert not client.sys.is_sealed()
        read = client.secrets.kv.v2.read_secret_version(
            'before-outage', raise_on_deleted_version=True
        )
        assert read['data']['data'] == {'k': 'v'}, 'in-memory storage survives a seal'


# -- kubernetes auth configuration --------------------------------------------------------------


def test_kubernetes_auth_configuration_can_be_applied_twice(openbao: OpenBaoDevServer) -> None:
    """Enabling is idempotent; the second call wins, and no pod files are ever consulted."""
    openbao.configure_kubernetes_auth(kubernetes_host='http://127.0.0.1:1', mount='k8s-twice')
    openbao.configure_kubernetes_auth(
        kubernetes_host='http://127.0.0.1:2',
        mount='k8s-twice',
        token_reviewer_jwt='reviewer.jwt.value',
        issuer='https://kubernetes.default.svc',
    )

    config = openbao.client().read('auth/k8s-twice/config')['data']
    assert config['kubernetes_host'] == 'http://127.0.0.1:2'
    assert config['disable_local_ca_jwt'] is True
    assert config['token_reviewer_jwt_set'] is True
    assert config['issuer'] == 'https://kubernetes.default.svc'
    assert config['disable_iss_validation'] is False, 'an issuer given is an issuer checked'
    assert config['kubernetes_ca_cert'].startswith('-----BEGIN CERTIFICATE-----')


def test_kubernetes_auth_refuses_a_mount_of_another_type(openbao: OpenBaoDevServer) -> None:
    openbao.client().sys.enable_auth_method(method_type='approle', path='not-kubernetes')

    with pytest.raises(OpenBaoError, match="'approle' auth method, not kubernetes"):
        openbao.configure_kubernetes_auth(
            kubernetes_host='http://127.0.0.1:1', mount='not-kubernetes'
        )


def _create_service_account(core: k8s.CoreV1Api, namespace: str, name: str) -> str:
    """Create the namespace (if new) and the ServiceAccount; return the ServiceAccount's uid."""
    namespaces = {ns.metadata.name for ns in core.list_namespace().items}
    if namespace not in namespaces:
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    body = k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=name))
    uid: str = core.create_namespaced_service_account(namespace, body).metadata.uid
    return uid


def _request_token(core: k8s.CoreV1Api, namespace: str, name: str, audiences: list[str]) -> str:
    spec = k8s.V1TokenRequestSpec(audiences=audiences, expiration_seconds=600)
    body = k8s.AuthenticationV1TokenRequest(spec=spec)
    token: str = core.create_namespaced_service_account_token(name, namespace, body).status.token
    return token


def test_a_service_account_logs_in_until_it_is_deleted(openbao: OpenBaoDevServer) -> None:
    """Kubernetes auth end to end: TokenRequest -> login -> scoped access -> SA gone -> refused.

    Set up as production Vault/OpenBao is: a reviewer ServiceAccount bound to the built-in
    `system:auth-delegator` ClusterRole supplies `token_reviewer_jwt`, and OpenBao asks the
    emulator's TokenReview API about each login JWT, exactly as it asks a cluster (see
    `OpenBaoDevServer.configure_kubernetes_auth` for what it sends and expects).
    https://openbao.org/docs/auth/kubernetes/#configuring-kubernetes
    """
    namespace, name, mount = 'team-a', 'payments', 'k8s-login-e2e'
    role = policy = f'tenure-{namespace}-{name}'
    root = openbao.client()
    root.secrets.kv.v2.create_or_update_secret(f'tenure/{namespace}/{name}', secret={'k': 'v'})
    root.secrets.kv.v2.create_or_update_secret(f'tenure/{namespace}/other', secret={'k': 'x'})
    root.sys.create_or_update_acl_policy(
        name=policy,
        policy=f'path "secret/data/tenure/{namespace}/{name}" {{ capabilities = ["read"] }}',
    )

    with (
        running_emulator(crd_paths=[]) as emu,
        k8s.ApiClient(k8s.Configuration(host=emu.url)) as api,
    ):
        core = k8s.CoreV1Api(api)
        _create_service_account(core, 'openbao', 'token-reviewer')
        k8s.RbacAuthorizationV1Api(api).create_cluster_role_binding(
            k8s.V1ClusterRoleBinding(
                metadata=k8s.V1ObjectMeta(name='openbao-token-reviewer'),
                role_ref=k8s.V1RoleRef(
                    api_group='rbac.authorization.k8s.io',
                    kind='ClusterRole',
                    name='system:auth-delegator',
                ),
                subjects=[
                    k8s.RbacV1Subject(
                        kind='ServiceAccount', name='token-reviewer', namespace='openbao'
                    )
                ],
            )
        )
        # A reviewer token for the API server's own audience, as a pod's projected token is.
        reviewer_jwt = _request_token(core, 'openbao', 'token-reviewer', audiences=[])
        uid = _create_service_account(core, namespace, name)
        # `vault` is the audience OpenBao's docs bind roles to, so that a token minted for
        # another consumer cannot be replayed here.
        jwt = _request_token(core, namespace, name, audiences=['vault'])

        openbao.configure_kubernetes_auth(
            kubernetes_host=emu.url, mount=mount, token_reviewer_jwt=reviewer_jwt
        )
        root.auth.kubernetes.create_role(
            name=role,
            bound_service_account_names=[name],
            bound_service_account_namespaces=[namespace],
            policies=[policy],
            audience='vault',
            ttl='10m',
            mount_point=mount,
        )

        workload = openbao.client(token='')
        login = workload.auth.kubernetes.login(role, jwt, mount_point=mount)['auth']
        assert login['metadata']['service_account_name'] == name
        assert login['metadata']['service_account_namespace'] == namespace
        assert login['metadata']['service_account_uid'] == uid
        assert policy in login['policies']
        secret = workload.secrets.kv.v2.read_secret_version(
            f'tenure/{namespace}/{name}', raise_on_deleted_version=True
        )
        assert secret['data']['data'] == {'k': 'v'}
        with pytest.raises(hvac.exceptions.Forbidden):
            workload.secrets.kv.v2.read_secret_version(
                f'tenure/{namespace}/other', raise_on_deleted_version=True
            )

        core.delete_namespaced_service_account(name, namespace)

        with pytest.raises(hvac.exceptions.Forbidden, match='permission denied'):
            openbao.client(token='').auth.kubernetes.login(role, jwt, mount_point=mount)
        # What Tenure must do itself: OpenBao does not revoke the tokens it already issued when
        # the ServiceAccount behind them goes away (revocation has to be explicit).
        assert workload.secrets.kv.v2.read_secret_version(
            f'tenure/{namespace}/{name}', raise_on_deleted_version=True
        )


# -- nothing is left behind --------------------------------------------------------------------


@pytest.mark.parametrize(
    ('stop_timeout', 'escalates_to_sigkill'),
    [
        pytest.param(10.0, False, id='stops-on-sigterm'),
        pytest.param(0.0, True, id='killed-when-sigterm-is-not-enough'),
    ],
)
def test_server_process_is_gone_after_the_block(
    stop_timeout: float, escalates_to_sigkill: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with running_openbao(stop_timeout=stop_timeout) as bao:
        pid, port = bao.pid, bao.port
        assert pid is not None
        assert bao.running

    assert not bao.running
    assert not _process_exists(pid)
    assert not _accepts_connections(port)
    assert not _accepts_connections(port + 1), 'the cluster listener is closed too'
    assert ('killing it' in caplog.text) is escalates_to_sigkill


class _BodyFailedError(Exception):
    pass


def _use_and_fail(servers: list[OpenBaoDevServer]) -> None:
    with running_openbao() as bao:
        servers.append(bao)
        raise _BodyFailedError


def test_server_process_is_gone_when_the_body_raises() -> None:
    servers: list[OpenBaoDevServer] = []
    with pytest.raises(_BodyFailedError):
        _use_and_fail(servers)

    (bao,) = servers
    assert bao.pid is not None
    assert not bao.running
    assert not _process_exists(bao.pid)
    assert not _accepts_connections(bao.port)

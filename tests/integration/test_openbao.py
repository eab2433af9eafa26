"""The OpenBao dev server the tests and the sandbox run against: a real server, really stopped."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import hvac.exceptions
import pytest

from tenure_devtools.openbao import (  # noqa: TID251
    DEV_KV_MOUNT,
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

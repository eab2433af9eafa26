"""The Vault fault proxy in front of a real OpenBao: each mode as hvac sees it, and as Tenure's
Vault adapter classifies it (TransientError: retry; PermanentError: stop and report).

The expected answers are OpenBao's own: a bad token gets 403 `{"errors":["permission denied"]}`,
a sealed server 503 `{"errors":["Vault is sealed"]}`, both `application/json` with
`Cache-Control: no-store` (https://openbao.org/api-docs/#http-status-codes); the proxy's
synthesised errors are compared byte for byte with what the server itself sends.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import hvac
import hvac.exceptions
import pytest
import requests

from tenure.adapters.vault import VaultMaterial
from tenure.errors import PermanentError, TransientError
from tenure_devtools.faultproxy import WRITES, FaultProxy, ProxyMode, running_fault_proxy
from tenure_devtools.openbao import OpenBaoDevServer, running_openbao

pytestmark = pytest.mark.integration

POLICY = 'path "secret/data/fault-proxy/*" {\n  capabilities = ["read"]\n}\n'


@pytest.fixture
def proxy(openbao: OpenBaoDevServer) -> Iterator[FaultProxy]:
    with running_fault_proxy(openbao.addr) as running:
        yield running


def _client(url: str, token: str, *, timeout: float = 30) -> hvac.Client:
    session = requests.Session()
    session.trust_env = False  # loopback: no proxies or netrc from the environment
    return hvac.Client(url=url, token=token, session=session, timeout=timeout)


@pytest.fixture
def through(proxy: FaultProxy, openbao: OpenBaoDevServer) -> Iterator[hvac.Client]:
    """hvac through the proxy, as the operator would be configured."""
    client = _client(proxy.url, openbao.root_token)
    try:
        yield client
    finally:
        client.adapter.close()


def _secret_path() -> str:
    return f'fault-proxy/{uuid.uuid4().hex[:8]}'


def _raw(url: str, token: str) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False
        return session.get(url + '/v1/auth/token/lookup-self', headers={'X-Vault-Token': token})


# ---- modes as hvac sees them --------------------------------------------------------------


def test_pass_through_keeps_one_connection_alive_for_a_session(
    proxy: FaultProxy, through: hvac.Client, openbao: OpenBaoDevServer
) -> None:
    """hvac's requests session reuses its connection (HTTP/1.1 keep-alive) through the proxy,
    and answers are the server's own."""
    path = _secret_path()
    through.secrets.kv.v2.create_or_update_secret(path, secret={'k': 'v'})
    for _ in range(3):
        read = through.secrets.kv.v2.read_secret_version(path, raise_on_deleted_version=True)
        assert read['data']['data'] == {'k': 'v'}
    direct = openbao.client().secrets.kv.v2.read_secret_version(path, raise_on_deleted_version=True)
    assert direct['data']['metadata']['version'] == 1
    counts = proxy.counts
    assert (counts.connections, counts.requests, counts.forwarded) == (1, 4, 4)


def test_down_refuses_connections_then_comes_back_on_the_same_url(
    proxy: FaultProxy, through: hvac.Client
) -> None:
    """Down looks like a stopped Vault: the connection is refused; back up, the same URL works."""
    assert through.sys.is_initialized()
    url = proxy.url
    proxy.mode(ProxyMode.down())
    with pytest.raises(requests.ConnectionError) as refused:
        through.sys.is_initialized()
    assert 'Connection refused' in str(refused.value)
    assert proxy.counts.resets == 1  # the idle keep-alive connection went down with it
    proxy.mode(ProxyMode.pass_through())
    assert proxy.url == url
    assert through.sys.is_initialized()


def test_going_down_resets_requests_in_flight(proxy: FaultProxy, through: hvac.Client) -> None:
    """A request waiting in the proxy when Vault goes down fails with a connection error."""
    proxy.mode(ProxyMode.slow(30))
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(through.sys.read_health_status, method='GET')
        proxy.wait_until(lambda c: c.delayed >= 1)
        proxy.mode(ProxyMode.down())
        with pytest.raises(requests.ConnectionError):
            pending.result(timeout=10)
    assert proxy.counts.forwarded == 0


def test_slow_delays_each_request_and_a_short_timeout_gives_up(
    proxy: FaultProxy, openbao: OpenBaoDevServer
) -> None:
    proxy.mode(ProxyMode.slow(0.3))
    patient = _client(proxy.url, openbao.root_token)
    started = time.monotonic()
    assert patient.sys.is_initialized()
    assert time.monotonic() - started >= 0.3
    hasty = _client(proxy.url, openbao.root_token, timeout=0.1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        hasty.sys.is_initialized()
    assert proxy.counts.delayed == 2


@pytest.mark.parametrize(
    ('status', 'exception', 'errors'),
    [
        pytest.param(500, hvac.exceptions.InternalServerError, ['internal error'], id='500'),
        pytest.param(502, hvac.exceptions.BadGateway, ['bad gateway'], id='502'),
        pytest.param(503, hvac.exceptions.VaultDown, ['Vault is sealed'], id='503-sealed'),
    ],
)
def test_server_errors_reach_hvac_in_vaults_error_format(
    proxy: FaultProxy,
    through: hvac.Client,
    status: int,
    exception: type[hvac.exceptions.VaultError],
    errors: list[str],
) -> None:
    """hvac raises by status (hvac.exceptions.VaultError.from_status) with Vault's `errors`."""
    proxy.mode(ProxyMode.server_error(status))
    with pytest.raises(exception) as failed:
        through.secrets.kv.v2.read_secret_version(_secret_path(), raise_on_deleted_version=True)
    assert failed.value.errors == errors
    assert proxy.counts.failed == 1


def test_a_proxied_seal_answer_is_byte_for_byte_a_sealed_openbao(
    proxy: FaultProxy, openbao: OpenBaoDevServer
) -> None:
    """Compared with a real sealed OpenBao of its own (sealing the shared one would disturb
    other tests)."""
    proxy.mode(ProxyMode.server_error(503))
    faked = _raw(proxy.url, openbao.root_token)
    with running_openbao() as sealed:
        sealed.seal()
        real = _raw(sealed.addr, sealed.root_token)
    assert (faked.status_code, faked.content) == (real.status_code, real.content)
    for header in ('Content-Type', 'Cache-Control'):
        assert faked.headers[header] == real.headers[header]


def test_permission_denied_is_the_403_of_a_bad_token(
    proxy: FaultProxy, through: hvac.Client, openbao: OpenBaoDevServer
) -> None:
    proxy.mode(ProxyMode.permission_denied())
    with pytest.raises(hvac.exceptions.Forbidden) as denied:
        through.auth.token.lookup_self()
    assert denied.value.errors == ['permission denied']
    faked = _raw(proxy.url, openbao.root_token)
    real = _raw(openbao.addr, 'not-a-token')
    assert (
        (faked.status_code, faked.content)
        == (real.status_code, real.content)
        == (
            403,
            b'{"errors":["permission denied"]}\n',
        )
    )
    for header in ('Content-Type', 'Cache-Control'):
        assert faked.headers[header] == real.headers[header]


def test_faults_can_target_one_path(proxy: FaultProxy, through: hvac.Client) -> None:
    """Only token endpoints are refused; everything else passes through."""
    proxy.mode(ProxyMode.permission_denied(path=r'^/v1/auth/token/'))
    with pytest.raises(hvac.exceptions.Forbidden):
        through.auth.token.lookup_self()
    through.secrets.kv.v2.create_or_update_secret(_secret_path(), secret={'k': 'v'})
    assert (proxy.counts.failed, proxy.counts.forwarded) == (1, 1)


def test_faults_can_target_writes_only(proxy: FaultProxy, through: hvac.Client) -> None:
    path = _secret_path()
    through.secrets.kv.v2.create_or_update_secret(path, secret={'k': 'v'})
    proxy.mode(ProxyMode.server_error(500, methods=WRITES))
    read = through.secrets.kv.v2.read_secret_version(path, raise_on_deleted_version=True)
    assert read['data']['data'] == {'k': 'v'}
    assert through.sys.list_policies()  # LIST is a read
    with pytest.raises(hvac.exceptions.InternalServerError):
        through.secrets.kv.v2.create_or_update_secret(path, secret={'k': 'w'})


def test_drop_resets_the_connection_of_matching_requests(
    proxy: FaultProxy, through: hvac.Client
) -> None:
    proxy.mode(ProxyMode.drop(path=r'^/v1/sys/health'))
    with pytest.raises(requests.ConnectionError):
        through.sys.read_health_status(method='GET')
    assert through.sys.is_initialized()  # another path, on a new connection
    assert proxy.counts.dropped == 1


def test_modes_switch_mid_session_on_the_same_connection(
    proxy: FaultProxy, through: hvac.Client
) -> None:
    """An error answer keeps the connection alive, as Vault's do; the next mode applies to the
    very next request."""
    assert through.sys.is_initialized()
    proxy.mode(ProxyMode.server_error(503))
    with pytest.raises(hvac.exceptions.VaultDown):
        through.sys.is_initialized()
    previous = proxy.mode(ProxyMode.permission_denied())
    assert previous == ProxyMode.server_error(503)
    with pytest.raises(hvac.exceptions.Forbidden):
        through.sys.is_initialized()
    proxy.mode(ProxyMode.pass_through())
    assert through.sys.is_initialized()
    assert proxy.counts.connections == 1


def test_a_child_process_talks_through_the_proxy(proxy: FaultProxy) -> None:
    """The operator is a child process: the mode the test sets is what the child gets."""
    program = (
        'import sys, urllib.error, urllib.request\n'
        'opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n'
        'try:\n'
        '    opener.open(sys.argv[1] + "/v1/sys/seal-status", timeout=10)\n'
        'except urllib.error.HTTPError as e:\n'
        '    sys.stdout.write(str(e.code))\n'
    )
    proxy.mode(ProxyMode.server_error(503))
    child = subprocess.run(
        [sys.executable, '-c', program, proxy.url], capture_output=True, text=True, timeout=60
    )
    assert (child.returncode, child.stdout) == (0, '503'), child.stderr


def test_the_proxy_stops_cleanly_even_with_a_request_in_flight(
    openbao: OpenBaoDevServer,
) -> None:
    threads_before = set(threading.enumerate())
    with ThreadPoolExecutor(1) as pool:
        with running_fault_proxy(openbao.addr) as proxy:
            client = _client(proxy.url, openbao.root_token)
            proxy.mode(ProxyMode.slow(30))
            pending = pool.submit(client.sys.is_initialized)
            proxy.wait_until(lambda c: c.delayed >= 1)
            url = proxy.url
            started = time.monotonic()
        # Leaving the block stopped the proxy at once; the waiting request failed.
        assert time.monotonic() - started < 5
        with pytest.raises(requests.ConnectionError):
            pending.result(timeout=10)
    with pytest.raises(requests.ConnectionError):
        _client(url, openbao.root_token).sys.is_initialized()
    assert set(threading.enumerate()) <= threads_before
    with pytest.raises(RuntimeError, match='not running'):
        proxy.mode(ProxyMode.pass_through())


def test_malformed_modes_are_refused() -> None:
    with pytest.raises(ValueError, match='whole-server'):
        ProxyMode('down', path='^/v1/')
    with pytest.raises(ValueError, match='5xx'):
        ProxyMode.server_error(403)
    with pytest.raises(ValueError, match='4xx or 5xx'):
        ProxyMode.error(302)
    with pytest.raises(re.error):
        ProxyMode.slow(1, path='(')


# ---- how Tenure's Vault adapter classifies each fault --------------------------------------


@pytest.mark.parametrize(
    ('mode', 'timeout', 'expected'),
    [
        pytest.param(ProxyMode.down(), 30, TransientError, id='down'),
        pytest.param(ProxyMode.server_error(500), 30, TransientError, id='500'),
        pytest.param(ProxyMode.server_error(503), 30, TransientError, id='503-sealed'),
        pytest.param(ProxyMode.error(429), 30, TransientError, id='429'),
        pytest.param(ProxyMode.slow(2), 0.2, TransientError, id='slow-timeout'),
        pytest.param(ProxyMode.drop(), 30, TransientError, id='connection-reset'),
        pytest.param(ProxyMode.permission_denied(), 30, PermanentError, id='403'),
    ],
)
def test_the_vault_adapter_classifies_each_fault(
    proxy: FaultProxy,
    openbao: OpenBaoDevServer,
    mode: ProxyMode,
    timeout: float,
    expected: type[Exception],
) -> None:
    """Retry what passes (network, 5xx, 429, a timeout), stop on what needs a change (403):
    tenure.errors and the adapter's `translated()`."""
    material = VaultMaterial(_client(proxy.url, openbao.root_token, timeout=timeout))
    name = f'tenure-fault-proxy-{uuid.uuid4().hex[:8]}'
    proxy.mode(mode)
    with pytest.raises((TransientError, PermanentError)) as raised:
        material.ensure_policy(name, POLICY)
    assert type(raised.value) is expected, str(raised.value)
    with pytest.raises(hvac.exceptions.InvalidPath):  # the fault stopped it before any write
        openbao.client().sys.read_acl_policy(name)

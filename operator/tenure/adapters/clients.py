"""Building the Kubernetes and Vault clients from the operator's configuration.

The operator logs in to Vault with a token (VAULT_TOKEN, --vault-token-file) or with Vault's
Kubernetes auth (--vault-auth-role) using its pod's ServiceAccount token; a Kubernetes-auth token is
renewed, or replaced by a new login, before it runs out.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import hvac
import kubernetes
import requests
import requests.adapters

from tenure.adapters.kubernetes import KubeObjects, retry_after_seconds
from tenure.adapters.vault import VaultMaterial, translated
from tenure.config import OperatorConfig, VaultConfig
from tenure.errors import PermanentError
from tenure.limits import TokenBucket

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Connection:
    """How to reach the Kubernetes API, for clients other than the official one (kopf)."""

    server: str
    ca_path: str | None
    insecure: bool
    certificate_path: str | None
    private_key_path: str | None
    token: str | None = dataclasses.field(default=None, repr=False)


def connection_of(api: kubernetes.client.ApiClient) -> Connection:
    """The credentials an ApiClient uses (so kopf talks to the same API as the same user)."""
    configuration = api.configuration
    hook = getattr(configuration, 'refresh_api_key_hook', None)
    if hook is not None:
        hook(configuration)
    token = (configuration.api_key or {}).get('authorization') or (configuration.api_key or {}).get(
        'BearerToken'
    )
    if token is not None:
        token = token.removeprefix('Bearer ').strip()
    return Connection(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        token=token or None,
    )


def in_cluster(kubeconfig: str | None) -> bool:
    return kubeconfig is None and bool(os.environ.get('KUBERNETES_SERVICE_HOST'))


class RateLimitedApiClient(kubernetes.client.ApiClient):
    """The official client with a request-rate limit (QPS and burst, like client-go's)."""

    def __init__(self, configuration: kubernetes.client.Configuration, limit: TokenBucket) -> None:
        super().__init__(configuration)
        self._limit = limit

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        self._limit.acquire()
        # The client returns every HTTP answer from here (the API method raises ApiException
        # for a non-2xx one later, when it deserialises it).
        response = super().call_api(*args, **kwargs)
        if response.status == 429:
            self._limit.hold(retry_after_seconds(response.headers.get('Retry-After')) or 1.0)
        return response


def kubernetes_api(
    kubeconfig: str | None,
    limit: TokenBucket | None = None,
    *,
    connections: int | None = None,
) -> kubernetes.client.ApiClient:
    """In-cluster config inside a pod, else the kubeconfig (explicit, $KUBECONFIG or ~/.kube)."""
    configuration = kubernetes.client.Configuration()
    try:
        if in_cluster(kubeconfig):
            kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        else:
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration
            )
    except (kubernetes.config.ConfigException, OSError) as e:
        raise PermanentError(f'cannot load Kubernetes configuration: {e}') from None
    if connections is not None:
        configuration.connection_pool_maxsize = connections
    if limit is not None:
        return RateLimitedApiClient(configuration, limit)
    return kubernetes.client.ApiClient(configuration)


class VaultLogin:
    """The operator's own Vault token, kept fresh when it came from Kubernetes auth."""

    REFRESH_AT = 2 / 3
    """Renew (or log in again) once this share of the token's lifetime has passed."""

    def __init__(self, client: hvac.Client, config: VaultConfig, auth_mount: str) -> None:
        self.client = client
        self.config = config
        self.auth_mount = auth_mount
        self._lock = threading.Lock()
        self._refresh_at: float | None = None

    def login(self) -> None:
        """Log in with the ServiceAccount token (no-op with a static token)."""
        role = self.config.auth_role
        if role is None:
            return
        try:
            jwt = self.config.auth_jwt_file.read_text(encoding='utf-8').strip()
        except OSError as e:
            raise PermanentError(
                f'cannot read the ServiceAccount token {self.config.auth_jwt_file} for Vault '
                f'Kubernetes auth: {e.strerror}'
            ) from None
        with translated(f'log in to Vault as role {role} on auth/{self.auth_mount}'):
            answer = self.client.auth.kubernetes.login(role, jwt, mount_point=self.auth_mount)
        lease = int(answer['auth'].get('lease_duration') or 0)
        self._refresh_at = time.monotonic() + lease * self.REFRESH_AT if lease else None
        log.info('logged in to Vault as role %s (token valid %ss)', role, lease)

    def ensure_fresh(self) -> None:
        """Called before each reconcile: log in again when the token is getting old."""
        with self._lock:
            if self._refresh_at is not None and time.monotonic() >= self._refresh_at:
                self.login()


def vault_client(config: VaultConfig, *, connections: int = 10) -> hvac.Client:
    verify: bool | str = config.ca_cert or not config.skip_verify
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=connections)
    session.mount('https://', adapter)
    session.mount('http://', adapter)
    return hvac.Client(
        url=config.addr,
        token=config.token,
        namespace=config.namespace,
        verify=verify,
        timeout=30,
        session=session,
    )


def connections_for(config: OperatorConfig) -> int:
    """Keep-alive connections per backend: one per thread that may send a request at once
    (reconciles in flight, token TTL refreshes, a few of kopf's), so none is opened and
    discarded for each request under load ("Connection pool is full")."""
    return 2 * config.max_workers + 4


def connect(
    config: OperatorConfig,
    clock: Callable[[], datetime],
    observe_vault: Callable[[str, str], None] | None = None,
) -> tuple[KubeObjects, VaultMaterial, VaultLogin]:
    """Build the adapters, log in to Vault, and check both ends are ready (fail fast)."""
    kube_limit = TokenBucket(config.kube_qps, config.kube_burst)
    connections = connections_for(config)
    kube = KubeObjects(
        kubernetes_api(config.kubeconfig, kube_limit, connections=connections),
        clock=clock,
    )
    kube.check_ready()
    client = vault_client(config.vault, connections=connections)
    login = VaultLogin(client, config.vault, config.auth_mount)
    login.login()
    vault_limit = TokenBucket(config.vault_qps, config.vault_burst)
    vault = VaultMaterial(
        client,
        kv_mount=config.kv_mount,
        auth_mount=config.auth_mount,
        clock=clock,
        limiter=vault_limit.acquire,
        throttled=vault_limit.hold,
        observe=observe_vault,
    )
    vault.check_ready()
    return kube, vault, login

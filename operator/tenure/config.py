"""How the operator is configured: like its ecosystem (KUBECONFIG or in-cluster; VAULT_ADDR,
VAULT_TOKEN, VAULT_NAMESPACE, VAULT_CACERT, VAULT_SKIP_VERIFY), flags override the environment.

`parse_run_config` is pure (argv and environment in, config or a specific error out).
"""

from __future__ import annotations

import argparse
import dataclasses
import ssl
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

from tenure.api.durations import parse_duration
from tenure.domain.desired import DEFAULT_EXPIRY_WARNING, DEFAULT_MAX_TOKEN_TTL
from tenure.domain.names import DEFAULT_AUTH_MOUNT, DEFAULT_KV_MOUNT

DEFAULT_METRICS_PORT = 9090
DEFAULT_VAULT_RESYNC = timedelta(minutes=5)
DEFAULT_INVENTORY_INTERVAL = timedelta(minutes=5)
DEFAULT_HEALTH_PORT = 8080
SERVICE_ACCOUNT_TOKEN = Path('/var/run/secrets/kubernetes.io/serviceaccount/token')
SERVICE_ACCOUNT_NAMESPACE = Path('/var/run/secrets/kubernetes.io/serviceaccount/namespace')


class ConfigError(ValueError):
    """The configuration is unusable; the message says which setting and why."""


@dataclasses.dataclass(frozen=True)
class VaultConfig:
    addr: str
    token: str | None = dataclasses.field(default=None, repr=False)
    """A token, from --vault-token-file or VAULT_TOKEN. Never logged (repr hides it)."""
    auth_role: str | None = None
    """Log in with Vault Kubernetes auth as this role instead of using a token."""
    auth_jwt_file: Path = SERVICE_ACCOUNT_TOKEN
    namespace: str | None = None
    ca_cert: str | None = None
    skip_verify: bool = False


@dataclasses.dataclass(frozen=True)
class WebhookConfig:
    """The validating admission webhook's listener (issue #4)."""

    port: int
    cert_file: Path | None = None
    """PEM certificate (chain allowed), e.g. tls.crt of a cert-manager Secret."""
    key_file: Path | None = None
    insecure: bool = False
    """Plain HTTP: local development and tests only (the API server calls webhooks over HTTPS)."""


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    vault: VaultConfig
    namespaces: tuple[str, ...] = ()
    """Watched namespaces; empty means all namespaces."""
    kv_mount: str = DEFAULT_KV_MOUNT
    auth_mount: str = DEFAULT_AUTH_MOUNT
    metrics_port: int = DEFAULT_METRICS_PORT
    health_port: int = DEFAULT_HEALTH_PORT
    max_token_ttl: timedelta = DEFAULT_MAX_TOKEN_TTL
    kubeconfig: str | None = None
    webhook: WebhookConfig | None = None
    """None: no admission webhook is served."""
    expiry_warning: timedelta = DEFAULT_EXPIRY_WARNING
    max_workers: int = 16
    kube_qps: float = 50
    kube_burst: int = 100
    vault_qps: float = 50
    vault_burst: int = 100
    log_level: str = 'INFO'
    leader_election: bool = False
    leader_election_namespace: str = 'default'
    lease_duration: timedelta = timedelta(seconds=15)
    vault_resync: timedelta | None = DEFAULT_VAULT_RESYNC
    """How often each Active identity's Vault objects are checked for drift; None: never."""
    remove_unexpected_bindings: bool = False
    inventory_interval: timedelta | None = DEFAULT_INVENTORY_INTERVAL
    """How often the inventory gauges are refreshed; None: no scan."""


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        '--all-namespaces',
        action='store_true',
        help='watch ServiceIdentities in every namespace (the default)',
    )
    scope.add_argument(
        '-n',
        '--namespace',
        dest='namespaces',
        action='append',
        default=[],
        metavar='NS',
        help='watch only this namespace (repeatable)',
    )
    parser.add_argument(
        '--kubeconfig', metavar='PATH', help='kubeconfig file (default: $KUBECONFIG or in-cluster)'
    )
    parser.add_argument('--vault-addr', metavar='URL', help='Vault address (default: $VAULT_ADDR)')
    parser.add_argument(
        '--vault-token-file',
        metavar='PATH',
        type=Path,
        help="file holding the operator's Vault token (default: $VAULT_TOKEN)",
    )
    parser.add_argument(
        '--vault-auth-role',
        metavar='ROLE',
        help="log in to Vault with Kubernetes auth as ROLE, using the pod's ServiceAccount token",
    )
    parser.add_argument(
        '--vault-auth-jwt-file',
        metavar='PATH',
        type=Path,
        help=f'ServiceAccount token for --vault-auth-role [{SERVICE_ACCOUNT_TOKEN}]',
    )
    parser.add_argument(
        '--vault-namespace', metavar='NS', help='Vault Enterprise namespace ($VAULT_NAMESPACE)'
    )
    parser.add_argument(
        '--kv-mount', metavar='PATH', help=f'KV v2 mount of generated secrets [{DEFAULT_KV_MOUNT}]'
    )
    parser.add_argument(
        '--auth-mount',
        metavar='PATH',
        help=f'Kubernetes auth mount of the identities [{DEFAULT_AUTH_MOUNT}]',
    )
    parser.add_argument(
        '--metrics-port',
        type=int,
        metavar='PORT',
        help=f'Prometheus metrics port, 0 to disable [{DEFAULT_METRICS_PORT}]',
    )
    parser.add_argument(
        '--health-port',
        type=int,
        metavar='PORT',
        help=f'liveness endpoint /healthz port, 0 to disable [{DEFAULT_HEALTH_PORT}]',
    )
    parser.add_argument(
        '--expiry-warning',
        metavar='DURATION',
        help='how long before expiry ExpiringSoon is reported, once per approval [168h]',
    )
    parser.add_argument(
        '--max-workers',
        type=int,
        metavar='N',
        help='reconciles in flight at once (bounds load on Kubernetes and Vault) [16]',
    )
    for backend in ('kube', 'vault'):
        name = 'Kubernetes' if backend == 'kube' else 'Vault'
        parser.add_argument(
            f'--{backend}-qps',
            type=float,
            metavar='N',
            help=f'requests per second to {name}, sustained; revocations never wait for it but '
            'count against it [50]',
        )
        parser.add_argument(
            f'--{backend}-burst',
            type=int,
            metavar='N',
            help=f'requests to {name} allowed in a burst above the rate [100]',
        )
    parser.add_argument(
        '--log-level',
        choices=('DEBUG', 'INFO', 'WARNING', 'ERROR'),
        default='INFO',
        help='log level; secret values are never logged at any level [INFO]',
    )
    parser.add_argument(
        '--leader-election',
        action='store_true',
        help='run as one of several replicas: only the holder of the Lease tenure-operator acts',
    )
    parser.add_argument(
        '--leader-election-namespace',
        metavar='NS',
        help="namespace of the Lease (default: $POD_NAMESPACE, the pod's own namespace, default)",
    )
    parser.add_argument(
        '--lease-duration',
        metavar='DURATION',
        help='how long a Lease lasts without renewal before a standby takes over [15s]',
    )
    parser.add_argument(
        '--webhook-port',
        type=int,
        metavar='PORT',
        help='serve the validating admission webhook for ServiceIdentities on PORT, at path '
        '/validate-serviceidentities; 0 or absent: no webhook [0]',
    )
    parser.add_argument(
        '--webhook-cert',
        type=Path,
        metavar='FILE',
        help='PEM certificate of the webhook (e.g. tls.crt of a cert-manager Secret); re-read when '
        'it changes',
    )
    parser.add_argument(
        '--webhook-key', type=Path, metavar='FILE', help='PEM private key for --webhook-cert'
    )
    parser.add_argument(
        '--webhook-insecure',
        action='store_true',
        help='serve the webhook over plain HTTP: local development and tests only (the API server '
        'calls webhooks over HTTPS)',
    )
    parser.add_argument(
        '--vault-resync',
        metavar='DURATION',
        help="how often each Active identity's Vault policy, role and secret are checked for "
        'changes made outside Tenure (and put back), spread over the interval; 0 disables [5m]',
    )
    parser.add_argument(
        '--remove-unexpected-bindings',
        action='store_true',
        help='delete RoleBindings and ClusterRoleBindings not made by Tenure that bind a managed '
        'ServiceAccount (when it is their only subject); without it they are only reported '
        '(UnexpectedBinding). Needs the RBAC of deploy/components/remove-unexpected-bindings',
    )
    parser.add_argument(
        '--inventory-interval',
        metavar='DURATION',
        help='how often the inventory gauges tenure_inventory_identities{class,kind} are '
        'refreshed (the classification of tenure report); 0 disables [5m]',
    )
    parser.add_argument(
        '--max-token-ttl',
        metavar='DURATION',
        help='longest life of a Vault token issued to an identity, far from its expiry [1h]',
    )


def _mount(value: str, flag: str) -> str:
    mount = value.strip('/')
    if not mount or any(not part for part in mount.split('/')):
        raise ConfigError(f'{flag}: {value!r} is not a mount path (e.g. secret, kubernetes)')
    return mount


def _port(value: int | None, default: int, flag: str) -> int:
    port = default if value is None else value
    if not 0 <= port <= 65535:
        raise ConfigError(f'{flag}: {port} is not a TCP port (0 disables)')
    return port


def _webhook(args: argparse.Namespace) -> WebhookConfig | None:
    port = _port(args.webhook_port, 0, '--webhook-port')
    cert, key, insecure = args.webhook_cert, args.webhook_key, args.webhook_insecure
    if not port:
        if cert or key or insecure:
            raise ConfigError(
                '--webhook-cert, --webhook-key and --webhook-insecure need --webhook-port'
            )
        return None
    if insecure:
        if cert or key:
            raise ConfigError(
                '--webhook-insecure serves plain HTTP: it excludes --webhook-cert and --webhook-key'
            )
        return WebhookConfig(port=port, insecure=True)
    if cert is None or key is None:
        raise ConfigError(
            '--webhook-port needs --webhook-cert and --webhook-key (the API server calls webhooks '
            'over HTTPS only), or --webhook-insecure for local development'
        )
    try:
        # Loaded once here so that a wrong file fails `tenure run` at once, not the webhook later.
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(
            f'--webhook-cert/--webhook-key: cannot load the certificate {cert} with the key '
            f'{key} (PEM expected): {e}'
        ) from None
    return WebhookConfig(port=port, cert_file=cert, key_file=key)


def parse_run_config(args: argparse.Namespace, env: Mapping[str, str]) -> OperatorConfig:
    """Build the operator's configuration from parsed flags and the environment."""
    addr = args.vault_addr or env.get('VAULT_ADDR')
    if not addr:
        raise ConfigError('no Vault address: set VAULT_ADDR or pass --vault-addr')
    if not addr.startswith(('http://', 'https://')):
        raise ConfigError(f'Vault address {addr!r} must start with http:// or https://')
    token: str | None = None
    if args.vault_token_file is not None:
        try:
            token = args.vault_token_file.read_text(encoding='utf-8').strip()
        except OSError as e:
            raise ConfigError(
                f'--vault-token-file: cannot read {args.vault_token_file}: {e.strerror}'
            ) from None
        if not token:
            raise ConfigError(f'--vault-token-file: {args.vault_token_file} is empty')
    elif not args.vault_auth_role:
        token = env.get('VAULT_TOKEN') or None
    if token is None and not args.vault_auth_role:
        raise ConfigError(
            'no Vault credentials: set VAULT_TOKEN, pass --vault-token-file, or --vault-auth-role '
            'to log in with Kubernetes auth'
        )
    try:
        max_ttl = (
            parse_duration(args.max_token_ttl) if args.max_token_ttl else DEFAULT_MAX_TOKEN_TTL
        )
    except ValueError as e:
        raise ConfigError(f'--max-token-ttl: {e}') from None

    def duration(flag: str, value: str | None, default: timedelta) -> timedelta:
        try:
            return parse_duration(value) if value else default
        except ValueError as e:
            raise ConfigError(f'{flag}: {e}') from None

    workers = 16 if args.max_workers is None else args.max_workers
    if not 1 <= workers <= 256:
        raise ConfigError(f'--max-workers: {workers} is not between 1 and 256')
    limits = {}
    for flag, default in (
        ('kube_qps', 50.0),
        ('kube_burst', 100),
        ('vault_qps', 50.0),
        ('vault_burst', 100),
    ):
        value = getattr(args, flag)
        value = default if value is None else value
        if value <= 0:
            raise ConfigError(f'--{flag.replace("_", "-")}: must be positive, got {value}')
        limits[flag] = value

    def every(flag: str, value: str | None, default: timedelta) -> timedelta | None:
        # 0 switches a periodic job off (a duration of nothing is no period).
        return None if value in ('0', '0s') else duration(flag, value, default)

    lease_namespace = args.leader_election_namespace or env.get('POD_NAMESPACE')
    if lease_namespace is None and SERVICE_ACCOUNT_NAMESPACE.exists():
        lease_namespace = SERVICE_ACCOUNT_NAMESPACE.read_text(encoding='utf-8').strip()
    namespaces: Sequence[str] = args.namespaces or ()
    return OperatorConfig(
        vault=VaultConfig(
            addr=addr.rstrip('/'),
            token=token,
            auth_role=args.vault_auth_role,
            auth_jwt_file=args.vault_auth_jwt_file or SERVICE_ACCOUNT_TOKEN,
            namespace=args.vault_namespace or env.get('VAULT_NAMESPACE') or None,
            ca_cert=env.get('VAULT_CACERT') or None,
            skip_verify=env.get('VAULT_SKIP_VERIFY', '').lower() in {'1', 'true', 'yes'},
        ),
        namespaces=tuple(dict.fromkeys(namespaces)),
        kv_mount=_mount(args.kv_mount or DEFAULT_KV_MOUNT, '--kv-mount'),
        auth_mount=_mount(args.auth_mount or DEFAULT_AUTH_MOUNT, '--auth-mount'),
        metrics_port=_port(args.metrics_port, DEFAULT_METRICS_PORT, '--metrics-port'),
        health_port=_port(args.health_port, DEFAULT_HEALTH_PORT, '--health-port'),
        max_token_ttl=max_ttl,
        kubeconfig=args.kubeconfig or env.get('KUBECONFIG') or None,
        webhook=_webhook(args),
        expiry_warning=duration('--expiry-warning', args.expiry_warning, DEFAULT_EXPIRY_WARNING),
        max_workers=workers,
        kube_qps=float(limits['kube_qps']),
        kube_burst=int(limits['kube_burst']),
        vault_qps=float(limits['vault_qps']),
        vault_burst=int(limits['vault_burst']),
        log_level=args.log_level,
        leader_election=args.leader_election,
        leader_election_namespace=lease_namespace or 'default',
        lease_duration=duration('--lease-duration', args.lease_duration, timedelta(seconds=15)),
        vault_resync=every('--vault-resync', args.vault_resync, DEFAULT_VAULT_RESYNC),
        remove_unexpected_bindings=args.remove_unexpected_bindings,
        inventory_interval=every(
            '--inventory-interval', args.inventory_interval, DEFAULT_INVENTORY_INTERVAL
        ),
    )

"""`tenure report`: gather the inventory through the adapters (read-only), classify, render.

Gathering reads; `tenure.domain.inventory` decides; `tenure.render` prints. Nothing here writes to
Kubernetes or Vault: the adapters' listing and reading methods are the only calls made.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from tenure.config import VaultConfig
from tenure.domain.inventory import (
    BindingRecord,
    Finding,
    IdentityRecord,
    Inventory,
    Kind,
    Scope,
    ServiceAccountRecord,
    TokenSecretRecord,
    VaultPolicyRecord,
    VaultRoleRecord,
    classify,
)
from tenure.domain.names import DEFAULT_AUTH_MOUNT, DEFAULT_KV_MOUNT
from tenure.errors import PermanentError, TransientError

if TYPE_CHECKING:
    from tenure.adapters.kubernetes import KubeObjects
    from tenure.adapters.vault import VaultMaterial


class ClusterReader(Protocol):
    """What the report reads from Kubernetes (`tenure.adapters.kubernetes.KubeObjects`)."""

    def list_identities(self, namespace: str | None = None) -> list[dict[str, Any]]: ...

    def read_identity(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list_service_accounts(self, namespace: str | None = None) -> list[ServiceAccountRecord]: ...

    def list_token_secrets(self, namespace: str | None = None) -> list[TokenSecretRecord]: ...

    def list_bindings(self, namespace: str | None = None) -> list[BindingRecord]: ...


class VaultReader(Protocol):
    """What the report reads from Vault (`tenure.adapters.vault.VaultMaterial`)."""

    def list_auth_roles(self) -> list[VaultRoleRecord]: ...

    def list_acl_policies(self) -> list[VaultPolicyRecord]: ...


def gather(
    kube: ClusterReader,
    vault: VaultReader | None,
    *,
    namespace: str | None = None,
    kv_mount: str = DEFAULT_KV_MOUNT,
    auth_mount: str = DEFAULT_AUTH_MOUNT,
) -> Inventory:
    """Read everything the classification needs (in `namespace`, or everywhere)."""
    return Inventory(
        identities=tuple(IdentityRecord.from_body(b) for b in kube.list_identities(namespace)),
        service_accounts=tuple(kube.list_service_accounts(namespace)),
        token_secrets=tuple(kube.list_token_secrets(namespace)),
        bindings=tuple(kube.list_bindings(namespace)),
        vault_roles=tuple(vault.list_auth_roles()) if vault is not None else (),
        vault_policies=tuple(vault.list_acl_policies()) if vault is not None else (),
        kv_mount=kv_mount,
        auth_mount=auth_mount,
    )


def report(
    kube: ClusterReader,
    vault: VaultReader | None,
    now: datetime,
    scope: Scope,
    *,
    kv_mount: str = DEFAULT_KV_MOUNT,
    auth_mount: str = DEFAULT_AUTH_MOUNT,
) -> list[Finding]:
    inventory = gather(
        kube, vault, namespace=scope.namespace, kv_mount=kv_mount, auth_mount=auth_mount
    )
    return classify(inventory, now, scope)


@dataclasses.dataclass(frozen=True)
class Evidence:
    """The full record of one identity: what its ServiceIdentity keeps, and what exists now."""

    record: IdentityRecord
    body: Mapping[str, Any]
    """The ServiceIdentity as the API returned it."""
    objects: tuple[Finding, ...]
    """What exists now for it, in Kubernetes (and Vault, when read)."""
    vault_read: bool


def evidence(
    kube: ClusterReader,
    vault: VaultReader | None,
    namespace: str,
    name: str,
    now: datetime,
    *,
    kv_mount: str = DEFAULT_KV_MOUNT,
    auth_mount: str = DEFAULT_AUTH_MOUNT,
) -> Evidence:
    body = kube.read_identity(namespace, name)
    if body is None:
        raise PermanentError(f'ServiceIdentity {namespace}/{name} does not exist')
    findings = report(
        kube,
        vault,
        now,
        Scope(namespace=namespace, include_system=True),
        kv_mount=kv_mount,
        auth_mount=auth_mount,
    )
    mine = f'{namespace}/{name}'
    objects = tuple(
        f
        for f in findings
        if f.kind is not Kind.SERVICE_IDENTITY
        and f.governance is not None
        and f.governance.identity == mine
    )
    return Evidence(IdentityRecord.from_body(body), body, objects, vault is not None)


# -- the command line: connecting read-only -------------------------------------------------


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """Where to read from: the same sources as `tenure run`, with a read-only credential."""
    parser.add_argument(
        '--kubeconfig', metavar='PATH', help='kubeconfig file (default: $KUBECONFIG or in-cluster)'
    )
    parser.add_argument('--vault-addr', metavar='URL', help='Vault address (default: $VAULT_ADDR)')
    parser.add_argument(
        '--vault-token-file',
        metavar='PATH',
        type=Path,
        help='file holding a Vault token (default: $VAULT_TOKEN)',
    )
    parser.add_argument(
        '--kv-mount',
        default=DEFAULT_KV_MOUNT,
        metavar='PATH',
        help=f'the KV v2 mount the operator uses [{DEFAULT_KV_MOUNT}]',
    )
    parser.add_argument(
        '--auth-mount',
        default=DEFAULT_AUTH_MOUNT,
        metavar='PATH',
        help=f'the Kubernetes auth mount the operator uses [{DEFAULT_AUTH_MOUNT}]',
    )


def vault_config(args: argparse.Namespace, env: Mapping[str, str]) -> VaultConfig | None:
    """The Vault to read, None when no address is configured at all. ValueError when the address
    is there but unusable (no token, bad URL)."""
    addr = args.vault_addr or env.get('VAULT_ADDR')
    if not addr:
        return None
    if not addr.startswith(('http://', 'https://')):
        raise ValueError(f'Vault address {addr!r} must start with http:// or https://')
    if args.vault_token_file is not None:
        try:
            token = args.vault_token_file.read_text(encoding='utf-8').strip()
        except OSError as e:
            raise ValueError(
                f'--vault-token-file: cannot read {args.vault_token_file}: {e.strerror}'
            ) from None
    else:
        token = env.get('VAULT_TOKEN', '')
    if not token:
        raise ValueError('no Vault token: set VAULT_TOKEN or pass --vault-token-file')
    return VaultConfig(
        addr=addr,
        token=token,
        namespace=env.get('VAULT_NAMESPACE') or None,
        ca_cert=env.get('VAULT_CACERT') or None,
        skip_verify=env.get('VAULT_SKIP_VERIFY', '').lower() in {'1', 'true', 'yes'},
    )


@dataclasses.dataclass(frozen=True)
class Readers:
    kube: KubeObjects
    vault: VaultMaterial | None


def connect(
    args: argparse.Namespace, env: Mapping[str, str] | None = None, *, need_vault: bool = True
) -> Readers:
    """The adapters, built from the flags and the environment (imported here: the command line
    must start without loading the clients for `tenure check`)."""
    from tenure.adapters.clients import kubernetes_api, vault_client
    from tenure.adapters.kubernetes import KubeObjects
    from tenure.adapters.vault import VaultMaterial

    env = os.environ if env is None else env
    config = vault_config(args, env) if need_vault else None
    kube = KubeObjects(
        kubernetes_api(args.kubeconfig or env.get('KUBECONFIG') or None),
        clock=lambda: datetime.now(UTC),
    )
    vault = (
        VaultMaterial(
            vault_client(config),
            kv_mount=args.kv_mount.strip('/'),
            auth_mount=args.auth_mount.strip('/'),
        )
        if config is not None
        else None
    )
    return Readers(kube, vault)


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        '-n',
        '--namespace',
        metavar='NS',
        help='only this namespace (and the Vault objects it names)',
    )
    where.add_argument(
        '-A',
        '--all-namespaces',
        action='store_true',
        help='every namespace (the default), and Vault objects that name no namespace',
    )
    parser.add_argument(
        '-o', '--output', choices=('table', 'json', 'csv'), default='table', help='output format'
    )
    parser.add_argument(
        '--include-system',
        action='store_true',
        help="also report kube-* namespaces, each namespace's default ServiceAccount, system: "
        "ClusterRoleBindings and Vault's root and default policies",
    )
    parser.add_argument(
        '--evidence',
        metavar='NAMESPACE/NAME',
        help='print the full record of one identity instead: approval, owner and owner history, '
        'every transition, rotations, revocation proof, and what exists for it now',
    )
    parser.add_argument(
        '--skip-vault',
        action='store_true',
        help='read Kubernetes only (Vault roles and policies are then not inventoried)',
    )
    add_connection_arguments(parser)


def run_report(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    now: datetime,
    env: Mapping[str, str] | None = None,
) -> int:
    """`tenure report`: 0 when the report was printed, 1 when Kubernetes or Vault could not be
    read (the message says which and why). Raises ValueError for unusable arguments."""
    from tenure.render import render_evidence, render_findings

    env = os.environ if env is None else env
    target: tuple[str, str] | None = None
    if args.evidence is not None:
        namespace, _, name = args.evidence.partition('/')
        if not namespace or not name or '/' in name:
            raise ValueError(f'--evidence: {args.evidence!r} is not NAMESPACE/NAME')
        if args.output == 'csv':
            raise ValueError('--evidence prints a table or json, not csv')
        target = (namespace, name)
    if not args.skip_vault and vault_config(args, env) is None:
        raise ValueError(
            'no Vault address: set VAULT_ADDR or pass --vault-addr (or --skip-vault to report '
            'Kubernetes only)'
        )
    try:
        readers = connect(args, env, need_vault=not args.skip_vault)
        mounts = {'kv_mount': args.kv_mount.strip('/'), 'auth_mount': args.auth_mount.strip('/')}
        if target is not None:
            record = evidence(readers.kube, readers.vault, *target, now, **mounts)
            render_evidence(record, args.output, now, out)
            return 0
        scope = Scope(namespace=args.namespace, include_system=args.include_system)
        findings = report(readers.kube, readers.vault, now, scope, **mounts)
    except (TransientError, PermanentError) as e:
        err.write(f'tenure report: {e}\n')
        return 1
    render_findings(findings, args.output, now, out)
    return 0

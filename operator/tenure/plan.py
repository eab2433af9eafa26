"""`tenure plan -f FILE`: what applying ServiceIdentity manifests would do, changing nothing.

Reads the live state through the adapters' read methods only (the ServiceIdentity, its
namespace's labels, the objects of Tenure's names, the IdentityPolicy, the Vault role, policy and
secret version); `tenure.domain.planning` decides; `tenure.render` prints. When Kubernetes or
Vault cannot be read, that side is planned offline, from the manifest alone, and the plan says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import ValidationError

from tenure.api.v1alpha1 import (
    API_VERSION,
    DEFAULT_POLICY_NAME,
    KIND,
    ServiceIdentity,
)
from tenure.audit import add_connection_arguments, connect, vault_config
from tenure.domain.guardrails import Policy, policy_of
from tenure.domain.names import IdentityNames
from tenure.domain.planning import Live, Plan, Settings, plan
from tenure.errors import PermanentError, TransientError
from tenure.manifests import (
    Document,
    Problem,
    format_loc,
    load_policy,
    read_documents,
    validation_problems,
)

if TYPE_CHECKING:
    from tenure.adapters.kubernetes import KubeObjects
    from tenure.adapters.vault import VaultMaterial


@dataclasses.dataclass(frozen=True)
class Refused:
    """A document that is no ServiceIdentity the API server would accept: nothing to plan."""

    file: str
    line: int | None
    namespace: str | None
    name: str | None
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A document of another kind (an IdentityPolicy, a Namespace): not planned, not a failure."""

    file: str
    line: int
    kind: str


@dataclasses.dataclass(frozen=True)
class Planned:
    file: str
    line: int
    plan: Plan


@dataclasses.dataclass
class Sources:
    """Where the live state comes from; a side that fails is dropped, with the reason."""

    kube: KubeObjects | None
    vault: VaultMaterial | None
    kube_note: str
    vault_note: str

    def drop_kube(self, error: Exception) -> None:
        self.kube = None
        self.kube_note = f'offline: could not read Kubernetes ({error})'

    def drop_vault(self, error: Exception) -> None:
        self.vault = None
        self.vault_note = f'offline: could not read Vault ({error})'


def _live(
    sources: Sources, manifest: ServiceIdentity, settings: Settings
) -> tuple[Live, Mapping[str, Any] | None]:
    """What exists now for `manifest`, and the live IdentityPolicy (None: none or not read)."""
    names = IdentityNames(
        namespace=manifest.metadata.namespace or 'default',
        name=manifest.metadata.name,
        kv_mount=settings.kv_mount,
        auth_mount=settings.auth_mount,
    )
    live: dict[str, Any] = {}
    policy_body = None
    if sources.kube is not None:
        try:
            kube = sources.kube
            cluster_roles = (
                manifest.spec.kubernetes.cluster_roles if manifest.spec.kubernetes else []
            )
            wanted = [
                ('ServiceAccount', names.service_account),
                ('Role', names.role),
                ('RoleBinding', names.role_binding),
                *(('RoleBinding', names.cluster_role_binding(c)) for c in cluster_roles),
            ]
            live.update(
                kubernetes_read=True,
                identity=kube.read_identity(names.namespace, names.name),
                namespace_labels=kube.namespace_labels(names.namespace),
                objects=kube.read_objects(names, wanted),
            )
            policy_body = kube.read_policy(DEFAULT_POLICY_NAME)
        except (TransientError, PermanentError) as e:
            sources.drop_kube(e)
            live = {}
    if sources.vault is not None:
        try:
            vault = sources.vault
            live.update(
                vault_read=True,
                vault_policy=vault.policy_text(names.vault_policy),
                vault_role=vault.read_role(names.vault_role),
                secret_version=vault.secret_version(names.secret_path),
            )
        except (TransientError, PermanentError) as e:
            sources.drop_vault(e)
            for key in ('vault_read', 'vault_policy', 'vault_role', 'secret_version'):
                live.pop(key, None)
    return Live(**live), policy_body


def _refused(doc: Document, reason: str, message: str) -> Refused:
    data = doc.data if isinstance(doc.data, dict) else {}
    found = data.get('metadata')
    meta: dict[str, Any] = found if isinstance(found, dict) else {}
    return Refused(
        doc.file,
        doc.line,
        meta.get('namespace') if isinstance(meta.get('namespace'), str) else None,
        meta.get('name') if isinstance(meta.get('name'), str) else None,
        reason,
        message,
    )


def plan_documents(
    documents: Iterable[Document | Problem],
    sources: Sources,
    *,
    now: datetime,
    settings: Settings,
    policy: Policy | None = None,
) -> list[Planned | Refused | Skipped]:
    """Plan every ServiceIdentity in `documents`; `policy` overrides the cluster's."""
    results: list[Planned | Refused | Skipped] = []
    for doc in documents:
        if isinstance(doc, Problem):
            results.append(Refused(doc.file, doc.line, None, None, doc.rule, doc.message))
            continue
        data = doc.data
        kind = data.get('kind') if isinstance(data, dict) else None
        if not isinstance(kind, str):
            results.append(_refused(doc, 'NotAnObject', 'not a Kubernetes object (no kind)'))
            continue
        if data.get('apiVersion') != API_VERSION or kind != KIND:
            results.append(Skipped(doc.file, doc.line, f'{kind} ({data.get("apiVersion")})'))
            continue
        try:
            manifest = ServiceIdentity.model_validate(data)
        except ValidationError as e:
            message = '; '.join(
                f'{format_loc(loc)}: {msg}' for loc, msg, _ in validation_problems(e)
            )
            results.append(
                _refused(doc, 'InvalidSpec', f'the API server would refuse it: {message}')
            )
            continue
        live, policy_body = _live(sources, manifest, settings)
        in_force = policy or Policy()
        if policy is None and policy_body is not None:
            try:
                in_force = policy_of(policy_body)
            except ValidationError:
                in_force = Policy()  # as the operator does with an unreadable policy
        results.append(
            Planned(
                doc.file,
                doc.line,
                plan(manifest, live, policy=in_force, now=now, settings=settings),
            )
        )
    return results


# -- the command line --------------------------------------------------------------------------


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '-f',
        '--filename',
        dest='filenames',
        action='append',
        type=Path,
        required=True,
        metavar='PATH',
        help='manifest file or directory (repeatable; like kubectl -f)',
    )
    parser.add_argument('-o', '--output', choices=('text', 'json'), default='text')
    parser.add_argument(
        '--offline',
        action='store_true',
        help='read nothing: plan from the manifests alone',
    )
    parser.add_argument(
        '--policy',
        type=Path,
        metavar='FILE',
        help='an IdentityPolicy manifest to plan against (default: the cluster\'s "default" '
        'IdentityPolicy, or the built-in policy offline)',
    )
    add_connection_arguments(parser)


def _sources(args: argparse.Namespace, env: Mapping[str, str]) -> Sources:
    if args.offline:
        return Sources(None, None, 'offline (--offline)', 'offline (--offline)')
    try:
        config = vault_config(args, env)
    except ValueError as e:
        config, vault_note = None, f'offline: {e}'
    else:
        vault_note = 'offline: no VAULT_ADDR' if config is None else f'live at {config.addr}'
    try:
        readers = connect(args, env, need_vault=config is not None)
    except (TransientError, PermanentError, ValueError) as e:
        return Sources(None, None, f'offline: {e}', vault_note)
    return Sources(readers.kube, readers.vault, 'live', vault_note)


def run_plan(
    args: argparse.Namespace,
    out: TextIO,
    now: datetime,
    env: Mapping[str, str] | None = None,
) -> int:
    """`tenure plan`: 0 when every manifest would take effect as written, 1 otherwise. Raises
    ValueError for unusable arguments."""
    from tenure.render import render_plans

    env = os.environ if env is None else env
    policy = load_policy(args.policy) if args.policy else None
    settings = Settings(kv_mount=args.kv_mount.strip('/'), auth_mount=args.auth_mount.strip('/'))
    sources = _sources(args, env)
    results = plan_documents(
        read_documents(args.filenames), sources, now=now, settings=settings, policy=policy
    )
    render_plans(results, sources, args.output, out)
    plans = [r for r in results if not isinstance(r, Skipped)]
    ok = bool(plans) and all(isinstance(r, Planned) and r.plan.as_written for r in plans)
    return 0 if ok else 1

"""The objects an Active identity should have, built from its decision. Pure.

Kubernetes objects are plain manifests (dicts) so the adapter can apply them as they are;
Vault objects are small typed records. Nothing here holds a secret value.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any, Final

from tenure.api.base import format_timestamp
from tenure.api.v1alpha1 import API_VERSION, KIND, Owner, PolicyRule, Scope
from tenure.domain.names import (
    EXPIRES_ANNOTATION,
    OWNER_CONTACT_ANNOTATION,
    OWNER_TEAM_ANNOTATION,
    TICKET_ANNOTATION,
    IdentityNames,
)

Manifest = dict[str, Any]

RBAC_GROUP: Final = 'rbac.authorization.k8s.io'
DEFAULT_MAX_TOKEN_TTL: Final = timedelta(hours=1)
"""The longest a Vault token issued to an identity lives, far from its expiry."""
DEFAULT_EXPIRY_WARNING: Final = timedelta(days=7)
"""How long before its expiry an identity is reported ExpiringSoon."""


@dataclasses.dataclass(frozen=True)
class Identity:
    """What the desired state is built from: who the identity is and what is in force."""

    names: IdentityNames
    uid: str
    """The ServiceIdentity's uid, for ownerReferences."""
    ticket_id: str
    owner: Owner
    scope: Scope
    expires_at: datetime


def _metadata(identity: Identity, name: str) -> dict[str, Any]:
    return {
        'name': name,
        'namespace': identity.names.namespace,
        'labels': identity.names.labels(),
        'annotations': {
            TICKET_ANNOTATION: identity.ticket_id,
            OWNER_TEAM_ANNOTATION: identity.owner.team,
            OWNER_CONTACT_ANNOTATION: identity.owner.contact,
            EXPIRES_ANNOTATION: format_timestamp(identity.expires_at),
        },
        # Owned by the ServiceIdentity so that `kubectl` tools show the tree and the garbage
        # collector is a backstop; revocation itself deletes explicitly and verifies.
        # blockOwnerDeletion is left out: it needs `update` on serviceidentities/finalizers.
        'ownerReferences': [
            {
                'apiVersion': API_VERSION,
                'kind': KIND,
                'name': identity.names.name,
                'uid': identity.uid,
                'controller': True,
            }
        ],
    }


def _rule(rule: PolicyRule) -> dict[str, Any]:
    out: dict[str, Any] = {
        'apiGroups': list(rule.api_groups),
        'resources': list(rule.resources),
        'verbs': list(rule.verbs),
    }
    if rule.resource_names:
        out['resourceNames'] = list(rule.resource_names)
    return out


def _binding(identity: Identity, name: str, role_kind: str, role_name: str) -> Manifest:
    return {
        'apiVersion': f'{RBAC_GROUP}/v1',
        'kind': 'RoleBinding',
        'metadata': _metadata(identity, name),
        'roleRef': {'apiGroup': RBAC_GROUP, 'kind': role_kind, 'name': role_name},
        'subjects': [
            {
                'kind': 'ServiceAccount',
                'name': identity.names.service_account,
                'namespace': identity.names.namespace,
            }
        ],
    }


def kubernetes_objects(identity: Identity) -> list[Manifest]:
    """ServiceAccount, then Role and RoleBinding (when there are rules), then one RoleBinding per
    ClusterRole, in the order they should be created."""
    names = identity.names
    objects: list[Manifest] = [
        {
            'apiVersion': 'v1',
            'kind': 'ServiceAccount',
            'metadata': _metadata(identity, names.service_account),
        }
    ]
    if identity.scope.rules:
        objects.append(
            {
                'apiVersion': f'{RBAC_GROUP}/v1',
                'kind': 'Role',
                'metadata': _metadata(identity, names.role),
                'rules': [_rule(r) for r in identity.scope.rules],
            }
        )
        objects.append(_binding(identity, names.role_binding, 'Role', names.role))
    for cluster_role in identity.scope.cluster_roles:
        objects.append(
            _binding(
                identity, names.cluster_role_binding(cluster_role), 'ClusterRole', cluster_role
            )
        )
    return objects


def _hcl_string(value: str) -> str:
    escaped = value.replace('\\', '\\\\').replace('"', '\\"')
    return f'"{escaped}"'


def policy_marker(names: IdentityNames) -> str:
    """How a Tenure policy's first line names its identity (the ownership check reads it)."""
    return f'# Managed by Tenure for {names.namespace}/{names.name} '


def policy_is_ours(text: str | None, names: IdentityNames) -> bool:
    """Absent, or written by Tenure for this very identity."""
    return text is None or text.startswith(policy_marker(names))


def role_is_ours(
    subject: tuple[tuple[str, ...], tuple[str, ...]] | None, names: IdentityNames
) -> bool:
    """Absent, or bound to exactly this identity's ServiceAccount in its namespace.

    Vault names carry the namespace and the name joined by dashes, which two identities can
    spell alike (`team-x`/`api` and `team`/`x-api`); the binding tells them apart.
    """
    return subject is None or subject == ((names.namespace,), (names.service_account,))


def vault_policy(identity: Identity) -> str:
    """The ACL policy text: the approved paths, plus read on the identity's own secret."""
    names = identity.names
    lines = [
        f'{policy_marker(names)}(ticket {identity.ticket_id}, owner {identity.owner.team}). '
        'Changes are reverted.',
    ]
    paths = [(p.path, sorted(p.capabilities)) for p in identity.scope.vault_policy]
    if identity.scope.secret_keys:
        paths.append((names.secret_data_path, ['read']))
    for path, capabilities in paths:
        caps = ', '.join(_hcl_string(c) for c in capabilities)
        lines.append(f'path {_hcl_string(path)} {{\n  capabilities = [{caps}]\n}}')
    return '\n\n'.join(lines) + '\n'


@dataclasses.dataclass(frozen=True)
class TokenTtlPlan:
    """How long Vault tokens issued from now on may live, and when to look again."""

    ttl_seconds: int
    write: bool
    """False when the TTL already in force is safe and close enough to the ideal one."""
    next_refresh: datetime


def plan_token_ttl(
    now: datetime,
    expires_at: datetime,
    current_seconds: int | None,
    max_ttl: timedelta = DEFAULT_MAX_TOKEN_TTL,
) -> TokenTtlPlan:
    """Cap the Vault role's token TTL so no token outlives `expires_at`.

    Vault TTLs are relative to login, so a cap `c` written now is safe for logins until
    `expires_at - c`. The ideal cap is min(max_ttl, remaining / 2), refreshed after `c`: tokens
    issued before the refresh end by now + 2c <= expires_at. Far from expiry the cap is constant,
    so a restart writes nothing; near expiry it halves at each refresh. A cap already in force is
    kept while it is safe and at least half the ideal one (fewer writes).
    """
    remaining = int((expires_at - now).total_seconds())
    ideal = max(1, min(int(max_ttl.total_seconds()), remaining // 2))
    if current_seconds is not None and ideal / 2 <= current_seconds <= ideal:
        ttl, write = current_seconds, False
    else:
        ttl, write = ideal, True
    wait = max(1, min(ttl, remaining - ttl))
    return TokenTtlPlan(ttl_seconds=ttl, write=write, next_refresh=now + timedelta(seconds=wait))


@dataclasses.dataclass(frozen=True)
class VaultRole:
    """A Kubernetes-auth role bound to exactly one ServiceAccount in one namespace."""

    name: str
    service_account: str
    namespace: str
    policy: str
    ttl_seconds: int

    def config(self) -> dict[str, Any]:
        """The role's parameters as the auth method's API takes them."""
        return {
            'bound_service_account_names': [self.service_account],
            'bound_service_account_namespaces': [self.namespace],
            'token_policies': [self.policy],
            'token_ttl': self.ttl_seconds,
            'token_max_ttl': self.ttl_seconds,
            # Explicit max TTL caps renewals too, whatever the mount's defaults are.
            'token_explicit_max_ttl': self.ttl_seconds,
            # Service tokens, never batch tokens: batch tokens cannot be revoked.
            'token_type': 'service',
            # One entity per ServiceAccount object: a re-created SA of the same name is a new
            # identity, and disabling the old entity does not touch it.
            'alias_name_source': 'serviceaccount_uid',
        }


def vault_role(identity: Identity, ttl_seconds: int) -> VaultRole:
    names = identity.names
    return VaultRole(
        name=names.vault_role,
        service_account=names.service_account,
        namespace=names.namespace,
        policy=names.vault_policy,
        ttl_seconds=ttl_seconds,
    )


def secret_metadata(identity: Identity) -> dict[str, str]:
    """KV v2 custom metadata of the generated secret: who owns it, why, until when."""
    return {
        'managed-by': 'tenure',
        'identity': f'{identity.names.namespace}/{identity.names.name}',
        'ticket': identity.ticket_id,
        'owner-team': identity.owner.team,
        'owner-contact': identity.owner.contact,
        'expires-at': format_timestamp(identity.expires_at),
    }

"""Inventory: every non-human identity in the cluster and in Vault, Managed, Leaked or Unmanaged.

`classify(inventory, now)` is pure: the adapters gather plain records (`Inventory`), this module
decides what each object is (issue #6, `tenure report`):

- `Managed`: an Active ServiceIdentity stands behind it.
- `Leaked`: Tenure made it (its labels, its Vault role's binding or its policy's first line say
  for which identity), but that identity is revoked, being revoked, not provisioned or missing.
- `Unmanaged`: no ServiceIdentity stands behind it (ServiceAccounts other than each namespace's
  `default`, token Secrets, bindings that grant ServiceAccounts, Vault Kubernetes-auth roles and
  ACL policies).

Each finding names the OWASP Non-Human Identities Top 10 (2025) risk it maps to
(https://owasp.org/www-project-non-human-identities-top-10/2025/top-10-2025).
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from tenure.api.v1alpha1 import Phase, ServiceIdentitySpec, ServiceIdentityStatus
from tenure.domain.names import (
    EXPIRES_ANNOTATION,
    IDENTITY_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    OWNER_TEAM_ANNOTATION,
    TICKET_ANNOTATION,
    IdentityNames,
)

SYSTEM_NAMESPACE_PREFIX: Final = 'kube-'
"""kube-system, kube-public, kube-node-lease: the cluster's own, left out unless asked for."""
SYSTEM_BINDING_PREFIX: Final = 'system:'
"""ClusterRoleBindings the control plane bootstraps (system:controller:..., system:node...)."""
SYSTEM_VAULT_POLICIES: Final = frozenset({'root', 'default'})
"""Vault's built-in policies."""
DEFAULT_SERVICE_ACCOUNT: Final = 'default'
_POLICY_MARKER: Final = re.compile(
    r'^# Managed by Tenure for (?P<namespace>[a-z0-9-]+)/(?P<name>[a-z0-9-]+) '
    r'\(ticket (?P<ticket>[^,]*), owner (?P<owner>[^)]*)\)'
)
"""The first line `tenure.domain.desired.vault_policy` writes."""


class Class(enum.StrEnum):
    MANAGED = 'Managed'
    LEAKED = 'Leaked'
    UNMANAGED = 'Unmanaged'


class Kind(enum.StrEnum):
    SERVICE_IDENTITY = 'ServiceIdentity'
    SERVICE_ACCOUNT = 'ServiceAccount'
    SECRET = 'Secret'
    ROLE_BINDING = 'RoleBinding'
    CLUSTER_ROLE_BINDING = 'ClusterRoleBinding'
    VAULT_ROLE = 'VaultRole'
    VAULT_POLICY = 'VaultPolicy'


class Risk(enum.StrEnum):
    """OWASP Non-Human Identities Top 10 (2025): the ones an inventory can observe."""

    NHI1 = 'NHI1'
    """Improper Offboarding: an identity that outlived its purpose, or never had an owner."""
    NHI5 = 'NHI5'
    """Overprivileged NHI: access granted outside any approval."""
    NHI7 = 'NHI7'
    """Long-Lived Secrets: a token that does not expire."""
    NHI8 = 'NHI8'
    """Environment Isolation: access granted across namespaces."""
    NHI9 = 'NHI9'
    """NHI Reuse: one identity shared by many workloads."""


RISK_TITLES: Final = {
    Risk.NHI1: 'Improper Offboarding',
    Risk.NHI5: 'Overprivileged NHI',
    Risk.NHI7: 'Long-Lived Secrets',
    Risk.NHI8: 'Environment Isolation',
    Risk.NHI9: 'NHI Reuse',
}


# -- the records the adapters gather ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ObjectRecord:
    """What every Kubernetes object has that matters here."""

    namespace: str
    name: str
    uid: str = ''
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    owner_uids: tuple[str, ...] = ()
    """uids in metadata.ownerReferences."""


@dataclasses.dataclass(frozen=True)
class ServiceAccountRecord(ObjectRecord):
    secrets: tuple[str, ...] = ()
    """Names in the ServiceAccount's `secrets` field: the token Secrets Kubernetes generated
    (before 1.24); a token Secret not listed there was created by hand."""


@dataclasses.dataclass(frozen=True)
class TokenSecretRecord(ObjectRecord):
    """A Secret of type kubernetes.io/service-account-token (never its data)."""

    service_account: str = ''
    """The annotation kubernetes.io/service-account.name."""


@dataclasses.dataclass(frozen=True)
class BindingRecord(ObjectRecord):
    """A RoleBinding (namespace set) or ClusterRoleBinding (namespace '') with its subjects."""

    cluster_wide: bool = False
    role_kind: str = ''
    role_name: str = ''
    service_accounts: tuple[tuple[str, str], ...] = ()
    """(namespace, name) of each ServiceAccount subject."""
    other_subjects: int = 0
    """Subjects that are not ServiceAccounts (users, groups)."""


@dataclasses.dataclass(frozen=True)
class VaultRoleRecord:
    """A role of the Kubernetes auth method."""

    name: str
    bound_namespaces: tuple[str, ...] = ()
    bound_service_accounts: tuple[str, ...] = ()
    policies: tuple[str, ...] = ()
    token_max_ttl: int = 0
    """Seconds; 0 means the mount's (or the system's) maximum."""


@dataclasses.dataclass(frozen=True)
class VaultPolicyRecord:
    name: str
    text: str


@dataclasses.dataclass(frozen=True)
class IdentityRecord:
    """A ServiceIdentity as the API holds it, parsed (an unreadable spec is None)."""

    namespace: str
    name: str
    uid: str
    spec: ServiceIdentitySpec | None
    status: ServiceIdentityStatus

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> IdentityRecord:
        meta = body.get('metadata') or {}
        try:
            spec: ServiceIdentitySpec | None = ServiceIdentitySpec.model_validate(
                body.get('spec') or {}
            )
        except ValidationError:
            spec = None
        try:
            status = ServiceIdentityStatus.model_validate(body.get('status') or {})
        except ValidationError:
            status = ServiceIdentityStatus()
        return cls(
            namespace=str(meta.get('namespace') or ''),
            name=str(meta.get('name') or ''),
            uid=str(meta.get('uid') or ''),
            spec=spec,
            status=status,
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def active(self) -> bool:
        return self.status.phase is Phase.ACTIVE and self.status.revocation is None


@dataclasses.dataclass(frozen=True)
class Inventory:
    """Everything gathered for one report."""

    identities: tuple[IdentityRecord, ...] = ()
    service_accounts: tuple[ServiceAccountRecord, ...] = ()
    token_secrets: tuple[TokenSecretRecord, ...] = ()
    bindings: tuple[BindingRecord, ...] = ()
    vault_roles: tuple[VaultRoleRecord, ...] = ()
    vault_policies: tuple[VaultPolicyRecord, ...] = ()
    kv_mount: str = 'secret'
    auth_mount: str = 'kubernetes'


# -- the findings ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Governance:
    """Who owns an identity, what justified it and when it dies (from its ServiceIdentity)."""

    identity: str
    """namespace/name of the ServiceIdentity."""
    owner: str | None = None
    owner_contact: str | None = None
    ticket: str | None = None
    ticket_system: str | None = None
    ticket_url: str | None = None
    requester: str | None = None
    approver: str | None = None
    approved_at: datetime | None = None
    justification: str | None = None
    expires_at: datetime | None = None
    last_rotated_at: datetime | None = None


@dataclasses.dataclass(frozen=True)
class Finding:
    class_: Class
    kind: Kind
    namespace: str | None
    name: str
    risk: Risk | None
    detail: str
    governance: Governance | None = None
    """The ServiceIdentity behind the object (Managed), or the one that made it (Leaked)."""
    owner: str | None = None
    ticket: str | None = None
    expires_at: datetime | None = None

    def days_left(self, now: datetime) -> int | None:
        if self.expires_at is None:
            return None
        return (self.expires_at - now).days


_CLASS_ORDER: Final = {Class.LEAKED: 0, Class.UNMANAGED: 1, Class.MANAGED: 2}
_KIND_ORDER: Final = {kind: i for i, kind in enumerate(Kind)}


def _sort_key(finding: Finding) -> tuple[int, str, int, str]:
    return (
        _CLASS_ORDER[finding.class_],
        finding.namespace or '',
        _KIND_ORDER[finding.kind],
        finding.name,
    )


@dataclasses.dataclass(frozen=True)
class Scope:
    """Which findings the caller wants."""

    namespace: str | None = None
    """Only this namespace; None: all. Vault objects belong to the namespace they name."""
    include_system: bool = False
    """Also kube-* namespaces, each namespace's default ServiceAccount, system: bindings and
    Vault's root and default policies."""

    def wants(self, namespace: str | None) -> bool:
        return self.namespace is None or namespace == self.namespace


def is_system_namespace(namespace: str) -> bool:
    return namespace.startswith(SYSTEM_NAMESPACE_PREFIX)


def _stamp(value: datetime) -> str:
    return value.strftime('%Y-%m-%dT%H:%M:%SZ')


def governance_of(record: IdentityRecord) -> Governance:
    """The owner, ticket and expiry in force (status), or as asked for (spec) before that."""
    spec, status = record.spec, record.status
    owner = status.owner or (spec.owner if spec else None)
    ticket = spec.ticket if spec else None
    approval = status.approval
    return Governance(
        identity=f'{record.namespace}/{record.name}',
        owner=owner.team if owner else None,
        owner_contact=owner.contact if owner else None,
        ticket=approval.ticket_id if approval else (ticket.id if ticket else None),
        ticket_system=ticket.system if ticket else None,
        ticket_url=ticket.url if ticket else None,
        requester=ticket.requester if ticket else None,
        approver=approval.approver if approval else (ticket.approver if ticket else None),
        approved_at=approval.approved_at if approval else (ticket.approved_at if ticket else None),
        justification=ticket.justification if ticket else None,
        expires_at=status.expires_at or (spec.expires_at if spec else None),
        last_rotated_at=status.vault.last_rotated_at if status.vault else None,
    )


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace('Z', '+00:00'))
    except ValueError:
        return None


# -- the classifier --------------------------------------------------------------------------


class _Classifier:
    def __init__(self, inventory: Inventory, now: datetime) -> None:
        self.inventory = inventory
        self.now = now
        self.identities = {i.key: i for i in inventory.identities}
        self.accounts = {(a.namespace, a.name): a for a in inventory.service_accounts}

    def _finding(
        self,
        class_: Class,
        kind: Kind,
        namespace: str | None,
        name: str,
        risk: Risk | None,
        detail: str,
        governance: Governance | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> Finding:
        # What the object says about itself (Tenure's annotations) when no ServiceIdentity does.
        notes = annotations or {}
        return Finding(
            class_=class_,
            kind=kind,
            namespace=namespace,
            name=name,
            risk=risk,
            detail=detail,
            governance=governance,
            owner=(governance and governance.owner) or notes.get(OWNER_TEAM_ANNOTATION),
            ticket=(governance and governance.ticket) or notes.get(TICKET_ANNOTATION),
            expires_at=(governance and governance.expires_at)
            or _parse_time(notes.get(EXPIRES_ANNOTATION)),
        )

    # -- who stands behind an object Tenure made ----------------------------------------------

    def _standing(
        self, namespace: str, name: str, owner_uids: tuple[str, ...] = ()
    ) -> tuple[Class, Risk | None, str, Governance | None]:
        """The class of an object Tenure made for identity namespace/name, and why."""
        record = self.identities.get((namespace, name))
        if record is None:
            return (
                Class.LEAKED,
                Risk.NHI1,
                f'made by Tenure for ServiceIdentity {namespace}/{name}, which no longer exists',
                None,
            )
        governance = governance_of(record)
        status = record.status
        revocation = status.revocation
        if revocation is not None:
            when = _stamp(revocation.completed_at or revocation.requested_at)
            if revocation.verified:
                why = f'its ServiceIdentity was revoked ({revocation.reason}) at {when}'
            else:
                why = (
                    f'revocation of its ServiceIdentity ({revocation.reason}, requested at {when}) '
                    'is not verified yet'
                )
            return Class.LEAKED, Risk.NHI1, f'{why}; the object should be gone', governance
        if status.phase is not Phase.ACTIVE:
            phase = status.phase.value if status.phase else 'not reconciled'
            return (
                Class.LEAKED,
                Risk.NHI1,
                f'its ServiceIdentity is {phase}: nothing should be provisioned',
                governance,
            )
        if owner_uids and record.uid not in owner_uids:
            return (
                Class.LEAKED,
                Risk.NHI1,
                f'left by an earlier ServiceIdentity {namespace}/{name} (owner uid '
                f'{", ".join(owner_uids)}); the current one does not own it',
                governance,
            )
        return (*self._in_force(record, governance), governance)

    def _in_force(
        self, record: IdentityRecord, governance: Governance
    ) -> tuple[Class, Risk | None, str]:
        expires = governance.expires_at
        if expires is not None and expires <= self.now:
            return (
                Class.MANAGED,
                Risk.NHI1,
                f'expired at {_stamp(expires)} and not revoked yet (is the operator running?)',
            )
        ticket = governance.ticket or '?'
        until = f' until {_stamp(expires)}' if expires is not None else ''
        return Class.MANAGED, None, f'approved under {ticket}{until}'

    @staticmethod
    def _made_by_tenure(obj: ObjectRecord) -> str | None:
        """The identity name an object's Tenure labels name, None when it is not Tenure's."""
        if obj.labels.get(MANAGED_BY_LABEL) != MANAGED_BY:
            return None
        return obj.labels.get(IDENTITY_LABEL) or None

    # -- each kind ---------------------------------------------------------------------------

    def service_identities(self, scope: Scope) -> Iterator[Finding]:
        for record in self.inventory.identities:
            if not scope.wants(record.namespace):
                continue
            revocation = record.status.revocation
            governance = governance_of(record)
            if record.active:
                class_, risk, detail = self._in_force(record, governance)
                yield self._finding(
                    class_,
                    Kind.SERVICE_IDENTITY,
                    record.namespace,
                    record.name,
                    risk,
                    detail,
                    governance,
                )
            elif revocation is not None and not revocation.verified:
                yield self._finding(
                    Class.LEAKED,
                    Kind.SERVICE_IDENTITY,
                    record.namespace,
                    record.name,
                    Risk.NHI1,
                    f'revocation ({revocation.reason}) requested at '
                    f'{_stamp(revocation.requested_at)} is not verified yet',
                    governance,
                )
            # Pending, Denied and verified Revoked tombstones grant nothing: not identities.

    def service_accounts(self, scope: Scope) -> Iterator[Finding]:
        for account in self.inventory.service_accounts:
            if not scope.wants(account.namespace):
                continue
            finding = self._service_account(account)
            system = is_system_namespace(account.namespace) or (
                account.name == DEFAULT_SERVICE_ACCOUNT
            )
            if finding.class_ is not Class.UNMANAGED or not system or scope.include_system:
                yield finding

    def _service_account(self, account: ServiceAccountRecord) -> Finding:
        made_for = self._made_by_tenure(account)
        if made_for is not None:
            class_, risk, detail, governance = self._standing(
                account.namespace, made_for, account.owner_uids
            )
            return self._finding(
                class_,
                Kind.SERVICE_ACCOUNT,
                account.namespace,
                account.name,
                risk,
                detail,
                governance,
                account.annotations,
            )
        detail = 'no ServiceIdentity stands behind it: no owner, no ticket, no expiry'
        if (account.namespace, account.name) in self.identities:
            detail = (
                f'ServiceIdentity {account.namespace}/{account.name} exists but does not manage '
                'it (a NameConflict: Tenure never adopts an object)'
            )
        return self._finding(
            Class.UNMANAGED,
            Kind.SERVICE_ACCOUNT,
            account.namespace,
            account.name,
            Risk.NHI1,
            detail,
        )

    def token_secrets(self, scope: Scope) -> Iterator[Finding]:
        for secret in self.inventory.token_secrets:
            if not scope.wants(secret.namespace):
                continue
            if is_system_namespace(secret.namespace) and not scope.include_system:
                continue
            yield self._token_secret(secret)

    def _token_secret(self, secret: TokenSecretRecord) -> Finding:
        account = self.accounts.get((secret.namespace, secret.service_account))
        who = f'ServiceAccount {secret.service_account}'
        origin = (
            'generated by Kubernetes'
            if account is not None and secret.name in account.secrets
            else 'created by hand'
        )
        token = f'a token that never expires, for {who}, {origin}'
        if account is None:
            made_for = self._made_by_tenure(secret)
            if (
                made_for is not None
                or (secret.namespace, secret.service_account) in self.identities
            ):
                _, _, detail, governance = self._standing(
                    secret.namespace, made_for or secret.service_account
                )
                return self._finding(
                    Class.LEAKED,
                    Kind.SECRET,
                    secret.namespace,
                    secret.name,
                    Risk.NHI1,
                    f'{token}; {who} does not exist; {detail}',
                    governance,
                    secret.annotations,
                )
            return self._finding(
                Class.UNMANAGED,
                Kind.SECRET,
                secret.namespace,
                secret.name,
                Risk.NHI1,
                f'{token}; {who} does not exist',
            )
        owner = self._service_account(account)
        if owner.class_ is Class.LEAKED:
            return dataclasses.replace(
                owner, kind=Kind.SECRET, name=secret.name, detail=f'{token}; {owner.detail}'
            )
        # Managed or not, a Secret-held token outlives every expiry Tenure enforces (Tenure's
        # revocation deletes it, but until then it is a credential without an end).
        return dataclasses.replace(
            owner,
            kind=Kind.SECRET,
            name=secret.name,
            risk=Risk.NHI7,
            detail=f'{token}; prefer short-lived tokens (TokenRequest)'
            + ('' if owner.class_ is Class.UNMANAGED else f'; {owner.detail}'),
        )

    def bindings(self, scope: Scope) -> Iterator[Finding]:
        for binding in self.inventory.bindings:
            if not binding.service_accounts:
                continue
            if binding.cluster_wide:
                if not any(scope.wants(ns) for ns, _ in binding.service_accounts):
                    continue
            elif not scope.wants(binding.namespace):
                continue
            finding = self._binding(binding, scope)
            if finding is not None:
                yield finding

    def _binding(self, binding: BindingRecord, scope: Scope) -> Finding | None:
        kind = Kind.CLUSTER_ROLE_BINDING if binding.cluster_wide else Kind.ROLE_BINDING
        namespace = None if binding.cluster_wide else binding.namespace
        subjects = ', '.join(f'{ns}/{name}' for ns, name in binding.service_accounts)
        grants = f'grants {binding.role_kind} {binding.role_name} to {subjects}'
        made_for = None if binding.cluster_wide else self._made_by_tenure(binding)
        if made_for is not None:
            class_, risk, detail, governance = self._standing(
                binding.namespace, made_for, binding.owner_uids
            )
            return self._finding(
                class_,
                kind,
                namespace,
                binding.name,
                risk,
                f'{grants}; {detail}',
                governance,
                binding.annotations,
            )
        system = binding.name.startswith(SYSTEM_BINDING_PREFIX) or all(
            is_system_namespace(ns) for ns, _ in binding.service_accounts
        )
        if system and not scope.include_system:
            return None
        risk, why = self._binding_risk(binding)
        return self._finding(
            Class.UNMANAGED, kind, namespace, binding.name, risk, f'{grants} outside Tenure; {why}'
        )

    def _binding_risk(self, binding: BindingRecord) -> tuple[Risk, str]:
        """The first that applies: a managed identity's grant, isolation, reuse, privilege."""
        for ns, name in binding.service_accounts:
            account = self.accounts.get((ns, name))
            if account is not None and self._made_by_tenure(account) is not None:
                return (
                    Risk.NHI5,
                    f'{ns}/{name} is a Tenure identity and this access is not in its approved '
                    'scope (UnexpectedBinding)',
                )
        if not binding.cluster_wide:
            foreign = [f'{ns}/{n}' for ns, n in binding.service_accounts if ns != binding.namespace]
            if foreign:
                return Risk.NHI8, f'crosses namespaces: {", ".join(foreign)}'
        shared = [f'{ns}/{n}' for ns, n in binding.service_accounts if n == DEFAULT_SERVICE_ACCOUNT]
        if shared:
            return (
                Risk.NHI9,
                f'every pod without its own ServiceAccount runs as {", ".join(shared)}',
            )
        if binding.cluster_wide:
            return Risk.NHI5, 'cluster-wide access with no approval behind it'
        return Risk.NHI5, 'access with no approval behind it'

    def vault_roles(self, scope: Scope) -> Iterator[Finding]:
        for role in self.inventory.vault_roles:
            finding = self._vault_role(role)
            wanted = (
                scope.namespace is None
                or scope.namespace in role.bound_namespaces
                or ('*' in role.bound_namespaces)
            )
            if wanted:
                yield finding

    def _identity_of_role(self, role: VaultRoleRecord) -> tuple[str, str] | None:
        """(namespace, name) when the role is shaped as Tenure makes one for that identity."""
        if len(role.bound_namespaces) != 1 or len(role.bound_service_accounts) != 1:
            return None
        ns, name = role.bound_namespaces[0], role.bound_service_accounts[0]
        names = IdentityNames(ns, name, self.inventory.kv_mount, self.inventory.auth_mount)
        return (ns, name) if role.name == names.vault_role else None

    def _vault_role(self, role: VaultRoleRecord) -> Finding:
        who = ', '.join(
            f'{ns}/{sa}' for ns in role.bound_namespaces for sa in role.bound_service_accounts
        )
        login = f'login as {who or "nobody"} gets {", ".join(role.policies) or "no policies"}'
        identity = self._identity_of_role(role)
        if identity is not None:
            class_, risk, detail, governance = self._standing(*identity)
            return self._finding(
                class_,
                Kind.VAULT_ROLE,
                identity[0],
                role.name,
                risk,
                f'{login}; {detail}',
                governance,
            )
        namespace = role.bound_namespaces[0] if len(role.bound_namespaces) == 1 else None
        if namespace == '*':
            namespace = None
        if '*' in role.bound_namespaces or '*' in role.bound_service_accounts:
            risk, why = Risk.NHI9, 'a wildcard binding lets many workloads share one identity'
        elif role.name.startswith('tenure-'):
            risk, why = (
                Risk.NHI1,
                'named like a Tenure role, but not bound to the identity it names',
            )
        else:
            risk, why = Risk.NHI1, 'no ServiceIdentity stands behind it: no owner, no expiry'
        if role.token_max_ttl == 0:
            why += '; token lifetime capped only by the mount or system maximum'
        return self._finding(
            Class.UNMANAGED, Kind.VAULT_ROLE, namespace, role.name, risk, f'{login}; {why}'
        )

    def vault_policies(self, scope: Scope) -> Iterator[Finding]:
        for policy in self.inventory.vault_policies:
            if policy.name in SYSTEM_VAULT_POLICIES and not scope.include_system:
                continue
            finding = self._vault_policy(policy)
            if scope.wants(finding.namespace):
                yield finding

    def _vault_policy(self, policy: VaultPolicyRecord) -> Finding:
        marker = _POLICY_MARKER.match(policy.text)
        if marker is not None:
            ns, name = marker['namespace'], marker['name']
            names = IdentityNames(ns, name, self.inventory.kv_mount, self.inventory.auth_mount)
            if names.vault_policy == policy.name:
                class_, risk, detail, governance = self._standing(ns, name)
                notes = {
                    TICKET_ANNOTATION: marker['ticket'],
                    OWNER_TEAM_ANNOTATION: marker['owner'],
                }
                return self._finding(
                    class_, Kind.VAULT_POLICY, ns, policy.name, risk, detail, governance, notes
                )
        paths = len(re.findall(r'^\s*path\s', policy.text, flags=re.MULTILINE))
        why = f'{paths} path(s) granted with no approval behind them'
        if re.search(r'"sudo"', policy.text):
            why += ', sudo among them'
        return self._finding(Class.UNMANAGED, Kind.VAULT_POLICY, None, policy.name, Risk.NHI5, why)


def classify(inventory: Inventory, now: datetime, scope: Scope | None = None) -> list[Finding]:
    """Every finding in `scope`, the riskiest class first (Leaked, Unmanaged, Managed)."""
    scope = scope or Scope()
    classifier = _Classifier(inventory, now)
    findings: Iterable[Finding] = (
        *classifier.service_identities(scope),
        *classifier.service_accounts(scope),
        *classifier.token_secrets(scope),
        *classifier.bindings(scope),
        *classifier.vault_roles(scope),
        *classifier.vault_policies(scope),
    )
    return sorted(findings, key=_sort_key)

"""`tenure plan`: what applying a ServiceIdentity manifest would do, decided without doing it.

Pure: the manifest, what exists now (`Live`, read by the caller through the adapters, or nothing
when offline), the guardrail policy and the time in; a `Plan` out. It runs the same decisions
the operator runs (`guardrails.evaluate`, `lifecycle.decide`, `desired.*`), so the plan says what
the operator would do with the object, including what it would refuse and why (issue #6).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import ValidationError

from tenure.api.v1alpha1 import ServiceIdentity, ServiceIdentitySpec, ServiceIdentityStatus
from tenure.domain.desired import (
    DEFAULT_MAX_TOKEN_TTL,
    Identity,
    Manifest,
    kubernetes_objects,
    plan_token_ttl,
    policy_is_ours,
    role_is_ours,
    vault_policy,
    vault_role,
)
from tenure.domain.guardrails import Policy, Target, Violation, evaluate
from tenure.domain.lifecycle import (
    Converge,
    Decision,
    Deny,
    Hold,
    Keep,
    Observed,
    Revoke,
    Wait,
    decide,
)
from tenure.domain.names import DEFAULT_AUTH_MOUNT, DEFAULT_KV_MOUNT, IdentityNames
from tenure.domain.reasons import Reason
from tenure.errors import NameConflict

KUBERNETES: Final = 'Kubernetes'
VAULT: Final = 'Vault'


class Action(enum.StrEnum):
    CREATE = 'create'
    UPDATE = 'update'
    DELETE = 'delete'
    UNCHANGED = 'unchanged'
    APPLY = 'apply'
    """Create or update: the live state was not read (offline), so it cannot say which."""


@dataclasses.dataclass(frozen=True)
class Change:
    system: str
    action: Action
    kind: str
    name: str
    detail: str = ''


@dataclasses.dataclass(frozen=True)
class Live:
    """What exists now, as far as it was read."""

    kubernetes_read: bool = False
    """False offline: nothing below about Kubernetes is known."""
    vault_read: bool = False
    identity: Mapping[str, Any] | None = None
    """The ServiceIdentity as the API holds it, None when there is none."""
    namespace_labels: Mapping[str, str] | None = None
    """None when the namespace does not exist (or was not read)."""
    objects: Mapping[tuple[str, str], Manifest] = dataclasses.field(default_factory=dict)
    """(kind, name) -> the live object: every name Tenure would use, and Tenure's labelled ones."""
    vault_policy: str | None = None
    vault_role: Mapping[str, Any] | None = None
    secret_version: int | None = None


@dataclasses.dataclass(frozen=True)
class Settings:
    kv_mount: str = DEFAULT_KV_MOUNT
    auth_mount: str = DEFAULT_AUTH_MOUNT
    max_token_ttl: timedelta = DEFAULT_MAX_TOKEN_TTL


@dataclasses.dataclass(frozen=True)
class Plan:
    namespace: str
    name: str
    decision: Decision | None
    """None when the manifest is refused before any decision (schema, NameConflict)."""
    phase: str
    """The phase the identity would have: Pending, Active, Denied, Revoked."""
    reason: str
    """What the plan turns on: SpecValid, a guardrail rule, ScopeChangeNotApproved, ..."""
    message: str
    violations: tuple[Violation, ...]
    changes: tuple[Change, ...]
    live: Live

    @property
    def as_written(self) -> bool:
        """Applying the manifest would take effect as written: nothing refused, held or ignored."""
        match self.decision:
            case Converge():
                return self.decision.verdict.valid
            case Wait() | Revoke():
                return True
            case Keep():
                return self.changes[0].action is Action.UNCHANGED
            case _:
                return False


def _pruned(value: Any) -> Any:
    """Unset and empty fields dropped, as the API server omits them."""
    if isinstance(value, Mapping):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, '', [], {})}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _sorted(value: Any) -> Any:
    return sorted(value) if isinstance(value, list) else value


def _object_difference(desired: Manifest, live: Manifest) -> list[str]:
    """The fields of `desired` that `live` does not have as Tenure would write them (the same
    comparison as the Kubernetes adapter: Tenure's labels and annotations, the rest whole)."""
    differs = []
    for field in ('labels', 'annotations'):
        have = (live.get('metadata') or {}).get(field) or {}
        keys = [k for k, v in desired['metadata'].get(field, {}).items() if have.get(k) != v]
        differs += [f'metadata.{field}[{k}]' for k in keys]
    for field, value in desired.items():
        if field not in ('apiVersion', 'kind', 'metadata') and _pruned(value) != _pruned(
            live.get(field)
        ):
            differs.append(field)
    return differs


def _conflict(live: Manifest, names: IdentityNames, uid: str | None) -> str | None:
    meta = live.get('metadata') or {}
    if names.labels().items() - (meta.get('labels') or {}).items():
        return f'it is not labelled {names.selector}'
    owners = [ref.get('uid') for ref in meta.get('ownerReferences') or []]
    if uid and uid not in owners:
        return f'it is owned by another ServiceIdentity than {names.namespace}/{names.name}'
    return None


def _subject(role: Mapping[str, Any] | None) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(bound namespaces, bound ServiceAccounts) of a Vault role, as the adapter reports it."""
    if role is None:
        return None
    return (
        tuple(role.get('bound_service_account_namespaces') or ()),
        tuple(role.get('bound_service_account_names') or ()),
    )


def _labelled(live: Manifest, names: IdentityNames) -> bool:
    labels = (live.get('metadata') or {}).get('labels') or {}
    return not names.labels().items() - labels.items()


class _Planner:
    def __init__(
        self,
        manifest: ServiceIdentity,
        live: Live,
        policy: Policy,
        now: datetime,
        settings: Settings,
    ) -> None:
        self.manifest = manifest
        self.live = live
        self.policy = policy
        self.now = now
        self.settings = settings
        meta = manifest.metadata
        self.names = IdentityNames(
            namespace=meta.namespace or 'default',
            name=meta.name,
            kv_mount=settings.kv_mount,
            auth_mount=settings.auth_mount,
        )
        body = live.identity or {}
        self.uid = str((body.get('metadata') or {}).get('uid') or '') or None
        try:
            self.status = ServiceIdentityStatus.model_validate(body.get('status') or {})
        except ValidationError:
            self.status = ServiceIdentityStatus()

    # -- the ServiceIdentity itself ------------------------------------------------------------

    @staticmethod
    def _normalised(spec: ServiceIdentitySpec | Mapping[str, Any]) -> dict[str, Any]:
        """A spec as JSON with every default filled in, so that the manifest as written and the
        object as the API server stored it (with the CRD's defaults) compare equal."""
        if not isinstance(spec, ServiceIdentitySpec):
            try:
                spec = ServiceIdentitySpec.model_validate(spec)
            except ValidationError:
                return dict(_pruned(dict(spec)))
        return dict(_pruned(spec.model_dump(mode='json', by_alias=True, exclude_none=True)))

    def _spec_changes(self) -> list[str] | None:
        """Top-level spec fields the manifest changes; None when there is no live spec."""
        live = (self.live.identity or {}).get('spec')
        if live is None:
            return None
        have, want = self._normalised(live), self._normalised(self.manifest.spec)
        return sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k))

    def identity_change(self) -> Change:
        name = self.names.name
        if not self.live.kubernetes_read:
            return Change(KUBERNETES, Action.APPLY, 'ServiceIdentity', name)
        body = self.live.identity
        if body is None:
            return Change(KUBERNETES, Action.CREATE, 'ServiceIdentity', name)
        fields = self._spec_changes() or []
        live_notes = (body.get('metadata') or {}).get('annotations') or {}
        notes = sorted(
            k for k, v in self.manifest.metadata.annotations.items() if live_notes.get(k) != v
        )
        if not fields and not notes:
            return Change(KUBERNETES, Action.UNCHANGED, 'ServiceIdentity', name)
        detail = ', '.join([*(f'spec.{f}' for f in fields), *(f'annotation {n}' for n in notes)])
        return Change(KUBERNETES, Action.UPDATE, 'ServiceIdentity', name, f'changes {detail}')

    def observed(self, violations: tuple[Violation, ...]) -> Observed:
        body = self.live.identity or {}
        meta = body.get('metadata') or {}
        generation = int(meta.get('generation') or 0)
        if self._spec_changes() != []:
            generation += 1  # the API server moves generation on a spec change (or a create)
        annotations = {**(meta.get('annotations') or {}), **self.manifest.metadata.annotations}
        return Observed(
            spec=self.manifest.spec,
            spec_error=None,
            status=self.status,
            annotations=annotations,
            generation=generation,
            deleting=False,
            violations=violations,
            mode=self.policy.mode,
        )

    # -- the plan ------------------------------------------------------------------------------

    def plan(self) -> Plan:
        target = Target(
            namespace=self.names.namespace,
            name=self.names.name,
            kv_mount=self.settings.kv_mount,
            namespace_labels=self.live.namespace_labels if self.live.kubernetes_read else None,
            provisioned=self.status.applied_scope is not None,
        )
        violations = tuple(evaluate(self.manifest.spec, self.policy, target, self.now))
        decision = decide(self.observed(violations), self.now)
        itself = self.identity_change()

        def done(phase: str, reason: str, message: str, changes: Sequence[Change] = ()) -> Plan:
            return Plan(
                self.names.namespace,
                self.names.name,
                decision,
                phase,
                reason,
                message,
                violations,
                (itself, *changes),
                self.live,
            )

        match decision:
            case Wait():
                return done('Pending', Reason.AWAITING_APPROVAL, decision.message)
            case Deny():
                return done('Denied', decision.reason, f'nothing is created: {decision.message}')
            case Hold():
                return done(
                    'Active',
                    decision.reason,
                    f'held: what is in force stays, nothing changes until this is fixed: '
                    f'{decision.message}',
                )
            case Keep():
                return done('Revoked', Reason.REVOKED_IS_TERMINAL, decision.message)
            case Revoke():
                return done('Revoked', decision.reason.value, decision.message, self.revocation())
            case Converge():
                conflict = self.name_conflict(decision)
                if conflict is not None:
                    return done('Denied', Reason.NAME_CONFLICT, f'nothing is created: {conflict}')
                verdict = decision.verdict
                return done('Active', verdict.reason, verdict.message, self.convergence(decision))

    # -- converge -------------------------------------------------------------------------------

    def _identity(self, decision: Converge) -> Identity:
        return Identity(
            names=self.names,
            uid=self.uid or '',
            ticket_id=decision.approval.ticket_id,
            owner=decision.owner,
            scope=decision.scope,
            expires_at=decision.expires_at,
        )

    def name_conflict(self, decision: Converge) -> str | None:
        """The first object of Tenure's names that is not this identity's (never adopted)."""
        names = self.names
        if self.live.kubernetes_read:
            for obj in kubernetes_objects(self._identity(decision)):
                kind, name = obj['kind'], obj['metadata']['name']
                found = self.live.objects.get((kind, name))
                why = _conflict(found, names, self.uid) if found is not None else None
                if why is not None:
                    return str(NameConflict(kind, f'{names.namespace}/{name}', why))
        if self.live.vault_read:
            if not role_is_ours(_subject(self.live.vault_role), names):
                return str(
                    NameConflict('Vault role', names.vault_role, 'it is bound to another account')
                )
            if not policy_is_ours(self.live.vault_policy, names):
                return str(
                    NameConflict(
                        'Vault policy', names.vault_policy, 'it was not written for this identity'
                    )
                )
        return None

    def convergence(self, decision: Converge) -> list[Change]:
        identity = self._identity(decision)
        return [*self._kubernetes(identity), *self._vault(identity, decision)]

    def _kubernetes(self, identity: Identity) -> list[Change]:
        desired = kubernetes_objects(identity)
        if not self.live.kubernetes_read:
            return [
                Change(KUBERNETES, Action.APPLY, o['kind'], o['metadata']['name']) for o in desired
            ]
        wanted = {(o['kind'], o['metadata']['name']) for o in desired}
        # Narrowing first, as the adapter applies it: grants no longer approved go first.
        changes = [
            Change(KUBERNETES, Action.DELETE, kind, name, 'no longer in the approved scope')
            for (kind, name), obj in sorted(self.live.objects.items())
            if kind in ('RoleBinding', 'Role')
            and (kind, name) not in wanted
            and _labelled(obj, self.names)
        ]
        for obj in desired:
            kind, name = obj['kind'], obj['metadata']['name']
            found = self.live.objects.get((kind, name))
            if found is None:
                changes.append(Change(KUBERNETES, Action.CREATE, kind, name))
                continue
            differs = _object_difference(obj, found)
            if 'roleRef' in differs:
                changes.append(
                    Change(KUBERNETES, Action.UPDATE, kind, name, 'replaced: roleRef is immutable')
                )
            elif differs:
                changes.append(
                    Change(KUBERNETES, Action.UPDATE, kind, name, f'changes {", ".join(differs)}')
                )
            else:
                changes.append(Change(KUBERNETES, Action.UNCHANGED, kind, name))
        return changes

    def _vault(self, identity: Identity, decision: Converge) -> list[Change]:
        names = self.names
        text = vault_policy(identity)
        live = self.live
        if not live.vault_read:
            changes = [
                Change(VAULT, Action.APPLY, 'VaultPolicy', names.vault_policy),
                Change(VAULT, Action.APPLY, 'VaultRole', names.vault_role),
            ]
            if decision.scope.secret_keys:
                changes.append(
                    Change(
                        VAULT, Action.APPLY, 'VaultSecret', f'{names.kv_mount}/{names.secret_path}'
                    )
                )
            return changes
        changes = [self._vault_policy(text)]
        current_ttl = int(live.vault_role.get('token_max_ttl') or 0) if live.vault_role else None
        ttl = plan_token_ttl(
            self.now, decision.expires_at, current_ttl, self.settings.max_token_ttl
        )
        changes.append(
            self._vault_role(vault_role(identity, ttl.ttl_seconds).config(), ttl.ttl_seconds)
        )
        if decision.revoke_issued_tokens:
            why = (
                'owner change'
                if decision.previous_owner is not None
                else 'ticket closed (onClose: Rotate)'
            )
            changes.append(
                Change(
                    VAULT,
                    Action.DELETE,
                    'VaultTokens',
                    names.vault_role,
                    f'every token issued so far is revoked ({why})',
                )
            )
        changes.extend(self._secret(decision))
        return changes

    def _vault_policy(self, text: str) -> Change:
        name = self.names.vault_policy
        current = self.live.vault_policy
        if current is None:
            return Change(VAULT, Action.CREATE, 'VaultPolicy', name)
        if current == text:
            return Change(VAULT, Action.UNCHANGED, 'VaultPolicy', name)
        return Change(VAULT, Action.UPDATE, 'VaultPolicy', name, 'policy text changes')

    def _vault_role(self, config: Mapping[str, Any], ttl: int) -> Change:
        name = self.names.vault_role
        current = self.live.vault_role
        if current is None:
            return Change(VAULT, Action.CREATE, 'VaultRole', name, f'token TTL {ttl}s')
        differs = sorted(k for k, v in config.items() if _sorted(current.get(k)) != _sorted(v))
        if not differs:
            return Change(VAULT, Action.UNCHANGED, 'VaultRole', name)
        return Change(VAULT, Action.UPDATE, 'VaultRole', name, f'changes {", ".join(differs)}')

    def _secret(self, decision: Converge) -> list[Change]:
        path = f'{self.settings.kv_mount}/{self.names.secret_path}'
        version = self.live.secret_version
        keys = decision.scope.secret_keys
        if not keys:
            if version is None:
                return []
            return [Change(VAULT, Action.DELETE, 'VaultSecret', path, 'with all its versions')]
        if version is None:
            return [Change(VAULT, Action.CREATE, 'VaultSecret', path, f'keys {", ".join(keys)}')]
        applied = self.status.applied_scope
        keys_changed = set(keys) != set(applied.secret_keys if applied else [])
        reasons = [
            why
            for why, applies in (
                ('owner change', decision.previous_owner is not None),
                ('ticket closed (onClose: Rotate)', decision.rotate_for_closure),
                ('rotateEvery elapsed', decision.rotate_on_schedule),
                ('tenure.dev/rotate', decision.rotation_request is not None),
                ('keys changed', keys_changed and self.status.vault is not None),
            )
            if applies
        ]
        if reasons:
            return [
                Change(
                    VAULT,
                    Action.UPDATE,
                    'VaultSecret',
                    path,
                    f'rotated to version {version + 1} ({", ".join(reasons)})',
                )
            ]
        status = self.status
        in_force = (
            status.approval.ticket_id if status.approval else None,
            status.owner,
            status.expires_at,
        )
        if in_force != (decision.approval.ticket_id, decision.owner, decision.expires_at):
            return [
                Change(
                    VAULT,
                    Action.UPDATE,
                    'VaultSecret',
                    path,
                    f'version {version} kept; its metadata (ticket, owner, expiry) changes',
                )
            ]
        return [Change(VAULT, Action.UNCHANGED, 'VaultSecret', path, f'version {version}')]

    # -- revoke ---------------------------------------------------------------------------------

    def revocation(self) -> list[Change]:
        """Vault's half in its order, then Kubernetes' (the operator runs both at once, and
        deletes the ServiceAccount last)."""
        names, live = self.names, self.live
        if_present = 'if present (not read)'
        changes: list[Change] = []
        if live.vault_read:
            subject = _subject(live.vault_role)
            if subject is not None and role_is_ours(subject, names):
                changes.append(Change(VAULT, Action.DELETE, 'VaultRole', names.vault_role))
            changes.append(
                Change(VAULT, Action.DELETE, 'VaultTokens', names.vault_role, 'every token issued')
            )
            if live.vault_policy is not None and policy_is_ours(live.vault_policy, names):
                changes.append(Change(VAULT, Action.DELETE, 'VaultPolicy', names.vault_policy))
            if live.secret_version is not None:
                changes.append(
                    Change(
                        VAULT,
                        Action.DELETE,
                        'VaultSecret',
                        f'{self.settings.kv_mount}/{names.secret_path}',
                        'with all its versions',
                    )
                )
        else:
            changes += [
                Change(VAULT, Action.DELETE, 'VaultRole', names.vault_role, if_present),
                Change(VAULT, Action.DELETE, 'VaultTokens', names.vault_role, 'every token issued'),
                Change(VAULT, Action.DELETE, 'VaultPolicy', names.vault_policy, if_present),
                Change(
                    VAULT,
                    Action.DELETE,
                    'VaultSecret',
                    f'{self.settings.kv_mount}/{names.secret_path}',
                    if_present,
                ),
            ]
        order = {'RoleBinding': 0, 'Role': 1, 'ServiceAccount': 2}
        if live.kubernetes_read:
            ours = sorted(
                (k for k, obj in live.objects.items() if k[0] in order and _labelled(obj, names)),
                key=lambda k: (order[k[0]], k[1]),
            )
            changes += [Change(KUBERNETES, Action.DELETE, kind, name) for kind, name in ours]
        else:
            changes.append(
                Change(
                    KUBERNETES,
                    Action.DELETE,
                    'ServiceAccount',
                    names.service_account,
                    f'with its Role, RoleBindings and token Secrets, {if_present}',
                )
            )
        return changes


def plan(
    manifest: ServiceIdentity,
    live: Live,
    *,
    policy: Policy,
    now: datetime,
    settings: Settings | None = None,
) -> Plan:
    """What applying `manifest` would do, given what exists (`live`). Changes nothing."""
    return _Planner(manifest, live, policy, now, settings or Settings()).plan()

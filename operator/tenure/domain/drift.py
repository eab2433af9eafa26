"""Drift: a managed object changed or deleted outside Tenure, found and put back (issue #6). Pure.

A converge applies the desired objects idempotently and learns what it had to write. Whether a
write was a *repair* depends on whether the desired state moved since the last converge: when the
identity was Active and the approval in force (scope, owner, expiry, ticket) is the one the last
converge applied, Tenure's own last write equals today's desired object, so anything that still
had to be written was changed behind Tenure's back. A first provisioning, a scope, owner or expiry
change, a rotation: those writes are the converge itself, not repairs.

The Vault role's token TTL is the exception: Tenure itself lowers it as the expiry nears
(`plan_token_ttl`), so a TTL write is a repair only when the TTL found is one Tenure never writes
(missing role, longer than the cap, or different from what Tenure last wrote when that is known).

Also here: which bindings outside Tenure grant a managed ServiceAccount (UnexpectedBinding), and
how the periodic Vault check is spread over its interval.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Final

from tenure.api.v1alpha1 import Phase, ServiceIdentityStatus
from tenure.domain.desired import VaultRole
from tenure.domain.lifecycle import Converge
from tenure.domain.names import IDENTITY_LABEL, MANAGED_BY, MANAGED_BY_LABEL, IdentityNames

MESSAGE_LIMIT: Final = 900
"""Events are cut at 1024 characters; keep the list of repairs readable below that."""


class DriftKind(enum.StrEnum):
    """The bounded `kind` label of tenure_drift_repairs_total."""

    SERVICE_ACCOUNT = 'ServiceAccount'
    ROLE = 'Role'
    ROLE_BINDING = 'RoleBinding'
    CLUSTER_ROLE_BINDING = 'ClusterRoleBinding'
    """Only with --remove-unexpected-bindings: a binding outside Tenure removed."""
    VAULT_POLICY = 'VaultPolicy'
    VAULT_ROLE = 'VaultRole'
    VAULT_SECRET = 'VaultSecret'


@dataclasses.dataclass(frozen=True)
class Repair:
    """One object put back: its kind, its name and what was different (never a secret value)."""

    kind: DriftKind
    name: str
    what: str

    def __str__(self) -> str:
        return f'{self.kind.value}/{self.name} ({self.what})'


def approval_unchanged(previous: ServiceIdentityStatus, decision: Converge) -> bool:
    """True when this converge applies exactly what the last one applied, so that every write it
    makes repairs drift. Rotations and owner changes write on purpose and are not judged."""
    approval = previous.approval
    return (
        previous.phase is Phase.ACTIVE
        and previous.revocation is None
        and previous.vault is not None
        and approval is not None
        and approval.ticket_id == decision.approval.ticket_id
        and previous.applied_scope == decision.scope
        and previous.owner == decision.owner
        and previous.expires_at == decision.expires_at
        and decision.previous_owner is None
        and not decision.rotate_secret
    )


def kubernetes_repairs(changes: Mapping[str, str]) -> list[Repair]:
    """Repairs from the Kubernetes adapter's changes: {'Kind/name': 'what differed'}."""
    repairs = []
    for ref, what in changes.items():
        kind, _, name = ref.partition('/')
        try:
            repairs.append(Repair(DriftKind(kind), name, what))
        except ValueError:
            continue  # not a kind Tenure manages (the adapter only reports its own)
    return repairs


def role_ttl_drifted(
    *, current: int | None, cap: int, last_written: int | None, kept: bool
) -> bool:
    """Whether the Vault role's token TTL found was set outside Tenure.

    `kept`: the TTL plan found the current TTL acceptable (so a write changed other fields).
    `last_written`: the TTL Tenure last wrote to this role, when this process knows it.
    """
    if current is None:
        return True  # the role was deleted
    if kept:
        return False
    if last_written is not None:
        return current != last_written
    # After a restart the last write is unknown: only a TTL Tenure never writes is drift.
    return current > cap or current <= 0


_MARKER: Final = re.compile(
    r'^# Managed by Tenure for (?P<namespace>[a-z0-9-]+)/(?P<name>[a-z0-9-]+) '
)
"""The first line of every policy Tenure writes (`tenure.domain.desired.policy_marker`)."""


def role_claimed_by_other(
    subject: tuple[tuple[str, ...], tuple[str, ...]] | None, names: IdentityNames
) -> bool:
    """The Vault role of this name is bound to another identity whose names spell the same Vault
    role (`team-x`/`api` and `team`/`x-api`): a name conflict, never drift to undo."""
    if subject is None or len(subject[0]) != 1 or len(subject[1]) != 1:
        return False
    other = dataclasses.replace(names, namespace=subject[0][0], name=subject[1][0])
    return other != names and other.vault_role == names.vault_role


def policy_claimed_by_other(text: str | None, names: IdentityNames) -> bool:
    """The Vault policy of this name was written by Tenure for another, look-alike identity."""
    marker = _MARKER.match(text or '')
    if marker is None:
        return False
    other = dataclasses.replace(names, namespace=marker['namespace'], name=marker['name'])
    return other != names and other.vault_policy == names.vault_policy


@dataclasses.dataclass(frozen=True)
class VaultExpectation:
    """What the last converge of an Active identity left in Vault: the periodic check compares
    Vault against it (reads only) and asks for a reconcile when something differs."""

    policy: str
    policy_text: str
    role: VaultRole
    secret_path: str | None
    """The generated secret's path in the KV mount, None when the identity has none."""


def drift_message(repairs: Sequence[Repair]) -> str:
    """The DriftRepaired event: what changed outside Tenure and was put back."""
    listed = '; '.join(str(r) for r in repairs)
    if len(listed) > MESSAGE_LIMIT:
        listed = listed[: MESSAGE_LIMIT - 4] + ' ...'
    return f'changed outside Tenure and put back: {listed}'


# -- bindings outside Tenure -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BindingRef:
    """A RoleBinding (namespace set) or ClusterRoleBinding (namespace '')."""

    kind: str
    namespace: str
    name: str
    uid: str
    role: str
    """'ClusterRole/edit', 'Role/x': what it grants."""
    service_accounts: tuple[tuple[str, str], ...]
    """(namespace, name) of its ServiceAccount subjects."""
    other_subjects: int = 0
    """Subjects that are not ServiceAccounts (users, groups)."""

    def __str__(self) -> str:
        where = f'{self.namespace}/' if self.namespace else ''
        return f'{self.kind}/{where}{self.name} (grants {self.role})'

    @property
    def sole_subject(self) -> bool:
        return len(self.service_accounts) == 1 and self.other_subjects == 0


def made_by_tenure_for(labels: Mapping[str, str], namespace: str, key: tuple[str, str]) -> bool:
    """A binding Tenure made for the identity `key` (its labels, in the identity's namespace)."""
    return (
        labels.get(MANAGED_BY_LABEL) == MANAGED_BY
        and labels.get(IDENTITY_LABEL) == key[1]
        and namespace == key[0]
    )


def unexpected_for(
    key: tuple[str, str], bindings: Iterable[tuple[BindingRef, Mapping[str, str]]]
) -> list[BindingRef]:
    """The bindings (with their labels) granting the identity's ServiceAccount that Tenure did
    not make for it, sorted by kind, namespace and name."""
    found = [
        binding
        for binding, labels in bindings
        if key in binding.service_accounts
        and not made_by_tenure_for(labels, binding.namespace, key)
    ]
    return sorted(found, key=lambda b: (b.kind, b.namespace, b.name))


def unexpected_message(bindings: Sequence[BindingRef], *, removing: bool) -> str:
    """The UnexpectedBindings condition and event. `removing`: --remove-unexpected-bindings is
    on, so what is left is shared with other subjects (removing it would cut their access)."""
    if not bindings:
        return 'no binding outside Tenure grants the ServiceAccount'
    listed = '; '.join(str(b) for b in bindings)
    if len(listed) > MESSAGE_LIMIT:
        listed = listed[: MESSAGE_LIMIT - 4] + ' ...'
    hint = (
        'not removed: other subjects share the binding'
        if removing
        else 'not in the approved scope; remove them, or run the operator with '
        '--remove-unexpected-bindings'
    )
    return f'granted outside Tenure: {listed}; {hint}'


# -- the periodic Vault check -----------------------------------------------------------------


def pace(count: int, interval: timedelta) -> float:
    """Seconds between two identities' checks so that `count` of them fill `interval` evenly
    (not all at the same instant), at least 1 ms."""
    if count <= 0:
        return interval.total_seconds()
    return max(0.001, interval.total_seconds() / count)

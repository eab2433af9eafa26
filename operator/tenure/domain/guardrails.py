"""Guardrails: what no reviewer should have approved. One implementation, four callers.

`evaluate(spec, policy, target, now)` returns every violation of a ServiceIdentity spec, each with a
stable rule id. It is called by the CRD's validation (its static part, as CEL rules rendered from
`CEL_RULES` below), the admission webhook, the operator before it provisions anything, and
`tenure check` offline. Pure: time, the policy and the namespace's labels are arguments.

Rules decided elsewhere but sharing these ids: `NotApproved` (a Requested ticket waits: Pending,
not Denied), `NameConflict` (the adapters, when an object of that name is not Tenure's),
`ScopeChangeNotApproved` and `ExtensionNotApproved` (the lifecycle, against status.approval).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from tenure.api.v1alpha1 import (
    IdentityPolicy,
    IdentityPolicySpec,
    PolicyRule,
    ServiceIdentitySpec,
    VaultPathRule,
)


class Rule(StrEnum):
    """Stable rule ids: in conditions, events, webhook messages and `tenure check` output."""

    NOT_APPROVED = 'NotApproved'
    REQUESTER_IS_APPROVER = 'RequesterIsApprover'
    APPROVED_IN_FUTURE = 'ApprovedInFuture'
    EXPIRY_BEFORE_APPROVAL = 'ExpiryBeforeApproval'
    LIFETIME_TOO_LONG = 'LifetimeTooLong'
    ALREADY_EXPIRED = 'AlreadyExpired'
    WILDCARD_NOT_ALLOWED = 'WildcardNotAllowed'
    FORBIDDEN_VERB = 'ForbiddenVerb'
    SECRETS_NEED_RESOURCE_NAMES = 'SecretsNeedResourceNames'
    TOKEN_MINTING_NOT_ALLOWED = 'TokenMintingNotAllowed'
    VAULT_PATH_NOT_ALLOWED = 'VaultPathNotAllowed'
    VAULT_CAPABILITY_NOT_ALLOWED = 'VaultCapabilityNotAllowed'
    NAME_CONFLICT = 'NameConflict'
    ENVIRONMENT_MISMATCH = 'EnvironmentMismatch'
    EXTENSION_NOT_APPROVED = 'ExtensionNotApproved'
    CLUSTER_ROLE_NOT_ALLOWED = 'ClusterRoleNotAllowed'
    SCOPE_CHANGE_NOT_APPROVED = 'ScopeChangeNotApproved'
    TICKET_SYSTEM_NOT_ALLOWED = 'TicketSystemNotAllowed'
    JUSTIFICATION_TOO_SHORT = 'JustificationTooShort'


class Mode(StrEnum):
    ENFORCE = 'Enforce'
    """Violations deny provisioning."""
    AUDIT = 'Audit'
    """Violations are reported (conditions, events, metrics) but provisioning goes on."""


APPROVAL_CLOCK_SKEW: Final = timedelta(minutes=5)
BASE_FORBIDDEN_VERBS: Final = frozenset({'escalate', 'bind', 'impersonate'})
ALLOWED_CAPABILITIES: Final = frozenset(
    {'create', 'read', 'update', 'patch', 'delete', 'list', 'deny', 'subscribe'}
)
"""Vault ACL capabilities an identity may hold: every known one but `sudo` (and `root`)."""
NEVER_ALLOWED_VAULT_ROOTS: Final = ('sys', 'auth', 'identity')
ENVIRONMENT_LABEL: Final = 'tenure.dev/environment'
DEFAULT_VAULT_PATH_PREFIXES: Final = (
    '{kvMount}/data/{namespace}/',
    '{kvMount}/metadata/{namespace}/',
)


@dataclasses.dataclass(frozen=True)
class Violation:
    rule: Rule
    field: str
    message: str

    def __str__(self) -> str:
        return f'{self.rule}: {self.field}: {self.message}'


@dataclasses.dataclass(frozen=True)
class Policy:
    """The rules' parameters: the `default` IdentityPolicy, or these built-in defaults."""

    max_lifetime: timedelta = timedelta(days=90)
    allowed_ticket_systems: frozenset[str] = frozenset()
    """Empty: any ticket system."""
    allowed_vault_path_prefixes: tuple[str, ...] = DEFAULT_VAULT_PATH_PREFIXES
    """Templated with {namespace} and {kvMount}."""
    allowed_cluster_roles: frozenset[str] = frozenset()
    extra_forbidden_verbs: frozenset[str] = frozenset()
    min_justification_length: int = 10
    mode: Mode = Mode.ENFORCE


def policy_of(body: Mapping[str, Any] | None) -> Policy:
    """The policy an IdentityPolicy object puts in force (None: it does not exist, the built-in
    defaults apply). Raises pydantic's ValidationError when the object does not validate."""
    if body is None:
        return Policy()
    return policy_from(IdentityPolicy.model_validate(dict(body)).spec)


def policy_from(spec: IdentityPolicySpec) -> Policy:
    """The domain view of an IdentityPolicy spec."""
    return Policy(
        max_lifetime=spec.max_lifetime,
        allowed_ticket_systems=frozenset(spec.allowed_ticket_systems),
        allowed_vault_path_prefixes=tuple(spec.allowed_vault_path_prefixes),
        allowed_cluster_roles=frozenset(spec.allowed_cluster_roles),
        extra_forbidden_verbs=frozenset(spec.extra_forbidden_verbs),
        min_justification_length=spec.min_justification_length,
        mode=Mode(spec.mode.value),
    )


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the identity lives, as far as the caller knows."""

    namespace: str
    name: str
    kv_mount: str = 'secret'
    namespace_labels: Mapping[str, str] | None = None
    """The namespace's labels; None when unknown (offline), which skips EnvironmentMismatch."""
    provisioned: bool = False
    """Already Active: its expiry is a revocation, not an AlreadyExpired denial."""


Check = Callable[[ServiceIdentitySpec, Policy, Target, datetime], Iterator[Violation]]


def _stamp(value: datetime) -> str:
    return value.strftime('%Y-%m-%dT%H:%M:%SZ')


# -- the ticket and time -------------------------------------------------------------------


def _ticket(
    spec: ServiceIdentitySpec, policy: Policy, _: Target, __: datetime
) -> Iterator[Violation]:
    ticket = spec.ticket
    if ticket.requester.casefold() == ticket.approver.casefold():
        yield Violation(
            Rule.REQUESTER_IS_APPROVER,
            'spec.ticket.approver',
            'requester and approver must be different people (separation of duties)',
        )
    if policy.allowed_ticket_systems and ticket.system not in policy.allowed_ticket_systems:
        allowed = ', '.join(sorted(policy.allowed_ticket_systems))
        yield Violation(
            Rule.TICKET_SYSTEM_NOT_ALLOWED,
            'spec.ticket.system',
            f'ticket system {ticket.system!r} is not allowed (allowed: {allowed})',
        )
    length = len(ticket.justification.strip())
    if length < policy.min_justification_length:
        yield Violation(
            Rule.JUSTIFICATION_TOO_SHORT,
            'spec.ticket.justification',
            f'the justification has {length} characters; the policy asks for at least '
            f'{policy.min_justification_length}',
        )


def _time(
    spec: ServiceIdentitySpec, policy: Policy, target: Target, now: datetime
) -> Iterator[Violation]:
    approved = spec.ticket.approved_at
    if approved is not None and approved > now + APPROVAL_CLOCK_SKEW:
        yield Violation(
            Rule.APPROVED_IN_FUTURE,
            'spec.ticket.approvedAt',
            f'approvedAt {_stamp(approved)} is more than {APPROVAL_CLOCK_SKEW.seconds // 60} '
            'minutes in the future',
        )
    if approved is not None and spec.expires_at <= approved:
        yield Violation(
            Rule.EXPIRY_BEFORE_APPROVAL,
            'spec.expiresAt',
            'expiresAt must be after ticket.approvedAt',
        )
    start = approved if approved is not None else now
    if spec.expires_at - start > policy.max_lifetime:
        yield Violation(
            Rule.LIFETIME_TOO_LONG,
            'spec.expiresAt',
            f'the identity would live {(spec.expires_at - start).days} days from '
            f'{"approval" if approved is not None else "now"}; the policy allows at most '
            f'{policy.max_lifetime.days} days',
        )
    if not target.provisioned and spec.expires_at <= now:
        yield Violation(
            Rule.ALREADY_EXPIRED,
            'spec.expiresAt',
            f'expiresAt {_stamp(spec.expires_at)} has passed; a new identity is not provisioned',
        )


# -- Kubernetes scope ----------------------------------------------------------------------


def _rule_violations(rule: PolicyRule, field: str, policy: Policy) -> Iterator[Violation]:
    for attribute, values in (
        ('verbs', rule.verbs),
        ('resources', rule.resources),
        ('apiGroups', rule.api_groups),
    ):
        if '*' in values:
            yield Violation(
                Rule.WILDCARD_NOT_ALLOWED,
                f'{field}.{attribute}',
                f'"*" in {attribute} grants everything, present and future; name them',
            )
    forbidden = sorted(set(rule.verbs) & (BASE_FORBIDDEN_VERBS | policy.extra_forbidden_verbs))
    if forbidden:
        yield Violation(
            Rule.FORBIDDEN_VERB,
            f'{field}.verbs',
            f'verbs {", ".join(forbidden)} are not allowed (they escalate privileges)',
        )
    if 'secrets' in rule.resources and '' in rule.api_groups and not rule.resource_names:
        yield Violation(
            Rule.SECRETS_NEED_RESOURCE_NAMES,
            f'{field}.resourceNames',
            'access to secrets needs explicit resourceNames',
        )
    if 'serviceaccounts/token' in rule.resources and 'create' in rule.verbs:
        yield Violation(
            Rule.TOKEN_MINTING_NOT_ALLOWED,
            f'{field}.verbs',
            'create on serviceaccounts/token mints tokens for other identities',
        )


def _kubernetes(
    spec: ServiceIdentitySpec, policy: Policy, _: Target, __: datetime
) -> Iterator[Violation]:
    if spec.kubernetes is None:
        return
    for index, rule in enumerate(spec.kubernetes.rules):
        yield from _rule_violations(rule, f'spec.kubernetes.rules[{index}]', policy)
    for index, role in enumerate(spec.kubernetes.cluster_roles):
        if role not in policy.allowed_cluster_roles:
            catalog = ', '.join(sorted(policy.allowed_cluster_roles)) or 'none'
            yield Violation(
                Rule.CLUSTER_ROLE_NOT_ALLOWED,
                f'spec.kubernetes.clusterRoles[{index}]',
                f'ClusterRole {role!r} is not in the policy catalog (allowed: {catalog})',
            )


# -- Vault scope ---------------------------------------------------------------------------


EARLY_GLOB: Final = r'^([^/]*/){0,2}[^/]*[*+]'
"""A glob ("*" or "+") in one of the first three segments: it could expand into tenure/ secrets."""
_EARLY_GLOB = re.compile(EARLY_GLOB)


def _reaches_tenure(segments: list[str], kv_mount: str) -> bool:
    """Whether the path names, or could glob into, <kv>/<any>/tenure/ (others' secrets)."""
    kv = kv_mount.split('/')
    if segments[: len(kv)] != kv:
        return False
    rest = segments[len(kv) :]
    return any('*' in s or s == '+' for s in rest[:2]) or (len(rest) > 1 and rest[1] == 'tenure')


def vault_path_problem(
    path: str, prefixes: tuple[str, ...], kv_mount: str = 'secret'
) -> str | None:
    """Why `path` may not be granted, or None. `prefixes` are already templated."""
    segments = path.split('/')
    if '..' in segments or '.' in segments:
        return 'relative segments ("..", ".") are not allowed'
    if '' in segments[:-1] or path.startswith('/'):
        return 'empty path segments are not allowed'
    if segments[0] in NEVER_ALLOWED_VAULT_ROOTS:
        return f'{segments[0]}/ paths are never granted to an identity'
    if _EARLY_GLOB.match(path):
        return 'globs ("*", "+") in the first three segments could reach other identities\' secrets'
    if (len(segments) > 2 and segments[2] == 'tenure') or _reaches_tenure(segments, kv_mount):
        return "tenure/ holds other identities' generated secrets"
    if not any(path.startswith(prefix) for prefix in prefixes):
        return f'the path must start with one of: {", ".join(prefixes)}'
    return None


def _vault_rule(
    rule: VaultPathRule, field: str, prefixes: tuple[str, ...], kv_mount: str
) -> Iterator[Violation]:
    problem = vault_path_problem(rule.path, prefixes, kv_mount)
    if problem is not None:
        yield Violation(Rule.VAULT_PATH_NOT_ALLOWED, f'{field}.path', f'{rule.path!r}: {problem}')
    refused = sorted(set(rule.capabilities) - ALLOWED_CAPABILITIES)
    if refused:
        yield Violation(
            Rule.VAULT_CAPABILITY_NOT_ALLOWED,
            f'{field}.capabilities',
            f'capabilities {", ".join(refused)} are not allowed (sudo and root never; unknown '
            f'ones are refused; allowed: {", ".join(sorted(ALLOWED_CAPABILITIES))})',
        )


def allowed_prefixes(policy: Policy, target: Target) -> tuple[str, ...]:
    return tuple(
        p.replace('{namespace}', target.namespace).replace('{kvMount}', target.kv_mount)
        for p in policy.allowed_vault_path_prefixes
    )


def _vault(
    spec: ServiceIdentitySpec, policy: Policy, target: Target, _: datetime
) -> Iterator[Violation]:
    if spec.vault is None:
        return
    prefixes = allowed_prefixes(policy, target)
    for index, rule in enumerate(spec.vault.policy):
        yield from _vault_rule(rule, f'spec.vault.policy[{index}]', prefixes, target.kv_mount)


# -- environment ---------------------------------------------------------------------------


def _environment(
    spec: ServiceIdentitySpec, _: Policy, target: Target, __: datetime
) -> Iterator[Violation]:
    labels = target.namespace_labels
    if labels is None or spec.environment is None or ENVIRONMENT_LABEL not in labels:
        return
    if labels[ENVIRONMENT_LABEL] != spec.environment:
        yield Violation(
            Rule.ENVIRONMENT_MISMATCH,
            'spec.environment',
            f'environment {spec.environment!r} does not match namespace {target.namespace!r} '
            f'({ENVIRONMENT_LABEL}={labels[ENVIRONMENT_LABEL]})',
        )


CHECKS: Final[tuple[Check, ...]] = (_ticket, _time, _kubernetes, _vault, _environment)


def evaluate(
    spec: ServiceIdentitySpec, policy: Policy, target: Target, now: datetime
) -> list[Violation]:
    """Every violation of `spec`, in a stable order (the first one names the Denied reason)."""
    return [violation for check in CHECKS for violation in check(spec, policy, target, now)]


def describe(violations: list[Violation]) -> str:
    """All violations in one line, for a condition message or a webhook answer."""
    return '; '.join(str(v) for v in violations)


# -- the static part, as CEL rules in the CRD ------------------------------------------------

_QUOTED_VERBS = ', '.join(f"'{v}'" for v in sorted(BASE_FORBIDDEN_VERBS))
_QUOTED_CAPABILITIES = ', '.join(f"'{c}'" for c in sorted(ALLOWED_CAPABILITIES))

CEL_RULES: Final[Mapping[str, list[dict[str, Any]]]] = {
    # Rendered into the CRD by tenure.api.crd at these schema locations. Messages start with the
    # rule id, so `kubectl apply` reports the same id as the webhook, the operator and the check.
    'spec': [
        {
            'rule': '!has(self.ticket.approvedAt) || '
            'timestamp(self.expiresAt) > timestamp(self.ticket.approvedAt)',
            'message': 'ExpiryBeforeApproval: expiresAt must be after ticket.approvedAt',
            'fieldPath': '.expiresAt',
        },
    ],
    'spec.ticket': [
        {
            'rule': 'self.requester.lowerAscii() != self.approver.lowerAscii()',
            'message': 'RequesterIsApprover: requester and approver must be different people '
            '(separation of duties)',
            'fieldPath': '.approver',
        },
    ],
    'spec.kubernetes.rules[]': [
        {
            'rule': "!self.verbs.exists(v, v == '*') && !self.resources.exists(r, r == '*') && "
            "!(has(self.apiGroups) && self.apiGroups.exists(g, g == '*'))",
            'message': 'WildcardNotAllowed: "*" in verbs, resources or apiGroups grants '
            'everything; name them',
        },
        {
            'rule': f'!self.verbs.exists(v, v in [{_QUOTED_VERBS}])',
            'message': 'ForbiddenVerb: escalate, bind and impersonate are not allowed',
            'fieldPath': '.verbs',
        },
        {
            'rule': "!(self.resources.exists(r, r == 'secrets') && has(self.apiGroups) && "
            "self.apiGroups.exists(g, g == '')) || "
            '(has(self.resourceNames) && size(self.resourceNames) > 0)',
            'message': 'SecretsNeedResourceNames: access to secrets needs explicit resourceNames',
        },
        {
            'rule': "!(self.resources.exists(r, r == 'serviceaccounts/token') && "
            "self.verbs.exists(v, v == 'create'))",
            'message': 'TokenMintingNotAllowed: create on serviceaccounts/token mints tokens for '
            'other identities',
            'fieldPath': '.verbs',
        },
    ],
    'spec.vault.policy[]': [
        {
            'rule': f'self.capabilities.all(c, c in [{_QUOTED_CAPABILITIES}])',
            'message': 'VaultCapabilityNotAllowed: sudo, root and unknown capabilities are not '
            'allowed',
            'fieldPath': '.capabilities',
        },
        {
            'rule': "!self.path.split('/').exists(s, s == '..' || s == '.') && "
            "!self.path.startsWith('/') && !self.path.contains('//') && "
            "!(self.path.split('/')[0] in ['sys', 'auth', 'identity']) && "
            "!(size(self.path.split('/')) > 2 && self.path.split('/')[2] == 'tenure') && "
            f"!self.path.matches('{EARLY_GLOB}')",
            'message': 'VaultPathNotAllowed: sys/, auth/, identity/, tenure/ secrets, globs in the '
            'first three segments, relative and empty segments are never allowed',
            'fieldPath': '.path',
        },
    ],
}

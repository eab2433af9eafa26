"""What to do with a ServiceIdentity now: one pure decision per reconcile.

`decide(observed, now)` looks at the spec, the status the operator wrote last time, the
annotations and the clock, and returns exactly one of:

- `Wait`      the ticket is still Requested: nothing is provisioned (phase Pending).
- `Deny`      the spec cannot be provisioned as it stands: nothing is created (phase Denied).
- `Converge`  the identity should exist with this scope, owner and expiry (phase Active).
- `Hold`      an Active identity whose spec cannot be applied (invalid, or its ticket went back to
              Requested): what is in force stays in force, and the Valid condition says why.
- `Revoke`    access ends for this reason; revocation runs until verified (phase Revoked).
- `Keep`      a Revoked tombstone: nothing changes, whatever the spec says now.

The order of the checks is the policy (issue #3, "Leaver"): a revocation already decided is
sticky; deletion and the emergency brake win over everything; then cancellation and rejection
(whatever onClose says), then expiry, then closure per onClose.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime, timedelta

from tenure.api.v1alpha1 import (
    ApprovalRecord,
    OnClose,
    Owner,
    Phase,
    RevocationReason,
    Scope,
    ServiceIdentitySpec,
    ServiceIdentityStatus,
    TicketState,
)
from tenure.domain.guardrails import Mode, Rule, Violation, describe
from tenure.domain.names import REVOKE_ANNOTATION, ROTATE_ANNOTATION
from tenure.domain.reasons import Reason
from tenure.domain.scope import covers, scope_of
from tenure.domain.tickets import TicketCheck


@dataclasses.dataclass(frozen=True)
class Observed:
    """A ServiceIdentity as read from the API, parsed."""

    spec: ServiceIdentitySpec | None
    """The parsed spec, or None when it does not validate (see `spec_error`)."""
    spec_error: str | None
    status: ServiceIdentityStatus
    annotations: Mapping[str, str]
    generation: int
    deleting: bool
    violations: tuple[Violation, ...] = ()
    """Guardrail violations of the spec under the policy in force (see domain.guardrails)."""
    mode: Mode = Mode.ENFORCE
    ticket_check: TicketCheck | None = None
    """What the spec's TicketSource says against provisioning (issue #7); the spec's ticket state
    is already the effective one (see domain.tickets.more_restrictive)."""


@dataclasses.dataclass(frozen=True)
class Wait:
    message: str
    reason: str = Reason.AWAITING_APPROVAL
    """AwaitingApproval (Ready=False), or a ticket source that cannot say yet (Ready=Unknown)."""


@dataclasses.dataclass(frozen=True)
class Deny:
    reason: str
    """A Reason or a guardrail Rule id."""
    message: str


@dataclasses.dataclass(frozen=True)
class Verdict:
    """How the spec is judged while the identity converges (the Valid condition)."""

    valid: bool
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Converge:
    scope: Scope
    expires_at: datetime
    approval: ApprovalRecord
    owner: Owner
    verdict: Verdict
    previous_owner: Owner | None = None
    """Set when the owner changes: the secret is rotated and issued Vault tokens are revoked."""
    rotate_for_closure: bool = False
    rotate_on_schedule: bool = False
    """spec.vault.secret.rotateEvery has passed since the last rotation."""
    rotation_request: str | None = None
    """A new value of the tenure.dev/rotate annotation: rotate once for it."""
    """The ticket closed with onClose: Rotate and that closure has not been acted on yet."""

    @property
    def rotate_secret(self) -> bool:
        return (
            self.previous_owner is not None
            or self.rotate_for_closure
            or self.rotate_on_schedule
            or self.rotation_request is not None
        )

    @property
    def revoke_issued_tokens(self) -> bool:
        # A scheduled or requested rotation keeps issued tokens (a zero-downtime rollover: the
        # previous secret version stays readable); an owner change or a closure cuts them.
        return self.previous_owner is not None or self.rotate_for_closure


@dataclasses.dataclass(frozen=True)
class Hold:
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Revoke:
    reason: RevocationReason
    message: str


@dataclasses.dataclass(frozen=True)
class Keep:
    """A tombstone: the identity was revoked and stays so."""

    message: str


Decision = Wait | Deny | Converge | Hold | Revoke | Keep


def _stamp(value: datetime) -> str:
    return value.strftime('%Y-%m-%dT%H:%M:%SZ')


def _approval_of(spec: ServiceIdentitySpec) -> ApprovalRecord:
    return ApprovalRecord(
        ticket_id=spec.ticket.id, approver=spec.ticket.approver, approved_at=spec.ticket.approved_at
    )


def approval_changed(status: ServiceIdentityStatus, spec: ServiceIdentitySpec) -> bool:
    """A new approval: the ticket id or the approval time differs from the one provisioned."""
    if status.approval is None:
        return True
    return (status.approval.ticket_id, status.approval.approved_at) != (
        spec.ticket.id,
        spec.ticket.approved_at,
    )


def effective_expiry(status: ServiceIdentityStatus, spec: ServiceIdentitySpec) -> datetime:
    """Earlier applies at once; later only with a new approval (an edit in Git is not one)."""
    in_force = status.expires_at
    if in_force is None or spec.expires_at <= in_force or approval_changed(status, spec):
        return spec.expires_at
    return in_force


@dataclasses.dataclass(frozen=True)
class ExpiryWarning:
    expiring_soon: bool
    message: str
    starts_at: datetime | None
    """When the warning will start, if it has not yet (a deadline to reconcile at)."""


def expiry_warning(now: datetime, expires_at: datetime, lead: timedelta) -> ExpiryWarning:
    """Whether `expires_at` is within `lead` of `now` (the ExpiringSoon condition)."""
    starts_at = expires_at - lead
    if now >= starts_at:
        # No relative time in the text: it would change the status on every reconcile.
        return ExpiryWarning(
            True,
            f'access expires at {_stamp(expires_at)}, within {lead.days} days; renewing it needs '
            'a new approval',
            None,
        )
    return ExpiryWarning(False, f'access expires at {_stamp(expires_at)}', starts_at)


def rotation_due(
    status: ServiceIdentityStatus, spec: ServiceIdentitySpec, now: datetime
) -> datetime | None:
    """When the generated secret is due for its scheduled rotation (None: no schedule)."""
    secret = spec.vault.secret if spec.vault else None
    last = status.vault.last_rotated_at if status.vault else None
    if secret is None or secret.rotate_every is None or last is None:
        return None
    return last + secret.rotate_every


def _new_rotation_request(observed: Observed) -> str | None:
    value = observed.annotations.get(ROTATE_ANNOTATION, '').strip()
    if not value or value == observed.status.rotation_request:
        return None  # absent, or already acted on: GitOps re-stamping it changes nothing
    return value


def _revocation(observed: Observed, now: datetime) -> Revoke | None:
    """The checks that end access, in order of precedence."""
    status, spec = observed.status, observed.spec
    if status.revocation is not None:
        # Once decided, revocation is sticky: it resumes after a restart or a failure.
        return Revoke(status.revocation.reason, 'revocation in progress')
    if observed.deleting:
        return Revoke(RevocationReason.DELETED, 'the ServiceIdentity was deleted')
    brake = observed.annotations.get(REVOKE_ANNOTATION, '').strip()
    if brake:
        return Revoke(RevocationReason.EMERGENCY, f'emergency revocation requested: {brake}')
    if spec is None:
        in_force = status.expires_at
        if in_force is not None and now >= in_force:
            return Revoke(RevocationReason.EXPIRED, f'access expired at {_stamp(in_force)}')
        return None
    state = spec.ticket.state
    if state is TicketState.CANCELLED:
        return Revoke(RevocationReason.TICKET_CANCELLED, f'ticket {spec.ticket.id} was cancelled')
    if state is TicketState.REJECTED:
        return Revoke(RevocationReason.TICKET_REJECTED, f'ticket {spec.ticket.id} was rejected')
    expires_at = effective_expiry(status, spec)
    if now >= expires_at and status.applied_scope is not None:
        # Never provisioned and already expired: a denial (AlreadyExpired), not a revocation.
        return Revoke(RevocationReason.EXPIRED, f'access expired at {_stamp(expires_at)}')
    if state is TicketState.CLOSED and spec.ticket.on_close is OnClose.REVOKE:
        return Revoke(
            RevocationReason.TICKET_CLOSED, f'ticket {spec.ticket.id} was closed (onClose: Revoke)'
        )
    return None


def _converge(observed: Observed, spec: ServiceIdentitySpec, now: datetime) -> Converge:
    status = observed.status
    due = rotation_due(status, spec, now)
    new_approval = approval_changed(status, spec)
    requested = scope_of(spec)
    applied = status.applied_scope
    problems: list[tuple[Reason, str]] = []
    scope = requested
    if applied is not None and not new_approval and not covers(applied, requested):
        scope = applied
        problems.append(
            (
                Reason.SCOPE_CHANGE_NOT_APPROVED,
                'the spec asks for more access than was approved; the approved scope stays in '
                'force until the ticket id or approvedAt changes',
            )
        )
    expires_at = effective_expiry(status, spec)
    if expires_at != spec.expires_at:
        problems.append(
            (
                Reason.EXTENSION_NOT_APPROVED,
                f'expiresAt moved later without a new approval; {_stamp(expires_at)} '
                'stays in force',
            )
        )
    if problems:
        verdict = Verdict(False, problems[0][0], '; '.join(message for _, message in problems))
    else:
        verdict = Verdict(True, Reason.SPEC_VALID, 'the spec is approved and in force')
    owner_changed = status.owner is not None and status.owner != spec.owner
    previous_owner = status.owner if owner_changed else None
    closed_rotate = (
        spec.ticket.state is TicketState.CLOSED
        and spec.ticket.on_close is OnClose.ROTATE
        and status.closure_handled_at is None
        and status.phase is Phase.ACTIVE
    )
    return Converge(
        scope=scope,
        expires_at=expires_at,
        approval=_approval_of(spec) if new_approval or status.approval is None else status.approval,
        owner=spec.owner,
        verdict=verdict,
        previous_owner=previous_owner,
        rotate_for_closure=closed_rotate,
        rotate_on_schedule=due is not None and due <= now,
        rotation_request=_new_rotation_request(observed),
    )


def decide(observed: Observed, now: datetime) -> Decision:
    """Decide what the identity should be now. Pure: the same inputs give the same decision."""
    status, spec = observed.status, observed.spec
    revocation = status.revocation
    if status.phase is Phase.REVOKED and revocation is not None and revocation.verified:
        return Keep(
            'the identity was revoked; Revoked is terminal: renewing access needs a new '
            'ServiceIdentity with a new approval'
        )
    revoke = _revocation(observed, now)
    if revoke is not None:
        return revoke
    active = status.phase is Phase.ACTIVE
    if spec is not None and status.applied_scope is None and now >= spec.expires_at:
        # Whatever the policy mode: provisioning it would only revoke it again at once. All the
        # violations are reported (AlreadyExpired is one of them), the first one as the reason.
        if observed.violations:
            return Deny(observed.violations[0].rule, describe(list(observed.violations)))
        return Deny(
            Rule.ALREADY_EXPIRED,
            f'{Rule.ALREADY_EXPIRED}: spec.expiresAt: expiresAt {_stamp(spec.expires_at)} has '
            'passed; a new identity is not provisioned',
        )
    if observed.violations and observed.mode is Mode.ENFORCE:
        message = describe(list(observed.violations))
        rule = observed.violations[0].rule
        return Hold(rule, message) if active else Deny(rule, message)
    if spec is None:
        message = f'the spec is invalid: {observed.spec_error}'
        # An Active identity keeps its last valid state until a valid spec or its expiry.
        return Hold(Reason.INVALID_SPEC, message) if active else Deny(Reason.INVALID_SPEC, message)
    if spec.ticket.state is TicketState.REQUESTED:
        if active:
            return Hold(
                Reason.NOT_APPROVED,
                f'ticket {spec.ticket.id} is back to Requested; the approval in force stays '
                'until the ticket is approved again, closed, cancelled or the identity expires',
            )
        return Wait(f'ticket {spec.ticket.id} is not approved yet; nothing is provisioned')
    ticket = observed.ticket_check
    if ticket is not None:
        if ticket.reason is Reason.APPROVAL_NOT_VERIFIED:
            return (
                Hold(ticket.reason, ticket.message)
                if active
                else Deny(ticket.reason, ticket.message)
            )
        if not active:
            # An outage never touches what is Active (nor its expiry); it only delays new grants.
            return Wait(ticket.message, ticket.reason)
    converge = _converge(observed, spec, now)
    if observed.violations:
        # Audit mode: reported on Valid (and by events and metrics), provisioned all the same.
        audit = Verdict(
            False,
            observed.violations[0].rule,
            f'Audit (not enforced): {describe(list(observed.violations))}',
        )
        if converge.verdict.valid:
            converge = dataclasses.replace(converge, verdict=audit)
    return converge

"""The durable record of an identity's transitions (`status.history`, issue #6).

Kubernetes Events expire after an hour and are no audit trail, so every transition is also kept
on the ServiceIdentity: a new phase, a new Ready or Valid reason, an owner change, a rotation,
the expiry warning, a revocation requested. Derived from the status before and after one
reconcile, so whatever path built the status (converge, hold, deny, revoke, a failure) is
recorded the same way, and a reconcile that changes nothing appends nothing (no write at all).
Pure: the time and the generation are arguments.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Final

from tenure.api.v1alpha1 import (
    ConditionStatus,
    HistoryEntry,
    Phase,
    ServiceIdentityStatus,
    VaultStatus,
)
from tenure.domain.conditions import find_condition
from tenure.domain.reasons import ConditionType, Reason

HISTORY_LIMIT: Final = 50
"""Entries kept; the oldest go first. Bounded so the object stays far below etcd's size limit."""
MESSAGE_LIMIT: Final = 1024
_TRUNCATED: Final = ' ...'


def _entry(
    at: datetime, phase: Phase | None, reason: str, message: str, generation: int | None
) -> HistoryEntry:
    if len(message) > MESSAGE_LIMIT:
        message = message[: MESSAGE_LIMIT - len(_TRUNCATED)] + _TRUNCATED
    return HistoryEntry(at=at, phase=phase, reason=reason, message=message, generation=generation)


def _reason(status: ServiceIdentityStatus, type_: str) -> tuple[str, str] | None:
    condition = find_condition(status.conditions, type_)
    return None if condition is None else (condition.reason, condition.message)


def _is_false(status: ServiceIdentityStatus, type_: str) -> bool:
    condition = find_condition(status.conditions, type_)
    return condition is not None and condition.status is ConditionStatus.FALSE


def _rotated(before: VaultStatus | None, after: VaultStatus | None) -> bool:
    """A new secret version or rotation time, once there was a secret (creating it is not one)."""
    if before is None or after is None or before.secret_version is None:
        return False
    return (after.secret_version, after.last_rotated_at) != (
        before.secret_version,
        before.last_rotated_at,
    ) and after.secret_version is not None


def transitions(
    before: ServiceIdentityStatus,
    after: ServiceIdentityStatus,
    *,
    at: datetime,
    generation: int | None,
) -> Iterator[HistoryEntry]:
    """The entries one reconcile adds, in the order they happened."""
    phase = after.phase
    if before.revocation is None and after.revocation is not None:
        # Recorded with the phase it was decided in: Revoked comes only once it is verified.
        yield _entry(
            after.revocation.requested_at,
            before.phase,
            Reason.REVOKING,
            f'revocation requested: {after.revocation.reason}',
            generation,
        )
    ready_before, ready_after = (
        _reason(before, ConditionType.READY),
        _reason(after, ConditionType.READY),
    )
    valid_before, valid_after = (
        _reason(before, ConditionType.VALID),
        _reason(after, ConditionType.VALID),
    )
    recorded: set[str] = set()
    if phase is not before.phase and phase is not None:
        # Denied is explained by Valid (the rule), every other phase by Ready.
        carrier = valid_after if phase is Phase.DENIED else ready_after
        reason, message = carrier or (phase.value, '')
        recorded.add(reason)
        yield _entry(at, phase, reason, message, generation)
    elif ready_after is not None and ready_after[0] != (ready_before or ('', ''))[0]:
        recorded.add(ready_after[0])
        yield _entry(at, phase, ready_after[0], ready_after[1], generation)
    if valid_after is not None and valid_after[0] not in recorded:
        changed = valid_before is not None and valid_before[0] != valid_after[0]
        # A first Valid=True is the normal start, not news; a first Valid=False is.
        first_refusal = valid_before is None and _is_false(after, ConditionType.VALID)
        if changed or first_refusal:
            yield _entry(at, phase, valid_after[0], valid_after[1], generation)
    if before.owner is not None and after.owner is not None and before.owner != after.owner:
        yield _entry(
            at,
            phase,
            Reason.OWNER_CHANGED,
            f'owner changed from {before.owner.team} ({before.owner.contact}) to '
            f'{after.owner.team} ({after.owner.contact})',
            generation,
        )
    if _rotated(before.vault, after.vault):
        version = after.vault.secret_version if after.vault else None
        yield _entry(
            at, phase, Reason.SECRET_ROTATED, f'secret rotated to version {version}', generation
        )
    expiring = find_condition(after.conditions, ConditionType.EXPIRING_SOON)
    was_expiring = find_condition(before.conditions, ConditionType.EXPIRING_SOON)
    if (
        expiring is not None
        and expiring.status is ConditionStatus.TRUE
        and (was_expiring is None or was_expiring.status is not ConditionStatus.TRUE)
    ):
        yield _entry(at, phase, Reason.EXPIRING_SOON, expiring.message, generation)


def with_history(
    before: ServiceIdentityStatus,
    after: ServiceIdentityStatus,
    *,
    at: datetime,
    generation: int | None,
) -> ServiceIdentityStatus:
    """`after` with this reconcile's transitions appended to its history (the same object when
    there are none, so an unchanged status stays unchanged)."""
    entries = list(transitions(before, after, at=at, generation=generation))
    if not entries:
        return after
    history = [*after.history, *entries][-HISTORY_LIMIT:]
    return after.model_copy(update={'history': history})

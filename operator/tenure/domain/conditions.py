"""Kubernetes condition semantics: the transition time moves only when the status flips."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from tenure.api.v1alpha1 import Condition, ConditionStatus

MAX_MESSAGE = 32768
TRUNCATED = ' ... (truncated)'


def set_condition(
    conditions: Sequence[Condition],
    *,
    type: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """Return a copy of `conditions` with the condition of `type` set, keeping the others in order.

    `lastTransitionTime` changes only when `status` changes (API conventions: "the last time the
    condition transitioned from one status to another").
    """
    if len(message) > MAX_MESSAGE:
        # metav1.Condition allows 32768 characters; a longer message would fail validation and
        # the status would never be written.
        message = message[: MAX_MESSAGE - len(TRUNCATED)] + TRUNCATED
    previous = next((c for c in conditions if c.type == type), None)
    since = now if previous is None or previous.status != status else previous.last_transition_time
    updated = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if c.type == type else c for c in conditions]


def find_condition(conditions: Sequence[Condition], type: str) -> Condition | None:
    return next((c for c in conditions if c.type == type), None)

"""Who may act: one operator replica at a time, chosen by a coordination.k8s.io/v1 Lease.

Why not kopf peering: it pauses kopf's own handlers in the standby replica, but not Tenure's
deadline scheduler, which would then revoke and refresh from two replicas at once. A Lease, the
way client-go's leader election does it, gives "exactly one acts" for both: a standby waits
before starting anything.

`lease_decision` is pure: given the Lease as read (or None), who we are and the time, it says
whether to take it, renew it, or wait (and until when).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta


@dataclasses.dataclass(frozen=True)
class LeaseState:
    holder: str | None
    renewed_at: datetime | None
    duration: timedelta
    transitions: int = 0


@dataclasses.dataclass(frozen=True)
class Take:
    """Become (or stay) the leader by writing the Lease with us as holder."""

    transitions: int


@dataclasses.dataclass(frozen=True)
class Wait:
    """Someone else leads; look again at `until` (when their Lease would expire)."""

    holder: str
    until: datetime


LeaseDecision = Take | Wait


def lease_decision(lease: LeaseState | None, me: str, now: datetime) -> LeaseDecision:
    """Take a free, expired or own Lease; otherwise wait for it to expire."""
    if lease is None or not lease.holder:
        return Take(transitions=(lease.transitions + 1) if lease else 0)
    if lease.holder == me:
        return Take(transitions=lease.transitions)
    expires = (lease.renewed_at or now) + lease.duration
    if now >= expires:
        return Take(transitions=lease.transitions + 1)
    return Wait(holder=lease.holder, until=expires)

"""What an ITSM's own values mean for an identity (issue #7). Pure: no clients, no clock.

A TicketSource's adapter reads raw values (ServiceNow state codes and approval, Jira status
category and resolution, approval records); this module maps them to a `TicketState`, combines
them with the manifest's state and says whether provisioning may go ahead.

The rule: the *more restrictive* of `spec.ticket.state` and the observed state is in force. The
ITSM can end access the manifest still grants (a cancellation seen in ServiceNow revokes), but it
can never widen it: observing Approved changes nothing, a Requested manifest stays Requested.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from tenure.api.v1alpha1 import (
    TICKET_ID_PATTERN,
    ServiceNowTable,
    StateMapping,
    TicketObservation,
    TicketSourceSpec,
    TicketSourceType,
    TicketState,
)
from tenure.domain.reasons import Reason

# Rank of restriction: the higher wins. Cancelled and Rejected always revoke, Closed acts per
# onClose, Requested provisions nothing new (and holds what is Active), Approved restricts nothing.
_RESTRICTION: Final = {
    TicketState.APPROVED: 0,
    TicketState.REQUESTED: 1,
    TicketState.CLOSED: 2,
    TicketState.REJECTED: 3,
    TicketState.CANCELLED: 3,
}

# ServiceNow change_request.state: -5 New, -4 Assess, -3 Authorize, -2 Scheduled, -1 Implement,
# 0 Review, 3 Closed, 4 Canceled. sc_req_item.state: 1 Open, 2 Work in Progress, 3 Closed
# Complete, 4 Closed Incomplete, 7 Closed Skipped (an item that did not complete is cancelled).
SERVICENOW_CANCELLED: Final = {
    ServiceNowTable.CHANGE_REQUEST: ('4',),
    ServiceNowTable.SC_REQ_ITEM: ('4', '7'),
}
SERVICENOW_CLOSED: Final = ('3',)
SERVICENOW_REJECTED: Final = ('rejected',)
SERVICENOW_APPROVED: Final = 'approved'
# Jira: a resolution says how an issue ended; the status category (new, indeterminate, done) says
# whether it did. Resolutions that mean "not done" cancel; any other end of a done issue closes.
JIRA_CANCELLED: Final = ("Won't Do", 'Declined', 'Cancelled', 'Canceled')
JIRA_CLOSED: Final = ('done',)
JIRA_REJECTED: Final = ('Rejected',)
# A webhook source pushes Tenure's own state names; the American spelling cancels too.
WEBHOOK_CANCELLED: Final = ('Canceled',)
PUSH_TOLERANCE: Final = timedelta(minutes=5)
"""How far a push's timestamp may be from the operator's clock: older is a replay (or a
delivery retried for too long), newer a clock to fix. Either way the push is refused."""


@dataclasses.dataclass(frozen=True)
class ServiceNowRecord:
    """A ServiceNow ticket as read (None: no record with that number)."""

    state: str
    """The state code as the Table API returns it, e.g. "-5", "3", "4"."""
    approval: str
    """not requested, requested, approved or rejected."""


@dataclasses.dataclass(frozen=True)
class JiraIssue:
    """A Jira issue as read."""

    status: str
    """The status name, e.g. In Progress, Done."""
    status_category: str
    """fields.status.statusCategory.key: new, indeterminate or done."""
    resolution: str | None
    """fields.resolution.name, e.g. Done, Won't Do; None while unresolved."""


@dataclasses.dataclass(frozen=True)
class Reading:
    """What one read of a ticket found, mapped."""

    state: TicketState
    raw: str
    """The ITSM's own values, for people (status.ticket.rawState)."""


def _values(configured: Sequence[str] | None, default: Sequence[str]) -> tuple[str, ...]:
    return tuple(default if configured is None else configured)


def _ci(values: Sequence[str]) -> frozenset[str]:
    return frozenset(v.casefold() for v in values)


def map_servicenow(
    record: ServiceNowRecord | None, table: ServiceNowTable, mapping: StateMapping
) -> Reading:
    """Map a ServiceNow record; a missing one provisions nothing new (never revokes: a typo in
    a ticket number must not end access for good)."""
    if record is None:
        return Reading(TicketState.REQUESTED, 'not found')
    raw = f'state={record.state} approval={record.approval}'
    rejected = _ci(_values(mapping.rejected, SERVICENOW_REJECTED))
    if record.approval.casefold() in rejected:
        return Reading(TicketState.REJECTED, raw)
    if record.state in _values(mapping.cancelled, SERVICENOW_CANCELLED[table]):
        return Reading(TicketState.CANCELLED, raw)
    if record.state in _values(mapping.closed, SERVICENOW_CLOSED):
        return Reading(TicketState.CLOSED, raw)
    if record.approval.casefold() == SERVICENOW_APPROVED:
        return Reading(TicketState.APPROVED, raw)
    return Reading(TicketState.REQUESTED, raw)


def map_jira(issue: JiraIssue | None, mapping: StateMapping) -> Reading:
    """Map a Jira issue. An open issue restricts nothing (Jira has no approval field: with Jira
    Service Management, verifyApproval checks the approvals)."""
    if issue is None:
        return Reading(TicketState.REQUESTED, 'not found')
    raw = f'status={issue.status} category={issue.status_category}'
    if issue.resolution is not None:
        raw += f' resolution={issue.resolution}'
        resolution = issue.resolution.casefold()
        if resolution in _ci(_values(mapping.rejected, JIRA_REJECTED)):
            return Reading(TicketState.REJECTED, raw)
        if resolution in _ci(_values(mapping.cancelled, JIRA_CANCELLED)):
            return Reading(TicketState.CANCELLED, raw)
    if issue.status_category.casefold() in _ci(_values(mapping.closed, JIRA_CLOSED)):
        return Reading(TicketState.CLOSED, raw)
    return Reading(TicketState.APPROVED, raw)


class TicketPush(BaseModel):
    """The body of POST /webhooks/<name> for a webhook source (docs/itsm.md). Unknown fields
    are ignored: ITSMs add their own."""

    model_config = ConfigDict(extra='ignore', frozen=True)

    ticket: Annotated[str, Field(pattern=TICKET_ID_PATTERN, max_length=64)]
    """The ticket number, as identities cite it in spec.ticket.id."""
    state: Annotated[str, Field(min_length=1, max_length=128)]
    """Approved, Requested, Closed, Cancelled, Rejected, or a raw value of the ITSM."""
    timestamp: AwareDatetime
    """When the ticket had this state: RFC 3339 with an offset, or Unix seconds."""
    approver: Annotated[str, Field(max_length=254)] | None = None
    """Who approved the ticket, recorded for people (status.ticket.approvers)."""


@dataclasses.dataclass(frozen=True)
class Push:
    """A push, validated and mapped."""

    ticket_id: str
    reading: Reading
    at: datetime
    approver: str | None


@dataclasses.dataclass(frozen=True)
class PushRefused:
    """Why a signed push changes nothing."""

    message: str
    stale: bool = False
    """A replay or an older state than the one recorded (409), not a malformed body (400)."""


def map_pushed(state: str, mapping: StateMapping) -> Reading:
    """Map a pushed state: stateMapping's lists first (a system whose "Closed" means abandoned
    can say so), then Tenure's own state names (case-insensitive); any other value restricts
    nothing, like an open Jira issue: the manifest's state stays in force."""
    raw = f'state={state}'
    folded = state.casefold()
    if folded in _ci(_values(mapping.rejected, ())):
        return Reading(TicketState.REJECTED, raw)
    if folded in _ci(_values(mapping.cancelled, WEBHOOK_CANCELLED)):
        return Reading(TicketState.CANCELLED, raw)
    if folded in _ci(_values(mapping.closed, ())):
        return Reading(TicketState.CLOSED, raw)
    named = {s.value.casefold(): s for s in TicketState}
    return Reading(named.get(folded, TicketState.APPROVED), raw)


def parse_push(body: bytes, mapping: StateMapping) -> Push | PushRefused:
    """The push in `body`, or why it is malformed (the message names the fields, never values)."""
    try:
        push = TicketPush.model_validate_json(body)
    except ValidationError as e:
        fields = sorted({'.'.join(str(p) for p in err['loc']) or 'body' for err in e.errors()})
        return PushRefused(
            'the body must be JSON {"ticket", "state", "timestamp"[, "approver"]}; '
            f'wrong or missing: {", ".join(fields)}'
        )
    at = push.timestamp.astimezone(UTC)
    return Push(push.ticket, map_pushed(push.state, mapping), at, push.approver)


def push_timing(at: datetime, now: datetime, last: datetime | None) -> PushRefused | None:
    """Replay protection: a push must be within PUSH_TOLERANCE of `now` and newer than `last`,
    the timestamp of the newest push recorded for that ticket (an older one never overwrites
    it, whatever order the ITSM delivers them in)."""
    if abs(now - at) > PUSH_TOLERANCE:
        return PushRefused(
            f'timestamp {at:%Y-%m-%dT%H:%M:%SZ} is more than '
            f'{int(PUSH_TOLERANCE.total_seconds() // 60)} minutes from now: a replay, or a clock '
            'to fix',
            stale=True,
        )
    if last is not None and at <= last:
        return PushRefused(
            f'a push of {last:%Y-%m-%dT%H:%M:%SZ} or later is already recorded for this ticket',
            stale=True,
        )
    return None


def more_restrictive(declared: TicketState, observed: TicketState | None) -> TicketState:
    """The state in force: the manifest's, unless the ITSM's restricts more."""
    if observed is None or _RESTRICTION[observed] <= _RESTRICTION[declared]:
        return declared
    return observed


def approver_verified(approver: str, approvers: Sequence[str]) -> bool:
    """Whether the approver in spec is among those who approved in the ITSM (e-mails compare
    case-insensitively, as mail systems do in practice)."""
    return approver.casefold() in _ci(approvers)


@dataclasses.dataclass(frozen=True)
class SourceView:
    """A TicketSource as the reconcile needs it."""

    name: str
    spec: TicketSourceSpec | None
    """None when the TicketSource does not validate (then `error` says why)."""
    error: str | None = None
    """Why the last read from this source failed (None: it answered)."""

    @property
    def verify_approval(self) -> bool:
        return self.spec is not None and self.spec.verify_approval


@dataclasses.dataclass(frozen=True)
class TicketCheck:
    """Why the ticket source stops provisioning for now (see `check`)."""

    reason: Reason
    message: str


def observation_for(
    observation: TicketObservation | None, ticket_id: str, source: str
) -> TicketObservation | None:
    """The observation if it is of this ticket from this source (a new ticket id starts over)."""
    if observation is None or observation.id != ticket_id or observation.source != source:
        return None
    return observation


def check(
    ticket_id: str,
    approver: str,
    observation: TicketObservation | None,
    source: SourceView,
) -> TicketCheck | None:
    """What the source says against provisioning now; None when nothing."""
    if observation is None:
        if source.error is not None:
            return TicketCheck(
                Reason.TICKET_SOURCE_UNAVAILABLE,
                f'ticket {ticket_id} cannot be read from TicketSource {source.name}: '
                f'{source.error}; nothing is provisioned until it can',
            )
        if source.spec is not None and source.spec.type is TicketSourceType.WEBHOOK:
            return TicketCheck(
                Reason.TICKET_NOT_OBSERVED,
                f'ticket {ticket_id} has not been pushed by TicketSource {source.name} yet: '
                f'nothing is provisioned until the ITSM sends it (POST /webhooks/{source.name})',
            )
        return TicketCheck(
            Reason.TICKET_NOT_OBSERVED,
            f'ticket {ticket_id} has not been read from TicketSource {source.name} yet',
        )
    if source.verify_approval and not approver_verified(approver, observation.approvers):
        found = ', '.join(observation.approvers) or 'nobody'
        return TicketCheck(
            Reason.APPROVAL_NOT_VERIFIED,
            f'{approver} has not approved ticket {ticket_id} in {source.name} '
            f'(approved by: {found})',
        )
    return None

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
from typing import Final

from tenure.api.v1alpha1 import (
    ServiceNowTable,
    StateMapping,
    TicketObservation,
    TicketSourceSpec,
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

"""What an ITSM's own values mean for an identity, decided without a network (issue #7).

ServiceNow change states as the Table API returns them (strings): -5 New, -4 Assess, -3
Authorize, -2 Scheduled, -1 Implement, 0 Review, 3 Closed, 4 Canceled
(https://docs.servicenow.com, "State model and transitions for change requests"); request items:
3 Closed Complete, 4 Closed Incomplete, 7 Closed Skipped. Jira: fields.status.statusCategory.key
is new, indeterminate or done; fields.resolution.name says how a done issue ended.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tenure.api.v1alpha1 import (
    ServiceNowTable,
    StateMapping,
    TicketObservation,
    TicketSourceSpec,
    TicketState,
)
from tenure.domain.reasons import Reason
from tenure.domain.tickets import (
    JiraIssue,
    ServiceNowRecord,
    SourceView,
    check,
    map_jira,
    map_servicenow,
    more_restrictive,
)

S = TicketState
CHANGE = ServiceNowTable.CHANGE_REQUEST
ITEM = ServiceNowTable.SC_REQ_ITEM
DEFAULTS = StateMapping()
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ('state', 'approval', 'table', 'expected'),
    [
        pytest.param('-1', 'approved', CHANGE, S.APPROVED, id='implementing-and-approved'),
        pytest.param('-3', 'requested', CHANGE, S.REQUESTED, id='awaiting-authorisation'),
        pytest.param('-5', 'not requested', CHANGE, S.REQUESTED, id='new-change'),
        pytest.param('4', 'approved', CHANGE, S.CANCELLED, id='canceled-change-cancels'),
        pytest.param('3', 'approved', CHANGE, S.CLOSED, id='closed-change-is-closed-not-cancelled'),
        pytest.param('-3', 'rejected', CHANGE, S.REJECTED, id='rejected-approval-rejects'),
        pytest.param('3', 'rejected', CHANGE, S.REJECTED, id='rejection-wins-over-closure'),
        pytest.param('4', 'approved', ITEM, S.CANCELLED, id='item-closed-incomplete-cancels'),
        pytest.param('7', 'approved', ITEM, S.CANCELLED, id='item-closed-skipped-cancels'),
        pytest.param('3', 'approved', ITEM, S.CLOSED, id='item-closed-complete-is-closed'),
        pytest.param('7', 'approved', CHANGE, S.APPROVED, id='7-means-nothing-for-a-change'),
    ],
)
def test_servicenow_values_and_what_they_mean(
    state: str, approval: str, table: ServiceNowTable, expected: TicketState
) -> None:
    reading = map_servicenow(ServiceNowRecord(state, approval), table, DEFAULTS)
    assert reading.state is expected
    assert reading.raw == f'state={state} approval={approval}'


def test_a_ticket_missing_from_servicenow_provisions_nothing_new_but_revokes_nothing() -> None:
    assert map_servicenow(None, CHANGE, DEFAULTS).state is S.REQUESTED


@pytest.mark.parametrize(
    ('category', 'resolution', 'expected'),
    [
        pytest.param('indeterminate', None, S.APPROVED, id='open-issue-restricts-nothing'),
        pytest.param('new', None, S.APPROVED, id='to-do-restricts-nothing'),
        pytest.param('done', 'Done', S.CLOSED, id='done-is-closed'),
        pytest.param('done', "Won't Do", S.CANCELLED, id='wont-do-cancels'),
        pytest.param('done', 'Declined', S.CANCELLED, id='declined-cancels'),
        pytest.param('done', 'cancelled', S.CANCELLED, id='resolution-names-ignore-case'),
        pytest.param('done', 'Rejected', S.REJECTED, id='rejected-rejects'),
        pytest.param('indeterminate', "Won't Do", S.CANCELLED, id='resolved-while-open-cancels'),
    ],
)
def test_jira_values_and_what_they_mean(
    category: str, resolution: str | None, expected: TicketState
) -> None:
    issue = JiraIssue(status='Whatever', status_category=category, resolution=resolution)
    assert map_jira(issue, DEFAULTS).state is expected


def test_a_custom_state_mapping_replaces_the_defaults() -> None:
    mapping = StateMapping(cancelled=['4', '-4'], closed=[])
    assert map_servicenow(ServiceNowRecord('-4', 'approved'), CHANGE, mapping).state is S.CANCELLED
    assert map_servicenow(ServiceNowRecord('3', 'approved'), CHANGE, mapping).state is S.APPROVED
    jira = StateMapping(closed=['done', 'indeterminate'])
    assert map_jira(JiraIssue('Doing', 'indeterminate', None), jira).state is S.CLOSED


@pytest.mark.parametrize(
    ('declared', 'observed', 'effective'),
    [
        pytest.param(S.APPROVED, S.CANCELLED, S.CANCELLED, id='itsm-cancellation-wins'),
        pytest.param(S.APPROVED, S.REJECTED, S.REJECTED, id='itsm-rejection-wins'),
        pytest.param(S.APPROVED, S.CLOSED, S.CLOSED, id='itsm-closure-wins-over-approved'),
        pytest.param(S.APPROVED, S.REQUESTED, S.REQUESTED, id='itsm-not-approved-yet-wins'),
        pytest.param(S.REQUESTED, S.APPROVED, S.REQUESTED, id='itsm-never-approves-for-git'),
        pytest.param(S.CANCELLED, S.APPROVED, S.CANCELLED, id='itsm-never-undoes-a-cancel'),
        pytest.param(S.CLOSED, S.APPROVED, S.CLOSED, id='itsm-never-reopens'),
        pytest.param(S.CANCELLED, S.REJECTED, S.CANCELLED, id='equal-rank-keeps-the-manifest'),
        pytest.param(S.APPROVED, None, S.APPROVED, id='nothing-observed-manifest-stands'),
    ],
)
def test_the_more_restrictive_state_is_in_force(
    declared: TicketState, observed: TicketState | None, effective: TicketState
) -> None:
    assert more_restrictive(declared, observed) is effective


def source(*, verify: bool = False, error: str | None = None) -> SourceView:
    spec = TicketSourceSpec.model_validate(
        {
            'type': 'servicenow',
            'url': 'https://example.service-now.com',
            'credentialsSecretRef': {'name': 'snow', 'namespace': 'tenure-system'},
            'verifyApproval': verify,
        }
    )
    return SourceView('snow', spec, error)


def seen(*approvers: str) -> TicketObservation:
    return TicketObservation(
        id='CHG1',
        source='snow',
        observed_state=S.APPROVED,
        raw_state='state=-1 approval=approved',
        observed_at=NOW,
        approvers=list(approvers),
    )


@pytest.mark.parametrize(
    ('view', 'observation', 'reason'),
    [
        pytest.param(source(), None, Reason.TICKET_NOT_OBSERVED, id='not-read-yet-waits'),
        pytest.param(
            source(error='server error (503)'),
            None,
            Reason.TICKET_SOURCE_UNAVAILABLE,
            id='itsm-down-and-never-read-waits',
        ),
        pytest.param(
            source(error='down'), seen(), None, id='itsm-down-after-a-read-changes-nothing'
        ),
        pytest.param(source(), seen(), None, id='no-verification-asked'),
        pytest.param(
            source(verify=True),
            seen('mallory@example.com'),
            Reason.APPROVAL_NOT_VERIFIED,
            id='approved-by-someone-else-is-not-verified',
        ),
        pytest.param(
            source(verify=True), seen(), Reason.APPROVAL_NOT_VERIFIED, id='nobody-approved'
        ),
        pytest.param(
            source(verify=True), seen('Bob@Example.com'), None, id='approver-e-mail-ignores-case'
        ),
    ],
)
def test_what_a_ticket_source_says_against_provisioning(
    view: SourceView, observation: TicketObservation | None, reason: Reason | None
) -> None:
    found = check('CHG1', 'bob@example.com', observation, view)
    assert (found.reason if found else None) == reason


def test_an_invalid_ticket_source_blocks_new_grants() -> None:
    view = SourceView('snow', None, 'the TicketSource snow is invalid')
    found = check('CHG1', 'bob@example.com', None, view)
    assert found is not None
    assert found.reason is Reason.TICKET_SOURCE_UNAVAILABLE

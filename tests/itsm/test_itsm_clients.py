"""The ServiceNow and Jira adapters against local servers speaking the real payloads (issue #7).

Payload shapes: ServiceNow Table API (https://developer.servicenow.com/dev.do#!/reference/api/
latest/rest/c_TableAPI: `{"result": [...]}`, every value a string, sysparm_query / sysparm_fields
/ sysparm_limit / sysparm_offset, X-Total-Count); Jira REST API v2 "Get issue" (fields.status.
statusCategory.key, fields.resolution) and Jira Service Management "Get approvals"
(/rest/servicedeskapi/request/{key}/approval: values[].finalDecision, approvers[].approverDecision,
isLastPage).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tenure.adapters.itsm import Credentials, JiraClient, ServiceNowClient
from tenure.api.v1alpha1 import TicketSourceSpec, TicketState
from tenure.errors import PermanentError, TenureError, TransientError
from tenure_devtools.itsm import FakeJira, FakeServiceNow, running_jira, running_servicenow

BASIC = Credentials(username='tenure', password='fake-itsm-password')


def spec(kind: str, url: str, **extra: object) -> TicketSourceSpec:
    return TicketSourceSpec.model_validate(
        {
            'type': kind,
            'url': url,
            'credentialsSecretRef': {'name': 'itsm', 'namespace': 'tenure-system'},
            **extra,
        }
    )


@pytest.fixture
def snow() -> Iterator[FakeServiceNow]:
    with running_servicenow() as fake:
        yield fake


@pytest.fixture
def jira() -> Iterator[FakeJira]:
    with running_jira(token='jira-api-token') as fake:
        yield fake


def test_servicenow_change_states_are_read_as_tenure_states(snow: FakeServiceNow) -> None:
    snow.add_ticket('CHG0000001', state='-1', approval='approved')
    snow.add_ticket('CHG0000002', state='4', approval='approved')
    client = ServiceNowClient(spec('servicenow', snow.url), BASIC)
    try:
        first = client.read('CHG0000001', approvals=False)
        assert first.reading.state is TicketState.APPROVED
        assert first.reading.raw == 'state=-1 approval=approved'
        assert client.read('CHG0000002', approvals=False).reading.state is TicketState.CANCELLED
        assert client.read('CHG9999999', approvals=False).reading.raw == 'not found'
    finally:
        client.close()
    query = snow.requests[0].query
    assert query['sysparm_query'] == 'number=CHG0000001'
    assert snow.requests[0].path == '/api/now/table/change_request'


def test_servicenow_request_items_are_read_from_their_table(snow: FakeServiceNow) -> None:
    snow.add_ticket('RITM0000001', state='7', table='sc_req_item')
    client = ServiceNowClient(spec('servicenow', snow.url, table='sc_req_item'), BASIC)
    try:
        assert client.read('RITM0000001', approvals=False).reading.state is TicketState.CANCELLED
    finally:
        client.close()


def test_servicenow_approvals_are_read_across_pages(snow: FakeServiceNow) -> None:
    snow.add_ticket('CHG0000003')
    for n in range(130):
        snow.approve('CHG0000003', f'approver{n}@example.com')
    snow.approve('CHG0000003', 'bob@example.com')
    snow.approve('CHG0000003', 'mallory@example.com', state='rejected')
    client = ServiceNowClient(spec('servicenow', snow.url), BASIC)
    try:
        read = client.read('CHG0000003', approvals=True)
    finally:
        client.close()
    assert 'bob@example.com' in read.approvers
    assert 'mallory@example.com' not in read.approvers
    assert len(read.approvers) == 131
    offsets = [r.query.get('sysparm_offset') for r in snow.requests if 'sysapproval' in r.path]
    assert offsets == ['0', '100']


def test_servicenow_work_notes_are_added_to_the_ticket(snow: FakeServiceNow) -> None:
    snow.add_ticket('CHG0000004')
    client = ServiceNowClient(spec('servicenow', snow.url), BASIC)
    try:
        client.add_note('CHG0000004', 'revoked by Tenure')
    finally:
        client.close()
    assert snow.notes['CHG0000004'] == ['revoked by Tenure']
    assert snow.requests[-1].method == 'PATCH'


@pytest.mark.parametrize(
    ('category', 'resolution', 'expected'),
    [
        pytest.param('indeterminate', None, TicketState.APPROVED, id='in-progress'),
        pytest.param('done', "Won't Do", TicketState.CANCELLED, id='wont-do'),
        pytest.param('done', 'Done', TicketState.CLOSED, id='done'),
    ],
)
def test_jira_issues_are_read_as_tenure_states(
    jira: FakeJira, category: str, resolution: str | None, expected: TicketState
) -> None:
    jira.add_issue('OPS-1', status='Whatever', category=category, resolution=resolution)
    client = JiraClient(spec('jira', jira.url), Credentials(token='jira-api-token'))
    try:
        assert client.read('OPS-1', approvals=False).reading.state is expected
    finally:
        client.close()


def test_jira_service_management_approvals_count_only_final_approvals(jira: FakeJira) -> None:
    jira.add_issue('OPS-2')
    jira.add_approval('OPS-2', ('mallory@example.com', 'approved'), final='declined')
    jira.add_approval(
        'OPS-2', ('bob@example.com', 'approved'), ('eve@example.com', 'declined'), final='approved'
    )
    for n in range(120):
        jira.add_approval('OPS-2', (f'a{n}@example.com', 'approved'))
    client = JiraClient(spec('jira', jira.url), Credentials(token='jira-api-token'))
    try:
        read = client.read('OPS-2', approvals=True)
        client.add_note('OPS-2', 'revoked by Tenure')
    finally:
        client.close()
    assert read.approvers[0] == 'bob@example.com'
    assert {'mallory@example.com', 'eve@example.com'}.isdisjoint(read.approvers)
    assert len(read.approvers) == 121, 'all pages read'
    assert jira.comments['OPS-2'] == ['revoked by Tenure']


def test_a_missing_jira_issue_provisions_nothing_new(jira: FakeJira) -> None:
    client = JiraClient(spec('jira', jira.url), Credentials(token='jira-api-token'))
    try:
        assert client.read('OPS-404', approvals=True).reading.state is TicketState.REQUESTED
    finally:
        client.close()


@pytest.mark.parametrize(
    ('status', 'retry_after', 'error', 'delay'),
    [
        pytest.param(401, None, PermanentError, None, id='401-is-permanent'),
        pytest.param(403, None, PermanentError, None, id='403-is-permanent'),
        pytest.param(429, '7', TransientError, 7.0, id='429-waits-for-retry-after'),
        pytest.param(503, None, TransientError, None, id='503-is-transient'),
        pytest.param(500, None, TransientError, None, id='500-is-transient'),
    ],
)
def test_itsm_failures_are_retried_or_reported(
    snow: FakeServiceNow,
    status: int,
    retry_after: str | None,
    error: type[TenureError],
    delay: float | None,
) -> None:
    snow.add_ticket('CHG0000005')
    snow.fail(status, times=1, retry_after=retry_after)
    client = ServiceNowClient(spec('servicenow', snow.url), BASIC)
    try:
        with pytest.raises(error) as raised:
            client.read('CHG0000005', approvals=False)
        if delay is not None:
            assert isinstance(raised.value, TransientError)
            assert raised.value.retry_after == delay
        # The next request succeeds: the fault was one answer only.
        assert client.read('CHG0000005', approvals=False).reading.state is TicketState.APPROVED
    finally:
        client.close()


def test_wrong_credentials_are_refused_without_leaking_them(snow: FakeServiceNow) -> None:
    snow.add_ticket('CHG0000006')
    wrong = Credentials(username='tenure', password='s3cr3t-w0rd-nobody-should-see')
    client = ServiceNowClient(spec('servicenow', snow.url), wrong)
    try:
        with pytest.raises(PermanentError) as raised:
            client.read('CHG0000006', approvals=False)
    finally:
        client.close()
    assert '401' in str(raised.value)
    assert 's3cr3t' not in str(raised.value)
    assert 's3cr3t' not in repr(wrong)


def test_an_unreachable_itsm_is_transient() -> None:
    with running_servicenow() as fake:
        url = fake.url
    client = ServiceNowClient(spec('servicenow', url), BASIC, timeout=2)
    try:
        with pytest.raises(TransientError):
            client.read('CHG0000007', approvals=False)
    finally:
        client.close()

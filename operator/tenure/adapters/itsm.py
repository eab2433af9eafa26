"""ServiceNow and Jira (Service Management) over their REST APIs: read tickets, add notes.

Speaks the operator's vocabulary: a read returns a `TicketRead` (the mapped state, the raw
values, who approved), failures are `TransientError` (network, 429 with its Retry-After, 5xx) or
`PermanentError` (401, 403, other 4xx). Credentials go into the Authorization header only; no
message, exception or log line carries them, nor the response body (it may echo them).

- ServiceNow Table API: GET /api/now/table/<table>?sysparm_query=number=<id>; approvals from
  sysapproval_approver (paged with sysparm_limit / sysparm_offset); work notes by PATCH.
- Jira: GET /rest/api/2/issue/<key>; Service Management approvals from
  /rest/servicedeskapi/request/<key>/approval (paged with start / limit / isLastPage); comments
  by POST /rest/api/2/issue/<key>/comment.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, Final, Protocol
from urllib.parse import quote

import requests

from tenure.api.v1alpha1 import ServiceNowTable, TicketSourceSpec, TicketSourceType
from tenure.domain.tickets import JiraIssue, Reading, ServiceNowRecord, map_jira, map_servicenow
from tenure.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

PAGE: Final = 100
"""Approval records per page (ServiceNow's sysparm_limit, Jira's limit)."""
MAX_PAGES: Final = 20
"""A ticket with more approval records than this is not one Tenure can vouch for."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Basic (username + password) or bearer (token) credentials, from a Secret."""

    username: str | None = dataclasses.field(default=None, repr=False)
    password: str | None = dataclasses.field(default=None, repr=False)
    token: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_secret(cls, data: Mapping[str, str], where: str) -> Credentials:
        """From a Secret's decoded data: `token`, or `username` and `password`."""
        if data.get('token'):
            return cls(token=data['token'])
        if data.get('username') and data.get('password'):
            return cls(username=data['username'], password=data['password'])
        raise PermanentError(
            f'Secret {where} has neither a token key nor both username and password keys'
        )

    def apply(self, session: requests.Session) -> None:
        if self.token is not None:
            session.headers['Authorization'] = f'Bearer {self.token}'
        elif self.username is not None and self.password is not None:
            session.auth = (self.username, self.password)


@dataclasses.dataclass(frozen=True)
class TicketRead:
    """One read of a ticket."""

    reading: Reading
    approvers: tuple[str, ...] = ()
    """Who approved it (only read when approvals are verified)."""


class ItsmClient(Protocol):
    def read(self, ticket_id: str, *, approvals: bool) -> TicketRead:
        """Read a ticket (and, with `approvals`, who approved it)."""

    def add_note(self, ticket_id: str, text: str) -> None:
        """Add a work note (ServiceNow) or a comment (Jira) to the ticket."""

    def close(self) -> None: ...


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get('Retry-After', '')
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: the backoff decides


class _Http:
    def __init__(self, base: str, credentials: Credentials, timeout: float) -> None:
        self.base = base.rstrip('/')
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers['Accept'] = 'application/json'
        credentials.apply(self.session)

    def call(
        self,
        method: str,
        path: str,
        action: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        missing_ok: bool = False,
    ) -> Any:
        """The JSON body of a call, None for a 404 when `missing_ok`; errors translated."""
        try:
            response = self.session.request(
                method, self.base + path, params=params, json=json, timeout=self.timeout
            )
        except requests.RequestException as e:
            # The exception's text can hold the URL with its query: the type is enough.
            raise TransientError(f'could not {action}: {type(e).__name__}') from None
        code = response.status_code
        if code == 404 and missing_ok:
            return None
        if code == 401:
            raise PermanentError(f'could not {action}: authentication refused (401)')
        if code == 403:
            raise PermanentError(f'could not {action}: permission denied (403)')
        if code == 429:
            raise TransientError(
                f'could not {action}: rate limited (429)', retry_after=_retry_after(response)
            )
        if code >= 500:
            raise TransientError(f'could not {action}: server error ({code})')
        if code >= 400:
            raise PermanentError(f'could not {action}: refused ({code})')
        if code == 204 or not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise TransientError(f'could not {action}: the answer is not JSON') from None

    def close(self) -> None:
        self.session.close()


class ServiceNowClient:
    def __init__(
        self, spec: TicketSourceSpec, credentials: Credentials, *, timeout: float = 10
    ) -> None:
        self.spec = spec
        self.table: ServiceNowTable = spec.servicenow_table
        self.http = _Http(_url(spec), credentials, timeout)

    def _record(self, ticket_id: str) -> dict[str, Any] | None:
        body = self.http.call(
            'GET',
            f'/api/now/table/{self.table.value}',
            f'read {self.table.value} {ticket_id} from ServiceNow',
            params={
                'sysparm_query': f'number={ticket_id}',
                'sysparm_fields': 'sys_id,number,state,approval',
                'sysparm_limit': 1,
            },
        )
        results = body.get('result') if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise TransientError(f'ServiceNow answered {ticket_id} without a result list')
        return results[0] if results else None

    def read(self, ticket_id: str, *, approvals: bool) -> TicketRead:
        record = self._record(ticket_id)
        parsed = (
            None
            if record is None
            else ServiceNowRecord(
                state=str(record.get('state', '')), approval=str(record.get('approval', ''))
            )
        )
        reading = map_servicenow(parsed, self.table, self.spec.state_mapping)
        approvers: tuple[str, ...] = ()
        if approvals and record is not None:
            approvers = self._approvers(ticket_id, str(record.get('sys_id', '')))
        return TicketRead(reading, approvers)

    def _approvers(self, ticket_id: str, sys_id: str) -> tuple[str, ...]:
        found: list[str] = []
        for page in range(MAX_PAGES):
            body = self.http.call(
                'GET',
                '/api/now/table/sysapproval_approver',
                f'read the approvals of {ticket_id} from ServiceNow',
                params={
                    'sysparm_query': f'sysapproval={sys_id}^state=approved',
                    # Dot-walking: the approver's e-mail instead of a sys_user reference.
                    'sysparm_fields': 'approver.email,state',
                    'sysparm_limit': PAGE,
                    'sysparm_offset': page * PAGE,
                },
            )
            rows = body.get('result', []) if isinstance(body, dict) else []
            found += [
                str(r['approver.email'])
                for r in rows
                if r.get('state') == 'approved' and r.get('approver.email')
            ]
            if len(rows) < PAGE:
                return tuple(dict.fromkeys(found))
        raise PermanentError(f'{ticket_id} has more than {MAX_PAGES * PAGE} approval records')

    def add_note(self, ticket_id: str, text: str) -> None:
        record = self._record(ticket_id)
        if record is None:
            raise PermanentError(f'{self.table.value} {ticket_id} not found in ServiceNow')
        self.http.call(
            'PATCH',
            f'/api/now/table/{self.table.value}/{quote(str(record.get("sys_id", "")), safe="")}',
            f'add a work note to {ticket_id} in ServiceNow',
            json={'work_notes': text},
        )

    def close(self) -> None:
        self.http.close()


class JiraClient:
    def __init__(
        self, spec: TicketSourceSpec, credentials: Credentials, *, timeout: float = 10
    ) -> None:
        self.spec = spec
        self.http = _Http(_url(spec), credentials, timeout)

    def read(self, ticket_id: str, *, approvals: bool) -> TicketRead:
        key = quote(ticket_id, safe='')
        body = self.http.call(
            'GET',
            f'/rest/api/2/issue/{key}',
            f'read {ticket_id} from Jira',
            params={'fields': 'status,resolution'},
            missing_ok=True,
        )
        issue = None
        if body is not None:
            fields = body.get('fields') or {}
            status = fields.get('status') or {}
            resolution = fields.get('resolution') or {}
            issue = JiraIssue(
                status=str(status.get('name', '')),
                status_category=str((status.get('statusCategory') or {}).get('key', '')),
                resolution=resolution.get('name'),
            )
        reading = map_jira(issue, self.spec.state_mapping)
        approvers = self._approvers(ticket_id) if approvals and issue is not None else ()
        return TicketRead(reading, approvers)

    def _approvers(self, ticket_id: str) -> tuple[str, ...]:
        key = quote(ticket_id, safe='')
        found: list[str] = []
        start = 0
        for _ in range(MAX_PAGES):
            body = self.http.call(
                'GET',
                f'/rest/servicedeskapi/request/{key}/approval',
                f'read the approvals of {ticket_id} from Jira Service Management',
                params={'start': start, 'limit': PAGE},
                missing_ok=True,
            )
            if body is None:
                return ()  # not a service desk request: nobody approved it there
            values = body.get('values', [])
            for approval in values:
                if approval.get('finalDecision') != 'approved':
                    continue
                for entry in approval.get('approvers', []):
                    email = (entry.get('approver') or {}).get('emailAddress')
                    if entry.get('approverDecision') == 'approved' and email:
                        found.append(str(email))
            if body.get('isLastPage', True) or not values:
                return tuple(dict.fromkeys(found))
            start += len(values)
        raise PermanentError(f'{ticket_id} has more than {MAX_PAGES * PAGE} approvals')

    def add_note(self, ticket_id: str, text: str) -> None:
        self.http.call(
            'POST',
            f'/rest/api/2/issue/{quote(ticket_id, safe="")}/comment',
            f'add a comment to {ticket_id} in Jira',
            json={'body': text},
        )

    def close(self) -> None:
        self.http.close()


def client_for(
    spec: TicketSourceSpec, credentials: Credentials, *, timeout: float = 10
) -> ItsmClient:
    """The API client of a servicenow or jira source (a webhook source has no API)."""
    if spec.type is TicketSourceType.SERVICENOW:
        return ServiceNowClient(spec, credentials, timeout=timeout)
    if spec.type is TicketSourceType.JIRA:
        return JiraClient(spec, credentials, timeout=timeout)
    raise PermanentError(f'a TicketSource of type {spec.type.value} has no API to call')


def _url(spec: TicketSourceSpec) -> str:
    if spec.url is None:  # the model refuses servicenow and jira sources without one
        raise PermanentError(f'a TicketSource of type {spec.type.value} needs a url')
    return spec.url

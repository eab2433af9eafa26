"""Local ServiceNow and Jira (Service Management) API servers for tests and the sandbox.

Each runs an `http.server` in a thread on a free port, speaks the real payload shapes (checked
against the vendors' REST API references, see docs/itsm.md) and can be told to fail:

- ServiceNow Table API: `GET /api/now/table/<table>` with `sysparm_query` (`a=b^c=d`),
  `sysparm_fields` (dot-walked names such as `approver.email` come back as flat keys),
  `sysparm_limit` / `sysparm_offset` and an `X-Total-Count` header; `{"result": [...]}` with every
  value a string (state codes "-5", "3", "4"); `PATCH /api/now/table/<table>/<sys_id>` with
  `work_notes` appends a note.
- Jira: `GET /rest/api/2/issue/<key>` with `fields.status.statusCategory.key` and
  `fields.resolution` (null while unresolved); `GET /rest/servicedeskapi/request/<key>/approval`
  paged with `start` / `limit` / `isLastPage`; `POST /rest/api/2/issue/<key>/comment`.
- Authentication: Basic or Bearer, 401 otherwise; `fail(status, times, retry_after)` makes the
  next requests answer 429/5xx/401 whatever they ask.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from tenure_devtools.ports import free_port

Obj = dict[str, Any]


@dataclasses.dataclass
class _Fault:
    status: int
    remaining: int | None
    """None: until cleared."""
    retry_after: str | None = None


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Obj | None


class FakeItsm:
    """The common part: a threaded HTTP server, credentials, fault injection, a request log."""

    def __init__(
        self,
        *,
        username: str = 'tenure',
        password: str = 'fake-itsm-password',  # noqa: S107 (a test server's own account)
        token: str | None = None,
    ) -> None:
        self.username, self.password, self.token = username, password, token
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self._fault: _Fault | None = None
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    # -- control -------------------------------------------------------------------------

    def fail(
        self, status: int, *, times: int | None = None, retry_after: str | None = None
    ) -> None:
        """Answer the next `times` requests (all until `heal()` when None) with `status`."""
        with self.lock:
            self._fault = _Fault(status, times, retry_after)

    def heal(self) -> None:
        with self.lock:
            self._fault = None

    def start(self) -> None:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self, 'GET')

            def do_POST(self) -> None:
                fake._handle(self, 'POST')

            def do_PATCH(self) -> None:
                fake._handle(self, 'PATCH')

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.port = free_port()
        self._server = http.server.ThreadingHTTPServer(('127.0.0.1', self.port), Handler)
        # A short poll interval: stop() waits for the loop to notice, once per test.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={'poll_interval': 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- serving ---------------------------------------------------------------------------

    def _authorised(self, header: str) -> bool:
        if self.token is not None:
            return header == f'Bearer {self.token}'
        expected = base64.b64encode(f'{self.username}:{self.password}'.encode()).decode()
        return header == f'Basic {expected}'

    def _handle(self, handler: http.server.BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        length = int(handler.headers.get('Content-Length') or 0)
        raw = handler.rfile.read(length) if length else b''
        body = json.loads(raw) if raw else None
        with self.lock:
            self.requests.append(Request(method, split.path, query, body))
            fault = self._fault
            if fault is not None and fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._fault = None
        headers: dict[str, str] = {}
        if fault is not None:
            if fault.retry_after is not None:
                headers['Retry-After'] = fault.retry_after
            answer: tuple[int, Obj] = (fault.status, self._error(fault.status))
        elif not self._authorised(handler.headers.get('Authorization', '')):
            answer = (401, self._error(401))
        else:
            with self.lock:
                answer = self._route(method, split.path, query, body, headers)
        payload = json.dumps(answer[1]).encode()
        handler.send_response(answer[0])
        handler.send_header('Content-Type', 'application/json')
        handler.send_header('Content-Length', str(len(payload)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(payload)

    def _error(self, status: int) -> Obj:
        raise NotImplementedError

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: Obj | None,
        headers: dict[str, str],
    ) -> tuple[int, Obj]:
        raise NotImplementedError


class FakeServiceNow(FakeItsm):
    """ServiceNow's Table API: change_request, sc_req_item and sysapproval_approver."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tables: dict[str, list[Obj]] = {
            'change_request': [],
            'sc_req_item': [],
            'sysapproval_approver': [],
        }
        self.notes: dict[str, list[str]] = {}

    def add_ticket(
        self,
        number: str,
        *,
        state: str = '-1',
        approval: str = 'approved',
        table: str = 'change_request',
    ) -> str:
        """A change (state -1 Implement) or request item; returns its sys_id."""
        sys_id = uuid.uuid4().hex
        with self.lock:
            self.tables[table].append(
                {'sys_id': sys_id, 'number': number, 'state': state, 'approval': approval}
            )
        return sys_id

    def set_ticket(self, number: str, **values: str) -> None:
        """Change fields of a ticket, e.g. state='4' (Canceled) or approval='rejected'."""
        with self.lock:
            self._find(number).update(values)

    def approve(self, number: str, email: str, *, state: str = 'approved') -> None:
        """An approval record (sysapproval_approver) for the ticket by `email`."""
        with self.lock:
            sys_id = self._find(number)['sys_id']
            self.tables['sysapproval_approver'].append(
                {
                    'sys_id': uuid.uuid4().hex,
                    'sysapproval': sys_id,
                    'approver.email': email,
                    'state': state,
                }
            )

    def _find(self, number: str) -> Obj:
        for table in ('change_request', 'sc_req_item'):
            for row in self.tables[table]:
                if row['number'] == number:
                    return row
        raise KeyError(number)

    def _error(self, status: int) -> Obj:
        messages = {
            401: ('User Not Authenticated', 'Required to provide Auth information'),
            404: ('No Record found', "Record doesn't exist or ACL restricts the record retrieval"),
        }
        message, detail = messages.get(status, ('Server error', f'HTTP {status}'))
        return {'error': {'message': message, 'detail': detail}, 'status': 'failure'}

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: Obj | None,
        headers: dict[str, str],
    ) -> tuple[int, Obj]:
        parts = path.strip('/').split('/')
        if parts[:3] != ['api', 'now', 'table'] or len(parts) not in (4, 5):
            return 400, self._error(400)
        rows = self.tables.get(parts[3])
        if rows is None:
            return 400, {'error': {'message': 'Invalid table', 'detail': parts[3]}}
        if method == 'PATCH' and len(parts) == 5:
            row = next((r for r in rows if r['sys_id'] == parts[4]), None)
            if row is None:
                return 404, self._error(404)
            if body and 'work_notes' in body:
                self.notes.setdefault(row['number'], []).append(str(body['work_notes']))
            return 200, {'result': dict(row)}
        if method != 'GET' or len(parts) != 4:
            return 405, self._error(405)
        conditions = [
            c.split('=', 1) for c in query.get('sysparm_query', '').split('^') if '=' in c
        ]
        matching = [r for r in rows if all(str(r.get(k)) == v for k, v in conditions)]
        offset = int(query.get('sysparm_offset', 0))
        limit = int(query.get('sysparm_limit', 10000))
        page = matching[offset : offset + limit]
        fields = [f for f in query.get('sysparm_fields', '').split(',') if f]
        headers['X-Total-Count'] = str(len(matching))
        return 200, {
            'result': [{f: r.get(f, '') for f in fields} if fields else dict(r) for r in page]
        }


class FakeJira(FakeItsm):
    """Jira's REST API v2 issues and Jira Service Management request approvals."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.issues: dict[str, Obj] = {}
        self.approvals: dict[str, list[Obj]] = {}
        self.comments: dict[str, list[str]] = {}

    def add_issue(
        self,
        key: str,
        *,
        status: str = 'In Progress',
        category: str = 'indeterminate',
        resolution: str | None = None,
    ) -> None:
        with self.lock:
            self.issues[key] = {'status': status, 'category': category, 'resolution': resolution}

    def set_issue(self, key: str, **values: str | None) -> None:
        with self.lock:
            self.issues[key].update(values)

    def add_approval(self, key: str, *decisions: tuple[str, str], final: str = 'approved') -> None:
        """An approval of the request with its approvers' (e-mail, decision) pairs."""
        with self.lock:
            approvals = self.approvals.setdefault(key, [])
            approvals.append(
                {
                    'id': str(len(approvals) + 1),
                    'name': 'Change manager approval',
                    'finalDecision': final,
                    'canAnswerApproval': False,
                    'approvers': [
                        {
                            'approver': {
                                'accountId': uuid.uuid4().hex[:24],
                                'emailAddress': email,
                                'displayName': email.split('@')[0],
                            },
                            'approverDecision': decision,
                        }
                        for email, decision in decisions
                    ],
                }
            )

    def _error(self, status: int) -> Obj:
        if status == 404:
            return {
                'errorMessages': ['Issue does not exist or you do not have permission to see it.'],
                'errors': {},
            }
        return {'errorMessages': [f'HTTP {status}'], 'errors': {}}

    def _issue(self, key: str) -> Obj:
        issue = self.issues[key]
        category = issue['category']
        return {
            'id': str(10000 + list(self.issues).index(key)),
            'key': key,
            'self': f'{self.url}/rest/api/2/issue/{key}',
            'fields': {
                'status': {
                    'name': issue['status'],
                    'statusCategory': {
                        'key': category,
                        'name': {'new': 'To Do', 'indeterminate': 'In Progress'}.get(
                            category, 'Done'
                        ),
                    },
                },
                'resolution': None
                if issue['resolution'] is None
                else {'name': issue['resolution'], 'description': ''},
            },
        }

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: Obj | None,
        headers: dict[str, str],
    ) -> tuple[int, Obj]:
        parts = [unquote(p) for p in path.strip('/').split('/')]
        if parts[:4] == ['rest', 'api', '2', 'issue'] and len(parts) in (5, 6):
            key = parts[4]
            if key not in self.issues:
                return 404, self._error(404)
            if len(parts) == 5 and method == 'GET':
                return 200, self._issue(key)
            if len(parts) == 6 and parts[5] == 'comment' and method == 'POST':
                self.comments.setdefault(key, []).append(str((body or {}).get('body', '')))
                return 201, {'id': str(len(self.comments[key])), 'body': (body or {}).get('body')}
        if parts[:3] == ['rest', 'servicedeskapi', 'request'] and parts[4:] == ['approval']:
            key = parts[3]
            if key not in self.issues:
                return 404, self._error(404)
            values = self.approvals.get(key, [])
            start, limit = int(query.get('start', 0)), int(query.get('limit', 50))
            page = values[start : start + limit]
            return 200, {
                'size': len(page),
                'start': start,
                'limit': limit,
                'isLastPage': start + limit >= len(values),
                'values': page,
            }
        return 404, self._error(404)


@contextlib.contextmanager
def running_servicenow(**kwargs: Any) -> Iterator[FakeServiceNow]:
    with FakeServiceNow(**kwargs) as fake:
        yield fake


@contextlib.contextmanager
def running_jira(**kwargs: Any) -> Iterator[FakeJira]:
    with FakeJira(**kwargs) as fake:
        yield fake

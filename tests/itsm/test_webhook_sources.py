"""TicketSources of type webhook: the ITSM pushes signed ticket states, there is no API to read.

The signed push is the observation, so what it may say is checked here without a network: the
TicketSource's shape (the model and the CRD's CEL rules agree), the payload, its mapping, and
replay protection (a timestamp within five minutes of the operator's clock, newer than the last
push recorded for that ticket).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from tenure.adapters.itsm import Credentials, ItsmClient
from tenure.api.crd import render_ticket_source_crd
from tenure.api.v1alpha1 import (
    ServiceIdentityStatus,
    StateMapping,
    TicketSource,
    TicketSourceSpec,
    TicketState,
)
from tenure.domain.guardrails import Policy
from tenure.domain.names import IdentityNames
from tenure.domain.reasons import Reason
from tenure.domain.tickets import (
    Push,
    PushRefused,
    SourceView,
    check,
    map_pushed,
    parse_push,
    push_timing,
)
from tenure.manifests import validate_object
from tenure.ticketing import TicketPoller, signature_of, webhook_route
from tenure_devtools.kubeapi import schema as apiserver_schema

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = b'the-push-hmac-key'
S = TicketState
DEFAULTS = StateMapping()

WEBHOOK_SPEC: dict[str, Any] = {
    'type': 'webhook',
    'webhookSecret': {'name': 'hook', 'namespace': 'tenure-system'},
}
SNOW_SPEC: dict[str, Any] = {
    'type': 'servicenow',
    'url': 'https://example.service-now.com',
    'credentialsSecretRef': {'name': 'creds', 'namespace': 'tenure-system'},
}


def source(spec: Mapping[str, Any], name: str = 'pusher') -> dict[str, Any]:
    return {
        'apiVersion': 'tenure.dev/v1alpha1',
        'kind': 'TicketSource',
        'metadata': {'name': name},
        'spec': dict(spec),
    }


# -- the TicketSource ------------------------------------------------------------------------


SHAPES = [
    pytest.param(WEBHOOK_SPEC, None, id='webhook-with-its-key'),
    pytest.param(
        {**WEBHOOK_SPEC, 'pollInterval': '5m', 'stateMapping': {'cancelled': ['Abandoned']}},
        None,
        id='webhook-with-a-mapping',
    ),
    pytest.param({**WEBHOOK_SPEC, 'verifyApproval': False}, None, id='webhook-verify-false'),
    pytest.param(SNOW_SPEC, None, id='servicenow'),
    pytest.param({'type': 'webhook'}, 'webhookSecret', id='webhook-without-key'),
    pytest.param({**WEBHOOK_SPEC, 'url': 'https://itsm.example.com'}, 'url', id='webhook-with-url'),
    pytest.param(
        {**WEBHOOK_SPEC, 'credentialsSecretRef': SNOW_SPEC['credentialsSecretRef']},
        'credentialsSecretRef',
        id='webhook-with-credentials',
    ),
    pytest.param({**WEBHOOK_SPEC, 'table': 'sc_req_item'}, 'table', id='webhook-with-table'),
    pytest.param(
        {**WEBHOOK_SPEC, 'verifyApproval': True}, 'verifyApproval', id='webhook-verifying'
    ),
    pytest.param({**SNOW_SPEC, 'url': None}, 'url', id='servicenow-without-url'),
    pytest.param(
        {**SNOW_SPEC, 'credentialsSecretRef': None},
        'credentialsSecretRef',
        id='servicenow-without-credentials',
    ),
]


def _without_nones(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if v is not None}


@pytest.mark.parametrize(('spec', 'field'), SHAPES)
def test_a_webhook_source_needs_its_key_and_nothing_an_api_would(
    spec: Mapping[str, Any], field: str | None
) -> None:
    """The API server (CEL in the CRD, run by the emulator's implementation of
    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules)
    and the model (`tenure check`, the operator) refuse the same TicketSources, same message."""
    doc = source(_without_nones(spec))
    schema = render_ticket_source_crd()['spec']['versions'][0]['schema']['openAPIV3Schema']
    assert apiserver_schema.check_crd_schema(schema) == []
    crd_errors = apiserver_schema.validate(
        schema, apiserver_schema.apply_defaults(schema, apiserver_schema.prune(schema, doc))
    )
    try:
        TicketSource.model_validate(doc)
        model_error = None
    except ValidationError as e:
        model_error = e.errors()[0]['msg']
    if field is None:
        assert crd_errors == []
        assert model_error is None
        return
    assert [e.field for e in crd_errors] == [f'spec.{field}'], crd_errors
    assert model_error is not None
    assert model_error.split(':')[0] in crd_errors[0].message
    assert model_error.startswith(field)


def test_tenure_check_names_what_a_webhook_source_must_not_have() -> None:
    problems = validate_object(
        source({**WEBHOOK_SPEC, 'url': 'https://itsm.example.com'}), policy=Policy(), now=NOW
    )
    assert len(problems) == 1
    _, message, _ = problems[0]
    assert 'url makes no sense for type webhook' in message


# -- the payload -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('state', 'mapping', 'expected'),
    [
        pytest.param('Cancelled', DEFAULTS, S.CANCELLED, id='cancelled'),
        pytest.param('canceled', DEFAULTS, S.CANCELLED, id='american-spelling-cancels'),
        pytest.param('REJECTED', DEFAULTS, S.REJECTED, id='names-are-case-insensitive'),
        pytest.param('Closed', DEFAULTS, S.CLOSED, id='closed-is-closed-not-cancelled'),
        pytest.param('Requested', DEFAULTS, S.REQUESTED, id='requested'),
        pytest.param('Approved', DEFAULTS, S.APPROVED, id='approved'),
        pytest.param('In Progress', DEFAULTS, S.APPROVED, id='unknown-restricts-nothing'),
        pytest.param(
            'Abandoned', StateMapping(cancelled=['abandoned']), S.CANCELLED, id='mapped-cancel'
        ),
        pytest.param(
            'Closed', StateMapping(cancelled=['Closed']), S.CANCELLED, id='mapping-wins-over-names'
        ),
        pytest.param('Denied', StateMapping(rejected=['Denied']), S.REJECTED, id='mapped-reject'),
        pytest.param('Resolved', StateMapping(closed=['Resolved']), S.CLOSED, id='mapped-close'),
        pytest.param('Canceled', StateMapping(cancelled=[]), S.APPROVED, id='empty-list-maps-none'),
    ],
)
def test_pushed_states_and_what_they_mean(
    state: str, mapping: StateMapping, expected: TicketState
) -> None:
    reading = map_pushed(state, mapping)
    assert reading.state is expected
    assert reading.raw == f'state={state}'


def body(**fields: Any) -> bytes:
    payload = {'ticket': 'CHG0031337', 'state': 'Cancelled', 'timestamp': '2026-12-01T12:00:00Z'}
    payload.update(fields)
    return json.dumps({k: v for k, v in payload.items() if v is not None}).encode()


def test_a_push_is_read_with_its_timestamp_in_utc_and_its_approver() -> None:
    push = parse_push(
        body(timestamp='2026-12-01T13:00:00+01:00', approver='bob@example.com', extra=1),
        DEFAULTS,
    )
    assert push == Push('CHG0031337', map_pushed('Cancelled', DEFAULTS), NOW, 'bob@example.com')
    unix = parse_push(body(timestamp=int(NOW.timestamp())), DEFAULTS)
    assert isinstance(unix, Push)
    assert unix.at == NOW


@pytest.mark.parametrize(
    ('raw', 'field'),
    [
        pytest.param(b'not json', 'body', id='not-json'),
        pytest.param(b'["CHG1"]', 'body', id='not-an-object'),
        pytest.param(body(ticket=None), 'ticket', id='no-ticket'),
        pytest.param(body(ticket='-CHG'), 'ticket', id='bad-ticket-id'),
        pytest.param(body(state=None), 'state', id='no-state'),
        pytest.param(body(state=''), 'state', id='empty-state'),
        pytest.param(body(timestamp=None), 'timestamp', id='no-timestamp'),
        pytest.param(body(timestamp='2026-12-01 12:00:00'), 'timestamp', id='no-offset'),
    ],
)
def test_a_malformed_push_is_refused_naming_the_field(raw: bytes, field: str) -> None:
    refused = parse_push(raw, DEFAULTS)
    assert isinstance(refused, PushRefused)
    assert not refused.stale
    assert field in refused.message


@pytest.mark.parametrize(
    ('at', 'last', 'refused'),
    [
        pytest.param(NOW, None, False, id='fresh'),
        pytest.param(NOW - timedelta(minutes=4, seconds=59), None, False, id='just-in-tolerance'),
        pytest.param(NOW - timedelta(minutes=5, seconds=1), None, True, id='too-old-a-replay'),
        pytest.param(NOW + timedelta(minutes=5, seconds=1), None, True, id='from-the-future'),
        pytest.param(NOW, NOW - timedelta(seconds=1), False, id='newer-than-recorded'),
        pytest.param(NOW, NOW, True, id='same-as-recorded-a-replay'),
        pytest.param(NOW - timedelta(seconds=1), NOW, True, id='older-than-recorded'),
    ],
)
def test_replays_and_older_states_are_refused(
    at: datetime, last: datetime | None, refused: bool
) -> None:
    verdict = push_timing(at, NOW, last)
    assert (verdict is not None) is refused
    if verdict is not None:
        assert verdict.stale


def test_a_new_grant_on_a_webhook_source_waits_for_its_push() -> None:
    view = SourceView('pusher', TicketSourceSpec.model_validate(WEBHOOK_SPEC))
    waiting = check('CHG0031337', 'bob@example.com', None, view)
    assert waiting is not None
    assert waiting.reason is Reason.TICKET_NOT_OBSERVED
    assert 'has not been pushed' in waiting.message
    assert 'POST /webhooks/pusher' in waiting.message


# -- the poller ------------------------------------------------------------------------------


class Kube:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, str]] = {
            ('tenure-system', 'hook'): {'hmac-key': KEY.decode()},
        }
        self.patches: list[tuple[str, dict[str, Any]]] = []

    def read_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.secrets.get((namespace, name))

    def patch_status(self, names: IdentityNames, status: Mapping[str, Any]) -> None:
        self.patches.append((names.name, dict(status['ticket'])))


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def cites(name: str, ticket: str = 'CHG0031337', system: str = 'pusher') -> dict[str, Any]:
    return {'metadata': {'name': name}, 'spec': {'ticket': {'system': system, 'id': ticket}}}


class Rig:
    def __init__(self) -> None:
        self.kube = Kube()
        self.clock = Clock()
        self.reconciled: list[tuple[str, str]] = []
        self.clients: list[TicketSourceSpec] = []
        self.poller = TicketPoller(
            self.kube, reconcile=self._reconcile, clock=self.clock, clients=self._client
        )
        self.poller.set_source('pusher', source(WEBHOOK_SPEC))
        self.route = webhook_route(self.poller, lambda: True)

    def _client(self, spec: TicketSourceSpec, credentials: Credentials) -> ItsmClient:
        self.clients.append(spec)
        raise AssertionError('a webhook source has no API to call')

    async def _reconcile(self, key: tuple[str, str]) -> None:
        self.reconciled.append(key)

    def push(self, raw: bytes, key: bytes = KEY) -> tuple[int, str]:
        return self.route('pusher', raw, signature_of(key, raw))


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_a_signed_push_is_the_observation_of_every_identity_citing_the_ticket(rig: Rig) -> None:
    rig.poller.track(('ns', 'a'), cites('a'))
    rig.poller.track(('ns', 'b'), cites('b'))
    rig.poller.track(('ns', 'other'), cites('other', ticket='CHG0000001'))
    code, text = rig.push(body(approver='bob@example.com'))
    assert (code, text) == (202, 'ticket CHG0031337 is Cancelled for 2 identities')
    assert sorted(name for name, _ in rig.kube.patches) == ['a', 'b']
    assert rig.kube.patches[0][1] == {
        'id': 'CHG0031337',
        'source': 'pusher',
        'observedState': 'Cancelled',
        'rawState': 'state=Cancelled',
        'observedAt': '2026-12-01T12:00:00Z',
        'approvers': ['bob@example.com'],
    }


@pytest.mark.parametrize(
    ('raw', 'key', 'code'),
    [
        pytest.param(body(), b'guessed', 401, id='forged'),
        pytest.param(b'{"ticket": "CHG0031337"}', KEY, 400, id='malformed'),
        pytest.param(body(timestamp='2026-12-01T11:50:00Z'), KEY, 409, id='replayed-too-late'),
    ],
)
def test_a_refused_push_changes_nothing(rig: Rig, raw: bytes, key: bytes, code: int) -> None:
    rig.poller.track(('ns', 'a'), cites('a'))
    assert rig.push(raw, key)[0] == code
    assert rig.kube.patches == []
    rig.clock.now = NOW + timedelta(seconds=1)
    rig.poller.poll('pusher')  # and nothing was remembered for later either
    assert rig.kube.patches == []


def test_an_older_push_never_overwrites_a_newer_one(rig: Rig) -> None:
    rig.poller.track(('ns', 'a'), cites('a'))
    assert rig.push(body(state='Cancelled'))[0] == 202
    code, text = rig.push(body(state='Approved', timestamp='2026-12-01T11:59:00Z'))
    assert code == 409
    assert 'already recorded' in text
    assert rig.push(body(state='Cancelled'))[0] == 409, 'the same push again is a replay'
    assert [t['observedState'] for _, t in rig.kube.patches] == ['Cancelled']


def test_the_recorded_status_protects_against_replays_after_a_restart(rig: Rig) -> None:
    status = {
        'ticket': {
            'id': 'CHG0031337',
            'source': 'pusher',
            'observedState': 'Cancelled',
            'observedAt': '2026-12-01T12:00:00Z',
        }
    }
    rig.poller.track(('ns', 'a'), {**cites('a'), 'status': status})
    assert rig.push(body(state='Approved', timestamp='2026-12-01T11:58:00Z'))[0] == 409


def test_a_push_before_any_identity_cites_the_ticket_is_handed_over_later(rig: Rig) -> None:
    code, text = rig.push(body(state='Approved'))
    assert code == 202
    assert 'remembered' in text
    rig.poller.track(('ns', 'late'), cites('late'))
    rig.poller.poll('pusher')
    assert [(n, t['observedState']) for n, t in rig.kube.patches] == [('late', 'Approved')]
    rig.poller.poll('pusher')
    assert len(rig.kube.patches) == 1, 'handed over once'
    assert rig.clients == [], 'polling a webhook source calls no API'


def test_a_webhook_source_is_unavailable_only_when_its_key_cannot_be_read(rig: Rig) -> None:
    rig.poller.poll('pusher')
    view = rig.poller.source_view('pusher')
    assert view is not None
    assert view.error is None, 'nobody polls it, and that is not an outage'
    del rig.kube.secrets[('tenure-system', 'hook')]
    rig.poller.poll('pusher')
    view = rig.poller.source_view('pusher')
    assert view is not None
    assert view.error is not None
    assert 'webhook key cannot be read' in view.error
    assert rig.push(body())[0] == 503, 'a deleted key signs nothing any more'


def test_a_rotated_key_is_used_after_the_next_read(rig: Rig) -> None:
    assert rig.push(body(timestamp='2026-12-01T11:59:00Z'))[0] == 202
    rig.kube.secrets[('tenure-system', 'hook')] = {'hmac-key': 'rotated'}
    rig.poller.poll('pusher')
    assert rig.push(body(), KEY)[0] == 401
    assert rig.push(body(), b'rotated')[0] == 202


def test_nothing_is_written_back_to_a_source_without_an_api(rig: Rig) -> None:
    status = ServiceIdentityStatus.model_validate(
        {
            'phase': 'Revoked',
            'revocation': {
                'reason': 'TicketCancelled',
                'requestedAt': '2026-12-01T00:00:00Z',
                'verified': True,
                'proof': [],
            },
        }
    )
    rig.poller.revoked(('ns', 'a'), cites('a'), status)
    rig.poller.close()  # waits for any queued note
    assert rig.clients == []

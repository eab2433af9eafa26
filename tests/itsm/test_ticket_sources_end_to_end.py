"""The real operator with TicketSources on local ServiceNow and Jira servers (issue #7).

The ITSM drives the lifecycle: a cancellation in ServiceNow revokes within one poll, a signed
webhook within a second, so does a cancellation pushed to a webhook source (forged and replayed
pushes change nothing), an approval by the wrong person denies, an outage holds new grants but
neither revokes what is Active nor delays an expiry; a forged webhook changes nothing; the
revocation is written back to the ticket with its proof and no secret value.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from tenure.api.v1alpha1 import GROUP, SOURCE_PLURAL, VERSION
from tenure_devtools.itsm import FakeJira, FakeServiceNow, running_jira, running_servicenow
from tenure_devtools.openbao import OpenBaoDevServer
from tenure_devtools.operator_process import OperatorProcess
from tests.integration.stack import Obj, Stack, identity

pytestmark = pytest.mark.integration

SYSTEM_NS = 'tenure-itsm'
HMAC_KEY = 'webhook-hmac-key-for-tests'
POLL = 1.0


@pytest.fixture(scope='module')
def snow() -> Iterator[FakeServiceNow]:
    with running_servicenow() as fake:
        yield fake


@pytest.fixture(scope='module')
def jira() -> Iterator[FakeJira]:
    with running_jira(token='jira-api-token') as fake:
        yield fake


def _secret(stack: Stack, name: str, data: dict[str, str]) -> None:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    stack.core.create_namespaced_secret(
        SYSTEM_NS, {'metadata': {'name': name, 'namespace': SYSTEM_NS}, 'data': encoded}
    )


@pytest.fixture(scope='module')
def module_stack(kubeconfig: Path, vault_for_identities: OpenBaoDevServer) -> Iterator[Stack]:
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=config)
    with kubernetes.client.ApiClient(config) as client:
        yield Stack(client, vault_for_identities)


@pytest.fixture(scope='module')
def sources(
    module_stack: Stack, snow: FakeServiceNow, jira: FakeJira, operator: OperatorProcess
) -> list[str]:
    """TicketSources: snow (1s polls), snowhook (webhooks only), snowverify, jira."""
    stack = module_stack
    stack.namespace(SYSTEM_NS)
    _secret(stack, 'snow-credentials', {'username': snow.username, 'password': snow.password})
    _secret(stack, 'jira-credentials', {'token': 'jira-api-token'})
    _secret(stack, 'webhook-key', {'hmac-key': HMAC_KEY})
    credentials = {'name': 'snow-credentials', 'namespace': SYSTEM_NS}
    specs: dict[str, Obj] = {
        'snow': {'type': 'servicenow', 'url': snow.url, 'pollInterval': '1s'},
        'snowhook': {
            'type': 'servicenow',
            'url': snow.url,
            'pollInterval': '1h',
            'webhookSecret': {'name': 'webhook-key', 'namespace': SYSTEM_NS},
        },
        'snowverify': {
            'type': 'servicenow',
            'url': snow.url,
            'pollInterval': '1s',
            'verifyApproval': True,
        },
        'jira': {
            'type': 'jira',
            'url': jira.url,
            'pollInterval': '1s',
            'credentialsSecretRef': {'name': 'jira-credentials', 'namespace': SYSTEM_NS},
        },
    }
    for name, spec in specs.items():
        stack.custom.create_cluster_custom_object(
            GROUP,
            VERSION,
            SOURCE_PLURAL,
            {
                'apiVersion': f'{GROUP}/{VERSION}',
                'kind': 'TicketSource',
                'metadata': {'name': name},
                'spec': {'credentialsSecretRef': credentials, **spec},
            },
        )
    # An ITSM without an API: it pushes signed ticket states, the push is the observation.
    stack.custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        SOURCE_PLURAL,
        {
            'apiVersion': f'{GROUP}/{VERSION}',
            'kind': 'TicketSource',
            'metadata': {'name': 'pusher'},
            'spec': {
                'type': 'webhook',
                'webhookSecret': {'name': 'webhook-key', 'namespace': SYSTEM_NS},
            },
        },
    )
    return [*specs, 'pusher']


def cited(name: str, ns: str, system: str, ticket: str, **kwargs: Any) -> Obj:
    manifest = identity(name, ns, ticket=ticket, **kwargs)
    manifest['spec']['ticket']['system'] = system
    return manifest


def eventually(predicate: Callable[[], Any], timeout: float = 10, what: str = '') -> Any:
    """Poll a condition that no watch can tell (a fake server's state)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f'not within {timeout}s: {what}')


def condition(obj: Obj, type_: str) -> Obj:
    conditions = (obj.get('status') or {}).get('conditions') or []
    return next((c for c in conditions if c['type'] == type_), {})


def at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace('Z', '+00:00'))


def post_webhook(operator: OperatorProcess, source: str, body: bytes, signature: str | None) -> int:
    headers = {'Content-Type': 'application/json'}
    if signature is not None:
        headers['X-Hub-Signature'] = signature
    request = urllib.request.Request(
        f'http://127.0.0.1:{operator.health_port}/webhooks/{source}',
        data=body,
        headers=headers,
        method='POST',
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as e:
        return e.code


def sign(body: bytes, key: str = HMAC_KEY) -> str:
    return 'sha256=' + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def ns(stack: Stack, sources: list[str]) -> str:
    return stack.namespace(f'itsm-{uuid.uuid4().hex[:8]}')


def number() -> str:
    return f'CHG{uuid.uuid4().int % 10**7:07d}'


def test_a_cancellation_in_servicenow_revokes_within_one_poll(
    stack: Stack, ns: str, snow: FakeServiceNow
) -> None:
    ticket = number()
    snow.add_ticket(ticket, state='-1', approval='approved')
    stack.create(cited('cancelled', ns, 'snow', ticket))
    active = stack.wait_phase(ns, 'cancelled', 'Active')
    assert active['status']['ticket']['observedState'] == 'Approved'
    secret = stack.bao.client().secrets.kv.v2.read_secret_version(
        path=f'tenure/{ns}/cancelled', raise_on_deleted_version=True
    )['data']['data']['api-key']

    cancelled_at = datetime.now(UTC)
    snow.set_ticket(ticket, state='4')
    revoked = stack.wait_phase(ns, 'cancelled', 'Revoked', timeout=15)
    status = revoked['status']
    assert status['revocation']['reason'] == 'TicketCancelled'
    assert status['revocation']['verified'] is True
    assert status['ticket']['observedState'] == 'Cancelled'
    assert status['ticket']['rawState'] == 'state=4 approval=approved'
    assert revoked['spec']['ticket']['state'] == 'Approved', 'Tenure never writes spec'
    # Within one poll (1s), with a second of slack for the read and the reconcile.
    assert at(status['revocation']['requestedAt']) - cancelled_at <= timedelta(seconds=POLL + 1)

    notes = eventually(lambda: snow.notes.get(ticket), what='the revocation work note')
    note = notes[0]
    assert f'ServiceIdentity {ns}/cancelled' in note
    assert 'TicketCancelled' in note
    assert 'Revocation proof' in note
    assert f'tenure-{ns}-cancelled' in note
    assert 'Gone' in note
    assert secret not in note
    assert snow.password not in note


def test_a_signed_webhook_revokes_within_a_second_and_a_forged_one_changes_nothing(
    stack: Stack, ns: str, snow: FakeServiceNow, operator: OperatorProcess
) -> None:
    ticket = number()
    snow.add_ticket(ticket)
    stack.create(cited('hooked', ns, 'snowhook', ticket))
    stack.wait_phase(ns, 'hooked', 'Active')
    snow.set_ticket(ticket, state='4')

    payload = f'{{"number": "{ticket}", "state": "Approved"}}'.encode()
    reads = len(snow.requests)
    assert post_webhook(operator, 'snowhook', payload, None) == 401
    assert post_webhook(operator, 'snowhook', payload, sign(payload, 'guessed-key')) == 401
    assert post_webhook(operator, 'snowhook', payload, sign(payload)[:-2] + '00') == 401
    assert post_webhook(operator, 'no-such-source', payload, sign(payload)) == 404
    assert post_webhook(operator, 'snow', payload, sign(payload)) == 401, 'no webhookSecret'
    assert len(snow.requests) == reads, 'a refused webhook reads nothing'
    assert stack.get(ns, 'hooked')['status']['phase'] == 'Active'  # type: ignore[index]

    hooked_at = time.monotonic()
    assert post_webhook(operator, 'snowhook', payload, sign(payload)) == 202
    revoked = stack.wait_phase(ns, 'hooked', 'Revoked', timeout=10)
    assert time.monotonic() - hooked_at < 1.5
    # The payload said Approved: it is never trusted for state; the API read said Canceled.
    assert revoked['status']['revocation']['reason'] == 'TicketCancelled'


def pushed(ticket: str, state: str, at: datetime | None = None) -> bytes:
    """The body a webhook source's ITSM sends (docs/itsm.md, "Webhook sources")."""
    stamp = (at or datetime.now(UTC)).isoformat()
    return json.dumps({'ticket': ticket, 'state': state, 'timestamp': stamp}).encode()


def test_a_pushed_cancellation_revokes_within_a_second_and_forged_or_stale_ones_do_nothing(
    stack: Stack, ns: str, operator: OperatorProcess
) -> None:
    ticket = number()
    stack.create(cited('pushed', ns, 'pusher', ticket))
    waiting = stack.wait(
        ns, 'pushed', lambda o: condition(o, 'Ready').get('reason') == 'TicketNotObserved'
    )
    assert 'has not been pushed' in condition(waiting, 'Ready')['message']
    approved = pushed(ticket, 'Approved')
    assert post_webhook(operator, 'pusher', approved, sign(approved)) == 202
    active = stack.wait_phase(ns, 'pushed', 'Active')
    assert active['status']['ticket']['observedState'] == 'Approved'

    cancel = pushed(ticket, 'Cancelled')
    stale = pushed(ticket, 'Cancelled', datetime.now(UTC) - timedelta(minutes=6))
    assert post_webhook(operator, 'pusher', cancel, None) == 401
    assert post_webhook(operator, 'pusher', cancel, sign(cancel, 'guessed-key')) == 401
    assert post_webhook(operator, 'pusher', stale, sign(stale)) == 409, 'outside 5 minutes'
    assert post_webhook(operator, 'pusher', approved, sign(approved)) == 409, 'a replay'
    after = stack.get(ns, 'pushed')
    assert after is not None
    assert after['status']['phase'] == 'Active'
    assert after['status']['ticket'] == active['status']['ticket'], 'nothing was recorded'

    pushed_at = time.monotonic()
    assert post_webhook(operator, 'pusher', cancel, sign(cancel)) == 202
    revoked = stack.wait_phase(ns, 'pushed', 'Revoked', timeout=10)
    assert time.monotonic() - pushed_at < 1.5
    status = revoked['status']
    assert status['revocation']['reason'] == 'TicketCancelled'
    assert status['ticket']['observedState'] == 'Cancelled'
    assert status['ticket']['rawState'] == 'state=Cancelled'
    assert status['ticket']['source'] == 'pusher'
    assert revoked['spec']['ticket']['state'] == 'Approved', 'Tenure never writes spec'


def test_approval_by_the_wrong_person_is_denied(
    stack: Stack, ns: str, snow: FakeServiceNow
) -> None:
    ticket = number()
    snow.add_ticket(ticket)
    snow.approve(ticket, 'mallory@example.com')
    stack.create(cited('impostor', ns, 'snowverify', ticket))
    denied = stack.wait_phase(ns, 'impostor', 'Denied')
    valid = condition(denied, 'Valid')
    assert valid['reason'] == 'ApprovalNotVerified'
    assert 'bob@example.com' in valid['message']
    with pytest.raises(ApiException) as missing:
        stack.core.read_namespaced_service_account('impostor', ns)
    assert missing.value.status == 404, 'nothing is provisioned'
    snow.approve(ticket, 'bob@example.com')
    stack.wait_phase(ns, 'impostor', 'Active', timeout=15)


def test_an_itsm_outage_holds_new_grants_but_not_expiry(
    stack: Stack, ns: str, jira: FakeJira
) -> None:
    jira.add_issue('OPS-101')
    jira.add_issue('OPS-102')
    stack.create(cited('lapsing', ns, 'jira', 'OPS-101', expires_in=timedelta(seconds=12)))
    stack.wait_phase(ns, 'lapsing', 'Active')
    jira.fail(503)
    try:
        stack.create(cited('newcomer', ns, 'jira', 'OPS-102'))
        waiting = stack.wait(
            ns,
            'newcomer',
            lambda o: (
                o.get('status', {}).get('phase') == 'Pending'
                and condition(o, 'Ready').get('reason') == 'TicketSourceUnavailable'
            ),
        )
        ready = condition(waiting, 'Ready')
        assert ready['status'] == 'Unknown'
        assert '503' in ready['message']
        revoked = stack.wait_phase(ns, 'lapsing', 'Revoked', timeout=30)
        assert revoked['status']['revocation']['reason'] == 'Expired'
        assert stack.get(ns, 'newcomer')['status']['phase'] == 'Pending'  # type: ignore[index]
    finally:
        jira.heal()
    stack.wait_phase(ns, 'newcomer', 'Active', timeout=15)


def test_a_jira_issue_resolved_wont_do_revokes(stack: Stack, ns: str, jira: FakeJira) -> None:
    jira.add_issue('OPS-201')
    stack.create(cited('jira-cancelled', ns, 'jira', 'OPS-201'))
    stack.wait_phase(ns, 'jira-cancelled', 'Active')
    jira.set_issue('OPS-201', status='Closed', category='done', resolution="Won't Do")
    revoked = stack.wait_phase(ns, 'jira-cancelled', 'Revoked', timeout=15)
    assert revoked['status']['revocation']['reason'] == 'TicketCancelled'
    comments = eventually(lambda: jira.comments.get('OPS-201'), what='the revocation comment')
    assert 'jira-cancelled' in comments[0]

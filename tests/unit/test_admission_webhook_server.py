"""The admission webhook's own server (tenure.webhook), in process, with the cluster's reads faked.

What the API server reads back (the AdmissionReview v1 response: `uid` echoed, `allowed`,
`status.code`/`status.message`, `warnings`; Kubernetes, "Dynamic Admission Control", Response:
https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#response),
how the policy in force follows the IdentityPolicy, and the TLS certificate following its files.
The real process, leader and standby, is in tests/integration/test_admission_webhook.py.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tenure import webhook as webhook_module
from tenure.admission import WEBHOOK_PATH
from tenure.config import WebhookConfig
from tenure.domain.guardrails import Mode
from tenure.errors import TenureError, TransientError
from tenure.health import Health
from tenure.reconcile import Reconciler
from tenure.runtime import Runtime, build_registry
from tenure.webhook import AdmissionWebhook, PolicyFollower
from tenure_devtools.certificates import self_signed
from tenure_devtools.ports import free_port
from tests.unit.fakes import Calls, FakeKube, FakeVault

Obj = dict[str, Any]
Build = Callable[..., Obj]
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


class Cluster:
    """The two reads the webhook makes: the IdentityPolicy and a namespace's labels."""

    def __init__(self) -> None:
        self.policy: Obj | None = None
        self.version = 0
        self.unreachable = False
        self.reads = 0
        self.labels: dict[str, dict[str, str]] = {}

    def set_policy(self, spec: Obj | None) -> None:
        self.version += 1
        self.policy = None
        if spec is not None:
            self.policy = {
                'apiVersion': 'tenure.dev/v1alpha1',
                'kind': 'IdentityPolicy',
                'metadata': {'name': 'default', 'resourceVersion': str(self.version)},
                'spec': spec,
            }

    def read_policy(self, name: str) -> Mapping[str, Any] | None:
        assert name == 'default'
        self.reads += 1
        if self.unreachable:
            raise TransientError('could not read IdentityPolicy default: connection refused')
        return self.policy

    def namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        return self.labels.get(namespace)


def make_webhook(cluster: Cluster, config: WebhookConfig) -> AdmissionWebhook:
    return AdmissionWebhook(
        config,
        policy=PolicyFollower(cluster.read_policy),
        namespace_labels=cluster.namespace_labels,
        kv_mount='secret',
        clock=lambda: NOW,
        host='127.0.0.1',
    )


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Policy re-reads and certificate checks every 50 ms instead of seconds."""
    monkeypatch.setattr(webhook_module, 'POLICY_REFRESH', 0.05)
    monkeypatch.setattr(webhook_module, 'CERTIFICATE_CHECK', 0.05)


@pytest.fixture
def cluster() -> Cluster:
    return Cluster()


@pytest.fixture
def served(cluster: Cluster, fast: None) -> Iterator[tuple[AdmissionWebhook, str]]:
    port = free_port()
    server = make_webhook(cluster, WebhookConfig(port=port, insecure=True))
    server.start()
    try:
        yield server, f'http://127.0.0.1:{port}'
    finally:
        server.close()


def review_of(obj: Obj | None, operation: str = 'CREATE', old: Obj | None = None) -> Obj:
    meta = (obj or old or {})['metadata']
    return {
        'apiVersion': 'admission.k8s.io/v1',
        'kind': 'AdmissionReview',
        'request': {
            'uid': f'uid-{time.monotonic_ns()}',
            'kind': {'group': 'tenure.dev', 'version': 'v1alpha1', 'kind': 'ServiceIdentity'},
            'resource': {
                'group': 'tenure.dev',
                'version': 'v1alpha1',
                'resource': 'serviceidentities',
            },
            'name': meta['name'],
            'namespace': meta['namespace'],
            'operation': operation,
            'userInfo': {'username': 'alice@example.com'},
            'object': obj,
            'oldObject': old,
        },
    }


def post(
    url: str, body: bytes, context: ssl.SSLContext | None = None, method: str = 'POST'
) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=body, headers={'Content-Type': 'application/json'}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def ask(base: str, review: Obj, context: ssl.SSLContext | None = None) -> Obj:
    status, text = post(base + WEBHOOK_PATH, json.dumps(review).encode(), context)
    assert status == 200, text
    answer: Obj = json.loads(text)
    assert (answer['apiVersion'], answer['kind']) == (review['apiVersion'], 'AdmissionReview')
    assert answer['response']['uid'] == review['request']['uid']
    response: Obj = answer['response']
    return response


def wide_open(manifest: Build) -> Obj:
    return manifest(
        {
            'spec.kubernetes.rules': [
                {'apiGroups': [''], 'resources': ['pods'], 'verbs': ['*', 'impersonate']}
            ]
        }
    )


def wait_for(check: Callable[[], bool], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f'{what} within {timeout}s'
        time.sleep(0.02)


# -- what the API server reads back ------------------------------------------------------------


def test_an_admitted_identity_gets_allowed_and_nothing_else(
    served: tuple[AdmissionWebhook, str], manifest: Build
) -> None:
    _, base = served
    review = review_of(manifest())
    assert ask(base, review) == {'uid': review['request']['uid'], 'allowed': True}


def test_a_refusal_carries_the_code_and_every_rule_id(
    served: tuple[AdmissionWebhook, str], manifest: Build, caplog: pytest.LogCaptureFixture
) -> None:
    _, base = served
    doc = wide_open(manifest)
    with caplog.at_level(logging.INFO, logger='tenure.webhook'):
        response = ask(base, review_of(doc))
    assert response['allowed'] is False
    assert response['status']['code'] == 403
    assert response['status']['message'].startswith('WildcardNotAllowed: spec.kubernetes.rules[0]')
    assert 'ForbiddenVerb' in response['status']['message']
    # A refusal is the webhook at work on someone's manifest: INFO, naming the object.
    refusals = [r for r in caplog.records if r.getMessage().startswith('admission refused for')]
    assert [(r.levelname, r.getMessage().split(':')[0]) for r in refusals] == [
        ('INFO', 'admission refused for payments/settlement-exporter')
    ]


def test_audit_warnings_come_back_as_admission_warnings(
    served: tuple[AdmissionWebhook, str], cluster: Cluster, manifest: Build
) -> None:
    server, base = served
    cluster.set_policy({'mode': 'Audit'})
    wait_for(lambda: server.policy.policy.mode is Mode.AUDIT, 'the Audit policy was not followed')
    response = ask(base, review_of(wide_open(manifest)))
    assert response['allowed'] is True
    assert 'status' not in response
    assert [w.split(': ')[1] for w in response['warnings']] == [
        'WildcardNotAllowed',
        'ForbiddenVerb',
    ]


def test_the_namespace_labels_are_read_for_the_environment_rule(
    served: tuple[AdmissionWebhook, str], cluster: Cluster, manifest: Build
) -> None:
    _, base = served
    cluster.labels['payments'] = {'tenure.dev/environment': 'production'}
    assert ask(base, review_of(manifest({'spec.environment': 'production'})))['allowed'] is True
    refused = ask(base, review_of(manifest({'spec.environment': 'staging'})))
    assert refused['status']['message'].startswith('EnvironmentMismatch: spec.environment: ')


def test_an_admission_v1beta1_review_is_answered_in_v1beta1(
    served: tuple[AdmissionWebhook, str], manifest: Build
) -> None:
    _, base = served
    review = {**review_of(manifest()), 'apiVersion': 'admission.k8s.io/v1beta1'}
    assert ask(base, review)['allowed'] is True


@pytest.mark.parametrize(
    ('path', 'method', 'body', 'status', 'expected'),
    [
        pytest.param(WEBHOOK_PATH, 'POST', b'{"apiVersion": ', 400, 'not JSON', id='not-json'),
        pytest.param(
            WEBHOOK_PATH,
            'POST',
            b'{"apiVersion": "v1", "kind": "Pod"}',
            400,
            "expected an admission.k8s.io/v1 AdmissionReview, got kind 'Pod'",
            id='not-a-review',
        ),
        pytest.param('/', 'POST', b'{}', 404, f'Tenure serves {WEBHOOK_PATH}', id='wrong-path'),
        pytest.param(
            '/validate-pods', 'POST', b'{}', 404, 'no webhook at /validate-pods', id='other-path'
        ),
        pytest.param(WEBHOOK_PATH, 'GET', None, 405, '', id='not-a-post'),
    ],
)
def test_what_is_not_a_review_fails_closed_with_a_reason(
    served: tuple[AdmissionWebhook, str],
    manifest: Build,
    path: str,
    method: str,
    body: bytes | None,
    status: int,
    expected: str,
) -> None:
    _, base = served
    answered, text = post(base + path, body or b'', method=method)
    assert answered == status
    assert expected in text
    assert ask(base, review_of(manifest()))['allowed'] is True  # still serving


# -- readiness and the policy ---------------------------------------------------------------------


def test_a_replica_is_ready_once_it_listens_with_the_policy_read(
    cluster: Cluster, fast: None, manifest: Build
) -> None:
    cluster.unreachable = True
    port = free_port()
    server = make_webhook(cluster, WebhookConfig(port=port, insecure=True))
    health = Health()
    health.require(server.ready)
    assert health.readiness() == (False, 'not ready: the admission webhook is not listening yet')
    server.start()
    try:
        assert health.readiness() == (
            False,
            'not ready: the IdentityPolicy default has not been read yet',
        )
        # Never an answer under the built-in defaults while the policy is unknown.
        status, text = post(
            f'http://127.0.0.1:{port}{WEBHOOK_PATH}', json.dumps(review_of(manifest())).encode()
        )
        assert (status, text) == (503, 'the IdentityPolicy default has not been read yet\n')
        cluster.unreachable = False
        wait_for(lambda: health.readiness()[0], 'not ready once the policy could be read')
        assert health.readiness() == (True, 'ready: standing by')
        health.leading.set()
        assert health.readiness() == (True, 'ready: leading')
    finally:
        server.close()
    assert health.readiness()[0] is False


def test_a_policy_change_reaches_the_answers_and_a_deletion_restores_the_defaults(
    served: tuple[AdmissionWebhook, str], cluster: Cluster, manifest: Build
) -> None:
    _, base = served
    doc = wide_open(manifest)
    assert ask(base, review_of(doc))['allowed'] is False
    cluster.set_policy({'mode': 'Audit'})
    wait_for(lambda: ask(base, review_of(doc))['allowed'] is True, 'Audit not applied')
    cluster.set_policy(None)
    wait_for(lambda: ask(base, review_of(doc))['allowed'] is False, 'defaults not restored')


def test_an_invalid_policy_keeps_the_one_in_force_and_is_reported_once(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    follower = PolicyFollower(cluster.read_policy)
    cluster.set_policy({'mode': 'Audit'})
    follower.refresh()
    cluster.set_policy({'mode': 'Sometimes'})
    with caplog.at_level(logging.ERROR, logger='tenure.webhook'):
        for _ in range(3):
            follower.refresh()
    assert follower.policy.mode is Mode.AUDIT
    assert len(caplog.records) == 1
    assert (
        caplog.records[0]
        .getMessage()
        .startswith('IdentityPolicy default is invalid, admission keeps the one in force: ')
    )


def test_an_unchanged_policy_is_not_parsed_again(cluster: Cluster) -> None:
    follower = PolicyFollower(cluster.read_policy)
    cluster.set_policy({'mode': 'Audit'})
    follower.refresh()
    policy = follower.policy
    follower.refresh()
    assert follower.policy is policy
    assert cluster.reads == 2


def test_a_read_error_keeps_the_policy_and_is_raised(cluster: Cluster) -> None:
    follower = PolicyFollower(cluster.read_policy)
    cluster.set_policy({'mode': 'Audit'})
    follower.refresh()
    cluster.unreachable = True
    with pytest.raises(TenureError, match='connection refused'):
        follower.refresh()
    assert follower.policy.mode is Mode.AUDIT


# -- TLS ------------------------------------------------------------------------------------------


def served_certificate(port: int) -> str:
    return ssl.get_server_certificate(('127.0.0.1', port), timeout=5)


@pytest.fixture
def tls(
    cluster: Cluster, fast: None, tmp_path: Path
) -> Iterator[tuple[AdmissionWebhook, int, Path]]:
    cert, key = self_signed(tmp_path)
    port = free_port()
    server = make_webhook(cluster, WebhookConfig(port=port, cert_file=cert, key_file=key))
    server.start()
    try:
        yield server, port, tmp_path
    finally:
        server.close()


def test_the_webhook_serves_https_with_the_mounted_certificate(
    tls: tuple[AdmissionWebhook, int, Path], manifest: Build
) -> None:
    _, port, folder = tls
    trusting = ssl.create_default_context(cafile=str(folder / 'tls.crt'))
    assert ask(f'https://127.0.0.1:{port}', review_of(manifest()), trusting)['allowed'] is True
    with pytest.raises(urllib.error.URLError) as raised:
        post(f'https://127.0.0.1:{port}{WEBHOOK_PATH}', b'{}', ssl.create_default_context())
    assert isinstance(raised.value.reason, ssl.SSLCertVerificationError)


def test_a_renewed_certificate_is_served_without_a_restart(
    tls: tuple[AdmissionWebhook, int, Path], manifest: Build
) -> None:
    """cert-manager rewrites tls.crt and tls.key in the mounted Secret; new connections get the
    new certificate, and a client trusting only the new one is answered."""
    _, port, folder = tls
    before = served_certificate(port)
    renewal = folder / 'renewal'
    renewal.mkdir()
    cert, key = self_signed(renewal)
    (folder / 'tls.key').write_bytes(key.read_bytes())
    (folder / 'tls.crt').write_bytes(cert.read_bytes())
    renewed = ssl.PEM_cert_to_DER_cert(cert.read_text())
    wait_for(
        lambda: ssl.PEM_cert_to_DER_cert(served_certificate(port)) == renewed,
        'the renewed certificate was not served',
    )
    assert served_certificate(port) != before
    trusting = ssl.create_default_context(cafile=str(cert))
    assert ask(f'https://127.0.0.1:{port}', review_of(manifest()), trusting)['allowed'] is True


def test_a_half_written_renewal_keeps_the_previous_certificate(
    tls: tuple[AdmissionWebhook, int, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A certificate that does not match the key (yet) is not adopted: handshakes keep working."""
    server, port, folder = tls
    before = served_certificate(port)
    renewal = folder / 'renewal'
    renewal.mkdir()
    cert, _ = self_signed(renewal)
    (folder / 'tls.crt').write_bytes(cert.read_bytes())
    assert server.certificate is not None
    with caplog.at_level(logging.WARNING, logger='tenure.webhook'):
        assert server.certificate.reload_if_changed() is False
    assert 'webhook certificate not reloaded, the previous one serves' in caplog.text
    assert served_certificate(port) == before


def test_closing_frees_the_port(cluster: Cluster, fast: None) -> None:
    port = free_port()
    for _ in range(2):
        server = make_webhook(cluster, WebhookConfig(port=port, insecure=True))
        server.start()
        server.close()
        assert not server.listening.is_set()
    assert not [t for t in threading.enumerate() if t.name == 'admission-webhook']


def test_a_port_in_use_fails_the_start_with_the_reason(cluster: Cluster, fast: None) -> None:
    port = free_port()
    first = make_webhook(cluster, WebhookConfig(port=port, insecure=True))
    first.start()
    try:
        second = make_webhook(cluster, WebhookConfig(port=port, insecure=True))
        with pytest.raises(TenureError, match='the admission webhook could not start: '):
            second.start()
    finally:
        first.close()


def test_the_kopf_engine_serves_no_admission_webhook() -> None:
    """One implementation: the webhook is tenure.webhook on every replica, not a kopf handler
    (kopf would open its own admission server, on the leader only)."""
    calls = Calls()
    kube = FakeKube(calls)
    runtime = Runtime(
        kube, Reconciler(kube, FakeVault(calls), clock=lambda: NOW), clock=lambda: NOW
    )
    assert build_registry(runtime)._webhooks.get_all_handlers() == []

"""The real operator's admission webhook, asked as the API server asks it.

`tenure run --webhook-port` is started as a child process against the emulator and OpenBao, and
these tests POST `admission.k8s.io/v1` AdmissionReview requests to it, reading the response the API
server would read: `response.uid` echoed, `response.allowed`, `response.status.message` and `code`,
`response.warnings` (Kubernetes, "Dynamic Admission Control", Request and Response:
https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#request).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from tenure.admission import WEBHOOK_PATH
from tenure.api.v1alpha1 import GROUP, POLICY_PLURAL, VERSION
from tenure_devtools.certificates import self_signed
from tenure_devtools.openbao import OpenBaoDevServer
from tenure_devtools.operator_process import OperatorProcess
from tenure_devtools.ports import free_port
from tests.integration.stack import identity, stamp

pytestmark = pytest.mark.integration

NS = 'admission-webhook'
"""The only namespace the operators under test watch: nothing in it, so they only answer reviews."""
PROD_NS = 'admission-webhook-prod'
"""A namespace labelled tenure.dev/environment=production."""
Obj = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: Obj | None
    text: str

    @property
    def response(self) -> Obj:
        assert self.body is not None, f'HTTP {self.status}: {self.text}'
        response: Obj = self.body['response']
        return response


def post(url: str, payload: bytes, context: ssl.SSLContext | None = None) -> Reply:
    request = urllib.request.Request(
        url, data=payload, headers={'Content-Type': 'application/json'}, method='POST'
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as answer:
            text = answer.read().decode()
            return Reply(answer.status, json.loads(text), text)
    except urllib.error.HTTPError as e:
        return Reply(e.code, None, e.read().decode())


def admission_review(obj: Obj | None, operation: str = 'CREATE', old: Obj | None = None) -> Obj:
    meta = (obj or old or {}).get('metadata', {})
    return {
        'apiVersion': 'admission.k8s.io/v1',
        'kind': 'AdmissionReview',
        'request': {
            'uid': str(uuid.uuid4()),
            'kind': {'group': GROUP, 'version': VERSION, 'kind': 'ServiceIdentity'},
            'resource': {'group': GROUP, 'version': VERSION, 'resource': 'serviceidentities'},
            'requestKind': {'group': GROUP, 'version': VERSION, 'kind': 'ServiceIdentity'},
            'requestResource': {
                'group': GROUP,
                'version': VERSION,
                'resource': 'serviceidentities',
            },
            'name': meta.get('name', ''),
            'namespace': meta.get('namespace'),
            'operation': operation,
            'userInfo': {'username': 'alice@example.com', 'groups': ['system:authenticated']},
            'object': obj,
            'oldObject': old,
            'dryRun': False,
        },
    }


def ask(url: str, review: Obj, context: ssl.SSLContext | None = None) -> Obj:
    """POST a review; the response, after checking that it answers this very request."""
    reply = post(url, json.dumps(review).encode(), context)
    assert reply.status == 200, reply.text
    assert reply.body is not None
    assert reply.body['apiVersion'] == 'admission.k8s.io/v1'
    assert reply.body['kind'] == 'AdmissionReview'
    assert reply.response['uid'] == review['request']['uid']
    return reply.response


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f'{what} within {timeout}s')
        time.sleep(0.05)


def wait_serving(url: str, context: ssl.SSLContext | None = None) -> None:
    """The webhook listens before /healthz answers; waiting is for a slow start only."""
    review = admission_review(identity('probe', NS))

    def serving() -> bool:
        try:
            return post(url, json.dumps(review).encode(), context).status == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    wait_until(serving, f'the webhook did not answer at {url}')


def violating(namespace: str = NS) -> Obj:
    doc = identity('wide-open', namespace)
    doc['spec']['kubernetes'] = {
        'rules': [{'apiGroups': [''], 'resources': ['pods'], 'verbs': ['*', 'impersonate']}],
        'clusterRoles': ['cluster-admin'],
    }
    doc['spec']['vault']['policy'] = [{'path': 'sys/policies/acl/x', 'capabilities': ['sudo']}]
    return doc


@pytest.fixture(scope='module')
def kube(kubeconfig: Path) -> Iterator[kubernetes.client.ApiClient]:
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=config)
    with kubernetes.client.ApiClient(config) as client:
        yield client


@pytest.fixture(scope='module')
def namespaces(kube: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(kube)
    for name, labels in ((NS, {}), (PROD_NS, {'tenure.dev/environment': 'production'})):
        try:
            core.create_namespace({'metadata': {'name': name, 'labels': labels}})
        except ApiException as e:
            if e.status != 409:
                raise


def operator_with(
    kubeconfig: Path, bao: OpenBaoDevServer, log_dir: Path, *args: str
) -> OperatorProcess:
    return OperatorProcess(
        kubeconfig=kubeconfig,
        vault_addr=bao.addr,
        vault_token=bao.root_token,
        args=['-n', NS, *args],
        log_dir=log_dir,
    )


@pytest.fixture(scope='module')
def served(
    kubeconfig: Path,
    vault_for_identities: OpenBaoDevServer,
    tmp_path_factory: pytest.TempPathFactory,
    namespaces: None,
) -> Iterator[tuple[str, OperatorProcess]]:
    """The real operator and its webhook's URL, over plain HTTP (--webhook-insecure)."""
    port = free_port()
    log_dir = tmp_path_factory.mktemp('webhook-operator')
    with operator_with(
        kubeconfig, vault_for_identities, log_dir, '--webhook-port', str(port), '--webhook-insecure'
    ) as process:
        process.start()
        url = f'http://127.0.0.1:{port}{WEBHOOK_PATH}'
        wait_serving(url)
        yield url, process
        assert process.running, process.log_tail()


@pytest.fixture
def webhook(served: tuple[str, OperatorProcess]) -> str:
    return served[0]


def test_a_valid_identity_is_admitted(webhook: str) -> None:
    response = ask(webhook, admission_review(identity('exporter', NS)))
    assert response['allowed'] is True
    assert 'warnings' not in response
    assert 'status' not in response


def test_every_violation_is_listed_with_its_rule_id(
    served: tuple[str, OperatorProcess],
) -> None:
    webhook, process = served
    response = ask(webhook, admission_review(violating()))
    assert response['allowed'] is False
    assert response['status']['code'] == 403
    message = response['status']['message']
    for expected in (
        'WildcardNotAllowed: spec.kubernetes.rules[0].verbs: ',
        'ForbiddenVerb: spec.kubernetes.rules[0].verbs: verbs impersonate are not allowed',
        "ClusterRoleNotAllowed: spec.kubernetes.clusterRoles[0]: ClusterRole 'cluster-admin'",
        "VaultPathNotAllowed: spec.vault.policy[0].path: 'sys/policies/acl/x'",
        'VaultCapabilityNotAllowed: spec.vault.policy[0].capabilities: capabilities sudo',
    ):
        assert expected in message
    assert 'Integration test of the Tenure lifecycle' not in message
    # A refusal is the webhook at work, not an operator error to alert on.
    wait_until(
        lambda: (
            f'INFO tenure.webhook: admission refused for {NS}/wide-open: ' in process.log_text()
        ),
        'the refusal was not logged',
    )
    assert ' ERROR ' not in process.log_text()


@pytest.mark.parametrize(
    ('environment', 'allowed'),
    [
        pytest.param('production', True, id='same-environment'),
        pytest.param('staging', False, id='another-environment'),
    ],
)
def test_the_namespace_environment_label_is_read_from_the_cluster(
    webhook: str, environment: str, allowed: bool
) -> None:
    doc = identity('exporter', PROD_NS)
    doc['spec']['environment'] = environment
    response = ask(webhook, admission_review(doc))
    assert response['allowed'] is allowed
    if not allowed:
        assert response['status']['message'].startswith(
            "EnvironmentMismatch: spec.environment: environment 'staging' does not match "
            f"namespace '{PROD_NS}' (tenure.dev/environment=production)"
        )


def test_an_active_identity_past_its_expiry_may_still_be_edited(webhook: str) -> None:
    now = dt.datetime.now(dt.UTC)
    old = identity('expired', NS)
    old['spec']['ticket']['approvedAt'] = stamp(now - dt.timedelta(hours=2))
    old['spec']['expiresAt'] = stamp(now - dt.timedelta(hours=1))
    new = json.loads(json.dumps(old))
    new['spec']['owner']['contact'] = 'payments-oncall@example.com'
    old['status'] = {'phase': 'Active', 'appliedScope': {'rules': []}}
    new['status'] = old['status']
    assert ask(webhook, admission_review(new, 'UPDATE', old))['allowed'] is True
    refused = ask(webhook, admission_review(new))
    assert refused['allowed'] is False
    assert refused['status']['message'].startswith('AlreadyExpired: ')


def test_deletion_is_not_validated(webhook: str) -> None:
    response = ask(webhook, admission_review(None, 'DELETE', violating()))
    assert response['allowed'] is True


def test_audit_mode_admits_and_warns_once_the_operator_has_the_policy(
    webhook: str, kube: kubernetes.client.ApiClient
) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube)
    review = admission_review(violating())
    policy = {
        'apiVersion': f'{GROUP}/{VERSION}',
        'kind': 'IdentityPolicy',
        'metadata': {'name': 'default'},
        'spec': {'mode': 'Audit'},
    }
    custom.create_cluster_custom_object(GROUP, VERSION, POLICY_PLURAL, policy)
    try:
        wait_until(
            lambda: ask(webhook, review)['allowed'] is True,
            'the webhook did not follow the Audit policy',
        )
        warnings = ask(webhook, review)['warnings']
        assert [w.split(': ')[1] for w in warnings] == [
            'WildcardNotAllowed',
            'ForbiddenVerb',
            'ClusterRoleNotAllowed',
            'VaultPathNotAllowed',
            'VaultCapabilityNotAllowed',
        ]
        assert all(w.startswith('Audit (not enforced): ') for w in warnings)
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, POLICY_PLURAL, 'default')
    wait_until(
        lambda: ask(webhook, review)['allowed'] is False,
        'the webhook did not go back to the built-in Enforce policy',
    )


@pytest.mark.parametrize(
    ('path', 'payload', 'status', 'expected'),
    [
        pytest.param(WEBHOOK_PATH, b'{"apiVersion": ', 400, '', id='not-json'),
        pytest.param(
            WEBHOOK_PATH,
            json.dumps({'apiVersion': 'v1', 'kind': 'Pod'}).encode(),
            400,
            "expected an admission.k8s.io/v1 AdmissionReview, got kind 'Pod'",
            id='not-a-review',
        ),
        pytest.param(
            WEBHOOK_PATH,
            json.dumps(
                {
                    **admission_review(identity('x', NS)),
                    'request': {'uid': 'u-1', 'operation': 'CREATE'},
                }
            ).encode(),
            400,
            'request.resource must name group, version and resource',
            id='review-without-resource',
        ),
        pytest.param(
            '/',
            json.dumps(admission_review(identity('x', NS))).encode(),
            404,
            f'Tenure serves {WEBHOOK_PATH}',
            id='wrong-path-fails-closed',
        ),
    ],
)
def test_a_malformed_request_is_answered_with_a_clear_error(
    webhook: str, path: str, payload: bytes, status: int, expected: str
) -> None:
    base = webhook.removesuffix(WEBHOOK_PATH)
    reply = post(base + path, payload)
    assert reply.status == status
    assert expected in reply.text
    # Still serving: a bad request is answered, not fatal.
    assert ask(webhook, admission_review(identity('exporter', NS)))['allowed'] is True


# -- TLS -----------------------------------------------------------------------------------


def test_the_webhook_serves_https_with_the_mounted_certificate(
    kubeconfig: Path,
    vault_for_identities: OpenBaoDevServer,
    tmp_path: Path,
    namespaces: None,
) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    args = ('--webhook-port', str(port), '--webhook-cert', str(cert), '--webhook-key', str(key))
    with operator_with(kubeconfig, vault_for_identities, tmp_path, *args) as process:
        process.start()
        url = f'https://127.0.0.1:{port}{WEBHOOK_PATH}'
        trusting = ssl.create_default_context(cafile=str(cert))
        wait_serving(url, trusting)
        assert ask(url, admission_review(identity('exporter', NS)), trusting)['allowed'] is True
        denied = ask(url, admission_review(violating()), trusting)
        assert denied['allowed'] is False
        with pytest.raises(urllib.error.URLError) as raised:
            post(url, b'{}', ssl.create_default_context())
        assert isinstance(raised.value.reason, ssl.SSLCertVerificationError)


# -- every replica serves it ---------------------------------------------------------------


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def readiness(process: OperatorProcess) -> tuple[int, str]:
    return get(f'http://127.0.0.1:{process.health_port}/readyz')


def leading(process: OperatorProcess) -> bool:
    return re.search(r'^tenure_leader 1\.0$', process.metrics(), re.M) is not None


def test_leader_and_standby_are_both_ready_and_answer_under_the_same_policy(
    kubeconfig: Path,
    vault_for_identities: OpenBaoDevServer,
    kube: kubernetes.client.ApiClient,
    tmp_path: Path,
    namespaces: None,
) -> None:
    """Two replicas with --leader-election: the standby does not act, yet it is Ready, serves
    /metrics (tenure_leader 0) and answers reviews, and a policy change reaches its answers as it
    reaches the leader's (issue #8: a normal rolling update needs a Ready standby)."""
    replicas: list[tuple[OperatorProcess, str]] = []
    try:
        for i in range(2):
            port = free_port()
            log_dir = tmp_path / f'replica-{i}'
            log_dir.mkdir()
            process = operator_with(
                kubeconfig,
                vault_for_identities,
                log_dir,
                *('--leader-election', '--leader-election-namespace', NS),
                *('--webhook-port', str(port), '--webhook-insecure'),
            )
            replicas.append((process, f'http://127.0.0.1:{port}{WEBHOOK_PATH}'))
            process.start()
        wait_until(
            lambda: sum(leading(process) for process, _ in replicas) == 1,
            'no single leader',
        )
        for process, url in replicas:
            role = 'leading' if leading(process) else 'standing by'
            wait_until(lambda p=process: readiness(p)[0] == 200, f'{process} is not Ready')
            assert readiness(process) == (200, f'ready: {role}')
            assert ask(url, admission_review(identity('exporter', NS)))['allowed'] is True
            refused = ask(url, admission_review(violating()))
            assert refused['allowed'] is False
            assert refused['status']['message'].startswith('WildcardNotAllowed: ')

        custom = kubernetes.client.CustomObjectsApi(kube)
        policy = {
            'apiVersion': f'{GROUP}/{VERSION}',
            'kind': 'IdentityPolicy',
            'metadata': {'name': 'default'},
            'spec': {'mode': 'Audit'},
        }
        custom.create_cluster_custom_object(GROUP, VERSION, POLICY_PLURAL, policy)
        try:
            for process, url in replicas:
                wait_until(
                    lambda u=url: ask(u, admission_review(violating()))['allowed'] is True,
                    f'{process} did not apply the Audit policy',
                    timeout=10,
                )
        finally:
            custom.delete_cluster_custom_object(GROUP, VERSION, POLICY_PLURAL, 'default')
        for process, url in replicas:
            wait_until(
                lambda u=url: ask(u, admission_review(violating()))['allowed'] is False,
                f'{process} did not go back to the built-in Enforce policy',
                timeout=10,
            )
            assert process.running, process.log_tail()
    finally:
        for process, _ in replicas:
            process.close()

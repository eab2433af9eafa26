"""What the admission webhook answers to `kubectl apply` of a ServiceIdentity (issue #4).

The decision is `tenure.admission.review`, pure: these tests give it requests, a policy, the time
and the namespace's labels, and read allowed / message / warnings as `kubectl` would show them.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tenure.admission import (
    MAX_WARNING,
    MAX_WARNINGS_TOTAL,
    WEBHOOK_PATH,
    AdmissionRequest,
    Answer,
    request_problem,
    review,
)
from tenure.api.v1alpha1 import (
    ApprovalRecord,
    Phase,
    ServiceIdentity,
    ServiceIdentityStatus,
)
from tenure.cli import _build_parser
from tenure.config import ConfigError, WebhookConfig, parse_run_config
from tenure.domain.guardrails import ENVIRONMENT_LABEL, Mode, Policy
from tenure.domain.scope import scope_of
from tenure.errors import TransientError

Build = Callable[..., dict[str, Any]]
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
PAST = '2026-11-30T00:00:00Z'
"""Before NOW, after the manifest's approval."""


def labels_of(found: Mapping[str, str] | None) -> Callable[[str], Mapping[str, str] | None]:
    return lambda _namespace: found


NO_LABELS = labels_of(None)


def answer(
    operation: str,
    new: dict[str, Any] | None,
    old: dict[str, Any] | None = None,
    *,
    policy: Policy | None = None,
    labels: Callable[[str], Mapping[str, str] | None] = NO_LABELS,
) -> Answer:
    return review(
        AdmissionRequest(operation, new, old),
        policy=policy or Policy(),
        now=NOW,
        kv_mount='secret',
        namespace_labels=labels,
    )


def active_status(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The status the operator writes once `doc` is provisioned."""
    spec = ServiceIdentity.model_validate(doc).spec
    status = ServiceIdentityStatus(
        phase=Phase.ACTIVE,
        approval=ApprovalRecord(
            ticket_id=spec.ticket.id,
            approver=spec.ticket.approver,
            approved_at=spec.ticket.approved_at,
        ),
        applied_scope=scope_of(spec),
        owner=spec.owner,
        expires_at=spec.expires_at,
    )
    dumped: dict[str, Any] = status.model_dump(mode='json', by_alias=True, exclude_none=True)
    return {**dumped, **changes}


def with_status(doc: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(doc), 'status': status}


def never_called(namespace: str) -> Mapping[str, str] | None:
    raise AssertionError(f'the labels of {namespace} were read')


# -- CREATE --------------------------------------------------------------------------------


def test_a_valid_identity_is_admitted_without_warnings(manifest: Build) -> None:
    assert answer('CREATE', manifest()) == Answer(True)


def test_every_violation_is_listed_with_its_rule_id_and_field(manifest: Build) -> None:
    doc = manifest(
        {
            'spec.kubernetes': {
                'rules': [{'apiGroups': [''], 'resources': ['secrets'], 'verbs': ['*', 'escalate']}]
            },
            'spec.vault': {'policy': [{'path': 'sys/mounts', 'capabilities': ['sudo']}]},
        }
    )
    result = answer('CREATE', doc)
    assert not result.allowed
    assert result.code == 403
    assert re.findall(r'(?:^|; )([A-Za-z]+): spec\.', result.message) == [
        'WildcardNotAllowed',
        'ForbiddenVerb',
        'SecretsNeedResourceNames',
        'VaultPathNotAllowed',
        'VaultCapabilityNotAllowed',
    ]
    assert result.message.startswith('WildcardNotAllowed: spec.kubernetes.rules[0].verbs: ')
    assert "; VaultPathNotAllowed: spec.vault.policy[0].path: 'sys/mounts'" in result.message


def test_the_denial_quotes_fields_not_the_object(manifest: Build) -> None:
    doc = manifest({'spec.kubernetes.rules': [{'resources': ['pods'], 'verbs': ['*']}]})
    message = answer('CREATE', doc).message
    for text in ('Nightly export', 'payments-oncall@example.com', 'settlement-exporter'):
        assert text not in message


def test_audit_mode_admits_and_returns_every_violation_as_a_warning(manifest: Build) -> None:
    doc = manifest(
        {
            'spec.kubernetes.rules': [{'resources': ['pods'], 'verbs': ['*', 'impersonate']}],
            'spec.expiresAt': '2027-12-01T00:00:00Z',
        }
    )
    result = answer('CREATE', doc, policy=Policy(mode=Mode.AUDIT))
    assert result.allowed
    assert [w.split(': ')[:2] for w in result.warnings] == [
        ['Audit (not enforced)', 'LifetimeTooLong'],
        ['Audit (not enforced)', 'WildcardNotAllowed'],
        ['Audit (not enforced)', 'ForbiddenVerb'],
    ]


def test_a_requested_ticket_is_admitted_and_told_it_waits(manifest: Build) -> None:
    doc = manifest({'spec.ticket.state': 'Requested'})
    del doc['spec']['ticket']['approvedAt']
    result = answer('CREATE', doc)
    assert result.allowed
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith('NotApproved: ticket CHG0031337 is not approved yet')
    assert 'Pending' in result.warnings[0]


def test_a_requested_ticket_with_a_violation_is_still_refused(manifest: Build) -> None:
    doc = manifest(
        {
            'spec.ticket.state': 'Requested',
            'spec.kubernetes.rules': [{'resources': ['pods'], 'verbs': ['*']}],
        }
    )
    result = answer('CREATE', doc)
    assert not result.allowed
    assert result.message.startswith('WildcardNotAllowed: ')


@pytest.mark.parametrize(
    ('policy', 'rule'),
    [
        pytest.param(
            Policy(allowed_ticket_systems=frozenset({'jira'})),
            'TicketSystemNotAllowed',
            id='ticket-system-outside-the-list',
        ),
        pytest.param(
            Policy(max_lifetime=dt.timedelta(days=30)),
            'LifetimeTooLong',
            id='lifetime-above-the-policy-maximum',
        ),
        pytest.param(
            Policy(extra_forbidden_verbs=frozenset({'watch'})),
            'ForbiddenVerb',
            id='verb-the-policy-adds',
        ),
        pytest.param(
            Policy(min_justification_length=100),
            'JustificationTooShort',
            id='justification-shorter-than-the-policy-asks',
        ),
        pytest.param(
            Policy(allowed_vault_path_prefixes=('{kvMount}/data/shared/',)),
            'VaultPathNotAllowed',
            id='vault-path-outside-the-policy-prefixes',
        ),
    ],
)
def test_rules_follow_the_policy_in_force(manifest: Build, policy: Policy, rule: str) -> None:
    assert answer('CREATE', manifest()).allowed
    result = answer('CREATE', manifest(), policy=policy)
    assert not result.allowed
    assert result.message.startswith(f'{rule}: ')


def test_a_cluster_role_needs_the_policy_catalog(manifest: Build) -> None:
    doc = manifest({'spec.kubernetes.clusterRoles': ['view']})
    refused = answer('CREATE', doc)
    assert not refused.allowed
    assert refused.message.startswith('ClusterRoleNotAllowed: spec.kubernetes.clusterRoles[0]: ')
    assert answer('CREATE', doc, policy=Policy(allowed_cluster_roles=frozenset({'view'}))).allowed


@pytest.mark.parametrize(
    ('labels', 'allowed'),
    [
        pytest.param({ENVIRONMENT_LABEL: 'staging'}, False, id='namespace-of-another-environment'),
        pytest.param({ENVIRONMENT_LABEL: 'production'}, True, id='namespace-of-the-same'),
        pytest.param({'team': 'payments'}, True, id='namespace-without-the-label'),
        pytest.param(None, True, id='namespace-unknown'),
    ],
)
def test_the_environment_must_match_the_namespace_label(
    manifest: Build, labels: dict[str, str] | None, allowed: bool
) -> None:
    doc = manifest({'spec.environment': 'production'})
    asked: list[str] = []

    def lookup(namespace: str) -> Mapping[str, str] | None:
        asked.append(namespace)
        return labels

    result = answer('CREATE', doc, labels=lookup)
    assert asked == ['payments']
    assert result.allowed is allowed
    if not allowed:
        assert result.message == (
            "EnvironmentMismatch: spec.environment: environment 'production' does not match "
            "namespace 'payments' (tenure.dev/environment=staging)"
        )


def test_the_namespace_is_not_read_when_the_spec_names_no_environment(manifest: Build) -> None:
    assert answer('CREATE', manifest(), labels=never_called).allowed


def test_unreadable_namespace_labels_admit_with_a_warning(manifest: Build) -> None:
    def broken(namespace: str) -> Mapping[str, str] | None:
        raise TransientError(f'read Namespace {namespace}: 503 Service Unavailable')

    result = answer('CREATE', manifest({'spec.environment': 'production'}), labels=broken)
    assert result.allowed
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith('EnvironmentMismatch not checked: ')
    assert 'the operator checks it before provisioning' in result.warnings[0]


def test_an_expired_new_identity_is_refused_whatever_status_it_claims(manifest: Build) -> None:
    doc = manifest({'spec.expiresAt': PAST})
    claimed = with_status(doc, active_status(doc))
    result = answer('CREATE', claimed)
    assert not result.allowed
    assert result.message.startswith('AlreadyExpired: spec.expiresAt: ')


def test_an_object_off_the_schema_is_refused_as_invalid(manifest: Build) -> None:
    doc = manifest({'spec.ticket.id': 'not a ticket id', 'spec.expiresAt': 'tomorrow'})
    result = answer('CREATE', doc)
    assert not result.allowed
    assert result.code == 422
    assert result.message.startswith('InvalidSpec: spec.ticket.id: ')
    assert '; InvalidSpec: spec.expiresAt: ' in result.message


def test_the_request_namespace_stands_in_for_a_missing_one(manifest: Build) -> None:
    doc = manifest({'spec.environment': 'production'})
    del doc['metadata']['namespace']
    asked: list[str] = []

    def lookup(namespace: str) -> Mapping[str, str] | None:
        asked.append(namespace)
        return {}

    result = review(
        AdmissionRequest('CREATE', doc, namespace='payments'),
        policy=Policy(),
        now=NOW,
        kv_mount='secret',
        namespace_labels=lookup,
    )
    assert result.allowed
    assert asked == ['payments']


@pytest.mark.parametrize('operation', ['DELETE', 'CONNECT'])
def test_deletion_is_not_validated(manifest: Build, operation: str) -> None:
    doc = manifest({'spec.kubernetes.rules': [{'resources': ['pods'], 'verbs': ['*']}]})
    assert answer(operation, None, doc, labels=never_called) == Answer(True)


# -- UPDATE --------------------------------------------------------------------------------


def test_an_active_identity_past_its_expiry_may_still_be_edited(manifest: Build) -> None:
    """provisioned comes from the old status: its expiry is a revocation, not AlreadyExpired."""
    old_doc = manifest({'spec.expiresAt': PAST})
    old = with_status(old_doc, active_status(old_doc))
    new = with_status(manifest({'spec.expiresAt': '2026-11-29T00:00:00Z'}), old['status'])
    result = answer('UPDATE', new, old)
    assert result.allowed
    assert not any('AlreadyExpired' in w for w in result.warnings)
    never_provisioned = with_status(old_doc, {'phase': 'Denied'})
    refused = answer('UPDATE', new, never_provisioned)
    assert not refused.allowed
    assert refused.message.startswith('AlreadyExpired: ')


def test_metadata_only_updates_pass_even_when_the_policy_now_faults_the_spec(
    manifest: Build,
) -> None:
    """Finalizers, kopf's annotations, the emergency brake: the operator's own writes must pass."""
    doc = manifest({'spec.environment': 'production'})
    old = with_status(doc, active_status(doc))
    new = copy.deepcopy(old)
    new['metadata']['finalizers'] = ['tenure.dev/revocation']
    new['metadata']['annotations'] = {'tenure.dev/revoke': 'INC-1234'}
    strict = Policy(allowed_ticket_systems=frozenset({'jira'}))
    assert answer('UPDATE', new, old, policy=strict, labels=never_called) == Answer(True)


@pytest.mark.parametrize(
    ('status', 'deleting', 'expected'),
    [
        pytest.param(
            {'phase': 'Revoked', 'revocation': {'reason': 'Expired', 'requestedAt': PAST}},
            False,
            'is Revoked: the operator ignores changes to it',
            id='revoked-tombstone',
        ),
        pytest.param(
            {'phase': 'Active', 'revocation': {'reason': 'TicketCancelled', 'requestedAt': PAST}},
            False,
            'is being revoked',
            id='revocation-in-progress',
        ),
        pytest.param({'phase': 'Active'}, True, 'is being revoked', id='deletion-in-progress'),
    ],
)
def test_updates_to_an_identity_whose_access_ended_are_admitted_with_a_warning(
    manifest: Build, status: dict[str, Any], deleting: bool, expected: str
) -> None:
    old = with_status(manifest(), status)
    if deleting:
        old['metadata']['deletionTimestamp'] = PAST
    new = with_status(
        manifest({'spec.kubernetes.rules': [{'resources': ['pods'], 'verbs': ['*']}]}), status
    )
    result = answer('UPDATE', new, old)
    assert result.allowed
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith(f'payments/settlement-exporter {expected}')


def test_a_faulted_identity_can_still_have_its_ticket_cancelled(manifest: Build) -> None:
    """A tightened policy must not block the edit that ends access: violations the update does not
    touch are reported, not refused (as Kubernetes ratchets CRD validation)."""
    doc = manifest({'spec.environment': 'production'})
    old = with_status(doc, active_status(doc))
    new = with_status(
        manifest({'spec.environment': 'production', 'spec.ticket.state': 'Cancelled'}),
        old['status'],
    )
    strict = Policy(allowed_ticket_systems=frozenset({'jira'}), max_lifetime=dt.timedelta(days=30))
    result = answer('UPDATE', new, old, policy=strict, labels=labels_of({ENVIRONMENT_LABEL: 'qa'}))
    assert result.allowed
    kept = [w for w in result.warnings if w.startswith('not changed by this update')]
    assert [w.split(': ')[1] for w in kept] == [
        'TicketSystemNotAllowed',
        'LifetimeTooLong',
        'EnvironmentMismatch',
    ]
    assert result.warnings[-1].startswith('access ends (TicketCancelled): ')


def test_an_update_is_refused_for_the_violations_it_introduces_only(manifest: Build) -> None:
    doc = manifest()
    old = with_status(doc, active_status(doc))
    strict = Policy(allowed_ticket_systems=frozenset({'jira'}))
    new = with_status(
        manifest({'spec.kubernetes.rules': [{'resources': ['pods'], 'verbs': ['get', 'bind']}]}),
        old['status'],
    )
    result = answer('UPDATE', new, old, policy=strict)
    assert not result.allowed
    assert result.message.startswith('ForbiddenVerb: spec.kubernetes.rules[0].verbs: ')
    assert 'TicketSystemNotAllowed' not in result.message
    assert [w.split(': ')[1] for w in result.warnings] == ['TicketSystemNotAllowed']


def test_editing_a_violating_value_without_fixing_it_is_refused(manifest: Build) -> None:
    old_doc = manifest({'spec.kubernetes.rules': [{'resources': ['pods'], 'verbs': ['bind']}]})
    old = with_status(old_doc, {'phase': 'Denied'})
    new = manifest(
        {'spec.kubernetes.rules': [{'resources': ['pods'], 'verbs': ['bind', 'escalate']}]}
    )
    result = answer('UPDATE', new, old)
    assert not result.allowed
    assert result.message.startswith('ForbiddenVerb: ')


def test_a_new_approval_does_not_carry_an_old_lifetime_violation(manifest: Build) -> None:
    """LifetimeTooLong reads approvedAt as well as expiresAt: a new approval is judged afresh."""
    policy = Policy(max_lifetime=dt.timedelta(days=80))
    old = with_status(manifest({'spec.ticket.approvedAt': '2026-11-20T00:00:00Z'}), {})
    closed = manifest(
        {'spec.ticket.approvedAt': '2026-11-20T00:00:00Z', 'spec.ticket.state': 'Closed'}
    )
    assert answer('UPDATE', closed, old, policy=policy).allowed
    reapproved = manifest({'spec.ticket.approvedAt': '2026-11-10T00:00:00Z'})
    result = answer('UPDATE', reapproved, old, policy=policy)
    assert not result.allowed
    assert result.message.startswith('LifetimeTooLong: ')


@pytest.mark.parametrize(
    ('changes', 'reason'),
    [
        pytest.param(
            {'spec.expiresAt': '2027-02-20T00:00:00Z'},
            'ExtensionNotApproved',
            id='expiry-later-without-new-approval',
        ),
        pytest.param(
            {
                'spec.kubernetes.rules': [
                    {
                        'apiGroups': [''],
                        'resources': ['configmaps'],
                        'resourceNames': ['settlement-config'],
                        'verbs': ['get', 'watch', 'list'],
                    }
                ]
            },
            'ScopeChangeNotApproved',
            id='scope-wider-without-new-approval',
        ),
    ],
)
def test_an_edit_that_will_not_take_effect_is_admitted_with_a_warning(
    manifest: Build, changes: dict[str, Any], reason: str
) -> None:
    doc = manifest()
    old = with_status(doc, active_status(doc))
    new = with_status(manifest(changes), old['status'])
    result = answer('UPDATE', new, old)
    assert result.allowed
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith(f'{reason}: ')


# -- the size of the answer ----------------------------------------------------------------


def test_warnings_stay_within_the_api_server_limits(manifest: Build) -> None:
    """Over 256 characters a warning may be cut, past 4096 in all they are dropped (Kubernetes,
    "Dynamic Admission Control", Response: warnings)."""
    paths = [{'path': f'team/{"x" * 400}{i}', 'capabilities': ['read']} for i in range(32)]
    doc = manifest({'spec.vault.policy': paths})
    result = answer('CREATE', doc, policy=Policy(mode=Mode.AUDIT))
    assert result.allowed
    assert all(len(w) <= MAX_WARNING for w in result.warnings)
    assert sum(len(w) for w in result.warnings) <= MAX_WARNINGS_TOTAL
    assert result.warnings[-1].startswith('... and ')
    assert result.warnings[-1].endswith(' more warnings')


# -- malformed requests --------------------------------------------------------------------


def review_body(**request: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        'uid': '705ab4f5-6393-11e8-b7cc-42010a800002',
        'kind': {'group': 'tenure.dev', 'version': 'v1alpha1', 'kind': 'ServiceIdentity'},
        'resource': {'group': 'tenure.dev', 'version': 'v1alpha1', 'resource': 'serviceidentities'},
        'operation': 'CREATE',
        'userInfo': {'username': 'alice', 'groups': ['system:authenticated']},
        'object': {'apiVersion': 'tenure.dev/v1alpha1', 'kind': 'ServiceIdentity'},
    }
    base.update(request)
    return {'apiVersion': 'admission.k8s.io/v1', 'kind': 'AdmissionReview', 'request': base}


@pytest.mark.parametrize(
    ('body', 'problem'),
    [
        pytest.param([1, 2], 'the body must be a JSON object', id='not-an-object'),
        pytest.param(
            {**review_body(), 'kind': 'TokenReview'},
            "expected an admission.k8s.io/v1 AdmissionReview, got kind 'TokenReview'",
            id='another-kind',
        ),
        pytest.param({**review_body(), 'request': None}, 'request is missing', id='no-request'),
        pytest.param(review_body(uid=''), 'request.uid is missing', id='no-uid'),
        pytest.param(
            review_body(resource={'group': 'tenure.dev'}),
            'request.resource must name group, version and resource',
            id='no-resource',
        ),
        pytest.param(
            review_body(resource={'group': '', 'version': 'v1', 'resource': 'pods'}),
            "Tenure reviews serviceidentities.tenure.dev, not 'pods' of group ''",
            id='another-resource',
        ),
        pytest.param(
            review_body(operation='PATCH'),
            "request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, not 'PATCH'",
            id='unknown-operation',
        ),
        pytest.param(review_body(userInfo=None), 'request.userInfo is missing', id='no-user'),
        pytest.param(
            review_body(operation='UPDATE'),
            'request.oldObject must be the object of a UPDATE',
            id='update-without-old-object',
        ),
    ],
)
def test_a_malformed_review_is_named_precisely(body: Any, problem: str) -> None:
    found = request_problem(body)
    assert found is not None
    assert found.startswith(problem)


def test_a_well_formed_review_has_no_problem() -> None:
    assert request_problem(review_body()) is None


def test_values_quoted_from_a_malformed_review_are_short() -> None:
    found = request_problem({**review_body(), 'kind': 'x' * 10_000})
    assert found is not None
    assert len(found) < 200


# -- `tenure run` flags --------------------------------------------------------------------


def run_args(*argv: str) -> argparse.Namespace:
    return _build_parser().parse_args(['run', *argv])


ENV = {'VAULT_ADDR': 'http://127.0.0.1:8200', 'VAULT_TOKEN': 'root'}


@pytest.fixture(scope='module')
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'tenure-webhook')])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
        .not_valid_after(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp('tls')
    cert_file, key_file = folder / 'tls.crt', folder / 'tls.key'
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_no_webhook_unless_a_port_is_given() -> None:
    assert parse_run_config(run_args(), ENV).webhook is None
    assert parse_run_config(run_args('--webhook-port', '0'), ENV).webhook is None


def test_the_webhook_serves_tls_from_the_mounted_files(key_pair: tuple[Path, Path]) -> None:
    cert, key = key_pair
    args = run_args(
        '--webhook-port', '9443', '--webhook-cert', str(cert), '--webhook-key', str(key)
    )
    assert parse_run_config(args, ENV).webhook == WebhookConfig(
        port=9443, cert_file=cert, key_file=key
    )


def test_plain_http_only_when_asked_for() -> None:
    args = run_args('--webhook-port', '9443', '--webhook-insecure')
    assert parse_run_config(args, ENV).webhook == WebhookConfig(port=9443, insecure=True)


@pytest.mark.parametrize(
    ('argv', 'error'),
    [
        pytest.param(
            ('--webhook-port', '9443'),
            '--webhook-port needs --webhook-cert and --webhook-key',
            id='port-without-tls',
        ),
        pytest.param(
            ('--webhook-port', '9443', '--webhook-cert', 'tls.crt'),
            '--webhook-port needs --webhook-cert and --webhook-key',
            id='certificate-without-key',
        ),
        pytest.param(
            ('--webhook-insecure',),
            '--webhook-cert, --webhook-key and --webhook-insecure need --webhook-port',
            id='insecure-without-port',
        ),
        pytest.param(
            ('--webhook-port', '1', '--webhook-insecure', '--webhook-cert', 'tls.crt'),
            '--webhook-insecure serves plain HTTP',
            id='insecure-and-tls',
        ),
        pytest.param(
            ('--webhook-port', '70000', '--webhook-insecure'),
            '--webhook-port: 70000 is not a TCP port',
            id='port-out-of-range',
        ),
    ],
)
def test_webhook_flags_that_cannot_work_are_refused(argv: tuple[str, ...], error: str) -> None:
    with pytest.raises(ConfigError, match='^' + error.replace('(', r'\(')):
        parse_run_config(run_args(*argv), ENV)


def test_a_certificate_that_does_not_load_fails_at_start(
    tmp_path: Path, key_pair: tuple[Path, Path]
) -> None:
    cert, _ = key_pair
    other = tmp_path / 'other.key'
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    for key in (other, tmp_path / 'missing.key'):
        args = run_args(
            '--webhook-port', '9443', '--webhook-cert', str(cert), '--webhook-key', str(key)
        )
        with pytest.raises(ConfigError, match='cannot load the certificate') as raised:
            parse_run_config(args, ENV)
        assert str(key) in str(raised.value)


def test_help_names_the_path_the_webhook_configuration_must_use(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv('COLUMNS', '250')  # argparse would break the path at its hyphen
    with pytest.raises(SystemExit):
        run_args('--help')
    assert f'at path {WEBHOOK_PATH};' in capsys.readouterr().out

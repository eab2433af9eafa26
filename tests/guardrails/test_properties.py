"""Properties of the rules over generated ServiceIdentities (issue #4, "Tests").

`identities()` builds a valid manifest (valid under every policy used here: approval and expiry
around the clock, written in several time zones) and applies none, one or two MUTATIONS, each of
which breaks one rule or sits exactly on a boundary: about half the examples are provisioned and
half denied, for every rule. `any_specs()` goes well beyond realistic values (any word, any path,
any instant) for the properties of `evaluate` itself. Examples are few, for the suite's speed; the
mutations make each one count.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, reject, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tenure.admission import AdmissionRequest, review
from tenure.api.v1alpha1 import (
    VAULT_PATH_PATTERN,
    ServiceIdentity,
    ServiceIdentitySpec,
)
from tenure.domain.guardrails import (
    BASE_FORBIDDEN_VERBS,
    DEFAULT_VAULT_PATH_PREFIXES,
    ENVIRONMENT_LABEL,
    Mode,
    Policy,
    Rule,
    Target,
    evaluate,
)
from tenure.manifests import CheckReport, check_paths, load_policy
from tests.guardrails.conftest import NOW, POLICIES, STATIC_RULES, Obj, crd_errors, operate

EXAMPLES = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

POLICIES_IN_FORCE = {
    'default': Policy(),
    'strict': load_policy(POLICIES / 'strict.yaml'),
    'view-catalog': load_policy(POLICIES / 'view-catalog.yaml'),
}
PERMISSIVE = Policy(
    max_lifetime=timedelta(days=10**6),
    allowed_vault_path_prefixes=('',),
    allowed_cluster_roles=frozenset({'view', 'edit'}),
)
"""Every policy-dependent check passes: what is left of VaultPathNotAllowed is the static part."""
NAMESPACE = 'payments'
NAME = 'settlement-exporter'

# -- strategies -----------------------------------------------------------------------------------

ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]


def stamp(instant: datetime, zone: timezone) -> str:
    text = instant.astimezone(zone).isoformat()
    return text.replace('+00:00', 'Z')


emails = st.builds(
    lambda local, domain, upper: f'{local}@{domain}'.upper() if upper else f'{local}@{domain}',
    st.sampled_from(['alice', 'bob', 'Alice', 'carol.ops']),
    st.sampled_from(['example.com', 'Example.com']),
    st.booleans(),
)
"""Any of a few people, in any case: requester and approver are often the same mailbox."""

DAY = 86400
safe_rules = st.fixed_dictionaries(
    {
        'apiGroups': st.sampled_from([[''], ['apps'], ['batch'], []]),
        'resources': st.lists(
            st.sampled_from(['configmaps', 'pods', 'deployments', 'jobs']),
            min_size=1,
            max_size=2,
            unique=True,
        ),
        'resourceNames': st.lists(st.sampled_from(['app-config', 'db']), max_size=2, unique=True),
        'verbs': st.lists(
            st.sampled_from(['get', 'list', 'watch', 'create', 'update', 'delete']),
            min_size=1,
            max_size=3,
            unique=True,
        ),
    }
)
safe_vault_rules = st.fixed_dictionaries(
    {
        'path': st.sampled_from(
            ['secret/data/payments/app/*', 'secret/metadata/payments/', 'secret/data/payments/']
        ),
        'capabilities': st.sampled_from([['read'], ['read', 'list'], ['create', 'update']]),
    }
)

Mutation = tuple[str, Any]


def _set(path: str, value: Any) -> Mutation:
    return (path, value)


def _rule(api_groups: list[str], resources: list[str], verbs: list[str], names: list[str]) -> Obj:
    return {'apiGroups': api_groups, 'resources': resources, 'resourceNames': names, 'verbs': verbs}


def _vault(path: str, *capabilities: str) -> Obj:
    return {'path': path, 'capabilities': list(capabilities or ('read',))}


MUTATIONS: dict[str, Mutation] = {
    # Each breaks one rule, or sits exactly on a boundary that must not break it.
    'self-approval': _set('ticket.approver', 'alice@example.com'),
    'self-approval-other-case': _set('ticket.approver', 'ALICE@Example.com'),
    'approved-at-skew-edge': _set('ticket.approvedAt', NOW + timedelta(minutes=5)),
    'approved-past-skew': _set('ticket.approvedAt', NOW + timedelta(minutes=5, seconds=1)),
    'approved-tomorrow': _set('ticket.approvedAt', NOW + timedelta(days=1)),
    'expires-at-approval': _set('expiresAt', 'approvedAt'),
    'expires-before-approval': _set('expiresAt', 'approvedAt-1s'),
    'expires-now': _set('expiresAt', NOW),
    'expired-yesterday': _set('expiresAt', NOW - timedelta(days=1)),
    'lifetime-at-default-max': _set('expiresAt', 'approvedAt+90d'),
    'lifetime-over-default-max': _set('expiresAt', 'approvedAt+90d+1s'),
    'lifetime-a-year': _set('expiresAt', 'approvedAt+365d'),
    'requested': _set('ticket.state', 'Requested'),
    'github-ticket': _set('ticket.system', 'github'),
    'justification-under-strict': _set('ticket.justification', 'Nightly export of totals.'),
    'justification-padded': _set('ticket.justification', '     fix it     '),
    'wildcard-verb': _set('rule', _rule(['apps'], ['deployments'], ['*'], [])),
    'wildcard-resource': _set('rule', _rule([''], ['*'], ['get'], [])),
    'wildcard-group': _set('rule', _rule(['*'], ['jobs'], ['get'], [])),
    'escalate': _set('rule', _rule(['rbac.authorization.k8s.io'], ['roles'], ['escalate'], [])),
    'bind': _set('rule', _rule(['rbac.authorization.k8s.io'], ['roles'], ['bind'], [])),
    'impersonate': _set('rule', _rule([''], ['serviceaccounts'], ['impersonate'], [])),
    'deletecollection': _set('rule', _rule(['batch'], ['jobs'], ['deletecollection'], [])),
    'secrets-all': _set('rule', _rule([''], ['secrets'], ['get'], [])),
    'secrets-named': _set('rule', _rule([''], ['secrets'], ['get'], ['db'])),
    'secrets-other-group': _set('rule', _rule(['apps'], ['secrets'], ['get'], [])),
    'token-minting': _set('rule', _rule([''], ['serviceaccounts/token'], ['create'], [])),
    'token-reading': _set('rule', _rule([''], ['serviceaccounts/token'], ['get'], [])),
    'cluster-role-view': _set('kubernetes.clusterRoles', ['view']),
    'cluster-role-edit': _set('kubernetes.clusterRoles', ['edit']),
    'cluster-admin': _set('kubernetes.clusterRoles', ['cluster-admin']),
    'vault-sys': _set('vault', _vault('sys/policies/acl/x')),
    'vault-auth': _set('vault', _vault('auth/kubernetes/role/x')),
    'vault-identity': _set('vault', _vault('identity/entity/x')),
    'vault-dot-dot': _set('vault', _vault('secret/data/payments/../ledger/db')),
    'vault-empty-segment': _set('vault', _vault('secret/data//payments/x')),
    'vault-tenure': _set('vault', _vault('secret/data/tenure/ledger/ledger-sync')),
    'vault-other-namespace': _set('vault', _vault('secret/data/ledger/db')),
    'vault-prefix-confusion': _set('vault', _vault('secret/data/payments-archive/x')),
    'vault-other-mount': _set('vault', _vault('kv/data/payments/x')),
    'vault-whole-mount': _set('vault', _vault('secret/data/*')),
    'vault-sudo': _set('vault', _vault('secret/data/payments/x', 'read', 'sudo')),
    'vault-root': _set('vault', _vault('secret/data/payments/x', 'root')),
    'vault-unknown-capability': _set('vault', _vault('secret/data/payments/x', 'write')),
    'environment-staging': _set('environment', 'staging'),
}


def _instant(value: Any, approved: datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    offsets = {
        'approvedAt': timedelta(0),
        'approvedAt-1s': timedelta(seconds=-1),
        'approvedAt+90d': timedelta(days=90),
        'approvedAt+90d+1s': timedelta(days=90, seconds=1),
        'approvedAt+365d': timedelta(days=365),
    }
    return approved + offsets[value]


@st.composite
def identities(draw: st.DrawFn) -> Obj:
    """A whole ServiceIdentity manifest as `kubectl apply` would send it: a valid one (within every
    policy used here), then none, one or two of MUTATIONS."""
    approved = NOW + timedelta(seconds=draw(st.integers(-10 * DAY, 300)))
    expires = NOW + timedelta(seconds=draw(st.integers(3600, 19 * DAY)))
    rules = draw(st.lists(safe_rules, max_size=2))
    vault_rules = draw(st.lists(safe_vault_rules, max_size=2))
    ticket: Obj = {
        'id': 'CHG0031337',
        'system': draw(st.sampled_from(['servicenow', 'jira'])),
        'state': 'Approved',
        'requester': 'alice@example.com',
        'approver': 'bob@example.com',
        'justification': 'Nightly export of settlement totals to the finance data warehouse.',
    }
    spec: Obj = {
        'ticket': ticket,
        'owner': {'team': 'payments-platform', 'contact': 'payments-oncall@example.com'},
        'service': NAME,
        'kubernetes': {'rules': rules, 'clusterRoles': []},
        'vault': {'policy': vault_rules, 'secret': {'keys': ['api-key']}},
    }
    if draw(st.booleans()):
        spec['environment'] = 'production'
    for name in draw(st.lists(st.sampled_from(sorted(MUTATIONS)), max_size=2, unique=True)):
        field, value = MUTATIONS[name]
        if field == 'ticket.approvedAt':
            approved = value
        elif field == 'expiresAt':
            expires = _instant(value, approved)
        elif field == 'rule':
            rules.append(value)
        elif field == 'vault':
            vault_rules.append(value)
        elif field == 'kubernetes.clusterRoles':
            spec['kubernetes']['clusterRoles'] = value
        elif field == 'environment':
            spec['environment'] = value
        else:
            ticket[field.removeprefix('ticket.')] = value
    if ticket['state'] == 'Approved':
        ticket['approvedAt'] = stamp(approved, draw(st.sampled_from(ZONES)))
    spec['expiresAt'] = stamp(expires, draw(st.sampled_from(ZONES)))
    return {
        'apiVersion': 'tenure.dev/v1alpha1',
        'kind': 'ServiceIdentity',
        'metadata': {'name': NAME, 'namespace': NAMESPACE},
        'spec': spec,
    }


namespace_labels = st.sampled_from(
    [
        {},
        {ENVIRONMENT_LABEL: 'production'},
        {ENVIRONMENT_LABEL: 'production'},
        {ENVIRONMENT_LABEL: 'staging'},
    ]
)
policy_names = st.sampled_from(sorted(POLICIES_IN_FORCE))


@pytest.fixture(scope='module')
def manifest_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp('generated')


def tenure_check(directory: Path, doc: Obj, policy: Policy) -> CheckReport:
    """`tenure check` on the manifest as a file (the CLI's engine; the corpus drives the CLI)."""
    path = directory / 'identity.yaml'
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding='utf-8')
    return check_paths([path], now=NOW, policy=policy)


def environment_consistent(doc: Obj, labels: dict[str, str]) -> bool:
    """What `tenure check` cannot know offline: the namespace's label agrees with the spec."""
    environment = doc['spec'].get('environment')
    label = labels.get(ENVIRONMENT_LABEL)
    return environment is None or label is None or environment == label


def violations(doc: Obj, policy: Policy, labels: dict[str, str]) -> list[Rule]:
    spec = ServiceIdentitySpec.model_validate(doc['spec'])
    target = Target(namespace=NAMESPACE, name=NAME, namespace_labels=labels)
    return [v.rule for v in evaluate(spec, policy, target, NOW)]


# -- the operator provisions only what tenure check passes ----------------------------------------


@EXAMPLES
@given(doc=identities(), policy_name=policy_names, labels=namespace_labels)
def test_the_operator_provisions_exactly_what_tenure_check_passes(
    manifest_dir: Path, doc: Obj, policy_name: str, labels: dict[str, str]
) -> None:
    policy = POLICIES_IN_FORCE[policy_name]
    report = tenure_check(manifest_dir, doc, policy)
    operated = operate(doc, policy=policy, namespace_labels=labels)
    if operated.phase == 'Active':
        assert report.ok, report.problems
        assert operated.kube.objects
        assert operated.vault.policies
    if report.ok and environment_consistent(doc, labels):
        expected = 'Pending' if doc['spec']['ticket']['state'] == 'Requested' else 'Active'
        assert operated.phase == expected, operated.condition('Valid')
    if not report.ok:
        assert operated.phase == 'Denied'


@EXAMPLES
@given(doc=identities(), policy_name=policy_names, labels=namespace_labels)
def test_a_spec_that_breaks_an_enforced_rule_never_creates_anything(
    doc: Obj, policy_name: str, labels: dict[str, str]
) -> None:
    policy = POLICIES_IN_FORCE[policy_name]
    assume(violations(doc, policy, labels))
    operated = operate(doc, policy=policy, namespace_labels=labels)
    assert operated.phase == 'Denied'
    assert operated.nothing_written, operated.calls
    valid = operated.condition('Valid')
    assert valid['status'] == 'False'


@EXAMPLES
@given(doc=identities(), labels=namespace_labels)
def test_audit_mode_reports_what_enforce_would_deny_and_provisions_all_the_same(
    doc: Obj, labels: dict[str, str]
) -> None:
    audit = Policy(mode=Mode.AUDIT)
    broken = violations(doc, audit, labels)
    assume(broken and doc['spec']['ticket']['state'] == 'Approved')
    # An expired identity is never provisioned, whatever the mode: it would be revoked at once.
    assume(Rule.ALREADY_EXPIRED not in broken)
    operated = operate(doc, policy=audit, namespace_labels=labels)
    assert operated.phase == 'Active'
    valid = operated.condition('Valid')
    assert (valid['status'], valid['reason']) == ('False', broken[0])
    assert all(f'{rule}: ' in valid['message'] for rule in broken)


@EXAMPLES
@given(doc=identities(), policy_name=policy_names, labels=namespace_labels)
def test_the_admission_webhook_admits_exactly_what_tenure_check_passes(
    manifest_dir: Path, doc: Obj, policy_name: str, labels: dict[str, str]
) -> None:
    policy = POLICIES_IN_FORCE[policy_name]
    report = tenure_check(manifest_dir, doc, policy)
    answer = review(
        AdmissionRequest('CREATE', doc, namespace=NAMESPACE),
        policy=policy,
        now=NOW,
        kv_mount='secret',
        namespace_labels=lambda _namespace: labels,
    )
    if environment_consistent(doc, labels):
        assert answer.allowed is report.ok, (answer.message, report.problems)
    else:
        assert not answer.allowed
        assert Rule.ENVIRONMENT_MISMATCH in answer.message


# -- the CRD enforces exactly the static rules ----------------------------------------------------


@EXAMPLES
@given(doc=identities())
def test_the_crd_refuses_exactly_what_the_static_rules_refuse(doc: Obj) -> None:
    """The static guardrails exist twice, in Python and as CEL in the CRD: they must agree on every
    spec, in both directions (a CEL rule laxer than Python lets `kubectl apply` store what the
    operator then denies; a stricter one refuses what the operator would have provisioned)."""
    identity = ServiceIdentity.model_validate(doc)
    target = Target(namespace=NAMESPACE, name=NAME)
    found = evaluate(identity.spec, PERMISSIVE, target, NOW)
    static = {v.rule.value for v in found} & STATIC_RULES
    messages = [e.message for e in crd_errors(doc)]
    named = {rule for rule in STATIC_RULES for m in messages if f'{rule}:' in m}
    assert named == static, messages
    assert len(messages) >= len(static)
    assert not [m for m in messages if not any(f'{rule}:' in m for rule in STATIC_RULES)]


# -- evaluate: deterministic, total ---------------------------------------------------------------

words = st.from_regex(r'^[a-z]([a-z0-9-]{0,10}[a-z0-9])?$', fullmatch=True)
letters = st.from_regex(r'^[a-z]{1,12}$', fullmatch=True)
any_paths = st.from_regex(VAULT_PATH_PATTERN, fullmatch=True).filter(lambda p: len(p) <= 512)
instants = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, *ZONES, timezone(timedelta(hours=14))]),
)


@st.composite
def any_specs(draw: st.DrawFn) -> Obj:
    """Specs well beyond the realistic vocabularies: any word, any path, any instant."""
    spec: Obj = {
        'ticket': {
            'id': 'CHG1',
            'system': draw(st.from_regex(r'^[a-z][a-z0-9-]{0,31}$', fullmatch=True)),
            'state': draw(st.sampled_from(['Requested', 'Approved', 'Closed', 'Cancelled'])),
            'requester': draw(emails),
            'approver': draw(emails),
            'approvedAt': draw(instants),
            'justification': draw(st.text(min_size=10, max_size=60)),
        },
        'owner': {'team': 'team', 'contact': 'team@example.com'},
        'service': 'svc',
        'expiresAt': draw(instants),
    }
    spec['kubernetes'] = {
        'rules': [
            {
                'apiGroups': draw(st.lists(st.sampled_from(['', '*']) | words, max_size=2)),
                'resources': draw(
                    st.lists(st.just('*') | words, min_size=1, max_size=3, unique=True)
                ),
                'resourceNames': draw(st.lists(words, max_size=2, unique=True)),
                'verbs': draw(
                    st.lists(
                        st.sampled_from(sorted(BASE_FORBIDDEN_VERBS)) | st.just('*') | letters,
                        min_size=1,
                        max_size=3,
                        unique=True,
                    )
                ),
            }
            for _ in range(draw(st.integers(0, 2)))
        ],
        'clusterRoles': draw(st.lists(words, max_size=2, unique=True)),
    }
    spec['vault'] = {
        'policy': [
            {
                'path': draw(any_paths),
                'capabilities': draw(st.lists(letters, min_size=1, max_size=3, unique=True)),
            }
            for _ in range(draw(st.integers(0, 2)))
        ]
    }
    return spec


@st.composite
def any_policies(draw: st.DrawFn) -> Policy:
    return Policy(
        max_lifetime=timedelta(seconds=draw(st.integers(0, 10**9))),
        allowed_ticket_systems=frozenset(draw(st.lists(words, max_size=2))),
        allowed_vault_path_prefixes=tuple(
            draw(
                st.lists(
                    st.sampled_from(DEFAULT_VAULT_PATH_PREFIXES) | st.text(min_size=1, max_size=20),
                    min_size=1,
                    max_size=3,
                )
            )
        ),
        allowed_cluster_roles=frozenset(draw(st.lists(words, max_size=2))),
        extra_forbidden_verbs=frozenset(draw(st.lists(words, max_size=2))),
        min_justification_length=draw(st.integers(10, 2000)),
        mode=draw(st.sampled_from(Mode)),
    )


@settings(max_examples=200, deadline=None)
@given(
    spec=any_specs(),
    policy=any_policies(),
    now=instants,
    labels=st.none() | st.dictionaries(st.just(ENVIRONMENT_LABEL) | words, words, max_size=2),
    provisioned=st.booleans(),
)
def test_evaluate_is_deterministic_and_never_raises_on_a_spec_the_model_accepts(
    spec: Obj,
    policy: Policy,
    now: datetime,
    labels: dict[str, str] | None,
    provisioned: bool,
) -> None:
    try:
        parsed = ServiceIdentitySpec.model_validate(spec)
    except ValidationError:
        reject()
    target = Target(
        namespace=NAMESPACE, name=NAME, namespace_labels=labels, provisioned=provisioned
    )
    first = evaluate(parsed, policy, target, now)
    assert evaluate(parsed, policy, target, now) == first
    assert evaluate(ServiceIdentitySpec.model_validate(spec), policy, target, now) == first
    for violation in first:
        assert violation.rule in Rule
        assert violation.field.startswith('spec.')
        assert violation.message

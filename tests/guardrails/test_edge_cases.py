"""The corners of the rules, through every caller: unicode and length limits, e-mail case, time
zones, leap days, empty and enormous lists, duplicate keys, and tenants reaching into another
namespace (the confused deputy: external-secrets GHSA-fcxq-v2r3-cc8h, CVE-2024-45041)."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from tenure.api.v1alpha1 import ServiceIdentitySpec
from tenure.domain.desired import VaultRole
from tenure.domain.guardrails import Policy, Rule, Target, evaluate
from tenure.domain.names import IdentityNames
from tenure.manifests import INVALID_SPEC
from tenure.ports import KubernetesPort, VaultPort
from tenure.reconcile import ReconcileFailed, Reconciler
from tests.guardrails.conftest import NOW, Obj, check_document, crd_errors, operate, run_check
from tests.unit.conftest import VALID as BASE
from tests.unit.fakes import Calls, FakeKube, FakeVault

Edit = dict[str, Any]


def identity(changes: Edit | None = None) -> Obj:
    """The unit tests' valid identity (payments/settlement-exporter) with `{'a.b': value}` set."""
    doc = copy.deepcopy(BASE)
    for path, value in (changes or {}).items():
        *parents, last = path.split('.')
        node = doc
        for key in parents:
            node = node[key]
        node[last] = value
    return doc


@dataclasses.dataclass(frozen=True)
class Verdicts:
    """What each caller made of one manifest."""

    check_rules: set[str]
    check_fields: set[str]
    crd_messages: list[str]
    crd_fields: set[str]
    phase: str | None
    valid_reason: str


def judge(
    tmp_path: Path, doc: Obj, *, now: datetime = NOW, policy: Policy | None = None
) -> Verdicts:
    checked = check_document(tmp_path, doc, now=now)
    errors = crd_errors(doc)
    operated = operate(doc, now=now, policy=policy)
    return Verdicts(
        check_rules=checked.rules,
        check_fields={p['field'] for p in checked.problems},
        crd_messages=[e.message for e in errors],
        crd_fields={e.field for e in errors},
        phase=operated.phase,
        valid_reason=operated.condition('Valid')['reason'],
    )


def assert_accepted(verdicts: Verdicts) -> None:
    assert verdicts.check_rules == set()
    assert verdicts.crd_messages == []
    assert verdicts.phase == 'Active'


def assert_refused(verdicts: Verdicts, rule: str, field: str, *, static: bool) -> None:
    assert rule in verdicts.check_rules, verdicts
    assert field in verdicts.check_fields, verdicts
    assert verdicts.phase == 'Denied'
    if static:
        assert field in verdicts.crd_fields, verdicts.crd_messages
    else:
        assert verdicts.crd_messages == []


# -- unicode and very long strings ----------------------------------------------------------------

# CJK, an emoji outside the Basic Multilingual Plane, an accented letter: 1 to 4 UTF-8 bytes each.
# The API server counts maxLength in characters (runes), not bytes, as Python's len() does.
MULTIBYTE = '承認済み🔐é'


def _text(length: int) -> str:
    return (MULTIBYTE * (length // len(MULTIBYTE) + 1))[:length]


def test_a_justification_of_2000_multibyte_characters_is_accepted_everywhere(
    tmp_path: Path,
) -> None:
    text = _text(2000)
    assert len(text.encode()) > 4000, 'the limit is in characters, far more bytes are fine'
    assert_accepted(judge(tmp_path, identity({'spec.ticket.justification': text})))


def test_one_character_more_is_a_schema_error_everywhere(tmp_path: Path) -> None:
    verdicts = judge(tmp_path, identity({'spec.ticket.justification': _text(2001)}))
    assert_refused(verdicts, INVALID_SPEC, 'spec.ticket.justification', static=True)
    assert any('Too long' in m for m in verdicts.crd_messages), verdicts.crd_messages
    assert verdicts.valid_reason == INVALID_SPEC


@pytest.mark.parametrize(
    ('field', 'limit', 'value'),
    [
        pytest.param('spec.service', 253, lambda n: 'svc-' + 'a' * (n - 4), id='service'),
        pytest.param(
            'spec.vault.policy',
            512,
            lambda n: [
                {'path': 'secret/data/payments/' + 'p' * (n - 21), 'capabilities': ['read']}
            ],
            id='vault-path',
        ),
        pytest.param('spec.ticket.url', 2048, lambda n: 'https://x/' + 'u' * (n - 10), id='url'),
    ],
)
def test_long_strings_are_accepted_up_to_their_limit_and_refused_past_it(
    tmp_path: Path, field: str, limit: int, value: Callable[[int], Any]
) -> None:
    assert_accepted(judge(tmp_path, identity({field: value(limit)})))
    verdicts = judge(tmp_path, identity({field: value(limit + 1)}))
    assert verdicts.check_rules == {INVALID_SPEC}
    assert any('Too long' in m for m in verdicts.crd_messages), verdicts.crd_messages
    assert verdicts.phase == 'Denied'


def test_a_justification_of_only_unicode_spaces_is_too_short(tmp_path: Path) -> None:
    # Ideographic and no-break spaces pass the schema's minLength but say nothing.
    verdicts = judge(tmp_path, identity({'spec.ticket.justification': '\u3000\u00a0' * 8}))
    assert_refused(
        verdicts, Rule.JUSTIFICATION_TOO_SHORT, 'spec.ticket.justification', static=False
    )


# -- e-mail case ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('requester', 'approver', 'same'),
    [
        pytest.param('alice@example.com', 'ALICE@EXAMPLE.COM', True, id='all-capitals'),
        pytest.param('Alice.Smith@Example.com', 'alice.smith@example.COM', True, id='mixed'),
        pytest.param('alice@example.com', 'alice+approver@example.com', False, id='sub-address'),
        pytest.param('alice@example.com', 'alice@example.co', False, id='other-domain'),
    ],
)
def test_requester_and_approver_are_compared_ignoring_case(
    tmp_path: Path, requester: str, approver: str, same: bool
) -> None:
    doc = identity({'spec.ticket.requester': requester, 'spec.ticket.approver': approver})
    verdicts = judge(tmp_path, doc)
    if same:
        assert_refused(verdicts, Rule.REQUESTER_IS_APPROVER, 'spec.ticket.approver', static=True)
        assert any(Rule.REQUESTER_IS_APPROVER in m for m in verdicts.crd_messages)
    else:
        assert_accepted(verdicts)


# -- time zones -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('approved', 'expires', 'rule'),
    [
        # 17:00+05:30 is 11:30Z: the expiry at 14:00Z is later although "14" sorts before "17".
        pytest.param('2026-12-01T17:00:00+05:30', '2026-12-01T14:00:00Z', None, id='later-instant'),
        # 00:30+14:00 the next day is 10:30Z: before the approval although it sorts after it.
        pytest.param(
            '2026-12-01T11:00:00Z',
            '2026-12-02T00:30:00+14:00',
            Rule.EXPIRY_BEFORE_APPROVAL,
            id='earlier-instant',
        ),
        pytest.param('2026-12-01T07:05:00-05:00', '2027-01-15T00:00:00Z', None, id='skew-edge'),
        pytest.param(
            '2026-12-01T07:05:01-05:00',
            '2027-01-15T00:00:00Z',
            Rule.APPROVED_IN_FUTURE,
            id='skew-edge-plus-one-second',
        ),
        # 15:30+05:30 is 10:00Z: exactly 90 days later at 10:00Z is the maximum, not over it.
        pytest.param('2026-11-28T15:30:00+05:30', '2027-02-26T10:00:00Z', None, id='ninety-days'),
        pytest.param(
            '2026-11-28T15:30:00+05:30',
            '2027-02-26T15:30:01+05:30',
            Rule.LIFETIME_TOO_LONG,
            id='ninety-days-plus-one-second',
        ),
    ],
)
def test_time_rules_compare_instants_not_strings(
    tmp_path: Path, approved: str, expires: str, rule: str | None
) -> None:
    doc = identity({'spec.ticket.approvedAt': approved, 'spec.expiresAt': expires})
    verdicts = judge(tmp_path, doc)
    if rule is None:
        assert_accepted(verdicts)
        return
    assert rule in verdicts.check_rules
    assert verdicts.phase == 'Denied'
    static = rule == Rule.EXPIRY_BEFORE_APPROVAL
    assert any(rule in m for m in verdicts.crd_messages) is static, verdicts.crd_messages


# -- leap days ------------------------------------------------------------------------------------

LEAP_DAY_NOON = datetime(2028, 2, 29, 12, 0, tzinfo=UTC)


def test_a_lifetime_across_a_leap_day_counts_february_29(tmp_path: Path) -> None:
    # 2028-01-01 to 2028-03-31 is 31 + 29 + 30 = 90 days: the maximum, because 2028 is a leap year.
    approved = {'spec.ticket.approvedAt': '2028-01-01T00:00:00Z'}
    at_max = identity({**approved, 'spec.expiresAt': '2028-03-31T00:00:00Z'})
    assert_accepted(judge(tmp_path, at_max, now=LEAP_DAY_NOON))
    over = identity({**approved, 'spec.expiresAt': '2028-03-31T00:00:01Z'})
    verdicts = judge(tmp_path, over, now=LEAP_DAY_NOON)
    assert verdicts.check_rules == {Rule.LIFETIME_TOO_LONG}
    assert verdicts.phase == 'Denied'


def test_an_identity_may_expire_on_a_leap_day(tmp_path: Path) -> None:
    doc = identity(
        {'spec.ticket.approvedAt': '2028-02-01T00:00:00Z', 'spec.expiresAt': '2028-02-29T23:59:59Z'}
    )
    assert_accepted(judge(tmp_path, doc, now=LEAP_DAY_NOON))


def test_february_29_of_a_common_year_is_refused_where_the_field_is(tmp_path: Path) -> None:
    """The API server checks `format: date-time` with strfmt.IsDateTime, whose date part is Go's
    time.Parse("2006-01-02"): it refuses days that do not exist (go-openapi/strfmt, date.go;
    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#format)."""
    verdicts = judge(tmp_path, identity({'spec.expiresAt': '2027-02-29T00:00:00Z'}))
    assert_refused(verdicts, INVALID_SPEC, 'spec.expiresAt', static=True)


# -- expiry exactly at approval -------------------------------------------------------------------


@pytest.mark.parametrize(
    ('expires', 'refused'),
    [
        pytest.param('2026-12-01T12:03:00Z', True, id='same-instant'),
        pytest.param('2026-12-01T17:33:00+05:30', True, id='same-instant-other-zone'),
        pytest.param('2026-12-01T12:03:01Z', False, id='one-second-later'),
    ],
)
def test_expiry_exactly_at_approval_is_an_empty_window(
    tmp_path: Path, expires: str, refused: bool
) -> None:
    doc = identity({'spec.ticket.approvedAt': '2026-12-01T12:03:00Z', 'spec.expiresAt': expires})
    verdicts = judge(tmp_path, doc)
    if refused:
        assert_refused(verdicts, Rule.EXPIRY_BEFORE_APPROVAL, 'spec.expiresAt', static=True)
        assert verdicts.valid_reason == Rule.EXPIRY_BEFORE_APPROVAL
    else:
        assert_accepted(verdicts)


# -- empty lists ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    'changes',
    [
        pytest.param({'spec.kubernetes': {}}, id='kubernetes-empty'),
        pytest.param({'spec.kubernetes': {'rules': [], 'clusterRoles': []}}, id='no-rules'),
        pytest.param(
            {'spec.vault': {'policy': []}, 'spec.kubernetes': {'rules': []}}, id='vault-no-paths'
        ),
        pytest.param({'spec.vault': {}, 'spec.kubernetes': {'rules': []}}, id='nothing-at-all'),
    ],
)
def test_empty_rule_lists_are_valid_and_grant_nothing_but_the_service_account(
    tmp_path: Path, changes: Edit
) -> None:
    doc = identity(changes)
    assert_accepted(judge(tmp_path, doc))
    operated = operate(doc)
    name = doc['metadata']['name']
    kinds = {kind for kind, _ in operated.kube.objects}
    assert 'Role' not in kinds
    assert ('ServiceAccount', name) in operated.kube.objects


@pytest.mark.parametrize(
    ('rule', 'field'),
    [
        pytest.param({'resources': ['pods'], 'verbs': []}, 'verbs', id='no-verbs'),
        pytest.param({'resources': [], 'verbs': ['get']}, 'resources', id='no-resources'),
    ],
)
def test_a_rule_without_verbs_or_resources_is_a_schema_error(
    tmp_path: Path, rule: Obj, field: str
) -> None:
    verdicts = judge(tmp_path, identity({'spec.kubernetes.rules': [rule]}))
    assert_refused(verdicts, INVALID_SPEC, f'spec.kubernetes.rules[0].{field}', static=True)


# -- duplicate keys -------------------------------------------------------------------------------

DUPLICATED = """\
apiVersion: tenure.dev/v1alpha1
kind: ServiceIdentity
metadata:
  name: settlement-exporter
  namespace: payments
spec:
  ticket:
    id: CHG0031337
    system: servicenow
    state: Approved
    requester: alice@example.com
    approver: bob@example.com
    approvedAt: "2026-11-28T10:00:00Z"
    justification: Nightly export of settlement totals.
  owner: {team: payments-platform, contact: payments-oncall@example.com}
  service: settlement-exporter
  expiresAt: "2027-02-15T00:00:00Z"
  kubernetes:
    rules:
      - apiGroups: [""]
        resources: [configmaps]
        verbs: [get]
"""


@pytest.mark.parametrize(
    ('duplicate', 'after', 'line'),
    [
        # A second expiresAt would silently win with most YAML loaders: a year of access.
        pytest.param(
            '  expiresAt: "2028-02-15T00:00:00Z"\n', '  expiresAt: "2027-02-15T00:00:00Z"\n', 18
        ),
        # A second approver in the ticket, after the first.
        pytest.param('    approver: alice@example.com\n', '    approver: bob@example.com\n', 13),
        # A second verbs list inside a rule.
        pytest.param('        verbs: ["*"]\n', '        verbs: [get]\n', 23),
    ],
    ids=['expiresAt', 'approver', 'verbs'],
)
def test_tenure_check_reports_duplicate_keys_as_invalid_yaml_with_the_line(
    tmp_path: Path, duplicate: str, after: str, line: int
) -> None:
    path = tmp_path / 'identity.yaml'
    path.write_text(DUPLICATED.replace(after, after + duplicate))
    result = run_check([path])
    assert result.exit_code == 1
    assert [(p['rule'], p['line']) for p in result.problems] == [('InvalidYAML', line)]
    assert 'duplicate key' in result.problems[0]['message']


# -- enormous lists -------------------------------------------------------------------------------


def _rules(count: int) -> list[Obj]:
    return [
        {
            'apiGroups': [''],
            'resources': ['configmaps'],
            'resourceNames': [f'cm-{i}'],
            'verbs': ['get'],
        }
        for i in range(count)
    ]


def _paths(count: int) -> list[Obj]:
    return [{'path': f'secret/data/payments/p{i}', 'capabilities': ['read']} for i in range(count)]


@pytest.mark.parametrize(
    ('field', 'items', 'limit'),
    [
        pytest.param('spec.kubernetes.rules', _rules, 32, id='rules'),
        pytest.param('spec.vault.policy', _paths, 32, id='vault-paths'),
        pytest.param(
            'spec.kubernetes.clusterRoles', lambda n: [f'r{i}' for i in range(n)], 16, id='roles'
        ),
        pytest.param(
            'spec.vault.secret.keys', lambda n: [f'k{i}' for i in range(n)], 32, id='secret-keys'
        ),
    ],
)
def test_one_item_past_the_bound_is_one_clear_schema_error_everywhere(
    tmp_path: Path, field: str, items: Callable[[int], list[Any]], limit: int
) -> None:
    verdicts = judge(tmp_path, identity({field: items(limit + 1)}))
    assert verdicts.check_rules == {INVALID_SPEC}
    assert verdicts.check_fields == {field}, 'one problem for the list, not one per item'
    assert f'Too many: {limit + 1}: must have at most {limit} items' in ' '.join(
        verdicts.crd_messages
    )
    assert verdicts.phase == 'Denied'


def test_thousands_of_rules_are_refused_quickly_without_a_crash(tmp_path: Path) -> None:
    doc = identity({'spec.kubernetes.rules': _rules(3000), 'spec.vault.policy': _paths(3000)})
    path = tmp_path / 'identity.json'  # JSON, as generated manifests often are (YAML's superset)
    path.write_text(json.dumps(doc))
    started = time.monotonic()
    checked = run_check([path])
    errors = [e.message for e in crd_errors(doc)]
    operated = operate(doc)
    # Generous: the point is "no hang" (parsing, validation and CEL are bounded by maxItems).
    assert time.monotonic() - started < 20
    assert [(p['field'], p['rule']) for p in checked.problems] == [
        ('spec.kubernetes.rules', INVALID_SPEC),
        ('spec.vault.policy', INVALID_SPEC),
    ]
    assert sum('Too many: 3000: must have at most 32 items' in m for m in errors) == 2, errors
    assert operated.phase == 'Denied'
    assert len(operated.condition('Valid')['message']) < 1000, 'one line per list, not per item'


def test_the_denial_of_the_largest_accepted_spec_fits_in_the_status_the_crd_allows() -> None:
    """A tenant controls how long the violation list is: 32 Vault paths of 512 characters and 16
    ClusterRoles of 253, all refused. The operator's condition message must still fit the CRD's
    `maxLength: 32768`, or the API server refuses the status write and the denial is never
    recorded (the operator retries it forever)."""
    doc = identity(
        {
            'spec.vault.policy': [
                {'path': f'secret/data/ledger/{i:02d}-' + 'x' * 490, 'capabilities': ['read']}
                for i in range(32)
            ],
            'spec.kubernetes.clusterRoles': [f'r{i:02d}-' + 'y' * 249 for i in range(16)],
        }
    )
    assert crd_errors(doc) == [], 'the CRD accepts it: only the operator can deny it'
    shared = tuple(f'{{kvMount}}/data/shared/team-{i}-configuration/' for i in range(8))
    policy = Policy(allowed_vault_path_prefixes=(*Policy().allowed_vault_path_prefixes, *shared))
    operated = operate(doc, policy=policy)
    assert operated.phase == 'Denied'
    stored = {**doc, 'status': operated.status}
    assert [e.message[:200] for e in crd_errors(stored)] == []


# -- Vault globs and the tenure/ store ------------------------------------------------------------


@pytest.mark.parametrize(
    'path',
    [
        pytest.param('secret/data/tenure*', id='glob-on-tenure'),
        pytest.param('secret/data/ten*', id='glob-before-tenure'),
        pytest.param('secret/data/+/payments/settlement-exporter', id='segment-glob'),
        pytest.param('secret/metadata/+/ledger/*', id='segment-glob-metadata'),
    ],
)
def test_globs_never_reach_generated_secrets_even_under_a_broad_policy(path: str) -> None:
    """`tenure/` holds every identity's generated secret and is refused "whatever the policy says"
    (IdentityPolicy.allowedVaultPathPrefixes). Vault ACL paths glob: `*` at the end matches any
    suffix and `+` any one segment (https://openbao.org/docs/concepts/policies/#policy-syntax), so a
    path whose third segment is a glob reaches tenure/ as surely as one that names it."""
    broad = Policy(allowed_vault_path_prefixes=('{kvMount}/data/', '{kvMount}/metadata/'))
    doc = identity({'spec.vault.policy': [{'path': path, 'capabilities': ['read']}]})
    spec = ServiceIdentitySpec.model_validate(doc['spec'])
    target = Target(namespace='payments', name='settlement-exporter')
    rules = {v.rule for v in evaluate(spec, broad, target, NOW)}
    assert Rule.VAULT_PATH_NOT_ALLOWED in rules


# -- another namespace, on a tenant's behalf ------------------------------------------------------


class Spy:
    """Wraps a fake port and records every call with its arguments, then delegates."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.vault = isinstance(inner, FakeVault)
        self.seen: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self.seen.append((name, args, kwargs))
            return attribute(*args, **kwargs)

        return call


def _values(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _values(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _values(item)


POLICY_PATH = re.compile(r'^path "([^"]+)"', re.MULTILINE)


def assert_only_namespace(spies: list[Spy], namespace: str, name: str) -> None:
    """Every name, namespace and path any port was given belongs to `namespace`/`name`.

    Kubernetes objects carry their namespace; Vault has none here, so its role, policy and secret
    names carry the Kubernetes namespace instead (`tenure-<namespace>-<name>`).
    """
    for spy in spies:
        for method, args, kwargs in spy.seen:
            for value in _values([*args, *kwargs.values()]):
                where = f'{method}{args!r}'
                if isinstance(value, IdentityNames):
                    assert (value.namespace, value.name) == (namespace, name), where
                elif isinstance(value, VaultRole):
                    assert (value.namespace, value.service_account) == (namespace, name), where
                elif isinstance(value, dict) and isinstance(value.get('metadata'), dict):
                    assert value['metadata'].get('namespace') == namespace, where
                    for subject in value.get('subjects', []):
                        assert subject['namespace'] == namespace, where
                elif isinstance(value, str) and value.startswith('tenure-') and spy.vault:
                    assert value == f'tenure-{namespace}-{name}', where
                elif isinstance(value, str) and value.startswith('tenure/'):
                    assert value == f'tenure/{namespace}/{name}', where
            if method == 'namespace_labels':
                assert args == (namespace,), 'only its own namespace is read'
            for key in ('namespace', 'service_account'):
                if key in kwargs:
                    assert kwargs[key] == (namespace if key == 'namespace' else name), method
            if method == 'ensure_policy':
                for path in POLICY_PATH.findall(args[1]):
                    assert path.startswith(
                        (
                            f'secret/data/{namespace}/',
                            f'secret/metadata/{namespace}/',
                            f'secret/data/tenure/{namespace}/{name}',
                        )
                    ), path


@pytest.mark.parametrize(
    'scenario',
    ['provision', 'deny-other-namespace-path', 'revoke', 'name-conflict', 'environment'],
)
def test_every_call_on_a_tenants_behalf_stays_in_its_namespace(scenario: str) -> None:
    namespace, name = 'payments', 'settlement-exporter'
    calls = Calls()
    kube, vault = Spy(FakeKube(calls)), Spy(FakeVault(calls))
    doc = identity({'spec.environment': 'production'})
    if scenario == 'deny-other-namespace-path':
        doc['spec']['vault']['policy'] = [
            {'path': 'secret/data/ledger/replica/*', 'capabilities': ['read']}
        ]
    if scenario == 'name-conflict':
        kube._inner.foreign.add(('ServiceAccount', name))  # type: ignore[attr-defined]
    kube._inner.namespaces.update(  # type: ignore[attr-defined]
        {'payments': {'tenure.dev/environment': 'production'}, 'ledger': {}}
    )
    reconciler = Reconciler(
        cast(KubernetesPort, kube), cast(VaultPort, vault), clock=lambda: NOW, policy=Policy
    )
    body = {**doc, 'metadata': {**doc['metadata'], 'uid': 'si-uid', 'generation': 1}}
    try:
        outcome = reconciler.reconcile(body)
    except ReconcileFailed as failed:
        outcome = failed.outcome
    if scenario == 'revoke':
        status = outcome.status.model_dump(mode='json', by_alias=True, exclude_none=True)
        cancelled = copy.deepcopy(body)
        cancelled['spec']['ticket']['state'] = 'Cancelled'
        reconciler.reconcile({**cancelled, 'status': status})
        assert 'kube.delete_service_account' in calls
    assert_only_namespace([kube, vault], namespace, name)


def test_an_identity_in_one_namespace_cannot_take_over_a_look_alike_in_another() -> None:
    """Vault has no namespaces here: the role and policy names carry the Kubernetes namespace.
    `team-x`/`api` and `team`/`x-api` must not share them, or the second identity's reconcile
    rewrites the first one's Vault role (binding it to a ServiceAccount in another namespace) and
    policy, and its revocation deletes them."""
    calls = Calls()
    vault = FakeVault(calls)
    victim = identity({'metadata': {'name': 'api', 'namespace': 'team-x'}})
    victim['spec']['vault']['policy'] = [
        {'path': 'secret/data/team-x/db', 'capabilities': ['read']}
    ]
    operate(victim, calls=calls, vault=vault)
    assert vault.roles, 'the victim is provisioned'
    before_roles, before_policies = dict(vault.roles), dict(vault.policies)

    intruder = identity({'metadata': {'name': 'x-api', 'namespace': 'team'}})
    intruder['spec']['vault']['policy'] = [
        {'path': 'secret/data/team/db', 'capabilities': ['read']}
    ]
    operate(intruder, calls=calls, vault=vault)

    for role_name, role in before_roles.items():
        assert vault.roles.get(role_name) == role, f'Vault role {role_name} was rewritten'
    for policy_name, text in before_policies.items():
        assert vault.policies.get(policy_name) == text, f'Vault policy {policy_name} was rewritten'

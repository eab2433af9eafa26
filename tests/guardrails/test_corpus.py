"""Every corpus manifest, through every caller of the rules: same verdict, same rule id.

One rule implementation, four callers (issue #4): `tenure check` offline, the CRD as the API server
enforces it, the operator before it provisions anything, and the admission webhook. A manifest one
of them lets through and another refuses is a bug in the wiring, whichever way round.
"""

from __future__ import annotations

import pytest

from tenure.admission import DENIED, INVALID, AdmissionRequest, review
from tenure.domain.guardrails import Rule
from tenure.manifests import INVALID_SPEC
from tests.guardrails.conftest import (
    CASES,
    NOW,
    STATIC_RULES,
    Case,
    case_params,
    crd_errors,
    is_rule_id,
    operate,
    run_check,
)

DECIDED_ELSEWHERE = {
    Rule.NOT_APPROVED: 'a Requested ticket waits (Pending); it is not refused',
    Rule.NAME_CONFLICT: 'needs an object of that name in the cluster, not a manifest',
    Rule.EXTENSION_NOT_APPROVED: 'needs an identity already provisioned (status.approval)',
    Rule.SCOPE_CHANGE_NOT_APPROVED: 'needs an identity already provisioned (status.appliedScope)',
}
"""Rule ids a manifest alone cannot trigger; their tests live with the lifecycle and adapters."""

OFFLINE_BLIND = {Rule.ENVIRONMENT_MISMATCH.value}
"""`tenure check` runs without a cluster: it cannot know the namespace's labels."""

RICH = {
    Rule.VAULT_PATH_NOT_ALLOWED: 8,
    Rule.WILDCARD_NOT_ALLOWED: 3,
    Rule.FORBIDDEN_VERB: 3,
    Rule.SECRETS_NEED_RESOURCE_NAMES: 2,
}
"""Rules with many ways to break them get several cases each."""


# -- the corpus itself ----------------------------------------------------------------------------


def test_the_corpus_holds_at_least_forty_invalid_manifests_and_some_valid_ones() -> None:
    assert sum(not c.valid for c in CASES) >= 40
    assert sum(c.valid for c in CASES) >= 4


@pytest.mark.parametrize('case', case_params())
def test_each_case_names_known_rules_and_a_consistent_static_flag(case: Case) -> None:
    assert case.valid or is_rule_id(case.expect), case.expect
    assert all(is_rule_id(rule) for rule in case.also), case.also
    if case.static:
        # The CRD can only refuse a case for a reason it knows: its schema or a CEL rule.
        assert case.rules & (STATIC_RULES | {INVALID_SPEC}), case.rules
    else:
        assert case.expect != INVALID_SPEC, 'a schema error is always refused by the CRD'
    case.manifest()
    case.policy()


def test_every_rule_a_manifest_can_break_has_cases() -> None:
    expected = {c.expect for c in CASES} | {r for c in CASES for r in c.also}
    missing = {rule.value for rule in Rule} - set(DECIDED_ELSEWHERE) - expected
    assert not missing, f'no corpus case for {sorted(missing)}'
    for rule, at_least in RICH.items():
        assert sum(c.expect == rule for c in CASES) >= at_least, rule


def test_policy_dependent_rules_are_covered_under_a_policy() -> None:
    with_policy = {c.expect for c in CASES if c.policy_file is not None and not c.valid}
    assert {
        Rule.LIFETIME_TOO_LONG,
        Rule.TICKET_SYSTEM_NOT_ALLOWED,
        Rule.CLUSTER_ROLE_NOT_ALLOWED,
        Rule.JUSTIFICATION_TOO_SHORT,
        Rule.FORBIDDEN_VERB,
    } <= with_policy


# -- caller 1: tenure check -----------------------------------------------------------------------


@pytest.mark.parametrize('case', case_params())
def test_tenure_check_reports_the_expected_rules(case: Case) -> None:
    result = run_check([case.path], policy_file=case.policy_file)
    expected = case.rules - OFFLINE_BLIND
    if not expected:
        assert (result.exit_code, result.problems) == (0, []), result.problems
        return
    assert result.exit_code == 1
    assert result.rules == expected, result.problems
    for problem in result.problems:
        assert problem['file'] == str(case.path)
        assert problem['line'] is not None
        assert problem['field'].startswith('spec'), problem


# -- caller 2: the CRD, as the API server enforces it ---------------------------------------------


@pytest.mark.parametrize('case', case_params())
def test_the_crd_refuses_exactly_the_static_cases_naming_the_rule(case: Case) -> None:
    errors = crd_errors(case.manifest())
    messages = [e.message for e in errors]
    if not case.static:
        assert errors == [], messages
        return
    assert errors, 'the CRD stores what it should refuse'
    for rule in case.rules & STATIC_RULES:
        assert any(rule in m for m in messages), (rule, messages)


# -- caller 3: the operator -----------------------------------------------------------------------


@pytest.mark.parametrize('case', case_params(valid=False))
def test_the_operator_denies_with_every_violation_and_creates_nothing(case: Case) -> None:
    operated = operate(
        case.manifest(), policy=case.policy(), namespace_labels=case.namespace_labels
    )
    assert operated.phase == 'Denied'
    valid = operated.condition('Valid')
    assert (valid['status'], valid['reason']) == ('False', case.expect), valid['message']
    message = valid['message']
    for rule in case.rules - {INVALID_SPEC}:
        assert f'{rule}: ' in message, (rule, message)
    # Every problem `tenure check` finds is in the operator's message too, at the same field.
    for problem in run_check([case.path], policy_file=case.policy_file).problems:
        if problem['rule'] == INVALID_SPEC:
            assert problem['field'] in message, (problem, message)
        else:
            assert f'{problem["rule"]}: {problem["field"]}: ' in message, (problem, message)
    assert (True, case.expect) in {(warning, reason) for warning, reason, _ in operated.events}
    assert operated.nothing_written, operated.calls


@pytest.mark.parametrize('case', case_params(valid=True))
def test_the_operator_accepts_the_valid_cases(case: Case) -> None:
    doc = case.manifest()
    operated = operate(doc, policy=case.policy(), namespace_labels=case.namespace_labels)
    assert operated.condition('Valid')['status'] == 'True', operated.condition('Valid')
    assert not [e for e in operated.events if e[0]], 'no Warning event for a valid identity'
    if doc['spec']['ticket']['state'] == 'Requested':
        assert operated.phase == 'Pending'
        assert operated.nothing_written
    else:
        assert operated.phase == 'Active'
        name = doc['metadata']['name']
        assert ('ServiceAccount', name) in operated.kube.objects


# -- caller 4: the admission webhook ------------------------------------------------------------


@pytest.mark.parametrize('case', case_params())
def test_the_admission_webhook_refuses_with_every_violation_and_admits_the_valid(
    case: Case,
) -> None:
    doc = case.manifest()
    labels = case.namespace_labels
    answer = review(
        AdmissionRequest('CREATE', doc, namespace=doc['metadata']['namespace']),
        policy=case.policy(),
        now=NOW,
        kv_mount='secret',
        namespace_labels=lambda _namespace: labels,
    )
    if case.valid:
        assert answer.allowed, answer.message
        return
    assert not answer.allowed
    assert answer.code == (INVALID if case.expect == INVALID_SPEC else DENIED)
    # The first violation names the rule, as the operator's Valid reason does.
    assert answer.message.startswith(f'{case.expect}: '), answer.message
    for rule in case.rules:
        assert f'{rule}: ' in answer.message, (rule, answer.message)
    for problem in run_check([case.path], policy_file=case.policy_file).problems:
        assert f'{problem["rule"]}: {problem["field"]}: ' in answer.message, problem

"""`labelSelector` and `fieldSelector` select the objects a real API server would list.

Contracts: labels https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors
(grammar of k8s.io/apimachinery/pkg/labels Parse), fields
https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/ (fields
ParseSelector and the resources' field label conversions), and metav1.LabelSelectorAsSelector.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenure_devtools.kubeapi.selectors import (
    SelectorError,
    label_selector_from_object,
    parse_field_selector,
    parse_label_selector,
)

LABELS = {'app': 'web', 'tier': 'frontend', 'replicas': '5', 'example.com/team': 'payments'}


@pytest.mark.parametrize(
    ('selector', 'selected'),
    [
        pytest.param('', True, id='empty-selects-everything'),
        pytest.param('   ', True, id='blank-selects-everything'),
        pytest.param('app=web', True, id='equals'),
        pytest.param('app==web', True, id='double-equals'),
        pytest.param('app=db', False, id='equals-other-value'),
        pytest.param('app!=db', True, id='not-equals'),
        pytest.param('missing!=x', True, id='not-equals-selects-objects-without-the-label'),
        pytest.param('app in (web,db)', True, id='in'),
        pytest.param('app in (db)', False, id='in-other-values'),
        pytest.param('app notin (db,cache)', True, id='notin'),
        pytest.param('missing notin (x)', True, id='notin-selects-objects-without-the-label'),
        pytest.param('missing in (x)', False, id='in-needs-the-label'),
        pytest.param('app', True, id='exists'),
        pytest.param('missing', False, id='exists-missing'),
        pytest.param('!missing', True, id='does-not-exist'),
        pytest.param('!app', False, id='does-not-exist-present'),
        pytest.param('app=web,tier=frontend', True, id='comma-is-and'),
        pytest.param('app=web,tier=backend', False, id='comma-is-and-one-fails'),
        pytest.param(' app = web , tier in ( frontend ) ', True, id='whitespace-around-tokens'),
        pytest.param('example.com/team=payments', True, id='prefixed-key'),
        pytest.param('replicas>4', True, id='greater-than'),
        pytest.param('replicas<5', False, id='less-than-is-strict'),
        pytest.param('app>1', False, id='greater-than-non-integer-label'),
        pytest.param('app=', False, id='empty-value'),
        pytest.param('app in ()', False, id='empty-parentheses-hold-the-empty-value'),
        pytest.param('app in (,web)', True, id='empty-slot-in-set'),
        pytest.param('in in (in)', False, id='keywords-as-key-and-value'),
    ],
)
def test_label_selector_selects_like_the_api_server(selector: str, selected: bool) -> None:
    """Labels concept page, "Label selectors": equality-based (=, ==, !=) and set-based (in,
    notin, exists, !) requirements ANDed by commas; `!=` and `notin` match objects without the
    label; apimachinery labels.Parse also accepts `>` and `<` on integers."""
    assert parse_label_selector(selector)(LABELS) is selected


@pytest.mark.parametrize(
    ('selector', 'message'),
    [
        pytest.param(
            'app=web tier',
            "found 'tier', expected: ',' or 'end of string'",
            id='two-terms-no-comma',
        ),
        pytest.param(
            ',', "found ',', expected: !, identifier, or 'end of string'", id='lone-comma'
        ),
        pytest.param('app=web,', "found '', expected: identifier after ','", id='trailing-comma'),
        pytest.param('app web', 'expected: in, notin, =, ==, !=, gt, lt', id='missing-operator'),
        pytest.param('app in web', "expected: '('", id='set-without-parentheses'),
        pytest.param('app in (web', "found '', expected: ',' or ')'", id='unclosed-set'),
        pytest.param(
            '!app=web', "found '=', expected: ',' or 'end of string'", id='negation-with-value'
        ),
        pytest.param(
            'bad_key_=x', 'name part must consist of alphanumeric characters', id='bad-key'
        ),
        pytest.param('a/b/c=x', 'with an optional DNS subdomain prefix', id='two-slashes'),
        pytest.param(
            'Upper.Case/k=x', 'prefix part a lowercase RFC 1123 subdomain', id='bad-prefix'
        ),
        pytest.param('k=' + 'v' * 64, 'must be no more than 63 characters', id='value-too-long'),
        pytest.param('k=-v', 'a valid label must be an empty string', id='bad-value'),
        pytest.param('k>five', 'the value must be an integer', id='non-integer-bound'),
    ],
)
def test_invalid_label_selector_is_refused_with_the_server_message(
    selector: str, message: str
) -> None:
    """apimachinery labels.Parse error texts, and validation.IsQualifiedName /
    IsValidLabelValue for keys and values; the API answers them with 400 BadRequest."""
    with pytest.raises(SelectorError) as raised:
        parse_label_selector(selector)
    assert message in str(raised.value)


def test_requirement_errors_say_which_requirement() -> None:
    """labels.Parse wraps requirement errors as "unable to parse requirement: ..."."""
    with pytest.raises(SelectorError) as raised:
        parse_label_selector('app=web,bad_key_=x')
    assert str(raised.value).startswith('unable to parse requirement: <nil>: Invalid value:')


# Label keys and values that apimachinery accepts, for generated selectors.
_name = st.from_regex(r'[a-z0-9]([-a-z0-9_.]{0,10}[a-z0-9])?', fullmatch=True)
_prefix = st.from_regex(r'[a-z0-9]{1,8}(\.[a-z0-9]{1,8}){0,2}', fullmatch=True)
label_keys = st.one_of(_name, st.builds(lambda p, n: f'{p}/{n}', _prefix, _name)).filter(
    lambda k: k not in ('in', 'notin')
)
label_values = st.one_of(st.just(''), _name)
label_sets = st.dictionaries(label_keys, label_values, max_size=5)


@given(label_sets)
def test_equality_selector_of_an_object_labels_selects_it(labels: dict[str, str]) -> None:
    """Labels concept page: an object matches the selector of all its own labels."""
    selector = ','.join(f'{k}={v}' for k, v in labels.items())
    assert parse_label_selector(selector)(labels)


@given(label_sets, label_keys, label_values)
def test_in_and_notin_are_complements(labels: dict[str, str], key: str, value: str) -> None:
    """`k in (v)` and `k notin (v)` select disjoint sets that together cover every object."""
    within = parse_label_selector(f'{key} in ({value})')(labels)
    outside = parse_label_selector(f'{key} notin ({value})')(labels)
    assert within != outside


@given(label_sets, label_keys)
def test_exists_and_does_not_exist_are_complements(labels: dict[str, str], key: str) -> None:
    """`k` and `!k` (labels concept page, set-based requirements)."""
    assert parse_label_selector(key)(labels) != parse_label_selector(f'!{key}')(labels)


# --- metav1.LabelSelector objects ----------------------------------------------------------------


@pytest.mark.parametrize(
    ('selector', 'selected'),
    [
        pytest.param(None, False, id='null-selects-nothing'),
        pytest.param({}, True, id='empty-selects-everything'),
        pytest.param({'matchLabels': {'app': 'web'}}, True, id='match-labels'),
        pytest.param({'matchLabels': {'app': 'db'}}, False, id='match-labels-other-value'),
        pytest.param(
            {'matchExpressions': [{'key': 'tier', 'operator': 'In', 'values': ['frontend']}]},
            True,
            id='in',
        ),
        pytest.param(
            {'matchExpressions': [{'key': 'tier', 'operator': 'NotIn', 'values': ['frontend']}]},
            False,
            id='notin',
        ),
        pytest.param(
            {'matchExpressions': [{'key': 'app', 'operator': 'Exists'}]}, True, id='exists'
        ),
        pytest.param(
            {'matchExpressions': [{'key': 'app', 'operator': 'DoesNotExist'}]},
            False,
            id='does-not-exist',
        ),
        pytest.param(
            {
                'matchLabels': {'app': 'web'},
                'matchExpressions': [{'key': 'tier', 'operator': 'In', 'values': ['backend']}],
            },
            False,
            id='labels-and-expressions-are-anded',
        ),
    ],
)
def test_label_selector_object_selects_like_labelselectorasselector(
    selector: dict[str, Any] | None, selected: bool
) -> None:
    """Labels concept page, "Resources that support set-based requirements", and metav1
    LabelSelectorAsSelector: a null selector selects nothing, an empty one everything."""
    assert label_selector_from_object(selector)(LABELS) is selected


@pytest.mark.parametrize(
    ('selector', 'message'),
    [
        pytest.param(
            {'matchExpressions': [{'key': 'a', 'operator': 'Like', 'values': ['x']}]},
            '"Like" is not a valid label selector operator',
            id='unknown-operator',
        ),
        pytest.param(
            {'matchExpressions': [{'key': 'a', 'operator': 'In', 'values': []}]},
            "values set can't be empty",
            id='in-without-values',
        ),
        pytest.param(
            {'matchExpressions': [{'key': 'a', 'operator': 'Exists', 'values': ['x']}]},
            'values set must be empty for exists and does not exist',
            id='exists-with-values',
        ),
        pytest.param({'matchLabels': {'a': 'bad value'}}, 'a valid label', id='bad-label-value'),
    ],
)
def test_invalid_label_selector_object_is_refused(selector: dict[str, Any], message: str) -> None:
    """metav1 LabelSelectorAsSelector and labels.NewRequirement validation messages."""
    with pytest.raises(SelectorError) as raised:
        label_selector_from_object(selector)
    assert message in str(raised.value)


# --- Field selectors -----------------------------------------------------------------------------

SECRET = {
    'metadata': {'name': 'tenure-exporter', 'namespace': 'payments'},
    'type': 'kubernetes.io/service-account-token',
}
POD = {'metadata': {'name': 'p', 'namespace': 'x'}, 'spec': {'hostNetwork': True}, 'status': {}}


@pytest.mark.parametrize(
    ('obj', 'selector', 'supported', 'selected'),
    [
        pytest.param(SECRET, '', ['type'], True, id='empty-selects-everything'),
        pytest.param(SECRET, 'metadata.name=tenure-exporter', [], True, id='name-always-supported'),
        pytest.param(SECRET, 'metadata.namespace==payments', [], True, id='double-equals'),
        pytest.param(SECRET, 'metadata.namespace!=payments', [], False, id='not-equals'),
        pytest.param(
            SECRET, 'type=kubernetes.io/service-account-token', ['type'], True, id='secret-type'
        ),
        pytest.param(
            SECRET, 'metadata.name=tenure-exporter,type=Opaque', ['type'], False, id='comma-is-and'
        ),
        pytest.param(SECRET, 'metadata.name=a,,', [], False, id='empty-terms-are-skipped'),
        pytest.param(POD, 'status.phase=', ['status.phase'], True, id='missing-field-is-empty'),
        pytest.param(POD, 'status.phase!=Running', ['status.phase'], True, id='missing-not-equal'),
        pytest.param(
            POD, 'spec.hostNetwork=true', ['spec.hostNetwork'], True, id='booleans-as-text'
        ),
        pytest.param(
            {'metadata': {'name': 'a,b=c\\d'}},
            r'metadata.name=a\,b\=c\\d',
            [],
            True,
            id='escaped-comma-equals-backslash',
        ),
        pytest.param(
            {'metadata': {'name': 'e'}, 'source': {'component': 'kubelet'}},
            'source=kubelet',
            {'source': 'source.component'},
            True,
            id='label-mapped-to-another-path',
        ),
    ],
)
def test_field_selector_selects_like_the_api_server(
    obj: dict[str, Any], selector: str, supported: Any, selected: bool
) -> None:
    """Field selectors page: `=`, `==`, `!=` chained by commas; metadata.name and
    metadata.namespace work for every resource; apimachinery fields.EscapeValue escapes `\\`,
    `,` and `=`; resource field sets give unset fields as "" and booleans as true/false."""
    assert parse_field_selector(selector, supported)(obj) is selected


@pytest.mark.parametrize(
    ('selector', 'message'),
    [
        pytest.param(
            'spec.replicas=1', 'field label not supported: spec.replicas', id='unsupported'
        ),
        pytest.param(
            'metadata.name = x', 'field label not supported: metadata.name ', id='spaces-are-kept'
        ),
        pytest.param(
            'metadata.name',
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'",
            id='no-operator',
        ),
        pytest.param(
            'metadata.name=a=b',
            'invalid field selector: unescaped character in value: 61',
            id='unescaped-equals',
        ),
        pytest.param(
            r'metadata.name=a\q',
            'invalid field selector: invalid escape sequence: \\q',
            id='bad-escape',
        ),
        pytest.param(
            'metadata.name=a\\',
            'invalid field selector: invalid escape sequence: \\',
            id='trailing-backslash',
        ),
    ],
)
def test_invalid_field_selector_is_refused_with_the_server_message(
    selector: str, message: str
) -> None:
    """Field selectors page ("Supported fields": an unsupported field is an error) and
    apimachinery fields.ParseSelector / UnescapeValue messages."""
    with pytest.raises(SelectorError) as raised:
        parse_field_selector(selector, ['status.phase'])
    assert str(raised.value) == message

"""Contract tests: CEL validation rules behave as on a real apiserver.

Pinned documents:
- https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules
- https://kubernetes.io/docs/reference/using-api/cel/ (type mapping, escaping, libraries)
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tenure_devtools.kubeapi import cel
from tenure_devtools.kubeapi.schema import check_crd_schema, validate

APPROVAL_SCHEMA: dict[str, Any] = {
    'type': 'object',
    'properties': {
        'spec': {
            'type': 'object',
            'x-kubernetes-validations': [
                {
                    'rule': 'self.requester.lowerAscii() != self.approver.lowerAscii()',
                    'message': 'the approver must not be the requester',
                    'fieldPath': '.approver',
                },
                {
                    'rule': '!has(self.expiresAt) || self.expiresAt > self.approvedAt',
                    'messageExpression': "'expiresAt must follow approvedAt (' + "
                    "string(self.approvedAt) + ')'",
                },
            ],
            'properties': {
                'requester': {'type': 'string'},
                'approver': {'type': 'string'},
                'approvedAt': {'type': 'string', 'format': 'date-time'},
                'expiresAt': {'type': 'string', 'format': 'date-time'},
                'ticket': {
                    'type': 'string',
                    'x-kubernetes-validations': [
                        {'rule': 'self == oldSelf', 'message': 'ticket is immutable'}
                    ],
                },
            },
        }
    },
}


def approval(**spec: Any) -> dict[str, Any]:
    base = {
        'requester': 'alice',
        'approver': 'bob',
        'approvedAt': '2025-03-01T10:00:00Z',
        'ticket': 'CHG0001',
    }
    return {'apiVersion': 'tenure.dev/v1alpha1', 'kind': 'X', 'metadata': {}, 'spec': base | spec}


@pytest.mark.parametrize(
    ('spec', 'expected'),
    [
        pytest.param({}, [], id='valid-approval'),
        pytest.param(
            {'approver': 'ALICE'},
            ['spec.approver: Invalid value: "object": the approver must not be the requester'],
            id='requester-cannot-approve-whatever-the-case',
        ),
        pytest.param(
            {'expiresAt': '2025-03-01T11:00:00+02:00'},
            [
                'spec: Invalid value: "object": expiresAt must follow approvedAt '
                '(2025-03-01T10:00:00Z)'
            ],
            id='timestamps-compare-as-instants-not-strings',
        ),
        pytest.param({'expiresAt': '2025-03-01T13:00:00+02:00'}, [], id='later-instant-passes'),
    ],
)
def test_rules_on_an_approval(spec: dict[str, Any], expected: list[str]) -> None:
    """Rules, `message`, `messageExpression`, `fieldPath`, has() on optional fields.

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules
    """
    assert [e.message for e in validate(APPROVAL_SCHEMA, approval(**spec))] == expected


@pytest.mark.parametrize(
    ('old_ticket', 'new_ticket', 'expected'),
    [
        pytest.param(None, 'CHG0002', [], id='transition-rules-do-not-run-on-create'),
        pytest.param('CHG0001', 'CHG0001', [], id='unchanged-value-passes'),
        pytest.param(
            'CHG0001',
            'CHG0002',
            ['spec.ticket: Invalid value: "string": ticket is immutable'],
            id='changed-value-is-refused',
        ),
    ],
)
def test_immutability_with_old_self(
    old_ticket: str | None, new_ticket: str, expected: list[str]
) -> None:
    """Transition rules see `oldSelf` only when the old object has the field.

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#transition-rules
    """
    old = None if old_ticket is None else approval(ticket=old_ticket)
    new = approval(ticket=new_ticket)
    assert [e.message for e in validate(APPROVAL_SCHEMA, new, old=old)] == expected


def test_transition_rules_follow_map_list_items_by_key() -> None:
    """Items of `x-kubernetes-list-type: map` lists correlate with old items by their keys.

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#transition-rules
    """
    schema = {
        'type': 'object',
        'properties': {
            'spec': {
                'type': 'object',
                'properties': {
                    'grants': {
                        'type': 'array',
                        'x-kubernetes-list-type': 'map',
                        'x-kubernetes-list-map-keys': ['name'],
                        'items': {
                            'type': 'object',
                            'required': ['name'],
                            'x-kubernetes-validations': [
                                {'rule': 'self.role == oldSelf.role', 'message': 'role is fixed'}
                            ],
                            'properties': {'name': {'type': 'string'}, 'role': {'type': 'string'}},
                        },
                    }
                },
            }
        },
    }
    old = {'spec': {'grants': [{'name': 'a', 'role': 'view'}, {'name': 'b', 'role': 'edit'}]}}
    new = {'spec': {'grants': [{'name': 'b', 'role': 'edit'}, {'name': 'a', 'role': 'admin'}]}}
    assert [e.message for e in validate(schema, new, old=old)] == [
        'spec.grants[1]: Invalid value: "object": role is fixed'
    ]


@pytest.mark.parametrize(
    ('rule', 'reason', 'expected_reason', 'expected'),
    [
        pytest.param(
            'false',
            'FieldValueForbidden',
            'FieldValueForbidden',
            'spec: Forbidden: no',
            id='forbidden',
        ),
        pytest.param(
            'false',
            'FieldValueRequired',
            'FieldValueRequired',
            'spec: Required value: no',
            id='required',
        ),
        pytest.param(
            'false',
            'FieldValueDuplicate',
            'FieldValueDuplicate',
            'spec: Duplicate value: "object"',
            id='duplicate',
        ),
        pytest.param(
            'self.missing == 1',
            None,
            'FieldValueInvalid',
            'spec: Invalid value: "object": no such key: missing evaluating rule: no',
            id='evaluation-error',
        ),
    ],
)
def test_rule_reasons_and_evaluation_errors(
    rule: str, reason: str | None, expected_reason: str, expected: str
) -> None:
    """`reason` picks the cause type; runtime errors name the rule (here by its message).

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules
    """
    entry: dict[str, Any] = {'rule': rule, 'message': 'no'}
    if reason is not None:
        entry['reason'] = reason
    schema = {
        'type': 'object',
        'properties': {
            'spec': {
                'type': 'object',
                'x-kubernetes-preserve-unknown-fields': True,
                'x-kubernetes-validations': [entry],
            }
        },
    }
    (error,) = validate(schema, {'spec': {'a': 1}})
    assert (error.reason, error.message) == (expected_reason, expected)


def test_a_rule_that_does_not_compile_is_reported_at_crd_creation() -> None:
    """A CRD whose rule does not compile is refused (422) with cel-go's text.

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules
    """
    schema = copy.deepcopy(APPROVAL_SCHEMA)
    schema['properties']['spec']['x-kubernetes-validations'] = [
        {'rule': 'self.requestor != self.approver'}
    ]
    (error,) = check_crd_schema(schema)
    assert error.endswith(
        "compilation failed: ERROR: <input>:1:5: undefined field 'requestor'\n"
        ' | self.requestor != self.approver\n'
        ' | ....^'
    )
    assert check_crd_schema(APPROVAL_SCHEMA) == []


@pytest.mark.parametrize(
    ('rule', 'message'),
    [
        pytest.param('self.owner ==', "Syntax error: mismatched input '<EOF>'", id='syntax'),
        pytest.param('owner == "x"', "undeclared reference to 'owner'", id='unknown-variable'),
        pytest.param(
            'self.owner.shout()', "undeclared reference to 'shout'", id='unknown-function'
        ),
        pytest.param('self.owner', 'cel expression must evaluate to a bool', id='not-a-bool'),
        pytest.param('size(self.owner) + 1', 'cel expression must evaluate to a bool', id='int'),
    ],
)
def test_compile_errors(rule: str, message: str) -> None:
    """cel-go's static errors: https://kubernetes.io/docs/reference/using-api/cel/#type-checking"""
    schema = {'type': 'object', 'properties': {'owner': {'type': 'string'}}}
    with pytest.raises(cel.CelCompileError) as raised:
        cel.check_rule(rule, schema)
    assert message in raised.value.message


@pytest.mark.parametrize(
    ('rule', 'value'),
    [
        # strings extension
        pytest.param("self.s.lowerAscii() == 'ab-É'", {'s': 'AB-É'}, id='lowerAscii-ascii-only'),
        pytest.param("self.s.upperAscii() == 'AB'", {'s': 'ab'}, id='upperAscii'),
        pytest.param("self.s.trim() == 'a b'", {'s': '  a b \n'}, id='trim'),
        pytest.param("self.s.split('/') == ['team', 'app']", {'s': 'team/app'}, id='split'),
        pytest.param("self.s.split('/', 1) == ['team/app']", {'s': 'team/app'}, id='split-limit'),
        pytest.param("['a', 'b'].join('-') == 'a-b'", {}, id='join'),
        pytest.param("self.s.replace('-', '_') == 'a_b_c'", {'s': 'a-b-c'}, id='replace'),
        pytest.param(
            "self.s.indexOf('b') == 1 && self.s.lastIndexOf('b') == 3", {'s': 'abab'}, id='index'
        ),
        pytest.param("self.s.substring(1, 3) == 'bc'", {'s': 'abcd'}, id='substring'),
        pytest.param("self.s.charAt(1) == 'é'", {'s': 'aé'}, id='charAt-counts-code-points'),
        # list library and macros
        pytest.param('self.l.isSorted() && self.l.sum() == 6', {'l': [1, 2, 3]}, id='isSorted-sum'),
        pytest.param('self.l.min() == 1 && self.l.max() == 3', {'l': [3, 1, 2]}, id='min-max'),
        pytest.param('self.l.indexOf(2) == 1', {'l': [1, 2]}, id='list-indexOf'),
        pytest.param(
            'self.l.all(x, x > 0) && self.l.exists(x, x == 2)', {'l': [1, 2]}, id='all-exists'
        ),
        pytest.param('self.l.exists_one(x, x > 1)', {'l': [1, 2]}, id='exists_one'),
        pytest.param(
            'self.l.map(x, x * 2) == [2, 4] && self.l.filter(x, x > 1) == [2]',
            {'l': [1, 2]},
            id='map-filter',
        ),
        # regex: RE2 semantics
        pytest.param("self.s.matches('^[a-z]+$')", {'s': 'abc'}, id='matches'),
        pytest.param("!self.s.matches('^[a-z]+$')", {'s': 'abc\n'}, id='re2-dollar-is-end-of-text'),
        pytest.param("self.s.matches('^[[:alpha:]]+$')", {'s': 'abc'}, id='re2-posix-class'),
        pytest.param("self.s.find('[0-9]+') == '42'", {'s': 'v42x7'}, id='find'),
        pytest.param("self.s.findAll('[0-9]+') == ['42', '7']", {'s': 'v42x7'}, id='findAll'),
        # url library
        pytest.param(
            "url(self.s).getHostname() == 'vault.example' && url(self.s).getPort() == '8200'",
            {'s': 'https://vault.example:8200/v1'},
            id='url',
        ),
        pytest.param("isURL(self.s) && !isURL('not a url')", {'s': 'https://x'}, id='isURL'),
        # types and time
        pytest.param("duration('1h30m') > duration('90m') == false", {}, id='durations'),
        pytest.param("timestamp('2025-01-01T00:00:00Z').getFullYear() == 2025", {}, id='timestamp'),
    ],
)
def test_kubernetes_cel_libraries(rule: str, value: dict[str, Any]) -> None:
    """The libraries CRD rules may use: https://kubernetes.io/docs/reference/using-api/cel/#cel-options-language-features-and-libraries"""
    schema = {
        'type': 'object',
        'properties': {
            's': {'type': 'string'},
            'l': {'type': 'array', 'items': {'type': 'integer'}},
        },
    }
    cel.check_rule(rule, schema)
    assert cel.compile_rule(rule).evaluate(value, schema=schema) is True


@pytest.mark.parametrize(
    ('schema', 'value', 'rule'),
    [
        pytest.param(
            {
                'type': 'object',
                'properties': {'x-y': {'type': 'string'}, 'namespace': {'type': 'string'}},
            },
            {'x-y': 'a', 'namespace': 'b'},
            "self.x__dash__y == 'a' && self.__namespace__ == 'b'",
            id='property-names-are-escaped',
        ),
        pytest.param(
            {'type': 'object', 'properties': {'port': {'x-kubernetes-int-or-string': True}}},
            {'port': 8080},
            'type(self.port) == int',
            id='int-or-string-is-dynamic',
        ),
        pytest.param(
            {'type': 'object', 'properties': {'ttl': {'type': 'string', 'format': 'duration'}}},
            {'ttl': '1h30m'},
            "self.ttl == duration('90m')",
            id='duration-format-is-a-duration',
        ),
        pytest.param(
            {'type': 'object', 'properties': {'ratio': {'type': 'number'}}},
            {'ratio': 1},
            'self.ratio == 1.0',
            id='numbers-are-doubles',
        ),
        pytest.param(
            {'type': 'object', 'additionalProperties': {'type': 'string'}},
            {'team': 'a', 'tier': 'b'},
            "self.all(k, k.startsWith('t')) && self['team'] == 'a'",
            id='additional-properties-are-maps',
        ),
        pytest.param(
            {'type': 'object', 'properties': {'spec': {'type': 'object'}}},
            {'apiVersion': 'v1', 'kind': 'K', 'metadata': {'name': 'n', 'uid': 'u'}},
            "self.metadata.name == 'n' && self.kind == 'K' && !has(self.metadata.uid)",
            id='resource-root-sees-type-meta-and-name',
        ),
    ],
)
def test_schema_values_map_to_cel_types(schema: dict[str, Any], value: Any, rule: str) -> None:
    """Type mapping and escaping: https://kubernetes.io/docs/reference/using-api/cel/#type-checking"""
    root = 'spec' in schema.get('properties', {})
    assert cel.compile_rule(rule).evaluate(value, schema=schema, resource_root=root) is True


def test_rules_are_compiled_once_per_text() -> None:
    """The emulator validates on every write: a rule is parsed once and then reused."""
    assert cel.compile_rule('self.a == 1') is cel.compile_rule('self.a == 1')


def test_transition_rules_are_recognised() -> None:
    """A rule that mentions oldSelf is a transition rule: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#transition-rules"""
    assert cel.compile_rule('self == oldSelf').uses_old_self
    assert not cel.compile_rule('self.size() > 0').uses_old_self


def test_runtime_overload_errors_name_the_rule() -> None:
    """int-or-string bypasses type checks; a bad operand is reported as the apiserver words it.

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules
    """
    schema = {
        'type': 'object',
        'properties': {
            'spec': {
                'type': 'object',
                'properties': {
                    'port': {
                        'x-kubernetes-int-or-string': True,
                        'x-kubernetes-validations': [{'rule': 'self > 0'}],
                    }
                },
            }
        },
    }
    (error,) = validate(schema, {'spec': {'port': 'http'}})
    assert error.message == (
        'spec.port: Invalid value: "": \'no such overload\': call arguments did not match a '
        'supported operator, function or macro signature for rule: self > 0'
    )

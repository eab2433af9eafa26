"""Contract tests: the emulator prunes, defaults and validates custom resources like the apiserver.

Pinned documents:
- CRD: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
  (sections "Specifying a structural schema", "Field pruning", "Defaulting", "Validation",
  "Validation ratcheting", "Validation rules").
- Messages: k8s.io/apimachinery/pkg/util/validation/field (errors.go) around the kube-openapi
  validator texts, as the apiserver converts them (apiextensions-apiserver validation.go).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenure_devtools.kubeapi.schema import (
    FieldError,
    apply_defaults,
    check_crd_schema,
    prune,
    validate,
)

TICKET_SCHEMA: dict[str, Any] = {
    'type': 'object',
    'properties': {
        'spec': {
            'type': 'object',
            'required': ['ticket'],
            'properties': {
                'ticket': {
                    'type': 'object',
                    'required': ['id'],
                    'properties': {
                        'id': {'type': 'string', 'pattern': '^[a-z]+$', 'maxLength': 8},
                        'state': {
                            'type': 'string',
                            'enum': ['Requested', 'Approved'],
                            'default': 'Requested',
                        },
                    },
                },
                'owner': {'type': 'string', 'minLength': 2},
                'replicas': {'type': 'integer', 'minimum': 1, 'maximum': 10},
                'ratio': {'type': 'number', 'exclusiveMaximum': True, 'maximum': 1},
                'expiresAt': {'type': 'string', 'format': 'date-time'},
                'port': {'x-kubernetes-int-or-string': True},
                'verbs': {
                    'type': 'array',
                    'items': {'type': 'string'},
                    'minItems': 1,
                    'maxItems': 3,
                    'x-kubernetes-list-type': 'set',
                },
                'rules': {
                    'type': 'array',
                    'x-kubernetes-list-type': 'map',
                    'x-kubernetes-list-map-keys': ['name'],
                    'items': {
                        'type': 'object',
                        'required': ['name'],
                        'properties': {
                            'name': {'type': 'string'},
                            'verbs': {'type': 'array', 'items': {'type': 'string'}},
                        },
                    },
                },
                'labels': {
                    'type': 'object',
                    'additionalProperties': {'type': 'string'},
                    'maxProperties': 2,
                    'minProperties': 1,
                },
                'note': {'type': 'string', 'nullable': True},
            },
        },
        'status': {
            'type': 'object',
            'properties': {'phase': {'type': 'string'}},
        },
    },
}


def resource(**spec: Any) -> dict[str, Any]:
    return {
        'apiVersion': 'tenure.dev/v1alpha1',
        'kind': 'ServiceIdentity',
        'metadata': {'name': 'billing', 'namespace': 'team-a'},
        'spec': {'ticket': {'id': 'abc', 'state': 'Approved'}, **spec},
    }


# ---------------------------------------------------------------------------------------------
# Pruning


@pytest.mark.parametrize(
    ('schema', 'given', 'expected'),
    [
        pytest.param(
            TICKET_SCHEMA,
            {**resource(), 'spec': {'ticket': {'id': 'abc', 'color': 'red'}, 'extra': 1}},
            {**resource(), 'spec': {'ticket': {'id': 'abc'}}},
            id='unknown-nested-fields-are-dropped',
        ),
        pytest.param(
            TICKET_SCHEMA,
            {**resource(), 'status': {'phase': 'Active', 'conditions': [{'type': 'Ready'}]}},
            {**resource(), 'status': {'phase': 'Active'}},
            id='undeclared-status-fields-vanish-kopf-574',
        ),
        pytest.param(
            {'type': 'object', 'properties': {'spec': {'type': 'object'}}},
            {**resource(), 'status': {'anything': True}},
            {**resource(), 'spec': {}},
            id='undeclared-status-is-dropped-entirely',
        ),
        pytest.param(
            {
                'type': 'object',
                'properties': {
                    'spec': {
                        'type': 'object',
                        'x-kubernetes-preserve-unknown-fields': True,
                        'properties': {'known': {'type': 'object', 'properties': {}}},
                    }
                },
            },
            {**resource(), 'spec': {'free': {'form': [1]}, 'known': {'dropped': 1}}},
            {**resource(), 'spec': {'free': {'form': [1]}, 'known': {}}},
            id='preserve-unknown-keeps-unknown-but-prunes-declared-children',
        ),
        pytest.param(
            TICKET_SCHEMA,
            {
                **resource(labels={'a': 'x', 'b': 'y'}),
                'metadata': {'name': 'n', 'annotations': {'k': 'v'}},
            },
            {
                **resource(labels={'a': 'x', 'b': 'y'}),
                'metadata': {'name': 'n', 'annotations': {'k': 'v'}},
            },
            id='additional-properties-and-root-metadata-are-kept',
        ),
        pytest.param(
            {
                'type': 'object',
                'properties': {
                    'spec': {
                        'type': 'object',
                        'properties': {
                            'template': {
                                'type': 'object',
                                'x-kubernetes-embedded-resource': True,
                                'properties': {'data': {'type': 'object', 'properties': {}}},
                            }
                        },
                    }
                },
            },
            {
                **resource(),
                'spec': {
                    'template': {
                        'apiVersion': 'v1',
                        'kind': 'ConfigMap',
                        'metadata': {'name': 'x', 'bogus': 1},
                        'data': {'k': 'v'},
                        'other': 1,
                    }
                },
            },
            {
                **resource(),
                'spec': {
                    'template': {
                        'apiVersion': 'v1',
                        'kind': 'ConfigMap',
                        'metadata': {'name': 'x'},
                        'data': {},
                    }
                },
            },
            id='embedded-resource-keeps-type-meta-and-object-meta-only',
        ),
    ],
)
def test_pruning_drops_what_the_schema_does_not_declare(
    schema: dict[str, Any], given: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Field pruning (and #controlling-pruning)..

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#field-pruning
    """
    before = copy.deepcopy(given)
    assert prune(schema, given) == expected
    assert given == before, 'the input object must not be modified'


# ---------------------------------------------------------------------------------------------
# Defaulting

DEFAULTS_SCHEMA: dict[str, Any] = {
    'type': 'object',
    'properties': {
        'spec': {
            'type': 'object',
            'properties': {
                'mode': {'type': 'string', 'default': 'Enforce'},
                'limits': {
                    'type': 'object',
                    'properties': {'ttl': {'type': 'string', 'default': '1h'}},
                },
                'vault': {
                    'type': 'object',
                    'default': {},
                    'properties': {'mount': {'type': 'string', 'default': 'secret'}},
                },
                'note': {'type': 'string', 'nullable': True, 'default': 'n/a'},
                'owner': {'type': 'string'},
                'items': {
                    'type': 'array',
                    'items': {'type': 'string', 'default': 'x'},
                },
            },
        }
    },
}


@pytest.mark.parametrize(
    ('spec', 'expected'),
    [
        pytest.param(
            {},
            {'mode': 'Enforce', 'vault': {'mount': 'secret'}, 'note': 'n/a'},
            id='absent-fields-get-defaults-and-defaults-are-defaulted',
        ),
        pytest.param(
            {'limits': {}},
            {
                'mode': 'Enforce',
                'limits': {'ttl': '1h'},
                'vault': {'mount': 'secret'},
                'note': 'n/a',
            },
            id='defaults-fill-existing-nested-objects',
        ),
        pytest.param(
            {'mode': None, 'note': None, 'owner': None},
            {'mode': 'Enforce', 'vault': {'mount': 'secret'}, 'note': None},
            id='null-is-defaulted-unless-nullable-and-dropped-without-default',
        ),
        pytest.param(
            {'mode': 'Audit', 'items': [None, 'y']},
            {'mode': 'Audit', 'items': ['x', 'y'], 'vault': {'mount': 'secret'}, 'note': 'n/a'},
            id='explicit-values-win-and-null-items-take-the-item-default',
        ),
    ],
)
def test_defaults_fill_absent_fields(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    """Defaulting and nullable and #defaulting-and-nullable..

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#defaulting
    """
    result = apply_defaults(DEFAULTS_SCHEMA, {**resource(), 'spec': spec})
    assert result['spec'] == expected


def test_defaults_do_not_create_absent_parents() -> None:
    """Defaulting applies only inside objects that exist..

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#defaulting
    """
    result = apply_defaults(DEFAULTS_SCHEMA, {'apiVersion': 'v', 'kind': 'K', 'metadata': {}})
    assert 'spec' not in result


# ---------------------------------------------------------------------------------------------
# Validation: one keyword at a time, with the apiserver's text


def messages(errors: list[FieldError]) -> list[tuple[str, str, str]]:
    return [(e.field, e.reason, e.message) for e in errors]


@pytest.mark.parametrize(
    ('spec', 'expected'),
    [
        pytest.param(
            {'ticket': None},
            [
                (
                    'spec.ticket',
                    'FieldValueTypeInvalid',
                    'spec.ticket: Invalid value: "null": spec.ticket in body must be of type '
                    'object: "null"',
                )
            ],
            id='null-for-a-non-nullable-object',
        ),
        pytest.param(
            {'ticket': {'id': 'x y'}},
            [
                (
                    'spec.ticket.id',
                    'FieldValueInvalid',
                    'spec.ticket.id: Invalid value: "x y": spec.ticket.id in body should match '
                    "'^[a-z]+$'",
                )
            ],
            id='pattern',
        ),
        pytest.param(
            {'ticket': {'id': 'abcdefghij'}},
            [
                (
                    'spec.ticket.id',
                    'FieldValueTooLong',
                    'spec.ticket.id: Too long: may not be longer than 8',
                )
            ],
            id='max-length',
        ),
        pytest.param(
            {'ticket': {'id': 'abc'}, 'owner': 'é'},
            [
                (
                    'spec.owner',
                    'FieldValueInvalid',
                    'spec.owner: Invalid value: "é": spec.owner in body should be at least 2 chars '
                    'long',
                )
            ],
            id='min-length-counts-characters-not-bytes',
        ),
        pytest.param(
            {'ticket': {'id': 'abc', 'state': 'Foo'}},
            [
                (
                    'spec.ticket.state',
                    'FieldValueNotSupported',
                    'spec.ticket.state: Unsupported value: "Foo": supported values: "Requested", '
                    '"Approved"',
                )
            ],
            id='enum',
        ),
        pytest.param(
            {'ticket': {}},
            [('spec.ticket.id', 'FieldValueRequired', 'spec.ticket.id: Required value')],
            id='required',
        ),
        pytest.param(
            {'ticket': {'id': 'abc'}, 'replicas': 15},
            [
                (
                    'spec.replicas',
                    'FieldValueInvalid',
                    'spec.replicas: Invalid value: 15: spec.replicas in body should be less than '
                    'or equal to 10',
                )
            ],
            id='maximum',
        ),
        pytest.param(
            {'ticket': {'id': 'abc'}, 'replicas': 0},
            [
                (
                    'spec.replicas',
                    'FieldValueInvalid',
                    'spec.replicas: Invalid value: 0: spec.replicas in body should be greater than '
                    'or equal to 1',
                )
            ],
            id='minimum',
        ),
        pytest.param(
            {'ticket': {'id': 'abc'}, 'ratio': 1.0},
            [
                (
                    'spec.ratio',
                    'FieldValueInvalid',
                    'spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1',
                )
            ],
            id='exclusive-maximum',
        ),
        pytest.param(
            {'ticket': {'id': 'abc'}, 'replicas': 'three'},
            [
                (
                    'spec.replicas',
                    'FieldValueTypeInvalid',
                    'spec.replicas: Invalid value: "string": spec.replicas in body must be of type '
                    'integer: "string"',
                )
            ],
            id='type',
        ),
        pytest.param(
            {'ticket': {'id': 'abc'}, 'replicas': 3.0, 'ratio': 0},
            [],
            id='integral-float-is-an-integer-and-integer-is-a-number',
        ),
        pytest.param(
            {'ticket': {'id': 'abc'}, 'expiresAt': '2025-01-01T00:00:00'},
            [
                (
                    'spec.expiresAt',
                    'FieldValueTypeInvalid',
                    'spec.expiresAt: Invalid value: "2025-01-01T00:00:00": '
                    'spec.expiresAt in body must be of type date-time: "2025-01-01T00:00:00"',
                )
            ],
            id='date-time-needs-a-time-zone',
        ),
        pytest.param(
            {'ticket': {'id': 'abc'}, 'expiresAt': '2025-01-01T10:00:00.5+02:00'},
            [],
            id='date-time-with-offset-and-fraction',
        ),
        pytest.param(
            {'ticket': {'id': 'abc'}, 'port': True},
            [
                (
                    'spec.port',
                    'FieldValueTypeInvalid',
                    'spec.port: Invalid value: "boolean": spec.port in body must be of type '
                    'integer,string: "boolean"',
                )
            ],
            id='int-or-string-refuses-a-boolean',
        ),
        pytest.param(
            {'ticket': {'id': 'abc'}, 'port': 'http', 'note': None},
            [],
            id='int-or-string-takes-a-string-and-nullable-takes-null',
        ),
        pytest.param(
            {'ticket': {'id': 'abc'}, 'verbs': ['get', 'get', 'list', 'watch']},
            [
                (
                    'spec.verbs',
                    'FieldValueTooMany',
                    'spec.verbs: Too many: 4: must have at most 3 items',
                ),
                ('spec.verbs[1]', 'FieldValueDuplicate', 'spec.verbs[1]: Duplicate value: "get"'),
            ],
            id='max-items-and-set-duplicates',
        ),
        pytest.param(
            {'ticket': {'id': 'abc'}, 'verbs': []},
            [
                (
                    'spec.verbs',
                    'FieldValueInvalid',
                    'spec.verbs: Invalid value: 0: spec.verbs in body should have at least 1 items',
                )
            ],
            id='min-items',
        ),
        pytest.param(
            {'ticket': {'id': 'abc'}, 'rules': [{'name': 'a'}, {'name': 'b'}, {'name': 'a'}]},
            [
                (
                    'spec.rules[2]',
                    'FieldValueDuplicate',
                    'spec.rules[2]: Duplicate value: map[string]interface {}{"name":"a"}',
                )
            ],
            id='map-list-duplicate-keys',
        ),
        pytest.param(
            {'ticket': {'id': 'abc'}, 'rules': [{'verbs': ['get']}]},
            [('spec.rules[0].name', 'FieldValueRequired', 'spec.rules[0].name: Required value')],
            id='list-indices-in-paths',
        ),
        pytest.param(
            {'ticket': {'id': 'abc'}, 'labels': {'a': '1', 'b': '2', 'c': '3'}},
            [
                (
                    'spec.labels',
                    'FieldValueTooMany',
                    'spec.labels: Too many: 2: must have at most 2 items',
                )
            ],
            id='max-properties',
        ),
        pytest.param(
            {'ticket': {'id': 'abc'}, 'labels': {}},
            [
                (
                    'spec.labels',
                    'FieldValueInvalid',
                    'spec.labels: Invalid value: 1: spec.labels in body should have at least 1 '
                    'properties',
                )
            ],
            id='min-properties',
        ),
        pytest.param(
            {'ticket': {'id': 'abc'}, 'labels': {'a': 1}},
            [
                (
                    'spec.labels.a',
                    'FieldValueTypeInvalid',
                    'spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of '
                    'type string: "integer"',
                )
            ],
            id='additional-properties-values-are-validated',
        ),
    ],
)
def test_each_keyword_reports_the_apiserver_message(
    spec: dict[str, Any], expected: list[tuple[str, str, str]]
) -> None:
    """Validation; texts from field.Error and kube-openapi..

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation
    """
    assert messages(validate(TICKET_SCHEMA, resource(**spec) | {'spec': spec})) == expected


def test_a_missing_spec_is_required() -> None:
    """Validation of `required` at the top..

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation
    """
    obj = {'apiVersion': 'tenure.dev/v1alpha1', 'kind': 'ServiceIdentity', 'metadata': {}}
    schema = {**TICKET_SCHEMA, 'required': ['spec']}
    assert messages(validate(schema, obj)) == [
        ('spec', 'FieldValueRequired', 'spec: Required value')
    ]


UNIQUE_SCHEMA: dict[str, Any] = {
    'type': 'object',
    'properties': {
        'spec': {
            'type': 'object',
            'properties': {
                'ids': {'type': 'array', 'items': {'type': 'integer'}, 'uniqueItems': True},
                'size': {'type': 'number', 'multipleOf': 0.5},
            },
        }
    },
}


@pytest.mark.parametrize(
    ('spec', 'expected'),
    [
        pytest.param(
            {'ids': [1, 2, 1]},
            ['spec.ids: Invalid value: "": spec.ids in body shouldn\'t contain duplicates'],
            id='unique-items',
        ),
        pytest.param(
            {'size': 1.25},
            ['spec.size: Invalid value: 1.25: spec.size in body should be a multiple of 0.5'],
            id='multiple-of',
        ),
    ],
)
def test_keywords_crds_rarely_use_still_validate(spec: dict[str, Any], expected: list[str]) -> None:
    """kube-openapi keywords (uniqueItems is refused in CRDs, see check_crd_schema)..

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation
    """
    assert [e.message for e in validate(UNIQUE_SCHEMA, {'spec': spec})] == expected


def test_rules_are_not_run_when_the_shape_is_wrong() -> None:
    """CEL rules are skipped after type/required/enum/size errors (apiserver strategy.go).

    The message is the apiserver's hasBlockingErr text.
    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules
    """
    schema = copy.deepcopy(TICKET_SCHEMA)
    schema['properties']['spec']['x-kubernetes-validations'] = [
        {'rule': 'false', 'message': 'never'}
    ]
    errors = validate(schema, resource(replicas='many'))
    assert [e.message for e in errors][-1] == (
        '<nil>: Invalid value: "null": some validation rules were not checked because the object '
        'was invalid; correct the existing errors to complete validation'
    )
    assert 'never' not in ' '.join(e.message for e in errors)


@pytest.mark.parametrize(
    ('old_spec', 'new_spec', 'expected'),
    [
        pytest.param(
            {'ticket': {'id': 'BAD'}},
            {'ticket': {'id': 'BAD'}, 'owner': 'team-a'},
            [],
            id='unchanged-invalid-value-is-ratcheted',
        ),
        pytest.param(
            {'ticket': {'id': 'BAD'}},
            {'ticket': {'id': 'WORSE'}},
            [
                'spec.ticket.id: Invalid value: "WORSE": spec.ticket.id in body should match '
                "'^[a-z]+$'"
            ],
            id='changed-invalid-value-is-refused',
        ),
        pytest.param(
            {'ticket': {}},
            {'ticket': {}, 'owner': 'team-a'},
            ['spec.ticket.id: Required value'],
            id='required-is-never-ratcheted',
        ),
    ],
)
def test_updates_ratchet_errors_of_unchanged_values(
    old_spec: dict[str, Any], new_spec: dict[str, Any], expected: list[str]
) -> None:
    """Validation ratcheting (on by default since 1.30)..

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-ratcheting
    """
    old = resource() | {'spec': old_spec}
    new = resource() | {'spec': new_spec}
    assert [e.message for e in validate(TICKET_SCHEMA, new, old=old)] == expected


# ---------------------------------------------------------------------------------------------
# CRD creation: structural schema checks

ROOT = 'spec.versions[0].schema.openAPIV3Schema'


def crd_schema(**spec_properties: Any) -> dict[str, Any]:
    return {
        'type': 'object',
        'properties': {'spec': {'type': 'object', 'properties': spec_properties}},
    }


@pytest.mark.parametrize(
    ('schema', 'expected'),
    [
        pytest.param(TICKET_SCHEMA, [], id='a-structural-schema-is-accepted'),
        pytest.param(
            crd_schema(owner={'description': 'no type'}),
            [
                f'{ROOT}.properties[spec].properties[owner].type: Required value: '
                'must not be empty for specified object fields'
            ],
            id='every-field-needs-a-type',
        ),
        pytest.param(
            crd_schema(
                port={'x-kubernetes-int-or-string': True},
                blob={'x-kubernetes-preserve-unknown-fields': True},
            ),
            [],
            id='int-or-string-and-preserve-unknown-need-no-type',
        ),
        pytest.param(
            crd_schema(ref={'type': 'object', '$ref': '#/definitions/Ref'}),
            [f'{ROOT}.properties[spec].properties[ref].$ref: Forbidden: $ref is not supported'],
            id='no-ref',
        ),
        pytest.param(
            crd_schema(
                m={
                    'type': 'object',
                    'properties': {'a': {'type': 'string'}},
                    'additionalProperties': {'type': 'string'},
                }
            ),
            [
                f'{ROOT}.properties[spec].properties[m].additionalProperties: Forbidden: '
                'additionalProperties and properties are mutual exclusive'
            ],
            id='additional-properties-beside-properties',
        ),
        pytest.param(
            crd_schema(ids={'type': 'array', 'items': {'type': 'string'}, 'uniqueItems': True}),
            [
                f'{ROOT}.properties[spec].properties[ids].uniqueItems: Forbidden: uniqueItems '
                'cannot be '
                'set to true since the runtime complexity becomes quadratic'
            ],
            id='no-unique-items',
        ),
        pytest.param(
            crd_schema(ids={'type': 'array'}),
            [f'{ROOT}.properties[spec].properties[ids].items: Required value: must be specified'],
            id='arrays-need-items',
        ),
        pytest.param(
            crd_schema(id={'type': 'string', 'pattern': '^(?=a)'}),
            [
                f'{ROOT}.properties[spec].properties[id].pattern: Invalid value: "^(?=a)": must be '
                'a valid '
                "regular expression, but isn't: error parsing regexp: invalid perl operator: (?="
            ],
            id='patterns-must-be-re2',
        ),
        pytest.param(
            crd_schema(
                rules={
                    'type': 'array',
                    'x-kubernetes-list-type': 'map',
                    'x-kubernetes-list-map-keys': ['name'],
                    'items': {'type': 'object', 'properties': {'name': {'type': 'string'}}},
                }
            ),
            [
                f'{ROOT}.properties[spec].properties[rules].items.properties[name].default: '
                'Required value: '
                'this property is in x-kubernetes-list-map-keys, so it must have a default or be a '
                'required property'
            ],
            id='map-list-keys-must-be-required-or-defaulted',
        ),
        pytest.param(
            {
                **crd_schema(),
                'properties': {
                    **crd_schema()['properties'],
                    'metadata': {'type': 'object', 'properties': {'labels': {'type': 'object'}}},
                },
            },
            [
                f'{ROOT}.properties[metadata]: Forbidden: must not specify anything other than '
                'name and '
                'generateName, but metadata is implicitly specified'
            ],
            id='root-metadata-may-only-restrict-name',
        ),
        pytest.param(
            crd_schema(state={'type': 'string', 'enum': ['A'], 'default': 5}),
            [
                f'{ROOT}.properties[spec].properties[state].default: Invalid value: "integer": '
                ' in body must be of type string: "integer"',
                f'{ROOT}.properties[spec].properties[state].default: Unsupported value: 5: '
                'supported values: "A"',
            ],
            id='defaults-must-validate-against-their-schema',
        ),
    ],
)
def test_crd_schemas_must_be_structural(schema: dict[str, Any], expected: list[str]) -> None:
    """Structural schemas (apiextensions validation)..

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema
    """
    assert check_crd_schema(schema) == expected


def test_rules_that_do_not_compile_refuse_the_crd() -> None:
    """Validation rules are compiled at CRD creation..

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules
    """
    schema = crd_schema(owner={'type': 'string'})
    schema['properties']['spec']['x-kubernetes-validations'] = [{'rule': 'self.owner =='}]
    (error,) = check_crd_schema(schema)
    assert error.startswith(
        f'{ROOT}.properties[spec].x-kubernetes-validations[0].rule: Invalid value: '
        'apiextensions.ValidationRule{Rule:"self.owner ==", '
    )
    assert ': compilation failed: ERROR: <input>:1:' in error
    assert 'Syntax error' in error


def test_rules_are_compiled_only_once_the_schema_is_structural() -> None:
    """Schema errors hide rule errors, as in the apiserver..

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules
    """
    schema = crd_schema(owner={})
    schema['properties']['spec']['x-kubernetes-validations'] = [{'rule': 'self.owner =='}]
    assert [e for e in check_crd_schema(schema) if 'x-kubernetes-validations' in e] == []


def test_transition_rules_need_correlatable_items() -> None:
    """oldSelf is only available under map lists..

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#transition-rules
    """
    schema = crd_schema(
        verbs={
            'type': 'array',
            'x-kubernetes-list-type': 'set',
            'items': {'type': 'string', 'x-kubernetes-validations': [{'rule': 'self == oldSelf'}]},
        }
    )
    assert check_crd_schema(schema) == [
        f'{ROOT}.properties[spec].properties[verbs].items.x-kubernetes-validations[0].rule: '
        'Invalid value: "self == oldSelf": oldSelf cannot be used on the uncorrelatable portion '
        f'of the schema within {ROOT}.properties[spec].properties[verbs]'
    ]


# ---------------------------------------------------------------------------------------------
# Properties

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
spec_like = st.dictionaries(
    st.sampled_from(['ticket', 'owner', 'replicas', 'verbs', 'rules', 'labels', 'port', 'junk']),
    json_values,
    max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(spec=spec_like, status=json_values)
def test_prune_is_idempotent(spec: dict[str, Any], status: Any) -> None:
    """Pruning twice equals pruning once..

    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#field-pruning
    """
    obj = {**resource(), 'spec': spec, 'status': status}
    once = prune(TICKET_SCHEMA, obj)
    assert prune(TICKET_SCHEMA, once) == once


@settings(max_examples=200, deadline=None)
@given(spec=spec_like, old_spec=spec_like)
def test_validate_never_raises_on_arbitrary_json(
    spec: dict[str, Any], old_spec: dict[str, Any]
) -> None:
    """Any JSON gets a list of field errors, never an exception (a 422, not a 500)."""
    schema = copy.deepcopy(TICKET_SCHEMA)
    schema['properties']['spec']['x-kubernetes-validations'] = [
        {'rule': 'has(self.owner) ? self.owner.lowerAscii() != "root" : true'},
        {'rule': 'self.ticket == oldSelf.ticket', 'message': 'ticket is immutable'},
    ]
    new = {**resource(), 'spec': spec}
    old = {**resource(), 'spec': old_spec}
    for candidate in (new, apply_defaults(schema, prune(schema, new))):
        errors = validate(schema, candidate, old=old)
        assert all(isinstance(e, FieldError) and e.message.startswith(e.field) for e in errors)


def test_a_crd_may_restrict_metadata_name_and_the_restriction_is_enforced() -> None:
    """A CRD schema may constrain `metadata.name` and `metadata.generateName` only
    (kubernetes/kubernetes#77653, "disallow metadata specs other than name and generateName");
    the custom resource validator checks the whole object, so the restriction applies. The other
    ObjectMeta fields are the server's business and are neither pruned nor validated by the CRD."""
    schema = {
        'type': 'object',
        'properties': {
            'metadata': {
                'type': 'object',
                'properties': {'name': {'type': 'string', 'maxLength': 5}},
            },
        },
    }
    obj = {'metadata': {'name': 'too-long', 'labels': {'a': 'b'}, 'namespace': 'ns'}}
    assert prune(schema, obj) == obj
    assert [e.message for e in validate(schema, obj)] == [
        'metadata.name: Too long: may not be longer than 5'
    ]
    assert validate(schema, {'metadata': {'name': 'short'}}) == []

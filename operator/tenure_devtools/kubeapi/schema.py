"""Structural schemas of CustomResourceDefinitions: pruning, defaulting and validation.

What the apiserver does to a custom resource on every create, update and patch, in its order:
prune unknown fields, apply defaults, validate (OpenAPI v3 keywords, list types, then CEL
`x-kubernetes-validations`), and what it checks when a CRD is created (`check_crd_schema`).

Faithfulness notes, with the sources they follow:
- messages are `k8s.io/apimachinery/pkg/util/validation/field` errors around the
  kube-openapi validator's texts (`spec.x in body should match '^a$'`), converted as
  apiextensions-apiserver's `kubeOpenAPIResultToFieldErrors` does (so `maxLength` is
  "Too long: may not be longer than 5" and `minLength` is an invalid value);
- pruning and defaulting follow `pkg/apiserver/schema/pruning` and `.../defaulting`
  (nulls of non-nullable fields are dropped before defaulting; `x-kubernetes-embedded-resource`
  keeps `apiVersion`, `kind` and `metadata`);
- CEL is skipped, with the apiserver's "some validation rules were not checked" error, when the
  OpenAPI errors include a type, required, enum, too-long or too-many error (strategy.go);
- on update, validation ratcheting (GA in 1.33, on by default since 1.30) drops errors of
  unchanged values, except `required`, list-type errors and transition rules.

https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import decimal
import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeGuard

from tenure_devtools.kubeapi import cel

__all__ = [
    'FieldError',
    'apply_defaults',
    'check_crd_schema',
    'prune',
    'validate',
]

Schema = Mapping[str, Any]
JSON = Any

INVALID: Final = 'FieldValueInvalid'
REQUIRED: Final = 'FieldValueRequired'
NOT_SUPPORTED: Final = 'FieldValueNotSupported'
TYPE_INVALID: Final = 'FieldValueTypeInvalid'
FORBIDDEN: Final = 'FieldValueForbidden'
TOO_LONG: Final = 'FieldValueTooLong'
TOO_MANY: Final = 'FieldValueTooMany'
DUPLICATE: Final = 'FieldValueDuplicate'

# field.ErrorType.String(): the words between the path and the value.
_TYPE_WORDS: Final = {
    INVALID: 'Invalid value',
    REQUIRED: 'Required value',
    NOT_SUPPORTED: 'Unsupported value',
    TYPE_INVALID: 'Invalid value',
    FORBIDDEN: 'Forbidden',
    TOO_LONG: 'Too long',
    TOO_MANY: 'Too many',
    DUPLICATE: 'Duplicate value',
}
# Types whose message never shows the bad value (field.Error.ErrorBody).
_VALUELESS: Final = frozenset({REQUIRED, FORBIDDEN, TOO_LONG})
# OpenAPI failures after which the apiserver does not run CEL (strategy.go hasBlockingErr).
_BLOCKING: Final = frozenset({NOT_SUPPORTED, REQUIRED, TOO_LONG, TOO_MANY, TYPE_INVALID})
_NO_VALUE: Final = object()

CEL_SKIPPED: Final = (
    'some validation rules were not checked because the object was invalid; '
    'correct the existing errors to complete validation'
)


@dataclass(frozen=True)
class FieldError:
    """One cause of a 422 Invalid response, as in `status.details.causes`."""

    field: str
    """Path of the offending value, e.g. `spec.kubernetes.rules[0].verbs`."""
    reason: str
    """The cause type, e.g. `FieldValueRequired`."""
    message: str
    """The full text, e.g. `spec.ticket: Required value`."""

    def __str__(self) -> str:
        return self.message


def field_error(path: str, reason: str, value: Any = _NO_VALUE, detail: str = '') -> FieldError:
    """Build a FieldError exactly as `field.Error.Error()` renders it."""
    body = _TYPE_WORDS[reason]
    if reason not in _VALUELESS and value is not _NO_VALUE:
        body = f'{body}: {go_value(value)}'
    if detail:
        body = f'{body}: {detail}'
    where = path or '<nil>'  # field.Path(nil).String(), used for object-wide errors
    return FieldError(field=where, reason=reason, message=f'{where}: {body}')


# --------------------------------------------------------------------------------------------
# Go formatting of values, as field.Error prints them (%q for strings, %v for numbers, %#v else).


def go_quote(text: str) -> str:
    """Go's strconv.Quote."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in ('"', '\\'):
            out.append('\\' + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f'\\x{code:02x}')
        elif not char.isprintable() and code > 0x7F:
            out.append(f'\\u{code:04x}' if code <= 0xFFFF else f'\\U{code:08x}')
        else:
            out.append(char)
    out.append('"')
    return ''.join(out)


_GO_ESCAPES: Final = {
    '\a': '\\a',
    '\b': '\\b',
    '\f': '\\f',
    '\n': '\\n',
    '\r': '\\r',
    '\t': '\\t',
    '\v': '\\v',
}


def go_float(number: float) -> str:
    """Go's %v of a float64: shortest digits, exponent form from 1e+06 and below 1e-04."""
    if math.isnan(number):
        return 'NaN'
    if math.isinf(number):
        return '+Inf' if number > 0 else '-Inf'
    if number == 0:
        return '-0' if math.copysign(1.0, number) < 0 else '0'
    # repr() gives the shortest digits that round-trip, as Go's strconv does.
    _, digit_tuple, exponent = decimal.Decimal(repr(abs(number))).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = ''.join(map(str, digit_tuple))
    point = len(digits) + exponent  # position of the decimal point in `digits`
    power = point - 1
    sign = '-' if number < 0 else ''
    # %v is %g with the shortest precision, and Go then uses precision 6 to pick %e.
    if power < -4 or power >= 6:
        mantissa = digits[0] + ('.' + digits[1:] if len(digits) > 1 else '')
        return f'{sign}{mantissa}e{"-" if power < 0 else "+"}{abs(power):02d}'
    if point <= 0:
        return f'{sign}0.{"0" * -point}{digits}'
    if point >= len(digits):
        return sign + digits + '0' * (point - len(digits))
    return f'{sign}{digits[:point]}.{digits[point:]}'


def go_value(value: Any, *, sharp: bool = False) -> str:
    """A value the way field.Error prints it (`%q`, `%v` or `%#v`)."""
    if value is None:
        return '"null"' if not sharp else '<nil>'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, Mapping):
        inner = ', '.join(
            f'{go_quote(str(k))}:{go_value(value[k], sharp=True)}' for k in sorted(value)
        )
        return 'map[string]interface {}{' + inner + '}'
    if isinstance(value, Sequence):
        return '[]interface {}{' + ', '.join(go_value(v, sharp=True) for v in value) + '}'
    return go_quote(str(value))


def _number_text(bound: Any, value: Any) -> str:
    # kube-openapi compares an integer value with int64(bound) and prints that.
    if isinstance(value, int) and not isinstance(value, bool) and float(bound).is_integer():
        return str(int(bound))
    return go_float(float(bound)) if isinstance(bound, int | float) else str(bound)


# --------------------------------------------------------------------------------------------
# Paths, as field.Path renders them.


def _child(path: str, name: str) -> str:
    return f'{path}.{name}' if path else name


def _index(path: str, index: int) -> str:
    return f'{path}[{index}]'


def _key(path: str, key: str) -> str:
    return f'{path}[{key}]'


# --------------------------------------------------------------------------------------------
# Schema helpers.


def _sub(value: Any) -> Schema | None:
    return value if isinstance(value, Mapping) else None


def _properties(schema: Schema | None) -> Mapping[str, Any]:
    if schema is None:
        return {}
    properties = schema.get('properties')
    return properties if isinstance(properties, Mapping) else {}


def _additional(schema: Schema | None) -> tuple[bool, Schema | None]:
    """(present, schema) of `additionalProperties`; `true` is present without a schema."""
    if schema is None or 'additionalProperties' not in schema:
        return False, None
    value = schema['additionalProperties']
    if isinstance(value, Mapping):
        return True, value
    return bool(value), None


def _preserves(schema: Schema | None) -> bool:
    return bool(schema and schema.get('x-kubernetes-preserve-unknown-fields') is True)


def _embedded(schema: Schema | None) -> bool:
    return bool(schema and schema.get('x-kubernetes-embedded-resource') is True)


def _list_type(schema: Schema | None) -> str:
    value = schema.get('x-kubernetes-list-type') if schema else None
    return value if isinstance(value, str) else 'atomic'


def _map_keys(schema: Schema | None) -> list[str]:
    keys = schema.get('x-kubernetes-list-map-keys') if schema else None
    if isinstance(keys, Sequence) and not isinstance(keys, str):
        return [k for k in keys if isinstance(k, str)]
    return []


# --------------------------------------------------------------------------------------------
# Pruning (k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning/algorithm.go).

_META_FIELDS: Final = frozenset({'apiVersion', 'kind', 'metadata'})
# ObjectMeta fields kept in the metadata of an embedded resource (objectmeta coercion drops
# anything else, as decoding into metav1.ObjectMeta would).
_OBJECT_META_FIELDS: Final = frozenset(
    {
        'name',
        'generateName',
        'namespace',
        'selfLink',
        'uid',
        'resourceVersion',
        'generation',
        'creationTimestamp',
        'deletionTimestamp',
        'deletionGracePeriodSeconds',
        'labels',
        'annotations',
        'ownerReferences',
        'finalizers',
        'managedFields',
    }
)


def prune(schema: Schema, obj: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of `obj` without the fields the structural schema does not declare.

    At the root, `apiVersion`, `kind` and `metadata` are always kept (metadata is the
    server's business); `x-kubernetes-preserve-unknown-fields: true` keeps unknown fields (but
    still prunes inside declared ones); `additionalProperties` declares every key.
    """
    result: Any = copy.deepcopy(obj)
    if not isinstance(result, dict):
        return {}  # not an object: nothing of it would be kept
    given: Any = schema
    root = dict(given) if isinstance(given, Mapping) else {}
    root['x-kubernetes-embedded-resource'] = True
    _prune(result, root, is_root=True)
    return result


def _prune(value: Any, schema: Schema | None, *, is_root: bool = False) -> None:
    if _preserves(schema):
        _skip_prune(value, schema, is_root=is_root)
        return
    if isinstance(value, dict):
        if schema is None:
            value.clear()
            return
        properties = _properties(schema)
        has_additional, additional = _additional(schema)
        for key in list(value):
            item = value[key]
            if _embedded(schema) and _keeps_meta(key, item):
                if key == 'metadata' and not is_root:
                    _coerce_embedded_meta(item)
                continue
            if key in properties:
                _prune(item, _sub(properties[key]))
            elif has_additional:
                _prune(item, additional)
            else:
                del value[key]
    elif isinstance(value, list):
        items = _sub(schema.get('items')) if schema is not None else None
        for item in value:
            _prune(item, items)


def _skip_prune(value: Any, schema: Schema | None, *, is_root: bool) -> None:
    # Unknown fields stay; known ones are still pruned by their own schema.
    if schema is None:
        return
    if isinstance(value, dict):
        properties = _properties(schema)
        has_additional, additional = _additional(schema)
        for key, item in value.items():
            if _embedded(schema) and key in _META_FIELDS:
                if key == 'metadata' and not is_root and isinstance(item, dict):
                    _coerce_embedded_meta(item)
                continue
            if key in properties:
                _prune(item, _sub(properties[key]))
            elif has_additional and additional is not None:
                _prune(item, additional)
    elif isinstance(value, list):
        for item in value:
            _skip_prune(item, _sub(schema.get('items')), is_root=False)


def _keeps_meta(key: str, item: Any) -> bool:
    if key in ('apiVersion', 'kind'):
        return isinstance(item, str)
    return key == 'metadata' and isinstance(item, dict)


def _coerce_embedded_meta(meta: dict[str, Any]) -> None:
    for key in list(meta):
        if key not in _OBJECT_META_FIELDS:
            del meta[key]


# --------------------------------------------------------------------------------------------
# Defaulting (pkg/apiserver/schema/defaulting/algorithm.go and prunenulls.go).


def apply_defaults(schema: Schema, obj: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of `obj` with the schema's `default`s filled in.

    A default fills an absent field (or a null one that is not `nullable`) of an object that
    exists; absent parents are not created. Defaults are themselves defaulted recursively.
    Nulls of non-nullable fields without a default are dropped first, as the apiserver does.
    """
    result = copy.deepcopy(obj)
    _prune_nulls(result, schema)
    _default(result, schema)
    return result


def _prune_nulls(value: Any, schema: Schema | None) -> None:
    if schema is None:
        return
    if isinstance(value, dict):
        properties = _properties(schema)
        _, additional = _additional(schema)
        for key in list(value):
            item = value[key]
            sub = _sub(properties.get(key)) if key in properties else additional
            if sub is None:
                continue
            if item is None and 'default' not in sub and not sub.get('nullable'):
                del value[key]
            else:
                _prune_nulls(item, sub)
    elif isinstance(value, list):
        items = _sub(schema.get('items'))
        for item in value:
            _prune_nulls(item, items)


def _non_nullable_null(value: Any, schema: Schema | None) -> bool:
    return (
        value is None
        and schema is not None
        and not schema.get('nullable')
        and (schema.get('default') is not None)
    )


def _default(value: Any, schema: Schema | None) -> None:
    if schema is None:
        return
    if isinstance(value, dict):
        properties = _properties(schema)
        for key, prop in properties.items():
            sub = _sub(prop)
            if sub is None or sub.get('default') is None:
                continue
            if key not in value or _non_nullable_null(value[key], sub):
                value[key] = copy.deepcopy(sub['default'])
        _, additional = _additional(schema)
        for key in list(value):
            if key in properties:
                _default(value[key], _sub(properties[key]))
            elif additional is not None:
                if _non_nullable_null(value[key], additional):
                    value[key] = copy.deepcopy(additional['default'])
                _default(value[key], additional)
    elif isinstance(value, list):
        items = _sub(schema.get('items'))
        for i, item in enumerate(value):
            if _non_nullable_null(item, items):
                assert items is not None
                value[i] = copy.deepcopy(items['default'])
            _default(value[i], items)


# --------------------------------------------------------------------------------------------
# Validation.


def validate(
    schema: Schema, obj: dict[str, Any], *, old: dict[str, Any] | None = None
) -> list[FieldError]:
    """Validate a (pruned, defaulted) custom resource; `old` is the stored object on update.

    Never raises on a bad object: every problem is a FieldError.
    """
    given: Any = schema
    if not isinstance(given, Mapping):
        return []
    walker = _OpenAPIWalker()
    walker.node(schema, obj, '', _Old(old, old is not None), is_root=True)
    errors = list(walker.errors)
    errors.extend(_list_type_errors(schema, obj, ''))
    if any(e.reason in _BLOCKING for e in errors):
        if _has_rules(schema):
            errors.append(field_error('', INVALID, None, CEL_SKIPPED))
        return errors
    cel_walker = _CelWalker()
    cel_walker.node(schema, obj, '', _Old(old, old is not None), is_root=True)
    errors.extend(cel_walker.errors)
    return errors


@dataclass(frozen=True)
class _Old:
    """The correlated old value of a node (for ratcheting and transition rules)."""

    value: Any
    present: bool

    def unchanged(self, value: Any) -> bool:
        return self.present and _json_equal(self.value, value)

    def key(self, key: str) -> _Old:
        if self.present and isinstance(self.value, dict) and key in self.value:
            return _Old(self.value[key], True)
        return _ABSENT

    def item(self, schema: Schema | None, items: Sequence[Any], index: int) -> _Old:
        """The old item matching a new one: by keys in a map list, by value in a set."""
        if not self.present or not isinstance(self.value, list):
            return _ABSENT
        kind = _list_type(schema)
        new = items[index]
        if kind == 'map':
            keys = _map_keys(schema)
            if not isinstance(new, dict):
                return _ABSENT
            for candidate in self.value:
                if isinstance(candidate, dict) and all(
                    _json_equal(candidate.get(k), new.get(k)) for k in keys
                ):
                    return _Old(candidate, True)
        elif kind == 'set':
            for candidate in self.value:
                if _json_equal(candidate, new):
                    return _Old(candidate, True)
        return _ABSENT


_ABSENT: Final = _Old(None, False)


def _json_equal(a: Any, b: Any) -> bool:
    # JSON equality: 1 == 1.0, but True is not 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return (type(a) is type(b) and a == b) or (_is_number(a) and _is_number(b) and a == b)


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    """The JSON schema type name kube-openapi infers from a decoded value."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'boolean'
    if isinstance(value, int):
        return 'integer'
    if isinstance(value, float):
        return 'number'
    if isinstance(value, str):
        return 'string'
    if isinstance(value, list):
        return 'array'
    if isinstance(value, dict):
        return 'object'
    return 'null'


def _type_ok(declared: Sequence[str], value: Any) -> bool:
    actual = _json_type(value)
    if actual in declared:
        return True
    if actual == 'integer' and 'number' in declared:
        return True
    return actual == 'number' and 'integer' in declared and float(value).is_integer()


class _OpenAPIWalker:
    """kube-openapi's SchemaValidator, with the apiserver's conversion to field errors."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, error: FieldError, ratchet: bool) -> None:
        if not ratchet:
            self.errors.append(error)

    def node(
        self, schema: Schema | None, value: Any, path: str, old: _Old, *, is_root: bool = False
    ) -> None:
        if schema is None:
            return
        ratchet = old.unchanged(value)
        name = path
        if value is None:
            if not schema.get('nullable') and self._declared_types(schema):
                names = ','.join(self._declared_types(schema))
                self.add(
                    field_error(
                        path,
                        TYPE_INVALID,
                        'null',
                        f'{name} in body must be of type {names}: "null"',
                    ),
                    ratchet,
                )
            self._enum(schema, value, path, ratchet)
            return
        types = self._declared_types(schema)
        if types and not _type_ok(types, value):
            actual = _json_type(value)
            self.add(
                field_error(
                    path,
                    TYPE_INVALID,
                    actual,
                    f'{name} in body must be of type {",".join(types)}: "{actual}"',
                ),
                ratchet,
            )
        self._junctors(schema, value, path, ratchet)
        if isinstance(value, str):
            self._string(schema, value, path, ratchet)
        if _is_number(value):
            self._number(schema, value, path, ratchet)
        if isinstance(value, list):
            self._array(schema, value, path, old, ratchet)
        self._enum(schema, value, path, ratchet)
        if isinstance(value, dict):
            self._object(schema, value, path, old, ratchet, is_root=is_root)

    @staticmethod
    def _declared_types(schema: Schema) -> list[str]:
        if schema.get('x-kubernetes-int-or-string'):
            return ['integer', 'string']
        kind = schema.get('type')
        return [kind] if isinstance(kind, str) and kind else []

    def _string(self, schema: Schema, value: str, path: str, ratchet: bool) -> None:
        max_length = schema.get('maxLength')
        if _is_number(max_length) and len(value) > max_length:
            self.add(
                field_error(path, TOO_LONG, value, f'may not be longer than {int(max_length)}'),
                ratchet,
            )
        min_length = schema.get('minLength')
        if _is_number(min_length) and len(value) < min_length:
            detail = f'{path} in body should be at least {int(min_length)} chars long'
            self.add(field_error(path, INVALID, value, detail), ratchet)
        pattern = schema.get('pattern')
        if isinstance(pattern, str):
            try:
                matched = cel.compile_regex(pattern).search(value) is not None
            except cel.RegexError as e:
                # A CRD with such a pattern is refused at creation; say why if one slips in.
                self.add(field_error(path, INVALID, value, str(e)), ratchet)
            else:
                if not matched:
                    detail = f"{path} in body should match '{pattern}'"
                    self.add(field_error(path, INVALID, value, detail), ratchet)
        fmt = schema.get('format')
        if isinstance(fmt, str) and not _format_ok(fmt, value):
            detail = f'{path} in body must be of type {fmt}: {go_quote(value)}'
            self.add(field_error(path, TYPE_INVALID, value, detail), ratchet)

    def _number(self, schema: Schema, value: float, path: str, ratchet: bool) -> None:
        maximum = schema.get('maximum')
        if _is_number(maximum):
            exclusive = bool(schema.get('exclusiveMaximum'))
            if value > maximum or (exclusive and value == maximum):
                relation = 'less than' if exclusive else 'less than or equal to'
                detail = f'{path} in body should be {relation} {_number_text(maximum, value)}'
                self.add(field_error(path, INVALID, value, detail), ratchet)
        minimum = schema.get('minimum')
        if _is_number(minimum):
            exclusive = bool(schema.get('exclusiveMinimum'))
            if value < minimum or (exclusive and value == minimum):
                relation = 'greater than' if exclusive else 'greater than or equal to'
                detail = f'{path} in body should be {relation} {_number_text(minimum, value)}'
                self.add(field_error(path, INVALID, value, detail), ratchet)
        multiple = schema.get('multipleOf')
        if _is_number(multiple) and multiple > 0:
            quotient = value / multiple
            if not math.isclose(quotient, round(quotient), rel_tol=0, abs_tol=1e-9):
                detail = f'{path} in body should be a multiple of {_number_text(multiple, value)}'
                self.add(field_error(path, INVALID, value, detail), ratchet)

    def _array(self, schema: Schema, value: list[Any], path: str, old: _Old, ratchet: bool) -> None:
        max_items = schema.get('maxItems')
        if _is_number(max_items) and len(value) > max_items:
            self.add(
                field_error(
                    path, TOO_MANY, len(value), f'must have at most {int(max_items)} items'
                ),
                ratchet,
            )
        min_items = schema.get('minItems')
        if _is_number(min_items) and len(value) < min_items:
            detail = f'{path} in body should have at least {int(min_items)} items'
            self.add(field_error(path, INVALID, len(value), detail), ratchet)
        if schema.get('uniqueItems') is True and _has_duplicates(value):
            self.add(
                field_error(path, INVALID, '', f"{path} in body shouldn't contain duplicates"),
                ratchet,
            )
        items = _sub(schema.get('items'))
        for i in range(len(value)):
            self.node(items, value[i], _index(path, i), old.item(schema, value, i))

    def _enum(self, schema: Schema, value: Any, path: str, ratchet: bool) -> None:
        enum = schema.get('enum')
        if not isinstance(enum, Sequence) or isinstance(enum, str) or not enum:
            return
        if any(_json_equal(value, allowed) for allowed in enum):
            return
        if value is None and schema.get('nullable'):
            return
        allowed = ', '.join(
            go_quote(v if isinstance(v, str) else json.dumps(v, separators=(',', ':')))
            for v in enum
        )
        self.add(field_error(path, NOT_SUPPORTED, value, f'supported values: {allowed}'), ratchet)

    def _object(
        self,
        schema: Schema,
        value: dict[str, Any],
        path: str,
        old: _Old,
        ratchet: bool,
        *,
        is_root: bool,
    ) -> None:
        max_properties = schema.get('maxProperties')
        if _is_number(max_properties) and len(value) > max_properties:
            # kube-openapi reports the limit as the "actual" count: the apiserver prints it twice.
            limit = int(max_properties)
            self.add(
                field_error(path, TOO_MANY, limit, f'must have at most {limit} items'), ratchet
            )
        min_properties = schema.get('minProperties')
        if _is_number(min_properties) and len(value) < min_properties:
            limit = int(min_properties)
            detail = f'{path} in body should have at least {limit} properties'
            self.add(field_error(path, INVALID, limit, detail), ratchet)
        required = schema.get('required')
        if isinstance(required, Sequence) and not isinstance(required, str):
            for name in required:
                if isinstance(name, str) and name not in value:
                    # Not ratcheted: a missing required field is always an error.
                    self.errors.append(field_error(_child(path, name), REQUIRED, detail=''))
        properties = _properties(schema)
        _, additional = _additional(schema)
        for key, item in value.items():
            if is_root and key == 'metadata':
                # The rest of ObjectMeta is validated by the server itself, but a CRD may
                # restrict metadata.name and metadata.generateName (kubernetes/kubernetes#77653)
                # and the custom resource validator enforces those against the whole object.
                self._root_metadata(schema, properties.get(key), item, path, old.key(key))
                continue
            if key in properties:
                self.node(_sub(properties[key]), item, _child(path, key), old.key(key))
            elif additional is not None:
                self.node(additional, item, _child(path, key), old.key(key))

    def _root_metadata(
        self, schema: Schema, metadata_schema: Any, value: Any, path: str, old: _Old
    ) -> None:
        """Validate only metadata.name and metadata.generateName against the CRD schema."""
        restricted = _properties(_sub(metadata_schema))
        if not isinstance(value, dict):
            return
        base = _child(path, 'metadata')
        for field in ('name', 'generateName'):
            if field in restricted and field in value:
                self.node(
                    _sub(restricted[field]), value[field], _child(base, field), old.key(field)
                )

    def _junctors(self, schema: Schema, value: Any, path: str, ratchet: bool) -> None:
        # allOf/anyOf/oneOf/not are not ratcheted (KEP-4008); their errors are not *Validation
        # errors and land on the nil path, as in the apiserver.
        if ratchet:
            ratchet = False
        subject = go_quote(path)
        all_of = schema.get('allOf')
        if isinstance(all_of, Sequence):
            for sub in all_of:
                if isinstance(sub, Mapping):
                    walker = _OpenAPIWalker()
                    walker.node(sub, value, path, _ABSENT)
                    self.errors.extend(walker.errors)
        any_of = schema.get('anyOf')
        if isinstance(any_of, Sequence) and any_of:
            results: list[list[FieldError]] = [
                _sub_errors(sub, value, path) for sub in any_of if isinstance(sub, Mapping)
            ]
            if results and all(results):
                self.errors.append(
                    field_error(
                        '', INVALID, '', f'{subject} must validate at least one schema (anyOf)'
                    )
                )
                self.errors.extend(_fewest(results))
        one_of = schema.get('oneOf')
        if isinstance(one_of, Sequence) and one_of:
            results = [_sub_errors(sub, value, path) for sub in one_of if isinstance(sub, Mapping)]
            valid = sum(1 for r in results if not r)
            if valid == 0:
                detail = (
                    f'{subject} must validate one and only one schema (oneOf). Found none valid'
                )
                self.errors.append(field_error('', INVALID, '', detail))
                self.errors.extend(_fewest(results) if results else [])
            elif valid > 1:
                detail = (
                    f'{subject} must validate one and only one schema (oneOf). '
                    f'Found {valid} valid alternatives'
                )
                self.errors.append(field_error('', INVALID, '', detail))
        not_schema = _sub(schema.get('not'))
        if not_schema is not None and not _sub_errors(not_schema, value, path):
            self.errors.append(
                field_error('', INVALID, '', f'{subject} must not validate the schema (not)')
            )


def _fewest(results: list[list[FieldError]]) -> list[FieldError]:
    """The failures of the alternative that came closest (reported with anyOf/oneOf)."""
    return sorted(results, key=len)[0] if results else []


def _sub_errors(schema: Schema, value: Any, path: str) -> list[FieldError]:
    walker = _OpenAPIWalker()
    walker.node(schema, value, path, _ABSENT)
    return walker.errors


def _has_duplicates(items: Sequence[Any]) -> bool:
    seen: list[Any] = []
    for item in items:
        if any(_json_equal(item, other) for other in seen):
            return True
        seen.append(item)
    return False


# Formats the apiserver validates (apiserver/validation/formats.go); others are ignored.
def _format_ok(fmt: str, value: str) -> bool:
    checker = _FORMATS.get(fmt.replace('-', ''))
    return True if checker is None else checker(value)


def _is_date(value: str) -> bool:
    parts = value.split('-')
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts):
        return False
    year, month, day = parts
    if not (len(year) == 4 and len(month) == 2 and len(day) == 2):
        return False
    # strfmt.IsDate is time.Parse("2006-01-02", ...): days that do not exist (2027-02-29) fail.
    try:
        datetime.date(int(year), int(month), int(day))
    except ValueError:
        return False
    return True


def _is_date_time(value: str) -> bool:
    # strfmt.IsDateTime: a date, "t", then hh:mm:ss[.frac] with "z" or a ±hh:mm offset.
    if len(value) < 4:
        return False
    parts = value.lower().split('t')
    if len(parts) < 2 or not _is_date(parts[0]):
        return False
    match = _DATE_TIME_TAIL.match(parts[1])
    if match is None:
        return False
    hour, minute, second = match.group(1, 2, 3)
    return hour <= '23' and minute <= '59' and second <= '59'


def _is_uuid(value: str) -> bool:
    return bool(_UUID.match(value))


def _is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def _is_ipv6(value: str) -> bool:
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return ':' not in value and _is_ipv4(value)  # Go's net.ParseIP accepts IPv4 here too
    return True


def _is_cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return '/' in value


def _is_byte(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _is_hostname(value: str) -> bool:
    if len(value) > 255 or not _HOSTNAME.match(value):
        return False
    return all(len(label) <= 63 for label in value.split('.'))


_DATE_TIME_TAIL: Final = re.compile(
    r'^([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|([+-][0-9]{2}:[0-9]{2}))$'
)
_UUID: Final = re.compile(r'(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$')
_HOSTNAME: Final = re.compile(
    r'^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$'
)
_EMAIL: Final = re.compile(r'^[^@\s]+@[^@\s]+$')
_MAC: Final = re.compile(r'^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$')
_HEXCOLOR: Final = re.compile(r'^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$')

_FORMATS: Final[dict[str, Callable[[str], bool]]] = {
    'datetime': _is_date_time,
    'date': _is_date,
    'duration': lambda v: cel.parse_go_duration(v) is not None,
    'uuid': _is_uuid,
    'ipv4': _is_ipv4,
    'ipv6': _is_ipv6,
    'cidr': _is_cidr,
    'byte': _is_byte,
    'hostname': _is_hostname,
    'email': lambda v: bool(_EMAIL.match(v)),
    'mac': lambda v: bool(_MAC.match(v)),
    'hexcolor': lambda v: bool(_HEXCOLOR.match(v)),
    'password': lambda v: True,
}


# List types (pkg/apiserver/schema/listtype/validation.go): not ratcheted.
def _list_type_errors(schema: Schema | None, value: Any, path: str) -> Iterator[FieldError]:
    if schema is None:
        return
    if isinstance(value, list):
        kind = _list_type(schema)
        if kind == 'set':
            for i, item in enumerate(value):
                if any(_json_equal(item, value[j]) for j in range(i)):
                    yield field_error(_index(path, i), DUPLICATE, item)
        elif kind == 'map':
            keys = _map_keys(schema)
            seen: list[dict[str, Any]] = []
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    continue
                key_values = {k: item.get(k) for k in keys if k in item}
                if any(_json_equal(key_values, other) for other in seen):
                    yield field_error(_index(path, i), DUPLICATE, key_values)
                else:
                    seen.append(key_values)
        items = _sub(schema.get('items'))
        for i, item in enumerate(value):
            yield from _list_type_errors(items, item, _index(path, i))
    elif isinstance(value, dict):
        properties = _properties(schema)
        _, additional = _additional(schema)
        for key, item in value.items():
            sub = _sub(properties[key]) if key in properties else additional
            yield from _list_type_errors(sub, item, _child(path, key))


# --------------------------------------------------------------------------------------------
# CEL (pkg/apiserver/schema/cel/validation.go).


def _has_rules(schema: Any) -> bool:
    if not isinstance(schema, Mapping):
        return False
    if schema.get('x-kubernetes-validations'):
        return True
    children: list[Any] = [schema.get('items'), schema.get('additionalProperties')]
    children.extend(_properties(schema).values())
    all_of = schema.get('allOf')
    if isinstance(all_of, Sequence):
        children.extend(all_of)
    return any(_has_rules(child) for child in children)


class _CelWalker:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def node(
        self, schema: Schema | None, value: Any, path: str, old: _Old, *, is_root: bool = False
    ) -> None:
        if schema is None or value is None:
            return  # rules validate non-null values only
        self._rules(schema, value, path, old, is_root=is_root)
        all_of = schema.get('allOf')
        if isinstance(all_of, Sequence):
            for sub in all_of:
                if isinstance(sub, Mapping):
                    self._rules(sub, value, path, old, is_root=is_root, type_schema=schema)
        if isinstance(value, list):
            items = _sub(schema.get('items'))
            correlatable = _list_type(schema) == 'map'
            for i, item in enumerate(value):
                item_old = old.item(schema, value, i)
                if not correlatable and item_old.present:
                    # Only map-list items have an oldSelf; a set item equal to an old one is
                    # still unchanged, so its errors are ratcheted.
                    item_old = _RatchetOnly(item_old.value, True)
                self.node(items, item, _index(path, i), item_old)
        elif isinstance(value, dict):
            properties = _properties(schema)
            _, additional = _additional(schema)
            atomic = schema.get('x-kubernetes-map-type') == 'atomic'
            for key, item in value.items():
                child_old = _ABSENT if atomic else old.key(key)
                if key in properties:
                    self.node(_sub(properties[key]), item, _child(path, key), child_old)
                elif additional is not None:
                    self.node(additional, item, _key(path, key), child_old)

    def _rules(
        self,
        schema: Schema,
        value: Any,
        path: str,
        old: _Old,
        *,
        is_root: bool,
        type_schema: Schema | None = None,
    ) -> None:
        typed = type_schema if type_schema is not None else schema
        kind = str(typed.get('type') or '')
        for _, rule in cel.iter_rules(schema):
            text = rule.get('rule')
            if not isinstance(text, str) or not text.strip():
                continue
            try:
                compiled = cel.compile_rule(text)
            except cel.CelCompileError as e:
                self.errors.append(
                    field_error(path, INVALID, kind, f'rule compile error: {e.message}')
                )
                continue
            transition = compiled.uses_old_self
            correlated = _ABSENT if isinstance(old, _RatchetOnly) else old
            if transition and not correlated.present:
                continue  # transition rules run only when there is an old value to compare
            try:
                ok = compiled.evaluate(value, correlated.value, schema=typed, resource_root=is_root)
            except cel.CelEvalError as e:
                reference = _rule_reference(rule)
                if e.no_such_overload:
                    detail = (
                        f"'{e.message}': call arguments did not match a supported operator, "
                        f'function or macro signature for rule: {reference}'
                    )
                else:
                    detail = f'{e.message} evaluating rule: {reference}'
                self.errors.append(field_error(path, INVALID, kind, detail))
                continue
            if ok:
                continue
            if not transition and _ratchets(old, value):
                continue  # validation ratcheting: the value did not change on this update
            target = path
            field_path = rule.get('fieldPath')
            if isinstance(field_path, str) and field_path:
                target = _child(path, field_path.lstrip('.'))
            detail = self._message(rule, compiled, value, correlated, typed, is_root)
            self.errors.append(_error_for_reason(target, kind, detail, rule.get('reason')))

    @staticmethod
    def _message(
        rule: Mapping[str, Any],
        compiled: cel.CompiledRule,
        value: Any,
        old: _Old,
        schema: Schema,
        is_root: bool,
    ) -> str:
        expression = rule.get('messageExpression')
        if isinstance(expression, str) and expression.strip():
            try:
                message = cel.compile_rule(expression).evaluate_value(
                    value, old.value, schema=schema, resource_root=is_root
                )
            except (cel.CelCompileError, cel.CelEvalError):
                message = None
            # Failures, non-strings, empty or multi-line messages fall back to `message`.
            if isinstance(message, str) and message.strip() and '\n' not in message.strip():
                return message.strip()
        del compiled
        text = rule.get('message')
        if isinstance(text, str) and text.strip():
            return text.strip()
        return f'failed rule: {_rule_reference(rule)}'


class _RatchetOnly(_Old):
    """An old value usable to ratchet errors, but not visible to rules as `oldSelf`."""


def _ratchets(old: _Old, value: Any) -> bool:
    return old.unchanged(value)


def _rule_reference(rule: Mapping[str, Any]) -> str:
    message = rule.get('message')
    if isinstance(message, str) and message.strip():
        return message.strip()
    return str(rule.get('rule', '')).strip()


def _error_for_reason(path: str, kind: str, detail: str, reason: Any) -> FieldError:
    if reason == FORBIDDEN:
        return field_error(path, FORBIDDEN, detail=detail)
    if reason == REQUIRED:
        return field_error(path, REQUIRED, detail=detail)
    if reason == DUPLICATE:
        return field_error(path, DUPLICATE, kind)
    return field_error(path, INVALID, kind, detail)


# --------------------------------------------------------------------------------------------
# CRD creation: structural schema and rule compilation
# (pkg/apis/apiextensions/validation/validation.go, pkg/apiserver/schema/validation.go).

DEFAULT_SCHEMA_PATH: Final = 'spec.versions[0].schema.openAPIV3Schema'
_OPENAPI_TYPES: Final = ('array', 'boolean', 'integer', 'number', 'object', 'string')
_RULE_REASONS: Final = (DUPLICATE, FORBIDDEN, INVALID, REQUIRED)
_JUNCTORS: Final = ('allOf', 'anyOf', 'oneOf')
_INT_OR_STRING_ANY_OF: Final = [{'type': 'integer'}, {'type': 'string'}]


def check_crd_schema(schema: Schema, *, path: str = DEFAULT_SCHEMA_PATH) -> list[str]:
    """Why the apiserver would refuse this `openAPIV3Schema` (empty: it is accepted).

    Checks what CRD authors hit: structural schema rules (a `type` everywhere except under
    int-or-string and preserve-unknown-fields, `items` for arrays, no `$ref`, `additionalProperties`
    not beside `properties`, no `uniqueItems`, restricted `metadata`, list and map types,
    `default`s that validate), then compiles every `x-kubernetes-validations` rule and
    `messageExpression`. As in the apiserver, rules are compiled only when the schema is
    otherwise valid. `path` prefixes every message (the schema's place in the CRD).
    """
    given: Any = schema
    if not isinstance(given, Mapping):
        return [field_error(path, REQUIRED, detail='must not be empty').message]
    checker = _CrdChecker()
    checker.node(schema, path, level='root', uncorrelatable=None, in_meta=False)
    errors = _dedupe(checker.errors)
    if errors:
        return errors
    rule_checker = _CrdChecker()
    rule_checker.rules_tree(schema, path, is_root=True, uncorrelatable=None)
    return _dedupe(rule_checker.errors)


def _dedupe(messages: list[str]) -> list[str]:
    return list(dict.fromkeys(messages))


class _CrdChecker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, path: str, reason: str, value: Any = _NO_VALUE, detail: str = '') -> None:
        self.errors.append(field_error(path, reason, value, detail).message)

    def node(
        self, schema: Schema, path: str, *, level: str, uncorrelatable: str | None, in_meta: bool
    ) -> None:
        kind = schema.get('type')
        kind = kind if isinstance(kind, str) else ''
        self._standard(schema, path, kind)
        properties = _properties(schema)
        has_additional, additional = _additional(schema)
        raw_additional = schema.get('additionalProperties')
        if 'additionalProperties' in schema:
            if properties and (raw_additional is False or isinstance(raw_additional, Mapping)):
                self.add(
                    _child(path, 'additionalProperties'),
                    FORBIDDEN,
                    detail='additionalProperties and properties are mutual exclusive',
                )
            if level == 'root':
                self.add(
                    _child(path, 'additionalProperties'),
                    FORBIDDEN,
                    detail='must not be used at the root',
                )
            if _embedded(schema):
                self.add(
                    _child(path, 'additionalProperties'),
                    FORBIDDEN,
                    detail='must not be used if x-kubernetes-embedded-resource is set',
                )
            if additional is not None:
                self.node(
                    additional,
                    _child(path, 'additionalProperties'),
                    level='field',
                    uncorrelatable=uncorrelatable,
                    in_meta=in_meta,
                )
        del has_additional
        for name, sub in properties.items():
            sub_path = _key(_child(path, 'properties'), name)
            if not isinstance(sub, Mapping):
                self.add(sub_path, INVALID, sub, 'must be a schema object')
                continue
            self.node(sub, sub_path, level='field', uncorrelatable=uncorrelatable, in_meta=in_meta)
        items = schema.get('items')
        if kind == 'array' and items is None:
            self.add(_child(path, 'items'), REQUIRED, detail='must be specified')
        if isinstance(items, Mapping):
            self.node(
                items,
                _child(path, 'items'),
                level='item',
                uncorrelatable=uncorrelatable,
                in_meta=in_meta,
            )
        self._structural(schema, path, kind, level)
        self._list_and_map_types(schema, path, kind)
        self._junctor_nodes(schema, path)
        self._rule_fields(schema, path)
        self._default(schema, path)

    def _standard(self, schema: Schema, path: str, kind: str) -> None:
        if kind and kind not in _OPENAPI_TYPES and kind != 'null':
            self.add(
                _child(path, 'type'),
                NOT_SUPPORTED,
                kind,
                'supported values: ' + ', '.join(go_quote(t) for t in _OPENAPI_TYPES),
            )
        if kind == 'null':
            self.add(
                _child(path, 'type'),
                FORBIDDEN,
                detail='type cannot be set to null, use nullable as an alternative',
            )
        for key, label in (
            ('id', 'id'),
            ('additionalItems', 'additionalItems'),
            ('patternProperties', 'patternProperties'),
            ('definitions', 'definitions'),
            ('dependencies', 'dependencies'),
            ('$ref', '$ref'),
        ):
            if schema.get(key) not in (None, '', {}):
                self.add(_child(path, key), FORBIDDEN, detail=f'{label} is not supported')
        if isinstance(schema.get('items'), list):
            self.add(
                _child(path, 'items'),
                FORBIDDEN,
                detail='items must be a schema object and not an array',
            )
        if schema.get('uniqueItems') is True:
            self.add(
                _child(path, 'uniqueItems'),
                FORBIDDEN,
                detail='uniqueItems cannot be set to true '
                'since the runtime complexity becomes quadratic',
            )
        if schema.get('x-kubernetes-preserve-unknown-fields') is False:
            self.add(
                _child(path, 'x-kubernetes-preserve-unknown-fields'),
                INVALID,
                False,
                'must be true or undefined',
            )
        pattern = schema.get('pattern')
        if isinstance(pattern, str):
            try:
                cel.compile_regex(pattern)
            except cel.RegexError as e:
                self.add(
                    _child(path, 'pattern'),
                    INVALID,
                    pattern,
                    f"must be a valid regular expression, but isn't: {e}",
                )

    def _structural(self, schema: Schema, path: str, kind: str, level: str) -> None:
        int_or_string = bool(schema.get('x-kubernetes-int-or-string'))
        preserve = _preserves(schema)
        if _embedded(schema) and kind != 'object':
            detail = 'must be object if x-kubernetes-embedded-resource is true'
            if kind:
                self.add(_child(path, 'type'), INVALID, kind, detail)
            else:
                self.add(_child(path, 'type'), REQUIRED, detail=detail)
        elif not kind and not int_or_string and not preserve:
            detail = {
                'root': 'must not be empty at the root',
                'item': 'must not be empty for specified array items',
                'field': 'must not be empty for specified object fields',
            }[level]
            self.add(_child(path, 'type'), REQUIRED, detail=detail)
        if level == 'root' and kind and kind != 'object':
            self.add(_child(path, 'type'), INVALID, kind, 'must be object at the root')
        if int_or_string and preserve:
            self.add(
                _child(path, 'x-kubernetes-preserve-unknown-fields'),
                INVALID,
                True,
                'must be false if x-kubernetes-int-or-string is true',
            )
        if int_or_string and _embedded(schema):
            self.add(
                _child(path, 'x-kubernetes-embedded-resource'),
                INVALID,
                True,
                'must be false if x-kubernetes-int-or-string is true',
            )
        if _embedded(schema) and not preserve and not _properties(schema):
            self.add(
                _child(path, 'properties'),
                REQUIRED,
                detail='must not be empty if x-kubernetes-embedded-resource is true '
                'without x-kubernetes-preserve-unknown-fields',
            )
        check_meta = level == 'root' or _embedded(schema)
        properties = _properties(schema)
        for name in ('kind', 'apiVersion'):
            sub = _sub(properties.get(name))
            if sub is not None and check_meta and sub.get('type') != 'string':
                self.add(
                    _child(_key(_child(path, 'properties'), name), 'type'),
                    INVALID,
                    str(sub.get('type') or ''),
                    'must be string',
                )
        meta = _sub(properties.get('metadata'))
        if meta is not None:
            meta_path = _key(_child(path, 'properties'), 'metadata')
            if check_meta and meta.get('type') != 'object':
                self.add(
                    _child(meta_path, 'type'),
                    INVALID,
                    str(meta.get('type') or ''),
                    'must be object',
                )
            if level == 'root':
                allowed = {'type', 'properties', 'description'}
                names = set(_properties(meta))
                if set(meta) - allowed or names - {'name', 'generateName'}:
                    self.add(
                        meta_path,
                        FORBIDDEN,
                        detail='must not specify anything other than name and generateName, '
                        'but metadata is implicitly specified',
                    )

    def _list_and_map_types(self, schema: Schema, path: str, kind: str) -> None:
        map_type = schema.get('x-kubernetes-map-type')
        if map_type is not None:
            if kind != 'object':
                detail = 'must be object if x-kubernetes-map-type is specified'
                if kind:
                    self.add(_child(path, 'type'), INVALID, kind, detail)
                else:
                    self.add(_child(path, 'type'), REQUIRED, detail=detail)
            if map_type not in ('atomic', 'granular'):
                self.add(
                    _child(path, 'x-kubernetes-map-type'),
                    NOT_SUPPORTED,
                    map_type,
                    'supported values: "atomic", "granular"',
                )
        list_type = schema.get('x-kubernetes-list-type')
        if list_type is not None:
            if kind != 'array':
                detail = 'must be array if x-kubernetes-list-type is specified'
                if kind:
                    self.add(_child(path, 'type'), INVALID, kind, detail)
                else:
                    self.add(_child(path, 'type'), REQUIRED, detail=detail)
            if list_type not in ('atomic', 'set', 'map'):
                self.add(
                    _child(path, 'x-kubernetes-list-type'),
                    NOT_SUPPORTED,
                    list_type,
                    'supported values: "atomic", "set", "map"',
                )
        keys = _map_keys(schema)
        if keys:
            if list_type is None:
                self.add(
                    _child(path, 'x-kubernetes-list-type'),
                    REQUIRED,
                    detail='must be map if x-kubernetes-list-map-keys is non-empty',
                )
            elif list_type != 'map':
                self.add(
                    _child(path, 'x-kubernetes-list-type'),
                    INVALID,
                    list_type,
                    'must be map if x-kubernetes-list-map-keys is non-empty',
                )
        items = _sub(schema.get('items'))
        if list_type == 'map':
            if not keys:
                self.add(
                    _child(path, 'x-kubernetes-list-map-keys'),
                    REQUIRED,
                    detail='must not be empty if x-kubernetes-list-type is map',
                )
            if items is None:
                self.add(
                    _child(path, 'items'),
                    REQUIRED,
                    detail='must have a schema if x-kubernetes-list-type is map',
                )
            elif items.get('type') != 'object':
                self.add(
                    _child(_child(path, 'items'), 'type'),
                    INVALID,
                    str(items.get('type') or ''),
                    "must be object if parent array's x-kubernetes-list-type is map",
                )
            else:
                item_properties = _properties(items)
                required = items.get('required') or []
                for key in keys:
                    prop = _sub(item_properties.get(key))
                    key_path = _key(_child(_child(path, 'items'), 'properties'), key)
                    if prop is None:
                        self.add(
                            _child(path, 'x-kubernetes-list-map-keys'),
                            INVALID,
                            keys,
                            'entries must all be names of item properties',
                        )
                        continue
                    if prop.get('type') in ('array', 'object'):
                        self.add(
                            _child(key_path, 'type'),
                            INVALID,
                            'object',
                            "must be a scalar type if parent array's x-kubernetes-list-type is map",
                        )
                    if key not in required and 'default' not in prop:
                        self.add(
                            _child(key_path, 'default'),
                            REQUIRED,
                            detail='this property is in x-kubernetes-list-map-keys, '
                            'so it must have a default or be a required property',
                        )
                    if prop.get('nullable'):
                        self.add(
                            _child(key_path, 'nullable'),
                            FORBIDDEN,
                            detail='this property is in x-kubernetes-list-map-keys, '
                            'so it cannot be nullable',
                        )
                if len(set(keys)) != len(keys):
                    self.add(
                        _child(path, 'x-kubernetes-list-map-keys'),
                        INVALID,
                        keys,
                        'must not contain duplicate entries',
                    )
        if list_type in ('set', 'map') and items is not None and items.get('nullable'):
            self.add(
                _child(_child(path, 'items'), 'nullable'),
                FORBIDDEN,
                detail=f'cannot be nullable when x-kubernetes-list-type is {list_type}',
            )

    def _junctor_nodes(self, schema: Schema, path: str) -> None:
        # Inside allOf/anyOf/oneOf/not only value validations are structural.
        if schema.get('anyOf') == _INT_OR_STRING_ANY_OF:
            return
        for junctor in _JUNCTORS:
            subs = schema.get(junctor)
            if isinstance(subs, Sequence) and not isinstance(subs, str):
                for i, sub in enumerate(subs):
                    if (
                        junctor == 'allOf'
                        and i == 0
                        and isinstance(sub, Mapping)
                        and sub.get('anyOf') == _INT_OR_STRING_ANY_OF
                    ):
                        continue
                    if isinstance(sub, Mapping):
                        self._nested(
                            sub, _index(_child(path, junctor), i), allow_rules=junctor == 'allOf'
                        )
        not_schema = _sub(schema.get('not'))
        if not_schema is not None:
            self._nested(not_schema, _child(path, 'not'), allow_rules=False)

    def _nested(self, schema: Schema, path: str, *, allow_rules: bool) -> None:
        forbidden = (
            ('type', 'must be empty to be structural'),
            ('additionalProperties', 'must be undefined to be structural'),
            ('default', 'must be undefined to be structural'),
            ('title', 'must be empty to be structural'),
            ('description', 'must be empty to be structural'),
            ('nullable', 'must be false to be structural'),
            ('externalDocs', 'must be undefined to be structural'),
            ('x-kubernetes-preserve-unknown-fields', 'must be false to be structural'),
            ('x-kubernetes-embedded-resource', 'must be false to be structural'),
            ('x-kubernetes-int-or-string', 'must be false to be structural'),
            ('x-kubernetes-list-map-keys', 'must be empty to be structural'),
            ('x-kubernetes-list-type', 'must be undefined to be structural'),
            ('x-kubernetes-map-type', 'must be undefined to be structural'),
        )
        for key, detail in forbidden:
            if schema.get(key) not in (None, False, '', []):
                self.add(_child(path, key), FORBIDDEN, detail=detail)
        if schema.get('x-kubernetes-validations') and not allow_rules:
            self.add(
                _child(path, 'x-kubernetes-validations'),
                FORBIDDEN,
                detail='must be empty to be structural',
            )
        properties = _properties(schema)
        if 'metadata' in properties:
            self.add(
                _key(_child(path, 'properties'), 'metadata'),
                FORBIDDEN,
                detail='must not be specified in a nested context',
            )
        for name, sub in properties.items():
            if isinstance(sub, Mapping):
                self._nested(sub, _key(_child(path, 'properties'), name), allow_rules=allow_rules)
        items = _sub(schema.get('items'))
        if items is not None:
            self._nested(items, _child(path, 'items'), allow_rules=allow_rules)

    def _rule_fields(self, schema: Schema, path: str) -> None:
        rules = schema.get('x-kubernetes-validations')
        if rules is None:
            return
        if not isinstance(rules, Sequence) or isinstance(rules, str):
            self.add(
                _child(path, 'x-kubernetes-validations'), INVALID, rules, 'must be a list of rules'
            )
            return
        for i, rule in enumerate(rules):
            rule_path = _index(_child(path, 'x-kubernetes-validations'), i)
            if not isinstance(rule, Mapping):
                self.add(rule_path, INVALID, rule, 'must be an object')
                continue
            text = rule.get('rule')
            message = rule.get('message')
            trimmed = text.strip() if isinstance(text, str) else ''
            trimmed_message = message.strip() if isinstance(message, str) else ''
            if not trimmed:
                self.add(_child(rule_path, 'rule'), REQUIRED, detail='rule is not specified')
            elif isinstance(message, str) and message and not trimmed_message:
                self.add(
                    _child(rule_path, 'message'),
                    INVALID,
                    message,
                    'message must be non-empty if specified',
                )
            elif '\n' in trimmed_message or '\r' in trimmed_message:
                self.add(
                    _child(rule_path, 'message'),
                    INVALID,
                    message,
                    'message must not contain line breaks',
                )
            elif ('\n' in trimmed or '\r' in trimmed) and not trimmed_message:
                self.add(
                    _child(rule_path, 'message'),
                    REQUIRED,
                    detail='message must be specified if rule contains line breaks',
                )
            reason = rule.get('reason')
            if reason is not None and reason not in _RULE_REASONS:
                self.add(
                    _child(rule_path, 'reason'),
                    NOT_SUPPORTED,
                    reason,
                    'supported values: ' + ', '.join(go_quote(r) for r in _RULE_REASONS),
                )
            field_path = rule.get('fieldPath')
            if isinstance(field_path, str) and field_path:
                problem = _field_path_problem(field_path, schema)
                if problem:
                    self.add(_child(rule_path, 'fieldPath'), INVALID, field_path, problem)

    def _default(self, schema: Schema, path: str) -> None:
        if 'default' not in schema or schema.get('default') is None:
            return
        value = schema['default']
        wrapper = {'type': 'object', 'properties': {'default': schema}}
        pruned = prune(wrapper, {'default': value}).get('default')
        if not _json_equal(pruned, value):
            self.add(_child(path, 'default'), INVALID, value, 'must not have unknown fields')
            return
        walker = _OpenAPIWalker()
        walker.node(schema, value, '', _ABSENT)
        for error in walker.errors:
            detail = error.message.split(': ', 1)[1] if ': ' in error.message else error.message
            self.errors.append(f'{_child(path, "default")}: {detail}')

    # Rule compilation, once the schema is structural.
    def rules_tree(
        self, schema: Schema, path: str, *, is_root: bool, uncorrelatable: str | None
    ) -> None:
        for i, rule in cel.iter_rules(schema):
            rule_path = _index(_child(path, 'x-kubernetes-validations'), i)
            text = rule.get('rule')
            if isinstance(text, str) and text.strip():
                try:
                    compiled = cel.check_rule(text, schema, resource_root=is_root)
                except cel.CelCompileError as e:
                    self.errors.append(
                        f'{_child(rule_path, "rule")}: Invalid value: {_go_rule(rule)}: {e.message}'
                    )
                else:
                    if compiled.uses_old_self and uncorrelatable is not None:
                        self.add(
                            _child(rule_path, 'rule'),
                            INVALID,
                            text,
                            'oldSelf cannot be used on the uncorrelatable portion of the schema '
                            f'within {uncorrelatable}',
                        )
            expression = rule.get('messageExpression')
            if isinstance(expression, str) and expression.strip():
                try:
                    cel.check_rule(expression, schema, result='string', resource_root=is_root)
                except cel.CelCompileError as e:
                    detail = e.message
                    if detail.startswith('compilation failed: '):
                        detail = 'messageExpression compilation failed: ' + detail.removeprefix(
                            'compilation failed: '
                        )
                    self.add(_child(rule_path, 'messageExpression'), INVALID, expression, detail)
        for name, sub in _properties(schema).items():
            if isinstance(sub, Mapping):
                self.rules_tree(
                    sub,
                    _key(_child(path, 'properties'), name),
                    is_root=_embedded(sub),
                    uncorrelatable=uncorrelatable,
                )
        _, additional = _additional(schema)
        if additional is not None:
            self.rules_tree(
                additional,
                _child(path, 'additionalProperties'),
                is_root=_embedded(additional),
                uncorrelatable=uncorrelatable,
            )
        items = _sub(schema.get('items'))
        if items is not None:
            # Only map-list items correlate with an old item, so only they may use oldSelf.
            item_uncorrelatable = uncorrelatable
            if item_uncorrelatable is None and _list_type(schema) != 'map':
                item_uncorrelatable = path
            self.rules_tree(
                items,
                _child(path, 'items'),
                is_root=_embedded(items),
                uncorrelatable=item_uncorrelatable,
            )


def _go_rule(rule: Mapping[str, Any]) -> str:
    """The ValidationRule as Go's %#v prints it in a compile error."""
    reason = rule.get('reason')
    reason_text = (
        '(*apiextensions.FieldValueErrorReason)(nil)'
        if not isinstance(reason, str)
        else f'(*apiextensions.FieldValueErrorReason)({go_quote(reason)})'
    )
    optional = rule.get('optionalOldSelf')
    optional_text = (
        '(*bool)(nil)' if not isinstance(optional, bool) else f'(*bool)({str(optional).lower()})'
    )
    return (
        f'apiextensions.ValidationRule{{Rule:{go_quote(str(rule.get("rule", "")))}, '
        f'Message:{go_quote(str(rule.get("message", "")))}, '
        f'MessageExpression:{go_quote(str(rule.get("messageExpression", "")))}, '
        f'Reason:{reason_text}, FieldPath:{go_quote(str(rule.get("fieldPath", "")))}, '
        f'OptionalOldSelf:{optional_text}}}'
    )


def _field_path_problem(field_path: str, schema: Schema) -> str | None:
    """ValidFieldPath for the simple `.a.b` and `['a']` forms CRDs use; None when valid."""
    tokens = re.findall(r"\.([^.\[\]]+)|\['((?:[^'\\]|\\.)*)'\]|(.)", field_path)
    node: Schema | None = schema
    for dotted, quoted, stray in tokens:
        if stray:
            return f'expected [ or . but got: {stray}'
        name = dotted or quoted
        if node is None:
            return 'does not refer to a valid field'
        properties = _properties(node)
        _, additional = _additional(node)
        if properties:
            if name not in properties:
                return 'does not refer to a valid field'
            node = _sub(properties[name])
        elif additional is not None:
            node = additional
        else:
            return 'does not refer to a valid field'
    return None

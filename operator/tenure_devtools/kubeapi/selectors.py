"""Label and field selectors, parsed and matched like the Kubernetes API server.

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

- `parse_label_selector` follows k8s.io/apimachinery/pkg/labels `Parse` (the `labelSelector`
  query parameter): https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors
- `parse_field_selector` follows k8s.io/apimachinery/pkg/fields `ParseSelector` and the per-resource
  field label conversion (`fieldSelector`):
  https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/
- `label_selector_from_object` follows metav1 `LabelSelectorAsSelector` (`spec.selector`-style
  objects with matchLabels and matchExpressions).

Errors are `SelectorError` with the server's message; the API answers them with 400 BadRequest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

LabelMatcher = Callable[[Mapping[str, str]], bool]
FieldMatcher = Callable[[Mapping[str, Any]], bool]


class SelectorError(ValueError):
    """A selector the API server refuses (400 BadRequest), with the server's message."""


# k8s.io/apimachinery/pkg/util/validation: label keys are qualified names, values label values.
_QUALIFIED_NAME_FMT: Final = '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'
_QUALIFIED_NAME: Final = re.compile(_QUALIFIED_NAME_FMT)
_QUALIFIED_NAME_MSG: Final = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    'alphanumeric character'
)
_LABEL_VALUE_FMT: Final = f'({_QUALIFIED_NAME_FMT})?'
_LABEL_VALUE: Final = re.compile(_LABEL_VALUE_FMT)
_LABEL_VALUE_MSG: Final = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_FMT: Final = r'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*'
_DNS1123_SUBDOMAIN: Final = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1123_SUBDOMAIN_MSG: Final = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)
_MAX_NAME: Final = 63
_MAX_SUBDOMAIN: Final = 253


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    # validation.RegexError, including its double space between examples.
    shown = ' or '.join(f"'{e}', " for e in examples)
    return f"{message} (e.g. {shown}regex used for validation is '{fmt}')"


def label_key_errors(key: str) -> list[str]:
    """validation.IsQualifiedName: an optional DNS subdomain prefix and '/', then a name."""
    errors: list[str] = []
    parts = key.split('/')
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append('prefix part must be non-empty')
        else:
            if len(prefix) > _MAX_SUBDOMAIN:
                errors.append(f'prefix part must be no more than {_MAX_SUBDOMAIN} characters')
            if not _DNS1123_SUBDOMAIN.fullmatch(prefix):
                errors.append(
                    'prefix part '
                    + _regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, 'example.com')
                )
    else:
        return [
            'a qualified name '
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, 'MyName', 'my.name', '123-abc')
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errors.append('name part must be non-empty')
    elif len(name) > _MAX_NAME:
        errors.append(f'name part must be no more than {_MAX_NAME} characters')
    if not _QUALIFIED_NAME.fullmatch(name):
        errors.append(
            'name part '
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, 'MyName', 'my.name', '123-abc')
        )
    return errors


def label_value_errors(value: str) -> list[str]:
    """validation.IsValidLabelValue: at most 63 characters, empty allowed."""
    errors: list[str] = []
    if len(value) > _MAX_NAME:
        errors.append(f'must be no more than {_MAX_NAME} characters')
    if not _LABEL_VALUE.fullmatch(value):
        errors.append(
            _regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, 'MyValue', 'my_value', '12345')
        )
    return errors


# ---------------------------------------------------------------------------------------------
# Requirements (labels.Requirement) and their matching.

_SET_OPERATORS: Final = frozenset({'in', 'notin'})
_EXACT_OPERATORS: Final = frozenset({'=', '==', '!='})
_ORDER_OPERATORS: Final = frozenset({'gt', 'lt'})
_UNARY_OPERATORS: Final = frozenset({'exists', '!'})
# labels.binaryOperators, in the order the parser's error message lists them.
_BINARY_OPERATORS_TEXT: Final = 'in, notin, =, ==, !=, gt, lt'
_GO_INT64: Final = re.compile(r'[+-]?[0-9]+')
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _parse_int64(text: str) -> int | None:
    """strconv.ParseInt(text, 10, 64), or None."""
    if not _GO_INT64.fullmatch(text):
        return None
    number = int(text)
    return number if _INT64_MIN <= number <= _INT64_MAX else None


@dataclass(frozen=True)
class _Requirement:
    key: str
    operator: str  # one of: in notin = == != gt lt exists !
    values: tuple[str, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in ('in', '=', '=='):
            return self.key in labels and labels[self.key] in self.values
        if op in ('notin', '!='):
            # A missing label satisfies `!=` and `notin` (labels.Requirement.Matches).
            return self.key not in labels or labels[self.key] not in self.values
        if op == 'exists':
            return self.key in labels
        if op == '!':
            return self.key not in labels
        if self.key not in labels:
            return False
        have = _parse_int64(labels[self.key])
        want = _parse_int64(self.values[0])
        if have is None or want is None:
            return False
        return have > want if op == 'gt' else have < want


def _invalid(field: str, value: object, detail: str) -> str:
    # field.Invalid(...).Error(): `<path>: Invalid value: "<value>": <detail>`.
    return f'{field}: Invalid value: {json.dumps(value)}: {detail}'


def _new_requirement(key: str, operator: str, values: Sequence[str]) -> _Requirement:
    """labels.NewRequirement: validate, collecting every problem like a field.ErrorList."""
    problems: list[str] = []
    if key_errors := label_key_errors(key):
        problems.append(_invalid('key', key, '; '.join(key_errors)))
    if operator in _SET_OPERATORS and not values:
        problems.append(
            _invalid(
                'values', list(values), "for 'in', 'notin' operators, values set can't be empty"
            )
        )
    elif operator in _EXACT_OPERATORS and len(values) != 1:
        problems.append(
            _invalid('values', list(values), 'exact-match compatibility requires one single value')
        )
    elif operator in _UNARY_OPERATORS and values:
        problems.append(
            _invalid(
                'values', list(values), 'values set must be empty for exists and does not exist'
            )
        )
    elif operator in _ORDER_OPERATORS:
        if len(values) != 1:
            problems.append(
                _invalid(
                    'values',
                    list(values),
                    "for 'Gt', 'Lt' operators, exactly one value is required",
                )
            )
        for i, value in enumerate(values):
            if _parse_int64(value) is None:
                problems.append(
                    _invalid(
                        f'values[{i}]',
                        value,
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    )
                )
    for i, value in enumerate(values):
        if value_errors := label_value_errors(value):
            problems.append(_invalid(f'values[{i}][{key}]', value, '; '.join(value_errors)))
    if problems:
        # utilerrors.Aggregate prints one error bare and several as a bracketed list.
        raise SelectorError(problems[0] if len(problems) == 1 else f'[{", ".join(problems)}]')
    return _Requirement(key, operator, tuple(values))


def _all(requirements: Sequence[_Requirement]) -> LabelMatcher:
    frozen = tuple(requirements)

    def matches(labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in frozen)

    return matches


# ---------------------------------------------------------------------------------------------
# The label selector grammar (labels.Lexer and labels.Parser):
#   selector    ::= requirement | requirement "," selector
#   requirement ::= [!] KEY [ ("in" | "notin") "(" VALUES ")"
#                           | ("=" | "==" | "!=" | ">" | "<") VALUE ]

_WHITESPACE: Final = frozenset(' \t\r\n')
_SPECIAL: Final = frozenset('=!(),><')
_SYMBOLS: Final = frozenset({'!', '!=', '(', ')', ',', '=', '==', '>', '<'})
_KEYWORDS: Final = frozenset({'in', 'notin'})
_IDENTIFIER: Final = 'identifier'
_END: Final = 'end of string'


@dataclass(frozen=True)
class _Token:
    kind: str  # _IDENTIFIER, _END, a symbol, or a keyword
    text: str


def _lex(selector: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(selector)
    while True:
        while i < n and selector[i] in _WHITESPACE:
            i += 1
        if i >= n:
            tokens.append(_Token(_END, ''))
            return tokens
        if selector[i] in _SPECIAL:
            # The longest run of special characters that is still a known symbol: "!=" or "==",
            # so "a!=b" is a `!=` and "a=(b)" is `=` then `(`.
            j = i + 1
            while j < n and selector[i : j + 1] in _SYMBOLS:
                j += 1
            tokens.append(_Token(selector[i:j], selector[i:j]))
            i = j
        else:
            j = i
            while j < n and selector[j] not in _SPECIAL and selector[j] not in _WHITESPACE:
                j += 1
            word = selector[i:j]
            tokens.append(_Token(word if word in _KEYWORDS else _IDENTIFIER, word))
            i = j


class _LabelParser:
    def __init__(self, selector: str) -> None:
        self.tokens = _lex(selector)
        self.at = 0

    def peek(self, *, values: bool = True) -> _Token:
        return self._as_value(self.tokens[self.at]) if values else self.tokens[self.at]

    def take(self, *, values: bool = True) -> _Token:
        token = self.peek(values=values)
        self.at += 1
        return token

    @staticmethod
    def _as_value(token: _Token) -> _Token:
        # Where a key or value is expected, "in" and "notin" are plain words ("x in (in)").
        return _Token(_IDENTIFIER, token.text) if token.kind in _KEYWORDS else token

    def parse(self) -> list[_Requirement]:
        requirements: list[_Requirement] = []
        while True:
            token = self.peek()
            if token.kind == _END:
                return requirements
            if token.kind not in (_IDENTIFIER, '!'):
                raise SelectorError(
                    f"found '{token.text}', expected: !, identifier, or 'end of string'"
                )
            try:
                requirements.append(self.requirement())
            except SelectorError as e:
                raise SelectorError(f'unable to parse requirement: {e}') from None
            token = self.take()
            if token.kind == _END:
                return requirements
            if token.kind != ',':
                raise SelectorError(f"found '{token.text}', expected: ',' or 'end of string'")
            after = self.peek()
            if after.kind not in (_IDENTIFIER, '!'):
                raise SelectorError(f"found '{after.text}', expected: identifier after ','")

    def requirement(self) -> _Requirement:
        token = self.take()
        negated = token.kind == '!'
        if negated:
            token = self.take()
        if token.kind != _IDENTIFIER:
            raise SelectorError(f"found '{token.text}', expected: identifier")
        key = token.text
        if key_errors := label_key_errors(key):
            raise SelectorError(_invalid('<nil>', key, '; '.join(key_errors)))
        if negated:
            # `!key` takes no operator; anything after it fails in parse() as a missing ','.
            return _new_requirement(key, '!', ())
        if self.peek().kind in (_END, ','):
            return _new_requirement(key, 'exists', ())
        operator = self.take(values=False)
        if operator.kind in ('in', 'notin'):
            return _new_requirement(key, operator.kind, self.set_values())
        if operator.kind in ('=', '==', '!=', '>', '<'):
            op = {'>': 'gt', '<': 'lt'}.get(operator.kind, operator.kind)
            return _new_requirement(key, op, [self.exact_value()])
        raise SelectorError(f"found '{operator.text}', expected: {_BINARY_OPERATORS_TEXT}")

    def set_values(self) -> list[str]:
        token = self.take()
        if token.kind != '(':
            raise SelectorError(f"found '{token.text}' expected: '('")
        token = self.peek()
        if token.kind == ')':
            # "k in ()" is the set holding the empty string (labels.Parser.parseValues).
            self.take()
            return ['']
        if token.kind not in (_IDENTIFIER, ','):
            raise SelectorError(f"found '{token.text}', expected: ',', ')' or identifier")
        values = self.identifiers()
        if self.take().kind != ')':
            raise SelectorError(f"found '{token.text}', expected: ')'")
        return values

    def identifiers(self) -> list[str]:
        """A comma-separated list where an empty slot is the empty string: "(a,,b)", "(a,)"."""
        values: list[str] = []

        def add(value: str) -> None:
            if value not in values:
                values.append(value)

        while True:
            token = self.take()
            if token.kind == _IDENTIFIER:
                add(token.text)
                after = self.peek()
                if after.kind == ',':
                    continue
                if after.kind == ')':
                    return values
                raise SelectorError(f"found '{after.text}', expected: ',' or ')'")
            if token.kind == ',':
                if not values:
                    add('')
                after = self.peek()
                if after.kind == ')':
                    add('')
                    return values
                if after.kind == ',':
                    self.take()
                    add('')
                continue
            raise SelectorError(f"found '{token.text}', expected: ',', or identifier")

    def exact_value(self) -> str:
        if self.peek().kind in (_END, ','):
            return ''  # "k=" selects the empty value
        token = self.take()
        if token.kind != _IDENTIFIER:
            raise SelectorError(f"found '{token.text}', expected: identifier")
        return token.text


def parse_label_selector(selector: str) -> LabelMatcher:
    """Parse a `labelSelector` string into a predicate over a labels mapping.

    Supports `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k` and the integer
    comparisons `k>n`, `k<n`, joined by commas (AND). The empty string selects everything.
    `!=` and `notin` also select objects without the label. Keys and values are validated as
    label keys and values; an invalid selector raises SelectorError with the server's message.
    """
    return _all(_LabelParser(selector).parse())


def label_selector_from_object(selector: Mapping[str, Any] | None) -> LabelMatcher:
    """A metav1.LabelSelector object as a predicate (metav1.LabelSelectorAsSelector).

    A null selector selects nothing, an empty one everything. matchLabels and matchExpressions
    (In, NotIn, Exists, DoesNotExist) are ANDed; an unknown operator, an `In` without values or
    an `Exists` with values raises SelectorError.
    """
    if selector is None:
        return lambda _labels: False
    match_labels = selector.get('matchLabels') or {}
    expressions = selector.get('matchExpressions') or []
    requirements: list[_Requirement] = []
    for key, value in match_labels.items():
        requirements.append(_new_requirement(str(key), '=', [str(value)]))
    operators = {'In': 'in', 'NotIn': 'notin', 'Exists': 'exists', 'DoesNotExist': '!'}
    for expression in expressions:
        operator = expression.get('operator')
        if operator not in operators:
            shown = json.dumps('' if operator is None else str(operator))
            raise SelectorError(f'{shown} is not a valid label selector operator')
        values = [str(v) for v in expression.get('values') or []]
        requirements.append(
            _new_requirement(str(expression.get('key', '')), operators[operator], values)
        )
    return _all(requirements)


# ---------------------------------------------------------------------------------------------
# Field selectors (fields.ParseSelector + the resource's field label conversion).

# Every resource, custom ones included, accepts these two (DefaultMetaV1FieldSelectorConversion).
ALWAYS_SUPPORTED_FIELDS: Final = frozenset({'metadata.name', 'metadata.namespace'})


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not escaped by a backslash (fields.splitTerms)."""
    terms: list[str] = []
    start, escaped = 0, False
    for i, char in enumerate(selector):
        if escaped:
            escaped = False
        elif char == '\\':
            escaped = True
        elif char == ',':
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    """At the first operator; `!=` and `==` are tried before `=` (fields.splitTerm)."""
    for i in range(len(term)):
        for operator in ('!=', '==', '='):
            if term.startswith(operator, i):
                return term[:i], operator, term[i + len(operator) :]
    return None


def _unescape_value(value: str) -> str:
    """fields.UnescapeValue: `\\\\`, `\\,` and `\\=` are the only escapes; bare `,`/`=` fail."""
    out: list[str] = []
    escaped = False
    for char in value:
        if escaped:
            if char not in '\\,=':
                raise SelectorError(f'invalid field selector: invalid escape sequence: \\{char}')
            out.append(char)
            escaped = False
        elif char == '\\':
            escaped = True
        elif char in ',=':
            raise SelectorError(
                f'invalid field selector: unescaped character in value: {ord(char)}'
            )
        else:
            out.append(char)
    if escaped:
        raise SelectorError('invalid field selector: invalid escape sequence: \\')
    return ''.join(out)


def _field_text(value: Any) -> str:
    """An object's field as the string the server compares: Go's formatting of the value."""
    if value is None:
        return ''
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True)


def _read_path(obj: Mapping[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.split('.'):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def parse_field_selector(selector: str, supported: Collection[str]) -> FieldMatcher:
    """Parse a `fieldSelector` string into a predicate over an object.

    Terms `field=value`, `field==value`, `field!=value` are ANDed by commas; in values, `\\,`,
    `\\=` and `\\\\` escape. Nothing is trimmed, so spaces belong to the field or value. A field
    is read as a dotted path into the object (`status.phase`); a missing field compares as "".
    `supported` lists the resource's field labels (besides metadata.name and
    metadata.namespace, which every resource has); when it is a mapping, each label maps to the
    dotted path it reads, for labels that are not paths (Event's `source` reads
    `source.component`). Another field raises SelectorError "field label not supported: <f>".
    """
    terms: list[tuple[str, str, str]] = []
    for part in _split_terms(selector):
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise SelectorError(f"invalid selector: '{selector}'; can't understand '{part}'")
        field, operator, raw = split
        terms.append((field, operator, _unescape_value(raw)))
    paths: dict[str, str] = {f: f for f in ALWAYS_SUPPORTED_FIELDS}
    if isinstance(supported, Mapping):
        paths.update({str(k): str(v) for k, v in supported.items()})
    else:
        paths.update({f: f for f in supported})
    for field, _, _ in terms:
        if field not in paths:
            raise SelectorError(f'field label not supported: {field}')
    checks = tuple((paths[f], op != '!=', value) for f, op, value in terms)

    def matches(obj: Mapping[str, Any]) -> bool:
        return all(
            (_field_text(_read_path(obj, path)) == value) is equal for path, equal, value in checks
        )

    return matches

"""Kubernetes CEL for CRD `x-kubernetes-validations`, on top of cel-python (`celpy`).

The real apiserver compiles every rule with cel-go against a type derived from the OpenAPI
schema node the rule sits on, and evaluates it with the Kubernetes CEL libraries. This module
reproduces what a CRD author can observe of that:

- the value mapping of
  https://kubernetes.io/docs/reference/using-api/cel/#type-checking : `integer` -> int,
  `number` -> double, `string` with `format: date-time` -> timestamp, `format: duration` ->
  duration, `format: byte` -> bytes, `x-kubernetes-int-or-string` -> int or string (dyn),
  objects with `properties` -> objects whose property names are escaped
  (`__dash__`, `__dot__`, ...), objects with `additionalProperties` -> maps, arrays -> lists,
  and `apiVersion`, `kind`, `metadata.name`, `metadata.generateName` at a resource root;
- `self` and, for transition rules, `oldSelf`;
- the libraries of https://kubernetes.io/docs/reference/using-api/cel/#cel-options-language-features-and-libraries
  that CRD rules use: the strings extension, the Kubernetes list, regex and URL libraries; the
  standard macros (`has`, `all`, `exists`, `exists_one`, `map`, `filter`) come from celpy;
- regular expressions with RE2 semantics (`google-re2`, which celpy already depends on);
- a static check at CRD creation: syntax, undeclared references, unknown functions, undefined
  fields of schema objects and a non-bool result are compile errors, as with cel-go.

celpy has no static type checker, so the check here is deliberately small (see `check_rule`):
rules it accepts that cel-go would reject fail at evaluation time instead. The cost estimator,
`optionalOldSelf`, the `quantity`, `ip`/`cidr`, `format` and `sets` libraries are not provided.

celpy is untyped at its edges; everything typed that other modules use is `CompiledRule`,
`compile_rule`, `check_rule`, `to_cel`, `compile_regex` and the two exception types.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import importlib
import itertools
import logging
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import celpy
import lark
from celpy import celtypes
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

# google-re2 ships no type information; it is reached through this one `Any`.
re2: Any = importlib.import_module('re2')

__all__ = [
    'CelCompileError',
    'CelEvalError',
    'CompiledRule',
    'RegexError',
    'check_rule',
    'compile_regex',
    'compile_rule',
    'escape_property_name',
    'to_cel',
]

logger = logging.getLogger(__name__)

JSON = Any  # a decoded JSON value: dict, list, str, int, float, bool or None
Schema = Mapping[str, Any]  # one node of an OpenAPI v3 schema, as found in a CRD


class CelCompileError(Exception):
    """A rule that the apiserver would refuse to compile (the CRD is rejected with 422)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CelEvalError(Exception):
    """A rule that failed to evaluate (reported as an invalid value on the object)."""

    def __init__(self, message: str, *, no_such_overload: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.no_such_overload = no_such_overload


class RegexError(ValueError):
    """A pattern that Go's RE2 would not compile; the message follows Go's `regexp` errors."""


# --------------------------------------------------------------------------------------------
# Regular expressions: RE2, as Go's regexp package (schema `pattern` and CEL `matches`).


@functools.lru_cache(maxsize=1024)
def compile_regex(pattern: str) -> Any:
    """Compile `pattern` with RE2 (Go's regexp dialect); raise RegexError when RE2 refuses it.

    Python's `re` differs from RE2 in ways that silently change results (`$` before a final
    newline, POSIX classes, `\\pL`), so RE2 itself is used rather than an approximation.
    """
    options = re2.Options()
    options.log_errors = False  # RE2 otherwise writes every rejected pattern to stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as e:
        detail = e.args[0] if e.args else 'invalid pattern'
        if isinstance(detail, bytes):
            detail = detail.decode('utf-8', 'replace')
        raise RegexError(f'error parsing regexp: {detail}') from None


# --------------------------------------------------------------------------------------------
# JSON values -> CEL values, typed by the schema (k8s.io/apiextensions-apiserver .../cel/model).

_CEL_RESERVED: Final = frozenset(
    {
        'true', 'false', 'null', 'in', 'as', 'break', 'const', 'continue', 'else', 'for',
        'function', 'if', 'import', 'let', 'loop', 'package', 'namespace', 'return', 'var',
        'void', 'while',
    }
)  # fmt: skip
_ESCAPABLE: Final = re.compile(r'^[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*$')
_OBJECT_META_CEL_FIELDS: Final = ('name', 'generateName')


def escape_property_name(name: str) -> str | None:
    """The CEL field name of a schema property, or None when CEL cannot reach it.

    https://kubernetes.io/docs/reference/using-api/cel/#escaping : reserved words become
    `__{word}__`; `__`, `.`, `-` and `/` become `__underscores__`, `__dot__`, `__dash__` and
    `__slash__`; other characters make the property inaccessible.
    """
    if name in _CEL_RESERVED:
        return f'__{name}__'
    if not _ESCAPABLE.match(name):
        return None
    return (
        name.replace('__', '__underscores__')
        .replace('.', '__dot__')
        .replace('-', '__dash__')
        .replace('/', '__slash__')
    )


_GO_DURATION: Final = re.compile(r'([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)')
_GO_DURATION_UNITS: Final = {
    'ns': 1e-9,
    'us': 1e-6,
    'µs': 1e-6,
    'μs': 1e-6,
    'ms': 1e-3,
    's': 1.0,
    'm': 60.0,
    'h': 3600.0,
}


def parse_go_duration(text: str) -> datetime.timedelta | None:
    """Parse a Go `time.ParseDuration` string ("1h30m", "300ms", "-1.5h"); None if invalid."""
    rest = text
    sign = 1.0
    if rest[:1] in ('+', '-'):
        sign = -1.0 if rest[0] == '-' else 1.0
        rest = rest[1:]
    if rest == '0':
        return datetime.timedelta(0)
    if not rest:
        return None
    total = 0.0
    position = 0
    for match in _GO_DURATION.finditer(rest):
        number = match.group(1)
        if match.start() != position or number in ('', '.'):
            return None
        total += float(number) * _GO_DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(rest):
        return None
    return datetime.timedelta(seconds=sign * total)


_RFC3339: Final = re.compile(
    r'^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$'
)


def parse_rfc3339(text: str) -> datetime.datetime | None:
    """Parse an RFC 3339 date-time with a time zone; None if invalid."""
    match = _RFC3339.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if zone in ('Z', 'z'):
        tz = datetime.UTC
    else:
        offset = datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        tz = datetime.timezone(-offset if zone[0] == '-' else offset)
    micros = int((fraction or '0')[:6].ljust(6, '0'))
    try:
        return datetime.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tz
        )
    except ValueError:
        return None


def _schema_type(schema: Schema | None) -> str:
    if not schema:
        return ''
    value = schema.get('type')
    return value if isinstance(value, str) else ''


def _sub_schema(value: Any) -> Schema | None:
    return value if isinstance(value, Mapping) else None


def to_cel(value: JSON, schema: Schema | None, *, resource_root: bool = False) -> Any:
    """Convert a decoded JSON value to the CEL value a rule on `schema` sees."""
    if value is None:
        return None
    if schema is None or schema.get('x-kubernetes-int-or-string') or not _schema_type(schema):
        if (
            isinstance(value, Mapping)
            and schema is not None
            and (schema.get('properties') or schema.get('x-kubernetes-embedded-resource'))
        ):
            return _object_to_cel(value, schema, resource_root=resource_root)
        return _json_to_cel(value)
    kind = _schema_type(schema)
    if kind == 'object' and isinstance(value, Mapping):
        return _object_to_cel(value, schema, resource_root=resource_root)
    if kind == 'array' and isinstance(value, list):
        items = _sub_schema(schema.get('items'))
        embedded = bool(items and items.get('x-kubernetes-embedded-resource'))
        return celtypes.ListType([to_cel(v, items, resource_root=embedded) for v in value])
    if kind == 'string' and isinstance(value, str):
        fmt = schema.get('format')
        if fmt == 'date-time':
            parsed = parse_rfc3339(value)
            if parsed is not None:
                return celtypes.TimestampType(parsed)
        elif fmt == 'duration':
            delta = parse_go_duration(value)
            if delta is not None:
                return celtypes.DurationType(delta)
        elif fmt == 'byte':
            try:
                return celtypes.BytesType(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                pass
        return celtypes.StringType(value)
    if kind == 'number' and isinstance(value, int | float) and not isinstance(value, bool):
        return celtypes.DoubleType(float(value))
    return _json_to_cel(value)


def _object_to_cel(value: Mapping[str, Any], schema: Schema, *, resource_root: bool) -> Any:
    properties = schema.get('properties')
    additional = schema.get('additionalProperties')
    embedded = resource_root or bool(schema.get('x-kubernetes-embedded-resource'))
    if (isinstance(properties, Mapping) and properties) or embedded:
        result: dict[Any, Any] = {}
        declared = properties if isinstance(properties, Mapping) else {}
        for key, item in value.items():
            if embedded and key in ('apiVersion', 'kind') and key not in declared:
                result[celtypes.StringType(key)] = _json_to_cel(item)
                continue
            if embedded and key == 'metadata' and isinstance(item, Mapping):
                # Rules see only metadata.name and metadata.generateName (the rest is not part
                # of the CEL type of ObjectMeta in a CRD schema).
                meta = {
                    celtypes.StringType(k): celtypes.StringType(item[k])
                    for k in _OBJECT_META_CEL_FIELDS
                    if isinstance(item.get(k), str)
                }
                result[celtypes.StringType('metadata')] = celtypes.MapType(meta)
                continue
            if key not in declared:
                if schema.get('x-kubernetes-preserve-unknown-fields'):
                    result[celtypes.StringType(key)] = _json_to_cel(item)
                continue
            name = escape_property_name(key)
            if name is not None:
                result[celtypes.StringType(name)] = to_cel(item, _sub_schema(declared[key]))
        return celtypes.MapType(result)
    if isinstance(additional, Mapping):
        return celtypes.MapType(
            {celtypes.StringType(k): to_cel(v, additional) for k, v in value.items()}
        )
    return _json_to_cel(value)


def _json_to_cel(value: JSON) -> Any:
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        # Go decodes JSON integers beyond int64 as float64.
        if -(2**63) <= value < 2**63:
            return celtypes.IntType(value)
        return celtypes.DoubleType(float(value))
    if isinstance(value, float):
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, list):
        return celtypes.ListType([_json_to_cel(v) for v in value])
    if isinstance(value, Mapping):
        return celtypes.MapType({celtypes.StringType(k): _json_to_cel(v) for k, v in value.items()})
    return None


def _from_cel(value: Any) -> Any:
    """A CEL result as plain Python (for messageExpression strings and tests)."""
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, list):
        return [_from_cel(v) for v in value]
    if isinstance(value, dict):
        return {_from_cel(k): _from_cel(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------------------------
# The Kubernetes CEL libraries, as celpy functions. A method call `x.f(a)` reaches `f(x, a)`.
# Errors are returned (not raised) as celpy error values so that `||`/`&&` can absorb them.


def _error(message: str) -> Any:
    return CELEvalError(message)


def _no_overload() -> Any:
    return CELEvalError('no such overload', TypeError, None)


def _is_str(*values: Any) -> bool:
    return all(isinstance(v, str) for v in values)


def _is_int(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


_ASCII_LOWER: Final = str.maketrans('ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')
_ASCII_UPPER: Final = str.maketrans('abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ')


def _lower_ascii(s: Any) -> Any:
    return celtypes.StringType(s.translate(_ASCII_LOWER)) if _is_str(s) else _no_overload()


def _upper_ascii(s: Any) -> Any:
    return celtypes.StringType(s.translate(_ASCII_UPPER)) if _is_str(s) else _no_overload()


def _trim(s: Any) -> Any:
    return celtypes.StringType(s.strip()) if _is_str(s) else _no_overload()


def _reverse(s: Any) -> Any:
    if _is_str(s):
        return celtypes.StringType(s[::-1])
    if isinstance(s, list):
        return celtypes.ListType(list(reversed(s)))
    return _no_overload()


def _char_at(s: Any, index: Any) -> Any:
    if not (_is_str(s) and _is_int(index)):
        return _no_overload()
    if index < 0 or index > len(s):
        return _error(f'index out of range: {index}')
    return celtypes.StringType(s[index : index + 1])


def _index_of(target: Any, item: Any, offset: Any = None) -> Any:
    if isinstance(target, list) and offset is None:
        for i, element in enumerate(target):
            if element == item:
                return celtypes.IntType(i)
        return celtypes.IntType(-1)
    if not _is_str(target, item) or (offset is not None and not _is_int(offset)):
        return _no_overload()
    start = 0 if offset is None else offset
    if start < 0 or start > len(target):
        return _error(f'index out of range: {start}')
    return celtypes.IntType(target.find(item, start))


def _last_index_of(target: Any, item: Any, offset: Any = None) -> Any:
    if isinstance(target, list) and offset is None:
        for i in range(len(target) - 1, -1, -1):
            if target[i] == item:
                return celtypes.IntType(i)
        return celtypes.IntType(-1)
    if not _is_str(target, item) or (offset is not None and not _is_int(offset)):
        return _no_overload()
    end = len(target) if offset is None else offset
    if end < 0 or end > len(target):
        return _error(f'index out of range: {end}')
    return celtypes.IntType(target.rfind(item, 0, end + len(item)))


def _replace(s: Any, old: Any, new: Any, count: Any = None) -> Any:
    if not _is_str(s, old, new) or (count is not None and not _is_int(count)):
        return _no_overload()
    limit = -1 if count is None or count < 0 else count
    return celtypes.StringType(s.replace(old, new, limit))


def _split(s: Any, separator: Any, limit: Any = None) -> Any:
    if not _is_str(s, separator) or (limit is not None and not _is_int(limit)):
        return _no_overload()
    n = -1 if limit is None else limit
    if n == 0:
        parts: list[str] = []
    elif separator == '':
        chars = list(s)
        parts = chars if n < 0 or n >= len(chars) else [*chars[: n - 1], ''.join(chars[n - 1 :])]
    else:
        parts = s.split(separator, n - 1 if n > 0 else -1)
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


def _substring(s: Any, start: Any, end: Any = None) -> Any:
    if not _is_str(s) or not _is_int(start) or (end is not None and not _is_int(end)):
        return _no_overload()
    stop = len(s) if end is None else end
    if start < 0 or start > len(s):
        return _error(f'index out of range: {start}')
    if stop < 0 or stop > len(s):
        return _error(f'index out of range: {stop}')
    if stop < start:
        return _error(f'invalid substring range. start: {start}, end: {stop}')
    return celtypes.StringType(s[start:stop])


def _join(items: Any, separator: Any = '') -> Any:
    if not isinstance(items, list) or not _is_str(separator) or not _is_str(*items):
        return _no_overload()
    return celtypes.StringType(separator.join(items))


def _is_sorted(items: Any) -> Any:
    if not isinstance(items, list):
        return _no_overload()
    try:
        return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(items)))
    except TypeError:
        return _no_overload()


def _sum(items: Any) -> Any:
    if not isinstance(items, list):
        return _no_overload()
    if not items:
        return celtypes.IntType(0)
    total = items[0]
    try:
        for item in items[1:]:
            total = total + item
    except (TypeError, ValueError):
        return _no_overload()
    return total


def _max(items: Any, *more: Any) -> Any:
    values = list(items) if isinstance(items, list) and not more else [items, *more]
    if not values:
        return _error('max called on empty list')
    try:
        return max(values)
    except TypeError:
        return _no_overload()


def _matches(s: Any, pattern: Any) -> Any:
    if not _is_str(s, pattern):
        return _no_overload()
    try:
        return celtypes.BoolType(compile_regex(pattern).search(s) is not None)
    except RegexError as e:
        return _error(str(e))


def _find(s: Any, pattern: Any) -> Any:
    if not _is_str(s, pattern):
        return _no_overload()
    try:
        match = compile_regex(pattern).search(s)
    except RegexError as e:
        return _error(str(e))
    return celtypes.StringType(match.group(0) if match else '')


def _find_all(s: Any, pattern: Any, limit: Any = None) -> Any:
    if not _is_str(s, pattern) or (limit is not None and not _is_int(limit)):
        return _no_overload()
    try:
        regex = compile_regex(pattern)
    except RegexError as e:
        return _error(str(e))
    found = [celtypes.StringType(m.group(0)) for m in regex.finditer(s)]
    if limit is not None and limit >= 0:
        found = found[:limit]
    return celtypes.ListType(found)


class URLValue(celtypes.StringType):
    """The `URL` type of the Kubernetes URL library: its text, parsed on demand."""


def _parse_url(text: str) -> urllib.parse.SplitResult | None:
    # Go's url.ParseRequestURI: an absolute URI or an absolute path, no fragment.
    if not text or '#' in text or any(c.isspace() for c in text):
        return None
    try:
        parts = urllib.parse.urlsplit(text)
        _ = parts.port  # raises ValueError for an invalid port
    except ValueError:
        return None
    if parts.scheme:
        return parts
    return parts if text.startswith('/') else None


def _url(s: Any) -> Any:
    if not _is_str(s):
        return _no_overload()
    if _parse_url(s) is None:
        return _error(f'URL parse error during conversion from string: parse "{s}": invalid URI')
    return URLValue(s)


def _is_url(s: Any) -> Any:
    return celtypes.BoolType(_parse_url(s) is not None) if _is_str(s) else _no_overload()


def _url_part(getter: Callable[[urllib.parse.SplitResult], Any]) -> Callable[[Any], Any]:
    def function(u: Any) -> Any:
        if not isinstance(u, URLValue):
            return _no_overload()
        parts = _parse_url(str(u))
        return _no_overload() if parts is None else getter(parts)

    return function


def _host(parts: urllib.parse.SplitResult) -> Any:
    return celtypes.StringType(parts.netloc.rpartition('@')[2])


def _hostname(parts: urllib.parse.SplitResult) -> Any:
    host = parts.netloc.rpartition('@')[2]
    if host.startswith('['):
        return celtypes.StringType(host[1:].partition(']')[0])
    return celtypes.StringType(host.partition(':')[0])


def _port(parts: urllib.parse.SplitResult) -> Any:
    host = parts.netloc.rpartition('@')[2]
    tail = host.rpartition(']')[2] if host.startswith('[') else host
    return celtypes.StringType(tail.partition(':')[2])


def _query(parts: urllib.parse.SplitResult) -> Any:
    parsed = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    return celtypes.MapType(
        {
            celtypes.StringType(k): celtypes.ListType([celtypes.StringType(v) for v in vs])
            for k, vs in parsed.items()
        }
    )


FUNCTIONS: Final[dict[str, Callable[..., Any]]] = {
    # strings extension (cel-go ext.Strings), https://pkg.go.dev/github.com/google/cel-go/ext#Strings
    'charAt': _char_at,
    'indexOf': _index_of,  # also the Kubernetes list library's indexOf
    'lastIndexOf': _last_index_of,
    'lowerAscii': _lower_ascii,
    'upperAscii': _upper_ascii,
    'replace': _replace,
    'split': _split,
    'substring': _substring,
    'trim': _trim,
    'join': _join,
    'reverse': _reverse,
    # Kubernetes list library (min() is a celpy built-in macro with the same meaning)
    'isSorted': _is_sorted,
    'sum': _sum,
    'max': _max,
    # regex: RE2, like cel-go, instead of celpy's own wrapper
    'matches': _matches,
    'find': _find,
    'findAll': _find_all,
    # Kubernetes URL library
    'url': _url,
    'isURL': _is_url,
    'getScheme': _url_part(lambda p: celtypes.StringType(p.scheme)),
    'getHost': _url_part(_host),
    'getHostname': _url_part(_hostname),
    'getPort': _url_part(_port),
    'getEscapedPath': _url_part(lambda p: celtypes.StringType(p.path)),
    'getQuery': _url_part(_query),
}

# What each function returns, for the static check (None: depends on the arguments).
_STD_RESULTS: Final[dict[str, str | None]] = {
    'size': 'int',
    'contains': 'bool',
    'startsWith': 'bool',
    'endsWith': 'bool',
    'matches': 'bool',
    'int': 'int',
    'uint': 'uint',
    'double': 'double',
    'string': 'string',
    'bytes': 'bytes',
    'bool': 'bool',
    'timestamp': 'timestamp',
    'duration': 'duration',
    'dyn': None,
    'type': 'type',
    'list': 'list',
    'map': 'map',
    'getDate': 'int',
    'getDayOfMonth': 'int',
    'getDayOfWeek': 'int',
    'getDayOfYear': 'int',
    'getFullYear': 'int',
    'getMonth': 'int',
    'getHours': 'int',
    'getMilliseconds': 'int',
    'getMinutes': 'int',
    'getSeconds': 'int',
    'charAt': 'string',
    'indexOf': 'int',
    'lastIndexOf': 'int',
    'lowerAscii': 'string',
    'upperAscii': 'string',
    'replace': 'string',
    'split': 'list',
    'substring': 'string',
    'trim': 'string',
    'join': 'string',
    'reverse': None,
    'isSorted': 'bool',
    'sum': None,
    'max': None,
    'min': None,
    'find': 'string',
    'findAll': 'list',
    'url': 'url',
    'isURL': 'bool',
    'getScheme': 'string',
    'getHost': 'string',
    'getHostname': 'string',
    'getPort': 'string',
    'getEscapedPath': 'string',
    'getQuery': 'map',
}
_MACROS: Final = frozenset({'all', 'exists', 'exists_one', 'map', 'filter'})
_VARIABLES: Final = frozenset({'self', 'oldSelf'})
_TYPE_NAMES: Final = frozenset(
    {'int', 'uint', 'double', 'bool', 'string', 'bytes', 'list', 'map', 'null_type', 'type'}
)


# --------------------------------------------------------------------------------------------
# Compilation and evaluation.

_ENVIRONMENT: Final = celpy.Environment()


@dataclass(frozen=True)
class CompiledRule:
    """A parsed rule, ready to evaluate any number of times (programs are cached by text)."""

    source: str
    uses_old_self: bool
    _program: Any = field(repr=False, compare=False)

    def evaluate(
        self,
        self_value: JSON,
        old_self: JSON = None,
        *,
        schema: Schema | None = None,
        resource_root: bool = False,
    ) -> bool:
        """Evaluate the rule as a validation rule: its result must be a bool."""
        result = self._run(self_value, old_self, schema, resource_root)
        if not isinstance(result, celtypes.BoolType):
            raise CelEvalError('no such overload', no_such_overload=True)
        return bool(result)

    def evaluate_value(
        self,
        self_value: JSON,
        old_self: JSON = None,
        *,
        schema: Schema | None = None,
        resource_root: bool = False,
    ) -> Any:
        """Evaluate to a plain Python value (a `messageExpression` evaluates to a string)."""
        return _from_cel(self._run(self_value, old_self, schema, resource_root))

    def _run(self, self_value: JSON, old_self: JSON, schema: Schema | None, root: bool) -> Any:
        try:
            activation: dict[str, Any] = {'self': to_cel(self_value, schema, resource_root=root)}
            if self.uses_old_self:
                activation['oldSelf'] = to_cel(old_self, schema, resource_root=root)
        except (ValueError, TypeError, OverflowError) as e:
            raise CelEvalError(f'invalid value: {e}') from None
        try:
            return self._program.evaluate(activation)
        except CELEvalError as e:
            raise _translate_eval_error(e) from None
        except RecursionError:
            raise CelEvalError('max recursion depth exceeded') from None
        except Exception as e:  # celpy may leak Python errors from its operators
            logger.debug('celpy raised %r evaluating %r', e, self.source)
            raise CelEvalError(f'no such overload: {e}', no_such_overload=True) from None


def _translate_eval_error(error: Exception) -> CelEvalError:
    """Render celpy's runtime errors with the words cel-go uses for them."""
    text = str(error.args[0]) if error.args else str(error)
    kind = error.args[1] if len(error.args) > 1 else None
    missing = re.match(r"no such member in mapping: '(.*)'$", text)
    if missing:
        return CelEvalError(f'no such key: {missing.group(1)}')
    if kind is KeyError or text == 'no such key':
        return CelEvalError('no such key')
    if kind is IndexError:
        return CelEvalError('index out of bounds')
    if kind is ZeroDivisionError:
        return CelEvalError('division by zero')
    if text.startswith(('no such overload', 'found no matching overload')) or kind is TypeError:
        return CelEvalError('no such overload', no_such_overload=True)
    return CelEvalError(text)


@functools.lru_cache(maxsize=4096)
def compile_rule(rule: str) -> CompiledRule:
    """Parse `rule` and check the schema-independent part of it; cached by rule text.

    Raises CelCompileError with cel-go's wording (`compilation failed: ERROR: <input>:1:5: ...`).
    """
    tree = _parse(rule)
    _Checker(rule, schema=None).check_names(tree)
    uses_old_self = any(
        isinstance(token, lark.Token) and token.type == 'IDENT' and token.value == 'oldSelf'
        for ident in tree.find_data('ident')
        for token in ident.children
    )
    program = _ENVIRONMENT.program(tree, functions=FUNCTIONS)
    return CompiledRule(source=rule, uses_old_self=uses_old_self, _program=program)


def check_rule(
    rule: str, schema: Schema | None, *, result: str = 'bool', resource_root: bool = False
) -> CompiledRule:
    """Compile `rule` as the apiserver does at CRD creation, against the node's `schema`.

    `result` is the type the expression must have: 'bool' for `rule`, 'string' for
    `messageExpression`. Raises CelCompileError.
    """
    compiled = compile_rule(rule)
    tree = _parse(rule)
    checker = _Checker(rule, schema=schema, resource_root=resource_root)
    kind = checker.infer(tree, {})
    if kind.name not in ('dyn', result):
        if result == 'bool':
            raise CelCompileError('cel expression must evaluate to a bool')
        raise CelCompileError(f'must evaluate to {result}')
    return compiled


@functools.lru_cache(maxsize=4096)
def _parse_cached(rule: str) -> Any:
    return _ENVIRONMENT.compile(rule)


def _parse(rule: str) -> lark.Tree[Any]:
    try:
        tree: lark.Tree[Any] = _parse_cached(rule)
    except CELParseError as e:
        line = getattr(e, 'line', None) or 1
        column = getattr(e, 'column', None) or 1
        # celpy raises from lark's error: its token says whether the input ended too early.
        token = getattr(e.__context__, 'token', None)
        if getattr(token, 'type', None) == '$END':
            what = "mismatched input '<EOF>'"
        elif token is not None:
            what = f"mismatched input '{token}'"
        else:
            what = 'unexpected input'
        detail = f'Syntax error: {what}'
        raise CelCompileError(_compile_message(rule, line, column, detail)) from None
    except RecursionError:
        raise CelCompileError('compilation failed: expression nesting too deep') from None
    return tree


def _compile_message(rule: str, line: int, column: int, detail: str) -> str:
    """cel-go's issue text: location, message, then the source line with a caret under it."""
    lines = rule.split('\n')
    source = lines[line - 1] if 0 < line <= len(lines) else ''
    pointer = '.' * max(column - 1, 0) + '^'
    return (
        f'compilation failed: ERROR: <input>:{line}:{column}: {detail}\n | {source}\n | {pointer}'
    )


# --------------------------------------------------------------------------------------------
# Static check: a small type inference over celpy's parse tree.


@dataclass(frozen=True)
class _Type:
    name: str  # bool int uint double string bytes timestamp duration list map object url ...
    schema: Schema | None = None  # for list/map/object: the schema node, to follow fields
    root: bool = False  # an object at a resource root (apiVersion, kind, metadata visible)


_DYN: Final = _Type('dyn')
_BOOL: Final = _Type('bool')


def _type_of_schema(schema: Schema | None, *, root: bool = False) -> _Type:
    if schema is None or schema.get('x-kubernetes-int-or-string'):
        return _DYN
    kind = _schema_type(schema)
    embedded = root or bool(schema.get('x-kubernetes-embedded-resource'))
    if kind == 'object' or (embedded and not kind):
        if schema.get('properties') or embedded:
            if schema.get('x-kubernetes-preserve-unknown-fields') and not schema.get('properties'):
                return _DYN
            return _Type('object', schema, embedded)
        additional = schema.get('additionalProperties')
        if isinstance(additional, Mapping):
            return _Type('map', schema)
        return _DYN
    if kind == 'array':
        return _Type('list', schema)
    if kind == 'string':
        return _Type(
            {'date-time': 'timestamp', 'duration': 'duration', 'byte': 'bytes'}.get(
                str(schema.get('format')), 'string'
            )
        )
    return _Type({'integer': 'int', 'number': 'double', 'boolean': 'bool'}.get(kind, 'dyn'))


def _element_type(container: _Type) -> _Type:
    if container.name == 'list' and container.schema is not None:
        items = _sub_schema(container.schema.get('items'))
        return _type_of_schema(
            items, root=bool(items and items.get('x-kubernetes-embedded-resource'))
        )
    if container.name == 'map' and container.schema is not None:
        return _type_of_schema(_sub_schema(container.schema.get('additionalProperties')))
    if container.name == 'map' or container.name == 'object':
        return _Type('string')  # a macro over a map or object iterates its keys
    return _DYN


class _Checker:
    """Walks celpy's parse tree; raises CelCompileError for what cel-go rejects statically."""

    def __init__(self, rule: str, *, schema: Schema | None, resource_root: bool = False) -> None:
        self.rule = rule
        self.schema = schema
        self.resource_root = resource_root

    def fail(self, node: Any, detail: str) -> CelCompileError:
        line, column = 1, 1
        if isinstance(node, lark.Token):
            line, column = node.line or 1, node.column or 1
        elif isinstance(node, lark.Tree) and not node.meta.empty:
            line, column = node.meta.line, node.meta.column
        return CelCompileError(_compile_message(self.rule, line, column, detail))

    def check_names(self, tree: lark.Tree[Any]) -> None:
        """Undeclared variables and unknown functions, without any schema knowledge."""
        self.infer(tree, {}, typed=False)

    def infer(self, node: Any, scope: Mapping[str, _Type], *, typed: bool = True) -> _Type:
        if node is None or isinstance(node, lark.Token):
            return _DYN
        handler = getattr(self, f'_t_{node.data}', None)
        if handler is not None:
            result: _Type = handler(node, scope, typed)
            return result
        kinds = [self.infer(child, scope, typed=typed) for child in node.children]
        return kinds[0] if len(kinds) == 1 else _DYN

    # expr: conditionalor ["?" conditionalor ":" expr]
    def _t_expr(self, node: Any, scope: Mapping[str, _Type], typed: bool) -> _Type:
        kinds = [self.infer(c, scope, typed=typed) for c in node.children if c is not None]
        if len(kinds) == 3:
            return kinds[1] if kinds[1] == kinds[2] else _DYN
        return kinds[0] if kinds else _DYN

    def _logical(self, node: Any, scope: Mapping[str, _Type], typed: bool) -> _Type:
        kinds = [self.infer(c, scope, typed=typed) for c in node.children if c is not None]
        return kinds[0] if len(kinds) == 1 else _BOOL

    _t_conditionalor = _logical
    _t_conditionaland = _logical

    def _t_relation(self, node: Any, scope: Mapping[str, _Type], typed: bool) -> _Type:
        kinds = [self.infer(c, scope, typed=typed) for c in node.children if c is not None]
        return kinds[0] if len(kinds) == 1 else _BOOL

    def _arithmetic(self, node: Any, scope: Mapping[str, _Type], typed: bool) -> _Type:
        kinds = [self.infer(c, scope, typed=typed) for c in node.children if c is not None]
        if len(kinds) == 1:
            return kinds[0]
        names = {k.name for k in kinds}
        if names == {'timestamp'} and node.data == 'addition':
            return _Type('duration')
        if names == {'timestamp', 'duration'}:
            return _Type('timestamp')
        if len(names) == 1 and 'dyn' not in names:
            return kinds[0]
        return _DYN

    _t_addition = _arithmetic
    _t_multiplication = _arithmetic

    def _t_unary(self, node: Any, scope: Mapping[str, _Type], typed: bool) -> _Type:
        kinds = [self.infer(c, scope, typed=typed) for c in node.children]
        if len(node.children) == 2 and isinstance(node.children[0], lark.Tree):
            return _BOOL if node.children[0].data == 'unary_not' else kinds[1]
        return kinds[-1] if kinds else _DYN

    def _t_literal(self, node: Any, scope: Mapping[str, _Type], typed: bool) -> _Type:
        token = node.children[0]
        return _Type(
            {
                'INT_LIT': 'int',
                'UINT_LIT': 'uint',
                'FLOAT_LIT': 'double',
                'STRING_LIT': 'string',
                'MLSTRING_LIT': 'string',
                'BYTES_LIT': 'bytes',
                'BOOL_LIT': 'bool',
                'NULL_LIT': 'null',
            }.get(token.type, 'dyn')
        )

    def _t_ident(self, node: Any, scope: Mapping[str, _Type], typed: bool) -> _Type:
        token = node.children[0]
        name = token.value
        if name in scope:
            return scope[name]
        if name in _VARIABLES:
            return _type_of_schema(self.schema, root=self.resource_root) if typed else _DYN
        if name in _TYPE_NAMES:
            return _Type('type')
        raise self.fail(token, f"undeclared reference to '{name}' (in container '')")

    def _t_ident_arg(self, node: Any, scope: Mapping[str, _Type], typed: bool) -> _Type:
        name_token = node.children[0]
        args = node.children[1].children if len(node.children) > 1 else []
        name = name_token.value
        if name == 'has':
            if len(args) != 1 or not self._is_selection(args[0]):
                raise self.fail(name_token, 'invalid argument to has() macro')
            self.infer(args[0], scope, typed=typed)
            return _BOOL
        if name not in _STD_RESULTS:
            raise self.fail(name_token, f"undeclared reference to '{name}' (in container '')")
        kinds = [self.infer(a, scope, typed=typed) for a in args]
        result = _STD_RESULTS[name]
        del kinds  # arguments are checked for names only; their types do not matter here
        return _DYN if result is None else _Type(result)

    @staticmethod
    def _is_selection(node: Any) -> bool:
        # has() takes a field selection: walk down single-child wrappers to a member_dot.
        while isinstance(node, lark.Tree) and len(node.children) == 1:
            if node.data == 'member_dot':
                return True
            node = node.children[0]
        return isinstance(node, lark.Tree) and node.data == 'member_dot'

    def _t_member_dot(self, node: Any, scope: Mapping[str, _Type], typed: bool) -> _Type:
        target = self.infer(node.children[0], scope, typed=typed)
        field_token = node.children[1]
        return self._select(target, field_token)

    def _select(self, target: _Type, field_token: Any) -> _Type:
        name = field_token.value
        if target.name == 'map':
            return _element_type(target)
        if target.name != 'object' or target.schema is None:
            return _DYN
        properties = target.schema.get('properties')
        declared = properties if isinstance(properties, Mapping) else {}
        by_cel_name = {escape_property_name(k): v for k, v in declared.items()}
        if name in by_cel_name:
            sub = _sub_schema(by_cel_name[name])
            return _type_of_schema(
                sub, root=bool(sub and sub.get('x-kubernetes-embedded-resource'))
            )
        if target.root and name in ('apiVersion', 'kind'):
            return _Type('string')
        if target.root and name == 'metadata':
            meta = {
                'type': 'object',
                'properties': {k: {'type': 'string'} for k in _OBJECT_META_CEL_FIELDS},
            }
            return _Type('object', meta)
        if target.schema.get('x-kubernetes-preserve-unknown-fields'):
            return _DYN
        column = (field_token.column or 2) - 1
        raise CelCompileError(
            _compile_message(self.rule, field_token.line or 1, column, f"undefined field '{name}'")
        )

    def _t_member_dot_arg(self, node: Any, scope: Mapping[str, _Type], typed: bool) -> _Type:
        target_node, method_token = node.children[0], node.children[1]
        args = node.children[2].children if len(node.children) > 2 else []
        method = method_token.value
        target = self.infer(target_node, scope, typed=typed)
        if method in _MACROS:
            if len(args) != 2 or not self._is_plain_ident(args[0]):
                raise self.fail(method_token, f'invalid argument to {method}() macro')
            variable = self._ident_name(args[0])
            inner = {**scope, variable: _element_type(target)}
            body = self.infer(args[1], inner, typed=typed)
            if method == 'map':
                return _Type('list')
            if method == 'filter':
                return target if target.name == 'list' else _Type('list')
            if typed and body.name not in ('bool', 'dyn'):
                raise self.fail(method_token, f'{method}() predicate must evaluate to a bool')
            return _BOOL
        if method not in _STD_RESULTS:
            raise self.fail(method_token, f"undeclared reference to '{method}' (in container '')")
        for argument in args:
            self.infer(argument, scope, typed=typed)
        result = _STD_RESULTS[method]
        if method in ('min', 'max', 'sum'):
            return _element_type(target) if target.name == 'list' else _DYN
        if method == 'reverse':
            return target
        return _DYN if result is None else _Type(result)

    @staticmethod
    def _plain_ident_token(node: Any) -> Any:
        while isinstance(node, lark.Tree):
            if node.data == 'ident':
                return node.children[0]
            if len(node.children) != 1:
                return None
            node = node.children[0]
        return None

    def _is_plain_ident(self, node: Any) -> bool:
        return self._plain_ident_token(node) is not None

    def _ident_name(self, node: Any) -> str:
        token = self._plain_ident_token(node)
        return str(token.value)

    def _t_member_index(self, node: Any, scope: Mapping[str, _Type], typed: bool) -> _Type:
        target = self.infer(node.children[0], scope, typed=typed)
        self.infer(node.children[1], scope, typed=typed)
        return _element_type(target) if target.name in ('list', 'map') else _DYN

    def _t_member_object(self, node: Any, scope: Mapping[str, _Type], typed: bool) -> _Type:
        raise self.fail(node, 'message construction is not supported in CRD validation rules')

    def _t_dot_ident(self, node: Any, scope: Mapping[str, _Type], typed: bool) -> _Type:
        token = node.children[0]
        raise self.fail(token, f"undeclared reference to '{token.value}' (in container '')")

    _t_dot_ident_arg = _t_dot_ident

    def _t_list_lit(self, node: Any, scope: Mapping[str, _Type], typed: bool) -> _Type:
        for child in node.children:
            self.infer(child, scope, typed=typed)
        return _Type('list')

    def _t_map_lit(self, node: Any, scope: Mapping[str, _Type], typed: bool) -> _Type:
        for child in node.children:
            self.infer(child, scope, typed=typed)
        return _Type('map')


def iter_rules(schema: Schema) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """The `x-kubernetes-validations` entries of one schema node, with their index."""
    rules = schema.get('x-kubernetes-validations')
    if isinstance(rules, Sequence) and not isinstance(rules, str):
        for index, rule in enumerate(rules):
            if isinstance(rule, Mapping):
                yield index, rule

"""ObjectMeta helpers of the Kubernetes API emulator: timestamps, names, metadata validation.

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

Messages follow k8s.io/apimachinery (`validation.IsDNS1123Subdomain`, `IsQualifiedName`,
`ValidateObjectMeta`, `ValidateObjectMetaUpdate`) so that a 422 from the emulator reads like one
from a cluster. See https://kubernetes.io/docs/concepts/overview/working-with-objects/names/ .
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# ObjectMeta fields a client may send (anything else is an unknown field and dropped).
OBJECT_META_FIELDS = frozenset(
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

# Finalizers the garbage collector understands (metav1.FinalizerOrphanDependents, ...).
FINALIZER_ORPHAN = 'orphan'
FINALIZER_FOREGROUND = 'foregroundDeletion'

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


@dataclass(frozen=True)
class FieldViolation:
    """One field error (apimachinery `field.Error`): `message` is the full `field: body` text."""

    field: str
    reason: str
    message: str


def format_time(moment: datetime) -> str:
    """RFC 3339 with second precision in UTC, as metav1.Time serialises."""
    return moment.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=UTC)


_NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'  # k8s.io/apiserver/pkg/storage/names


def generate_name(prefix: str) -> str:
    """`names.SimpleNameGenerator`: the prefix (cut to 58) plus 5 random characters."""
    return prefix[:58] + ''.join(secrets.choice(_NAME_ALPHABET) for _ in range(5))


def go_value(value: Any) -> str:
    """Render a value the way `field.Invalid` prints it in messages."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(',', ':'))


def invalid(field: str, value: Any, detail: str) -> FieldViolation:
    body = f'Invalid value: {go_value(value)}'
    if detail:
        body += f': {detail}'
    return FieldViolation(field, 'FieldValueInvalid', f'{field}: {body}')


def required(field: str, detail: str = '') -> FieldViolation:
    body = 'Required value' + (f': {detail}' if detail else '')
    return FieldViolation(field, 'FieldValueRequired', f'{field}: {body}')


def forbidden(field: str, detail: str) -> FieldViolation:
    return FieldViolation(field, 'FieldValueForbidden', f'{field}: Forbidden: {detail}')


def not_supported(field: str, value: Any, supported: Sequence[str]) -> FieldViolation:
    body = f'Unsupported value: {go_value(value)}'
    if supported:
        body += ': supported values: ' + ', '.join(json.dumps(s) for s in supported)
    return FieldViolation(field, 'FieldValueNotSupported', f'{field}: {body}')


def too_long(field: str, limit: int) -> FieldViolation:
    return FieldViolation(
        field, 'FieldValueTooLong', f'{field}: Too long: must have at most {limit} bytes'
    )


def immutable(field: str, value: Any) -> FieldViolation:
    return invalid(field, value, 'field is immutable')


_DNS1123_LABEL = r'[a-z0-9]([-a-z0-9]*[a-z0-9])?'
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r'(\.' + _DNS1123_LABEL + r')*'
_QUALIFIED_NAME_PART = r'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]'
_LABEL_VALUE = r'(' + _QUALIFIED_NAME_PART + r')?'

_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used "
    f"for validation is '{_DNS1123_LABEL}')"
)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    f"for validation is '{_DNS1123_SUBDOMAIN}')"
)
_QUALIFIED_NAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    f"validation is '{_QUALIFIED_NAME_PART}')"
)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    f"'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE}')"
)


def dns1123_label(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append('must be no more than 63 characters')
    if not re.fullmatch(_DNS1123_LABEL, value):
        errors.append(_DNS1123_LABEL_MSG)
    return errors


def dns1123_subdomain(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append('must be no more than 253 characters')
    if not re.fullmatch(_DNS1123_SUBDOMAIN, value):
        errors.append(_DNS1123_SUBDOMAIN_MSG)
    return errors


def path_segment_name(value: str) -> list[str]:
    """`path.ValidatePathSegmentName`: RBAC objects may be named `system:controller:x`."""
    if value in ('.', '..'):
        return [f'may not be {value!r}']
    return [f'may not contain {c!r}' for c in ('/', '%') if c in value]


def qualified_name(value: str) -> list[str]:
    """`validation.IsQualifiedName`: label keys, annotation keys, finalizer names."""
    prefix, slash, name = value.rpartition('/')
    if not slash:
        prefix, name = '', value
    errors: list[str] = []
    if slash and not prefix:
        errors.append('prefix part must be non-empty')
    elif prefix:
        errors.extend('prefix part ' + m for m in dns1123_subdomain(prefix))
    if not name:
        errors.append('name part must be non-empty')
    elif len(name) > 63:
        errors.append('name part must be no more than 63 characters')
    if name and not re.fullmatch(_QUALIFIED_NAME_PART, name):
        errors.append(_QUALIFIED_NAME_MSG)
    return errors


def label_value(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append('must be no more than 63 characters')
    if not re.fullmatch(_LABEL_VALUE, value):
        errors.append(_LABEL_VALUE_MSG)
    return errors


NameValidator = Callable[[str], list[str]]


def validate_object_meta(
    meta: Mapping[str, Any], *, namespaced: bool, name_validator: NameValidator
) -> list[FieldViolation]:
    """`ValidateObjectMetaAccessor`: name, labels, annotations, owner references, finalizers."""
    errs: list[FieldViolation] = []
    name = meta.get('name') or ''
    if not name:
        errs.append(required('metadata.name', 'name or generateName is required'))
    else:
        errs.extend(invalid('metadata.name', name, m) for m in name_validator(name))
    if namespaced and not meta.get('namespace'):
        errs.append(required('metadata.namespace'))
    for key, value in (meta.get('labels') or {}).items():
        errs.extend(invalid('metadata.labels', key, m) for m in qualified_name(key))
        if not isinstance(value, str):
            errs.append(invalid(f'metadata.labels.{key}', value, 'must be a string'))
        else:
            errs.extend(invalid('metadata.labels', value, m) for m in label_value(value))
    annotations = meta.get('annotations') or {}
    size = 0
    for key, value in annotations.items():
        errs.extend(invalid('metadata.annotations', key, m) for m in qualified_name(key.lower()))
        size += len(key) + len(value if isinstance(value, str) else json.dumps(value))
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(too_long('metadata.annotations', TOTAL_ANNOTATION_SIZE_LIMIT))
    errs.extend(_validate_owner_references(meta.get('ownerReferences') or []))
    for finalizer in meta.get('finalizers') or []:
        errs.extend(invalid('metadata.finalizers', finalizer, m) for m in qualified_name(finalizer))
    finalizers = meta.get('finalizers') or []
    if FINALIZER_ORPHAN in finalizers and FINALIZER_FOREGROUND in finalizers:
        errs.append(
            invalid(
                'metadata.finalizers',
                finalizers,
                f'finalizer {FINALIZER_ORPHAN} and {FINALIZER_FOREGROUND} cannot be both set',
            )
        )
    generation = meta.get('generation')
    if isinstance(generation, int) and generation < 0:
        errs.append(
            invalid('metadata.generation', generation, 'must be greater than or equal to 0')
        )
    return errs


def _validate_owner_references(refs: list[Any]) -> list[FieldViolation]:
    errs: list[FieldViolation] = []
    path = 'metadata.ownerReferences'
    controllers = []
    for ref in refs:
        if not isinstance(ref, dict):
            errs.append(invalid(path, ref, 'must be an object'))
            continue
        api_version = ref.get('apiVersion') or ''
        if not api_version.rpartition('/')[2]:
            errs.append(invalid(f'{path}.apiVersion', api_version, 'version must not be empty'))
        for key in ('kind', 'name', 'uid'):
            if not ref.get(key):
                errs.append(invalid(f'{path}.{key}', ref.get(key, ''), f'{key} must not be empty'))
        if ref.get('controller'):
            controllers.append(f'{ref.get("kind")}/{ref.get("name")}')
    if len(controllers) > 1:
        errs.append(
            invalid(
                path,
                refs,
                'Only one reference can have Controller set to true. Found "true" in references '
                f'for {" and ".join(controllers)}',
            )
        )
    return errs


def validate_object_meta_update(
    new: Mapping[str, Any], old: Mapping[str, Any]
) -> list[FieldViolation]:
    """`ValidateObjectMetaAccessorUpdate`: identity is immutable; no finalizer joins a deletion."""
    errs: list[FieldViolation] = []
    for key in ('name', 'namespace', 'uid'):
        if (new.get(key) or '') != (old.get(key) or ''):
            errs.append(immutable(f'metadata.{key}', new.get(key) or ''))
    if old.get('deletionTimestamp'):
        added = [f for f in new.get('finalizers') or [] if f not in (old.get('finalizers') or [])]
        if added:
            listed = ', '.join(json.dumps(f) for f in added)
            errs.append(
                forbidden(
                    'metadata.finalizers',
                    'no new finalizers can be added if the object is being deleted, found new '
                    f'finalizers []string{{{listed}}}',
                )
            )
    return errs


def prune_object_meta(meta: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Decode ObjectMeta as the typed struct does: unknown fields are dropped (their paths are
    returned) and empty values vanish (every ObjectMeta field is `omitempty`)."""
    kept = {
        k: v for k, v in meta.items() if k in OBJECT_META_FIELDS and v not in (None, '', [], {})
    }
    dropped = [f'metadata.{k}' for k in meta if k not in OBJECT_META_FIELDS]
    return kept, dropped

"""`meta.k8s.io/v1` Table output of the Kubernetes API emulator (what `kubectl get` prints).

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables :
custom resources get a Name column plus the CRD version's `additionalPrinterColumns` (an Age
column when it declares none); built-ins get Name plus a few of their usual columns and Age.
Rows carry the object's metadata as `PartialObjectMetadata`. Dates are rendered as ages the
way `duration.HumanDuration` does.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from . import meta
from .resources import ResourceType

Obj = dict[str, Any]

_NAME = {
    'name': 'Name',
    'type': 'string',
    'format': 'name',
    'description': 'Name must be unique within a namespace.',
    'priority': 0,
}
_AGE_PATH = '.metadata.creationTimestamp'
_BUILTIN_COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    'Secret': [('Type', 'string', '.type'), ('Data', 'integer', '#data')],
    'ConfigMap': [('Data', 'integer', '#data')],
    'Namespace': [('Status', 'string', '.status.phase')],
    'Pod': [('Status', 'string', '.status.phase')],
    'Lease': [('Holder', 'string', '.spec.holderIdentity')],
    'RoleBinding': [('Role', 'string', '@roleRef')],
    'ClusterRoleBinding': [('Role', 'string', '@roleRef')],
    'CustomResourceDefinition': [],
}


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    if seconds < -1:
        return '<invalid>'
    if seconds < 0:
        return '0s'
    s = int(seconds)
    if s < 120:
        return f'{s}s'
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f'{minutes}m{rest}s' if rest else f'{minutes}m'
    if minutes < 180:
        return f'{minutes}m'
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f'{hours}h{rest}m' if rest else f'{hours}h'
    if hours < 48:
        return f'{hours}h'
    if hours < 24 * 8:
        rest = hours % 24
        return f'{hours // 24}d{rest}h' if rest else f'{hours // 24}d'
    if hours < 24 * 365 * 2:
        return f'{hours // 24}d'
    if hours < 24 * 365 * 8:
        days = hours // 24 - 365 * (hours // 24 // 365)
        return f'{hours // 24 // 365}y{days}d' if days else f'{hours // 24 // 365}y'
    return f'{hours // 24 // 365}y'


_SEGMENT = re.compile(
    r'\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.-]+)==["\']([^"\']*)["\']\)\]'
)


def json_path(obj: Any, path: str) -> Any:
    """The subset of JSONPath that printer columns use: fields, indexes, one equality filter."""
    path = path.strip()
    if path.startswith('{') and path.endswith('}'):
        path = path[1:-1]
    values = [obj]
    position = 0
    while position < len(path):
        match = _SEGMENT.match(path, position)
        if match is None:
            return None
        position = match.end()
        name, index, filter_field, filter_value = match.groups()
        found = []
        for value in values:
            if name is not None and isinstance(value, dict) and name in value:
                found.append(value[name])
            elif index is not None and isinstance(value, list) and int(index) < len(value):
                found.append(value[int(index)])
            elif filter_field is not None and isinstance(value, list):
                for item in value:
                    probe: Any = item
                    for part in filter_field.split('.'):
                        probe = probe.get(part) if isinstance(probe, dict) else None
                    if probe is not None and str(probe) == filter_value:
                        found.append(item)
        values = found
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _cell(value: Any, kind: str, now: datetime) -> Any:
    if value is None:
        return None
    if kind == 'date' and isinstance(value, str):
        try:
            return human_duration((now - meta.parse_time(value)).total_seconds())
        except ValueError:
            return value
    if isinstance(value, dict | list):
        return str(value)
    return value


def _columns(rt: ResourceType) -> list[tuple[dict[str, Any], str]]:
    """(column definition, jsonPath) pairs after Name."""
    if rt.crd_name:
        columns = rt.printer_columns or ({'name': 'Age', 'type': 'date', 'jsonPath': _AGE_PATH},)
        return [
            (
                {
                    'name': c['name'],
                    'type': c.get('type', 'string'),
                    'format': c.get('format', ''),
                    'description': c.get('description', ''),
                    'priority': c.get('priority', 0),
                },
                c['jsonPath'],
            )
            for c in columns
        ]
    defined = [
        ({'name': name, 'type': kind, 'format': '', 'description': '', 'priority': 0}, path)
        for name, kind, path in _BUILTIN_COLUMNS.get(rt.kind, [])
    ]
    defined.append(
        ({'name': 'Age', 'type': 'date', 'format': '', 'description': '', 'priority': 0}, _AGE_PATH)
    )
    return defined


def _value(obj: Obj, path: str) -> Any:
    if path.startswith('#'):  # a count of map entries (DATA columns)
        return len(obj.get(path[1:]) or {})
    if path == '@roleRef':
        ref = obj.get('roleRef') or {}
        return f'{ref.get("kind")}/{ref.get("name")}'
    return json_path(obj, path)


def to_table(rt: ResourceType, body: Obj, now: datetime) -> Obj:
    """A Table for an object or a list (meta.k8s.io/v1)."""
    columns = _columns(rt)
    items = body['items'] if 'items' in body and body.get('kind', '').endswith('List') else [body]
    rows = []
    for obj in items:
        cells: list[Any] = [obj['metadata']['name']]
        cells.extend(
            _cell(_value(obj, path), definition['type'], now) for definition, path in columns
        )
        rows.append(
            {
                'cells': cells,
                'object': {
                    'kind': 'PartialObjectMetadata',
                    'apiVersion': 'meta.k8s.io/v1',
                    'metadata': obj['metadata'],
                },
            }
        )
    list_meta = {
        k: v
        for k, v in (body.get('metadata') or {}).items()
        if k in ('resourceVersion', 'continue', 'remainingItemCount')
    }
    if 'items' not in body:
        list_meta = {'resourceVersion': body['metadata'].get('resourceVersion', '')}
    return {
        'kind': 'Table',
        'apiVersion': 'meta.k8s.io/v1',
        'metadata': list_meta,
        'columnDefinitions': [_NAME, *(definition for definition, _ in columns)],
        'rows': rows,
    }

"""CustomResourceDefinitions in the Kubernetes API emulator: validation, serving, loading.

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

What the apiextensions-apiserver does with a CRD
(https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/):
validates it (names, versions, one storage version, a structural schema whose CEL rules
compile: 422 otherwise), serves every `served` version as a resource that shares one storage
(conversion strategy None: only apiVersion changes), and handles each custom resource with the
version's schema: prune unknown fields, apply defaults, validate (OpenAPI + CEL); the `/status`
subresource splits writes; `metadata.generation` moves on any change outside metadata (and
status, when the status subresource is enabled).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from . import meta, schema
from .errors import Cause
from .meta import FieldViolation
from .resources import ALL_VERBS, Converter, ResourceType
from .strategies import Strategy, dropped_paths

Obj = dict[str, Any]

CRD_TABLE = 'apiextensions.k8s.io/customresourcedefinitions'
CLEANUP_FINALIZER = 'customresourcecleanup.apiextensions.k8s.io'
PRINTER_COLUMN_TYPES = ('boolean', 'date', 'integer', 'number', 'string')


class CustomResourceStrategy(Strategy):
    """One served version of a CRD: its schema drives decoding and validation."""

    generation = 'non-metadata'
    status_update_keeps_metadata = False

    def __init__(self, openapi_schema: Mapping[str, Any] | None, *, status: bool) -> None:
        self.openapi_schema = openapi_schema
        self.status_subresource = status

    def decode(self, rt: ResourceType, obj: Obj) -> tuple[Obj, list[str]]:
        obj, dropped = super().decode(rt, obj)
        if self.openapi_schema is not None:
            pruned = schema.prune(self.openapi_schema, obj)
            dropped.extend(dropped_paths(obj, pruned))
            obj = schema.apply_defaults(self.openapi_schema, pruned)
        return obj, dropped

    def validate(self, rt: ResourceType, obj: Obj) -> list[Cause]:
        if self.openapi_schema is None:
            return []
        return list(schema.validate(self.openapi_schema, obj))

    def validate_update(self, rt: ResourceType, new: Obj, old: Obj) -> list[Cause]:
        if self.openapi_schema is None:
            return []
        return list(schema.validate(self.openapi_schema, new, old=old))


def storage_version(crd: Obj) -> str:
    for version in crd['spec'].get('versions') or []:
        if version.get('storage'):
            return str(version['name'])
    raise ValueError(f'CRD {crd["metadata"]["name"]} has no storage version')


def resource_types(crd: Obj) -> list[ResourceType]:
    """The resources a (valid) CRD serves: one per served version, one shared storage."""
    spec = crd['spec']
    group, names = spec['group'], spec['names']
    stored = storage_version(crd)
    types = []
    for version in spec['versions']:
        if not version.get('served', True):
            continue
        subresources = version.get('subresources') or {}
        has_status = 'status' in subresources
        openapi = (version.get('schema') or {}).get('openAPIV3Schema')
        selectable = {
            f['jsonPath'].lstrip('.'): f['jsonPath'].lstrip('.')
            for f in version.get('selectableFields') or []
        }
        types.append(
            ResourceType(
                group=group,
                version=version['name'],
                plural=names['plural'],
                singular=names.get('singular') or names['kind'].lower(),
                kind=names['kind'],
                namespaced=spec.get('scope', 'Namespaced') == 'Namespaced',
                strategy=CustomResourceStrategy(openapi, status=has_status),
                verbs=ALL_VERBS,
                short_names=tuple(names.get('shortNames') or ()),
                categories=tuple(names.get('categories') or ()),
                subresources=('status',) if has_status else (),
                storage=f'{group}/{names["plural"]}',
                converter=None
                if version['name'] == stored
                else Converter(f'{group}/{version["name"]}', f'{group}/{stored}'),
                field_labels=selectable,
                merge_keys=None,  # strategic merge patch is not supported for custom resources
                allow_unconditional_update=False,
                crd_name=crd['metadata']['name'],
                schema=openapi,
                printer_columns=tuple(version.get('additionalPrinterColumns') or ()),
            )
        )
    return types


def _schema_causes(messages: Iterable[str]) -> list[Cause]:
    causes: list[Cause] = []
    for message in messages:
        field, _, rest = message.partition(': ')
        reason = (
            'FieldValueRequired'
            if rest.startswith('Required value')
            else (
                'FieldValueForbidden'
                if rest.startswith('Forbidden')
                else (
                    'FieldValueNotSupported'
                    if rest.startswith('Unsupported value')
                    else 'FieldValueInvalid'
                )
            )
        )
        causes.append(FieldViolation(field, reason, message))
    return causes


def validate_crd(crd: Obj) -> list[Cause]:
    """`ValidateCustomResourceDefinition`, for what a CRD author can get wrong."""
    problems: list[Cause] = []
    spec = crd.get('spec')
    if not isinstance(spec, dict):
        return [meta.required('spec')]
    group = spec.get('group') or ''
    raw_names = spec.get('names')
    names: dict[str, Any] = raw_names if isinstance(raw_names, dict) else {}
    plural, kind = names.get('plural') or '', names.get('kind') or ''
    if not group:
        problems.append(meta.required('spec.group'))
    elif '.' not in group:
        problems.append(
            meta.invalid('spec.group', group, 'should be a domain with at least one dot')
        )
    else:
        problems.extend(meta.invalid('spec.group', group, m) for m in meta.dns1123_subdomain(group))
    name = crd['metadata'].get('name', '')
    if name != f'{plural}.{group}':
        problems.append(
            meta.invalid('metadata.name', name, 'must be spec.names.plural+"."+spec.group')
        )
    if not plural:
        problems.append(meta.required('spec.names.plural'))
    for key in ('plural', 'singular'):
        if names.get(key):
            problems.extend(
                meta.invalid(f'spec.names.{key}', names[key], m)
                for m in meta.dns1123_label(names[key])
            )
    if not kind:
        problems.append(meta.required('spec.names.kind'))
    for index, short in enumerate(names.get('shortNames') or []):
        problems.extend(
            meta.invalid(f'spec.names.shortNames[{index}]', short, m)
            for m in meta.dns1123_label(short)
        )
    scope = spec.get('scope')
    if scope not in ('Cluster', 'Namespaced'):
        problems.append(meta.not_supported('spec.scope', scope or '', ['Cluster', 'Namespaced']))
    strategy = (spec.get('conversion') or {}).get('strategy', 'None')
    if strategy != 'None':
        # The emulator cannot call conversion webhooks; say so instead of failing later.
        problems.append(meta.not_supported('spec.conversion.strategy', strategy, ['None']))
    problems.extend(_validate_versions(spec.get('versions')))
    return problems


def _validate_versions(versions: Any) -> list[Cause]:
    problems: list[Cause] = []
    if not isinstance(versions, list) or not versions:
        return [
            meta.invalid(
                'spec.versions',
                versions or [],
                'must have exactly one version marked as storage version',
            )
        ]
    storage = [v for v in versions if isinstance(v, dict) and v.get('storage')]
    if len(storage) != 1:
        problems.append(
            meta.invalid(
                'spec.versions',
                [v.get('name') for v in versions if isinstance(v, dict)],
                'must have exactly one version marked as storage version',
            )
        )
    seen: set[str] = set()
    for index, version in enumerate(versions):
        path = f'spec.versions[{index}]'
        if not isinstance(version, dict):
            problems.append(meta.invalid(path, version, 'must be an object'))
            continue
        vname = version.get('name') or ''
        if not vname:
            problems.append(meta.required(f'{path}.name'))
        else:
            problems.extend(
                meta.invalid(f'{path}.name', vname, m) for m in meta.dns1123_label(vname)
            )
            if vname in seen:
                problems.append(
                    FieldViolation(
                        f'{path}.name',
                        'FieldValueDuplicate',
                        f'{path}.name: Duplicate value: {json.dumps(vname)}',
                    )
                )
            seen.add(vname)
        openapi = (version.get('schema') or {}).get('openAPIV3Schema')
        schema_path = f'{path}.schema.openAPIV3Schema'
        if openapi is None:
            problems.append(meta.required(schema_path, 'schemas are required'))
        else:
            problems.extend(_schema_causes(schema.check_crd_schema(openapi, path=schema_path)))
        for col_index, column in enumerate(version.get('additionalPrinterColumns') or []):
            col_path = f'{path}.additionalPrinterColumns[{col_index}]'
            for key in ('name', 'type', 'jsonPath'):
                if not column.get(key):
                    problems.append(meta.required(f'{col_path}.{key}'))
            if column.get('type') and column['type'] not in PRINTER_COLUMN_TYPES:
                problems.append(
                    meta.not_supported(f'{col_path}.type', column['type'], PRINTER_COLUMN_TYPES)
                )
        for sel_index, selectable in enumerate(version.get('selectableFields') or []):
            if not (selectable or {}).get('jsonPath'):
                problems.append(meta.required(f'{path}.selectableFields[{sel_index}].jsonPath'))
    return problems


def validate_crd_update(new: Obj, old: Obj) -> list[Cause]:
    problems: list[Cause] = []
    new_spec, old_spec = new.get('spec') or {}, old.get('spec') or {}
    if new_spec.get('scope') != old_spec.get('scope'):
        problems.append(meta.immutable('spec.scope', new_spec.get('scope')))
    stored = set((old.get('status') or {}).get('storedVersions') or [])
    served = {v.get('name') for v in new_spec.get('versions') or [] if isinstance(v, dict)}
    for version in sorted(stored - served):
        problems.append(
            meta.invalid(
                'status.storedVersions[0]',
                version,
                'must appear in spec.versions',
            )
        )
    return problems


def _condition(kind: str, status: str, reason: str, message: str, since: str) -> Obj:
    return {
        'type': kind,
        'status': status,
        'lastTransitionTime': since,
        'reason': reason,
        'message': message,
    }


def established_status(crd: Obj, now: str, *, conflict: str = '', terminating: bool = False) -> Obj:
    """The status the apiextensions controllers converge a CRD to."""
    old = crd.get('status') or {}
    previous = {c.get('type'): c for c in old.get('conditions') or []}

    def keep(cond: Obj) -> Obj:
        before = previous.get(cond['type'])
        if before is not None and before.get('status') == cond['status']:
            cond['lastTransitionTime'] = before.get('lastTransitionTime', now)
        return cond

    names = copy.deepcopy(crd['spec']['names'])
    if conflict:
        conditions = [
            keep(_condition('NamesAccepted', 'False', 'NameConflict', conflict, now)),
            keep(
                _condition('Established', 'False', 'NotAccepted', 'not all names are accepted', now)
            ),
        ]
        accepted = old.get('acceptedNames') or {'plural': '', 'kind': ''}
    else:
        conditions = [
            keep(_condition('NamesAccepted', 'True', 'NoConflicts', 'no conflicts found', now)),
            keep(
                _condition(
                    'Established',
                    'True',
                    'InitialNamesAccepted',
                    'the initial names have been accepted',
                    now,
                )
            ),
        ]
        accepted = names
    if terminating:
        conditions.append(
            keep(
                _condition(
                    'Terminating',
                    'True',
                    'InstanceDeletionInProgress',
                    'CustomResource deletion is in progress',
                    now,
                )
            )
        )
    stored = list(old.get('storedVersions') or [])
    if not conflict:
        version = storage_version(crd)
        if version not in stored:
            stored.append(version)
    return {'conditions': conditions, 'acceptedNames': accepted, 'storedVersions': stored}


def load_documents(paths: Iterable[Path]) -> list[Obj]:
    """CustomResourceDefinition documents from YAML files and directories of them."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in ('.yaml', '.yml')))
        else:
            files.append(path)
    found = []
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            if isinstance(doc, dict) and doc.get('kind') == 'CustomResourceDefinition':
                found.append(doc)
    return found

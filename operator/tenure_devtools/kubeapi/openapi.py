"""A minimal OpenAPI v3 publication of the Kubernetes API emulator (`/openapi/v3`).

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

`kubectl apply`/`create -f` validate by default: kubectl asks the OpenAPI v3 document of the
object's group/version whether its PATCH operation takes the `fieldValidation` query parameter
(k8s.io/cli-runtime resource/query_param_verifier_v3.go) and, when it does, leaves validation to
the server; without a document it falls back to client-side validation against `/openapi/v2`.
So each group/version document here lists, per resource, the object path with its PATCH
operation (tagged `x-kubernetes-group-version-kind`, with the query parameters the emulator
honours), and custom resources contribute their CRD schema to `components.schemas` (what
`kubectl explain` reads). Built-in kinds have no schema here: the emulator does not carry
Kubernetes' generated schemas.
https://kubernetes.io/docs/concepts/overview/kubernetes-api/#openapi-v3
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from .resources import Registry, ResourceType

_QUERY_PARAMETERS = ('dryRun', 'fieldManager', 'fieldValidation', 'force')


def group_version_path(group: str, version: str) -> str:
    return f'apis/{group}/{version}' if group else f'api/{version}'


def _object_path(rt: ResourceType) -> str:
    base = '/' + group_version_path(rt.group, rt.version)
    if rt.namespaced:
        return f'{base}/namespaces/{{namespace}}/{rt.plural}/{{name}}'
    return f'{base}/{rt.plural}/{{name}}'


def _schema_name(rt: ResourceType) -> str:
    reversed_group = '.'.join(reversed(rt.group.split('.'))) if rt.group else 'io.k8s.api.core'
    return f'{reversed_group}.{rt.version}.{rt.kind}'


def _gvk(rt: ResourceType) -> dict[str, str]:
    return {'group': rt.group, 'version': rt.version, 'kind': rt.kind}


def group_version_document(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rt in sorted(types, key=lambda t: t.plural):
        if 'patch' not in rt.verbs:
            continue
        parameters = [
            {'name': name, 'in': 'query', 'schema': {'type': 'string', 'uniqueItems': True}}
            for name in _QUERY_PARAMETERS
        ]
        paths[_object_path(rt)] = {
            'patch': {
                'operationId': f'patch{rt.kind}',
                'parameters': parameters,
                'responses': {'200': {'description': 'OK'}},
                'x-kubernetes-action': 'patch',
                'x-kubernetes-group-version-kind': _gvk(rt),
            }
        }
        if rt.schema is not None:
            schema = copy.deepcopy(dict(rt.schema))
            properties = schema.setdefault('properties', {})
            properties.setdefault('apiVersion', {'type': 'string'})
            properties.setdefault('kind', {'type': 'string'})
            properties.setdefault('metadata', {'type': 'object'})
            schema['x-kubernetes-group-version-kind'] = [_gvk(rt)]
            schemas[_schema_name(rt)] = schema
    return {
        'openapi': '3.0.0',
        'info': {'title': 'Kubernetes', 'version': 'v1.33.0'},
        'paths': paths,
        'components': {'schemas': schemas},
    }


def root_document(registry: Registry) -> dict[str, Any]:
    """`/openapi/v3`: where each group/version document is, with a content hash."""
    paths = {}
    for group, versions in registry.groups().items():
        for version in versions:
            document = group_version_document(registry, group, version)
            digest = hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:32]
            path = group_version_path(group, version)
            paths[path] = {'serverRelativeURL': f'/openapi/v3/{path}?hash={digest.upper()}'}
    return {'paths': paths}

"""The CRD is generated from the models, checked in, and fit for a real API server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenure.api.crd import render_all, render_identity_policy_crd, render_service_identity_crd

REPO = Path(__file__).resolve().parents[2]


def test_committed_crds_match_the_models() -> None:
    for name, text in render_all().items():
        committed = REPO / 'crds' / name
        assert committed.exists(), f'{committed} is missing: run make crds'
        assert committed.read_text(encoding='utf-8') == text, f'{committed} is stale: run make crds'


def _schema() -> dict[str, Any]:
    crd = render_service_identity_crd()
    schema: dict[str, Any] = crd['spec']['versions'][0]['schema']['openAPIV3Schema']
    return schema


def _nodes(node: dict[str, Any], path: str = '') -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get('properties', {}).items():
        yield from _nodes(child, f'{path}.{name}')
    if 'items' in node:
        yield from _nodes(node['items'], f'{path}[]')
    if isinstance(node.get('additionalProperties'), dict):
        yield from _nodes(node['additionalProperties'], f'{path}.*')


def test_the_public_names_match_the_design_card() -> None:
    crd = render_service_identity_crd()
    assert crd['metadata']['name'] == 'serviceidentities.tenure.dev'
    names = crd['spec']['names']
    assert (names['kind'], names['plural'], names['shortNames'], names['categories']) == (
        'ServiceIdentity',
        'serviceidentities',
        ['sid'],
        ['tenure'],
    )
    version = crd['spec']['versions'][0]
    assert version['name'] == 'v1alpha1'
    assert version['subresources'] == {'status': {}}
    columns = [c['name'] for c in version['additionalPrinterColumns'] if not c.get('priority')]
    assert columns == ['Owner', 'Ticket', 'Phase', 'Expires', 'Age']


def test_every_field_is_described_for_kubectl_explain() -> None:
    missing = [path for path, node in _nodes(_schema()) if path and not node.get('description')]
    assert missing == []


def test_the_schema_is_structural() -> None:
    """Every node has a type; no $ref, anyOf or nullable survives (structural schema rules:
    https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema)."""
    for path, node in _nodes(_schema()):
        assert 'type' in node, f'{path or "<root>"} has no type'
        assert not {'$ref', 'anyOf', 'allOf', 'oneOf', 'nullable'} & set(node), path


def test_every_string_and_list_is_bounded_so_cel_rules_fit_the_cost_budget() -> None:
    """Unbounded strings and lists make the API server reject CEL rules for their estimated cost
    (https://kubernetes.io/docs/reference/using-api/cel/#resource-constraints)."""
    unbounded = [
        path
        for path, node in _nodes(_schema())
        if path.startswith(('.spec', '.status'))
        and (
            (
                node['type'] == 'string'
                and 'maxLength' not in node
                and 'enum' not in node
                and node.get('format') != 'date-time'
            )
            or (node['type'] == 'array' and 'maxItems' not in node)
        )
    ]
    assert unbounded == []


@pytest.mark.parametrize(
    'field',
    [
        'phase',
        'observedGeneration',
        'serviceAccount',
        'vault',
        'approval',
        'expiresAt',
        'revocation',
        'conditions',
    ],
)
def test_every_status_field_the_operator_writes_is_declared_so_nothing_is_pruned(
    field: str,
) -> None:
    assert field in _schema()['properties']['status']['properties']


def test_conditions_are_a_map_keyed_by_type() -> None:
    conditions = _schema()['properties']['status']['properties']['conditions']
    assert conditions['x-kubernetes-list-type'] == 'map'
    assert conditions['x-kubernetes-list-map-keys'] == ['type']
    assert set(conditions['items']['required']) == {
        'type',
        'status',
        'reason',
        'lastTransitionTime',
    }


def test_the_rendered_yaml_parses_back_to_the_same_objects() -> None:
    rendered = render_all()
    assert yaml.safe_load(rendered['serviceidentities.tenure.dev.yaml']) == (
        render_service_identity_crd()
    )
    assert yaml.safe_load(rendered['identitypolicies.tenure.dev.yaml']) == (
        render_identity_policy_crd()
    )


def test_the_policy_crd_is_cluster_scoped_and_defaults_to_the_built_in_policy() -> None:
    crd = render_identity_policy_crd()
    assert crd['spec']['scope'] == 'Cluster'
    spec = crd['spec']['versions'][0]['schema']['openAPIV3Schema']['properties']['spec']
    assert spec['properties']['maxLifetime']['default'] == '2160h'
    assert spec['properties']['mode']['default'] == 'Enforce'

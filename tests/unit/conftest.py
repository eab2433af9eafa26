"""Fixtures for pure unit tests: valid manifests to mutate, case by case."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

VALID: dict[str, Any] = {
    'apiVersion': 'tenure.dev/v1alpha1',
    'kind': 'ServiceIdentity',
    'metadata': {'name': 'settlement-exporter', 'namespace': 'payments'},
    'spec': {
        'ticket': {
            'id': 'CHG0031337',
            'system': 'servicenow',
            'state': 'Approved',
            'requester': 'alice@example.com',
            'approver': 'bob@example.com',
            'approvedAt': '2026-11-28T10:00:00Z',
            'justification': 'Nightly export of settlement totals.',
        },
        'owner': {'team': 'payments-platform', 'contact': 'payments-oncall@example.com'},
        'service': 'settlement-exporter',
        'expiresAt': '2027-02-15T00:00:00Z',
        'kubernetes': {
            'rules': [
                {
                    'apiGroups': [''],
                    'resources': ['configmaps'],
                    'resourceNames': ['settlement-config'],
                    'verbs': ['get', 'watch'],
                }
            ]
        },
        'vault': {
            'policy': [{'path': 'secret/data/payments/settlement/*', 'capabilities': ['read']}],
            'secret': {'keys': ['api-key'], 'rotateEvery': '720h'},
        },
    },
}


def _set(obj: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split('.')
    for key in parents:
        obj = obj[key]
    if value is DELETE:
        del obj[last]
    else:
        obj[last] = value


DELETE = object()
"""Marker: remove the field at that path."""


@pytest.fixture
def manifest() -> Callable[..., dict[str, Any]]:
    """Build a valid manifest with `{'spec.ticket.state': 'Requested', ...}` changes applied."""

    def build(changes: dict[str, Any] | None = None) -> dict[str, Any]:
        doc = copy.deepcopy(VALID)
        for path, value in (changes or {}).items():
            _set(doc, path, value)
        return doc

    return build

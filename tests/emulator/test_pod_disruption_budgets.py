"""policy/v1 PodDisruptionBudget, as deploy/ installs one for the operator (issue #8): stored,
zeroed status, generation and validation like a real API server (the emulator evicts nothing).

Pinned to the API reference, https://kubernetes.io/docs/reference/kubernetes-api/policy-resources/pod-disruption-budget-v1/
("PodDisruptionBudgetSpec": minAvailable and maxUnavailable are "mutually exclusive", each an int
or a percentage; unhealthyPodEvictionPolicy is IfHealthyBudget or AlwaysAllow), and to
pkg/apis/policy/validation ValidatePodDisruptionBudgetSpec for the messages.
"""

from __future__ import annotations

from typing import Any

import pytest

from tenure_devtools.kubeapi import KubeApiEmulator

from .conftest import http

MERGE = 'application/merge-patch+json'


def budget(**spec: Any) -> dict[str, Any]:
    return {
        'apiVersion': 'policy/v1',
        'kind': 'PodDisruptionBudget',
        'metadata': {'name': 'web'},
        'spec': {'selector': {'matchLabels': {'app': 'web'}}, **spec},
    }


def path(namespace: str) -> str:
    return f'/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets'


def test_discovery_announces_pod_disruption_budgets(emulator: KubeApiEmulator) -> None:
    """`kubectl api-resources` of a real cluster: poddisruptionbudgets (pdb), namespaced, in
    group policy v1, with a status subresource and the eight standard verbs
    (https://kubernetes.io/docs/reference/using-api/api-concepts/#discovery-api)."""
    groups = {g['name']: g for g in http(emulator, 'GET', '/apis').body['groups']}
    assert groups['policy']['preferredVersion']['version'] == 'v1'
    resources = {r['name']: r for r in http(emulator, 'GET', '/apis/policy/v1').body['resources']}
    entry = resources['poddisruptionbudgets']
    assert (entry['kind'], entry['namespaced'], entry['shortNames']) == (
        'PodDisruptionBudget',
        True,
        ['pdb'],
    )
    assert 'categories' not in entry
    assert len(entry['verbs']) == 8
    assert resources['poddisruptionbudgets/status']['verbs'] == ['get', 'patch', 'update']


def test_a_budget_is_stored_with_a_zeroed_status_and_a_generation(
    emulator: KubeApiEmulator, namespace: str
) -> None:
    """PrepareForCreate resets the status (its four counters are not omitempty); a spec change
    moves metadata.generation, a label change does not; status is written through /status."""
    created = http(
        emulator, 'POST', path(namespace), dict(budget(maxUnavailable=1), status={'x': 1})
    ).body
    assert created['spec'] == {'selector': {'matchLabels': {'app': 'web'}}, 'maxUnavailable': 1}
    assert created['status'] == {
        'disruptionsAllowed': 0,
        'currentHealthy': 0,
        'desiredHealthy': 0,
        'expectedPods': 0,
    }
    assert created['metadata']['generation'] == 1
    url = f'{path(namespace)}/web'
    relabelled = http(
        emulator, 'PATCH', url, {'metadata': {'labels': {'tier': 'front'}}}, content_type=MERGE
    ).body
    assert relabelled['metadata']['generation'] == 1
    changed = http(
        emulator, 'PATCH', url, {'spec': {'maxUnavailable': '50%'}}, content_type=MERGE
    ).body
    assert changed['metadata']['generation'] == 2
    status = http(
        emulator,
        'PATCH',
        f'{url}/status',
        {'status': {'observedGeneration': 2, 'disruptionsAllowed': 1}},
        content_type=MERGE,
    ).body
    assert status['status']['disruptionsAllowed'] == 1
    assert status['spec']['maxUnavailable'] == '50%'


@pytest.mark.parametrize(
    ('spec', 'field', 'message'),
    [
        pytest.param(
            {'minAvailable': 1, 'maxUnavailable': 1},
            'spec',
            'minAvailable and maxUnavailable cannot be both set',
            id='both-bounds',
        ),
        pytest.param(
            {'maxUnavailable': -1},
            'spec.maxUnavailable',
            'Invalid value: -1: must be greater than or equal to 0',
            id='negative',
        ),
        pytest.param(
            {'minAvailable': '150%'},
            'spec.minAvailable',
            'Invalid value: "150%": must not be greater than 100%',
            id='over-100-percent',
        ),
        pytest.param(
            {'minAvailable': 'half'},
            'spec.minAvailable',
            'a valid percent string must be a numeric string followed by an ending',
            id='not-a-percentage',
        ),
        pytest.param(
            {'unhealthyPodEvictionPolicy': 'Sometimes'},
            'spec.unhealthyPodEvictionPolicy',
            'Unsupported value: "Sometimes": supported values: "AlwaysAllow", "IfHealthyBudget"',
            id='unknown-eviction-policy',
        ),
        pytest.param(
            {'selector': {'matchExpressions': [{'key': 'app', 'operator': 'Near'}]}},
            'spec.selector',
            'Invalid value: ',
            id='malformed-selector',
        ),
    ],
)
def test_a_malformed_budget_is_refused(
    emulator: KubeApiEmulator, namespace: str, spec: dict[str, Any], field: str, message: str
) -> None:
    answer = http(emulator, 'POST', path(namespace), budget(**spec))
    assert answer.status == 422
    causes = {c['field']: c['message'] for c in answer.body['details']['causes']}
    assert message in causes[field]


@pytest.mark.parametrize(
    'spec',
    [
        pytest.param({'maxUnavailable': 1}, id='max-unavailable'),
        pytest.param({'minAvailable': '100%'}, id='min-available-percent'),
        pytest.param({'maxUnavailable': 0, 'minAvailable': None}, id='zero-blocks-evictions'),
        pytest.param({'unhealthyPodEvictionPolicy': 'AlwaysAllow'}, id='always-allow'),
    ],
)
def test_a_well_formed_budget_is_accepted(
    emulator: KubeApiEmulator, namespace: str, spec: dict[str, Any]
) -> None:
    assert http(emulator, 'POST', path(namespace), budget(**spec)).status == 201


def test_a_strategic_merge_patch_replaces_the_selector_whole(
    emulator: KubeApiEmulator, namespace: str
) -> None:
    """policy/v1 `selector` has `patchStrategy: replace` (kubernetes/kubernetes#108138: "consistent
    with server-side apply and the v1 PodDisruptionBudget behavior"): its labels are not merged."""
    body = budget(maxUnavailable=1)
    body['spec']['selector'] = {'matchLabels': {'app': 'web', 'tier': 'front'}}
    http(emulator, 'POST', path(namespace), body)
    patched = http(
        emulator,
        'PATCH',
        f'{path(namespace)}/web',
        {'spec': {'selector': {'matchLabels': {'app': 'api'}}}},
        content_type='application/strategic-merge-patch+json',
    ).body
    assert patched['spec']['selector'] == {'matchLabels': {'app': 'api'}}

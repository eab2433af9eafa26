"""Built-in kinds an installation manifest carries: Deployments, Services and
ValidatingWebhookConfigurations are stored, defaulted and validated like a real API server does
(the emulator runs no pods, allocates no cluster IPs and calls no webhooks)."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tenure_devtools.kubeapi import KubeApiEmulator

from .conftest import http

MERGE = 'application/merge-patch+json'
STRATEGIC = 'application/strategic-merge-patch+json'
WEBHOOKS = '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations'


def deployment(name: str = 'web', **spec: Any) -> dict[str, Any]:
    labels = {'app': name}
    body: dict[str, Any] = {
        'apiVersion': 'apps/v1',
        'kind': 'Deployment',
        'metadata': {'name': name},
        'spec': {
            'selector': {'matchLabels': labels},
            'template': {
                'metadata': {'labels': labels},
                'spec': {'containers': [{'name': 'web', 'image': 'nginx:1.27'}]},
            },
        },
    }
    body['spec'].update(spec)
    return body


def webhook_configuration(config_name: str = 'guard', **hook: Any) -> dict[str, Any]:
    webhook: dict[str, Any] = {
        'name': 'validate.widgets.example.com',
        'admissionReviewVersions': ['v1'],
        'sideEffects': 'None',
        'clientConfig': {'service': {'name': 'guard', 'namespace': 'guard-system'}},
        'rules': [
            {
                'apiGroups': ['example.com'],
                'apiVersions': ['v1'],
                'operations': ['CREATE'],
                'resources': ['widgets'],
            }
        ],
    }
    webhook.update(hook)
    return {
        'apiVersion': 'admissionregistration.k8s.io/v1',
        'kind': 'ValidatingWebhookConfiguration',
        'metadata': {'name': config_name},
        'webhooks': [webhook],
    }


def _causes(reply_body: dict[str, Any]) -> dict[str, str]:
    return {c['field']: c['message'] for c in reply_body['details']['causes']}


# -- discovery ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('path', 'name', 'expected'),
    [
        pytest.param(
            '/apis/apps/v1',
            'deployments',
            {'namespaced': True, 'kind': 'Deployment', 'shortNames': ['deploy']},
            id='deployments',
        ),
        pytest.param(
            '/api/v1',
            'services',
            {'namespaced': True, 'kind': 'Service', 'shortNames': ['svc']},
            id='services',
        ),
        pytest.param(
            '/apis/admissionregistration.k8s.io/v1',
            'validatingwebhookconfigurations',
            {'namespaced': False, 'kind': 'ValidatingWebhookConfiguration'},
            id='validatingwebhookconfigurations',
        ),
    ],
)
def test_discovery_announces_the_installation_kinds(
    emulator: KubeApiEmulator, path: str, name: str, expected: dict[str, Any]
) -> None:
    """`kubectl api-resources` of a real cluster: deployments (deploy, category all,
    deployments/status), services (svc, category all, services/status) and the cluster-scoped
    validatingwebhookconfigurations, each with the eight standard verbs
    (https://kubernetes.io/docs/reference/using-api/api-concepts/#discovery-api)."""
    resources = {r['name']: r for r in http(emulator, 'GET', path).body['resources']}
    entry = resources[name]
    assert {k: entry.get(k) for k in expected} == expected
    assert entry['verbs'] == [
        'create',
        'delete',
        'deletecollection',
        'get',
        'list',
        'patch',
        'update',
        'watch',
    ]
    if name != 'validatingwebhookconfigurations':
        assert entry['categories'] == ['all']
        assert resources[f'{name}/status']['verbs'] == ['get', 'patch', 'update']


def test_the_new_groups_are_listed(emulator: KubeApiEmulator) -> None:
    """`/apis` (APIGroupList) names apps and admissionregistration.k8s.io with v1 preferred."""
    groups = {g['name']: g for g in http(emulator, 'GET', '/apis').body['groups']}
    for group in ('apps', 'admissionregistration.k8s.io'):
        assert groups[group]['preferredVersion']['version'] == 'v1'


# -- Deployments ------------------------------------------------------------------------------


def test_a_deployment_gets_its_defaults_and_generation(
    emulator: KubeApiEmulator, namespace: str
) -> None:
    """apps/v1 defaults (https://kubernetes.io/docs/concepts/workloads/controllers/deployment/
    "Writing a Deployment Spec"): 1 replica, RollingUpdate with 25% surge and unavailability, 10
    old ReplicaSets kept, progress deadline 600 s. A spec change moves metadata.generation, a
    label change does not; status is only written through /status."""
    path = f'/apis/apps/v1/namespaces/{namespace}/deployments'
    created = http(emulator, 'POST', path, dict(deployment(), status={'replicas': 9})).body
    assert created['spec']['replicas'] == 1
    assert created['spec']['strategy'] == {
        'type': 'RollingUpdate',
        'rollingUpdate': {'maxUnavailable': '25%', 'maxSurge': '25%'},
    }
    assert created['spec']['revisionHistoryLimit'] == 10
    assert created['spec']['progressDeadlineSeconds'] == 600
    assert created['metadata']['generation'] == 1
    assert 'replicas' not in created.get('status', {})
    relabelled = http(
        emulator,
        'PATCH',
        f'{path}/web',
        {'metadata': {'labels': {'tier': 'front'}}},
        content_type=MERGE,
    ).body
    assert relabelled['metadata']['generation'] == 1
    scaled = http(
        emulator, 'PATCH', f'{path}/web', {'spec': {'replicas': 3}}, content_type=MERGE
    ).body
    assert scaled['metadata']['generation'] == 2
    status = http(
        emulator,
        'PATCH',
        f'{path}/web/status',
        {'status': {'observedGeneration': 2, 'replicas': 3}},
        content_type=MERGE,
    ).body
    assert status['status'] == {'observedGeneration': 2, 'replicas': 3}
    assert status['metadata']['generation'] == 2


def test_a_recreate_deployment_gets_no_rolling_parameters(
    emulator: KubeApiEmulator, namespace: str
) -> None:
    """`strategy.rollingUpdate` is only defaulted for the RollingUpdate type."""
    created = http(
        emulator,
        'POST',
        f'/apis/apps/v1/namespaces/{namespace}/deployments',
        deployment(strategy={'type': 'Recreate'}),
    ).body
    assert created['spec']['strategy'] == {'type': 'Recreate'}


@pytest.mark.parametrize(
    ('change', 'field'),
    [
        pytest.param(
            lambda d: d['spec'].pop('selector'),
            'spec.selector',
            id='selector-missing',
        ),
        pytest.param(
            lambda d: d['spec']['selector'].update(matchLabels={}),
            'spec.selector',
            id='selector-empty',
        ),
        pytest.param(
            lambda d: d['spec']['template']['metadata'].update(labels={'app': 'other'}),
            'spec.template.metadata.labels',
            id='selector-does-not-select-the-template',
        ),
        pytest.param(
            lambda d: d['spec']['template']['spec'].update(containers=[]),
            'spec.template.spec.containers',
            id='no-containers',
        ),
        pytest.param(
            lambda d: d['spec'].update(replicas=-1),
            'spec.replicas',
            id='negative-replicas',
        ),
    ],
)
def test_a_malformed_deployment_is_refused(
    emulator: KubeApiEmulator, namespace: str, change: Any, field: str
) -> None:
    """pkg/apis/apps/validation ValidateDeployment: 422 Invalid with the offending field
    (https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#selector)."""
    body = deployment()
    change(body)
    answer = http(emulator, 'POST', f'/apis/apps/v1/namespaces/{namespace}/deployments', body)
    assert answer.status == 422
    assert field in _causes(answer.body)


def test_a_deployment_selector_cannot_change(emulator: KubeApiEmulator, namespace: str) -> None:
    """ "In API version apps/v1, a Deployment's label selector is immutable after it gets
    created" (https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#label-selector-updates)."""
    path = f'/apis/apps/v1/namespaces/{namespace}/deployments'
    http(emulator, 'POST', path, deployment())
    changed = {
        'spec': {
            'selector': {'matchLabels': {'app': 'web', 'tier': 'front'}},
            'template': {'metadata': {'labels': {'app': 'web', 'tier': 'front'}}},
        }
    }
    answer = http(emulator, 'PATCH', f'{path}/web', changed, content_type=MERGE)
    assert answer.status == 422
    assert _causes(answer.body)['spec.selector'].endswith('field is immutable')


def test_a_strategic_merge_patch_changes_one_container_by_name(
    emulator: KubeApiEmulator, namespace: str
) -> None:
    """Containers of a pod template merge by `name` (patchMergeKey in k8s.io/api core/v1
    types.go; https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/)."""
    path = f'/apis/apps/v1/namespaces/{namespace}/deployments'
    body = deployment()
    body['spec']['template']['spec']['containers'].append({'name': 'sidecar', 'image': 'busybox'})
    http(emulator, 'POST', path, body)
    patch = {'spec': {'template': {'spec': {'containers': [{'name': 'web', 'image': 'nginx:2'}]}}}}
    patched = http(emulator, 'PATCH', f'{path}/web', patch, content_type=STRATEGIC).body
    images = {c['name']: c['image'] for c in patched['spec']['template']['spec']['containers']}
    assert images == {'web': 'nginx:2', 'sidecar': 'busybox'}


# -- Services ---------------------------------------------------------------------------------


def test_a_service_gets_its_defaults(emulator: KubeApiEmulator, namespace: str) -> None:
    """core/v1 defaults (https://kubernetes.io/docs/concepts/services-networking/service/):
    type ClusterIP, protocol TCP, targetPort = port, sessionAffinity None; status starts with an
    empty load balancer. (A real server also allocates spec.clusterIP; the emulator does not.)"""
    created = http(
        emulator,
        'POST',
        f'/api/v1/namespaces/{namespace}/services',
        {
            'metadata': {'name': 'web'},
            'spec': {'selector': {'app': 'web'}, 'ports': [{'port': 80}]},
        },
    ).body
    assert created['spec']['type'] == 'ClusterIP'
    assert created['spec']['sessionAffinity'] == 'None'
    assert created['spec']['ports'] == [{'port': 80, 'protocol': 'TCP', 'targetPort': 80}]
    assert created['status'] == {'loadBalancer': {}}


def test_a_named_target_port_is_kept(emulator: KubeApiEmulator, namespace: str) -> None:
    """targetPort may name a container port (IntOrString): it is not replaced by the number."""
    created = http(
        emulator,
        'POST',
        f'/api/v1/namespaces/{namespace}/services',
        {'metadata': {'name': 'web'}, 'spec': {'ports': [{'port': 443, 'targetPort': 'https'}]}},
    ).body
    assert created['spec']['ports'][0]['targetPort'] == 'https'


@pytest.mark.parametrize(
    ('spec', 'field'),
    [
        pytest.param({}, 'spec.ports', id='no-ports'),
        pytest.param(
            {'ports': [{'port': 80}, {'port': 443}]}, 'spec.ports[0].name', id='unnamed-ports'
        ),
        pytest.param(
            {'ports': [{'name': 'a', 'port': 80}, {'name': 'a', 'port': 443}]},
            'spec.ports[1].name',
            id='duplicate-port-names',
        ),
        pytest.param({'ports': [{'port': 70000}]}, 'spec.ports[0].port', id='port-out-of-range'),
        pytest.param(
            {'ports': [{'port': 80, 'protocol': 'ICMP'}]},
            'spec.ports[0].protocol',
            id='unknown-protocol',
        ),
        pytest.param({'type': 'Magic', 'ports': [{'port': 80}]}, 'spec.type', id='unknown-type'),
    ],
)
def test_a_malformed_service_is_refused(
    emulator: KubeApiEmulator, namespace: str, spec: dict[str, Any], field: str
) -> None:
    """ValidateService: ports are required (except ExternalName and headless Services), named
    and uniquely so when there are several
    (https://kubernetes.io/docs/concepts/services-networking/service/#multi-port-services)."""
    answer = http(
        emulator,
        'POST',
        f'/api/v1/namespaces/{namespace}/services',
        {'metadata': {'name': 'web'}, 'spec': spec},
    )
    assert answer.status == 422
    assert field in _causes(answer.body)


def test_a_headless_service_needs_no_ports(emulator: KubeApiEmulator, namespace: str) -> None:
    """https://kubernetes.io/docs/concepts/services-networking/service/#headless-services"""
    answer = http(
        emulator,
        'POST',
        f'/api/v1/namespaces/{namespace}/services',
        {'metadata': {'name': 'peers'}, 'spec': {'clusterIP': 'None'}},
    )
    assert answer.status == 201


def test_deleting_a_service_answers_with_the_service(
    emulator: KubeApiEmulator, namespace: str
) -> None:
    """DELETE returns the Service (200), per
    https://kubernetes.io/docs/reference/kubernetes-api/service-resources/service-v1/#delete-delete-a-service"""
    path = f'/api/v1/namespaces/{namespace}/services'
    http(emulator, 'POST', path, {'metadata': {'name': 'web'}, 'spec': {'ports': [{'port': 80}]}})
    answer = http(emulator, 'DELETE', f'{path}/web')
    assert answer.status == 200
    assert answer.body['kind'] == 'Service'


# -- ValidatingWebhookConfigurations ---------------------------------------------------------


def test_a_webhook_configuration_gets_its_defaults(emulator: KubeApiEmulator) -> None:
    """admissionregistration/v1 defaults
    (https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/):
    failurePolicy Fail, matchPolicy Equivalent, empty namespace and object selectors (match
    all), timeoutSeconds 10, rule scope "*", service port 443. The generation moves when the
    webhooks change."""
    try:
        created = http(emulator, 'POST', WEBHOOKS, webhook_configuration('defaults')).body
        hook = created['webhooks'][0]
        assert hook['failurePolicy'] == 'Fail'
        assert hook['matchPolicy'] == 'Equivalent'
        assert hook['namespaceSelector'] == {}
        assert hook['objectSelector'] == {}
        assert hook['timeoutSeconds'] == 10
        assert hook['rules'][0]['scope'] == '*'
        assert hook['clientConfig']['service']['port'] == 443
        assert created['metadata']['generation'] == 1
        labelled = http(
            emulator,
            'PATCH',
            f'{WEBHOOKS}/defaults',
            {'metadata': {'labels': {'a': 'b'}}},
            content_type=MERGE,
        ).body
        assert labelled['metadata']['generation'] == 1
        tightened = http(
            emulator,
            'PATCH',
            f'{WEBHOOKS}/defaults',
            {'webhooks': [{'name': hook['name'], 'timeoutSeconds': 5}]},
            content_type=STRATEGIC,
        ).body
        assert tightened['webhooks'][0]['timeoutSeconds'] == 5
        assert tightened['webhooks'][0]['sideEffects'] == 'None'  # merged by name, not replaced
        assert tightened['metadata']['generation'] == 2
    finally:
        http(emulator, 'DELETE', f'{WEBHOOKS}/defaults')


@pytest.mark.parametrize(
    ('hook', 'field'),
    [
        pytest.param({'name': 'widgets.example'}, 'webhooks[0].name', id='two-segment-name'),
        pytest.param({'sideEffects': 'Unknown'}, 'webhooks[0].sideEffects', id='side-effects'),
        pytest.param(
            {'admissionReviewVersions': ['v2']},
            'webhooks[0].admissionReviewVersions',
            id='review-versions',
        ),
        pytest.param({'timeoutSeconds': 31}, 'webhooks[0].timeoutSeconds', id='timeout'),
        pytest.param({'failurePolicy': 'Maybe'}, 'webhooks[0].failurePolicy', id='failure-policy'),
        pytest.param(
            {
                'clientConfig': {
                    'url': 'https://guard.example.com/validate',
                    'service': {'name': 'guard', 'namespace': 'guard-system'},
                }
            },
            'webhooks[0].clientConfig',
            id='url-and-service',
        ),
        pytest.param(
            {'clientConfig': {'service': {'name': 'guard'}}},
            'webhooks[0].clientConfig.service.namespace',
            id='service-namespace',
        ),
    ],
)
def test_a_malformed_webhook_configuration_is_refused(
    emulator: KubeApiEmulator, hook: dict[str, Any], field: str
) -> None:
    """ValidateValidatingWebhookConfiguration: a fully qualified name (three segments or more),
    declared side effects and review versions, a timeout of 1-30 s, and exactly one of url or
    service (https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#webhook-configuration)."""
    answer = http(emulator, 'POST', WEBHOOKS, webhook_configuration('bad', **hook))
    assert answer.status == 422
    assert field in _causes(answer.body)


def test_webhook_names_are_unique_in_a_configuration(emulator: KubeApiEmulator) -> None:
    body = webhook_configuration('twins')
    body['webhooks'].append(copy.deepcopy(body['webhooks'][0]))
    answer = http(emulator, 'POST', WEBHOOKS, body)
    assert answer.status == 422
    assert 'webhooks[1].name' in _causes(answer.body)


# -- kubectl ----------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which('kubectl') is None, reason='kubectl is not installed')
def test_kubectl_applies_a_deployment_twice_without_a_change(
    tmp_kubeconfig: Path, namespace: str
) -> None:
    """Re-applying an unchanged manifest is a no-op: the server's defaults do not show up as a
    difference in kubectl's three-way merge
    (https://kubernetes.io/docs/tasks/manage-kubernetes-objects/declarative-config/#how-apply-calculates-differences-and-merges-changes)."""
    manifest = (
        'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n'
        f'  namespace: {namespace}\nspec:\n  selector:\n    matchLabels: {{app: web}}\n'
        '  template:\n    metadata:\n      labels: {app: web}\n    spec:\n'
        '      containers:\n      - {name: web, image: "nginx:1.27"}\n'
    )

    def apply() -> str:
        result = subprocess.run(
            ['kubectl', '--kubeconfig', str(tmp_kubeconfig), 'apply', '-f', '-'],
            input=manifest,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert apply() == 'deployment.apps/web created'
    assert apply() == 'deployment.apps/web unchanged'

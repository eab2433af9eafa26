"""deploy/: what `kubectl apply -k deploy/` puts in a cluster, checked the way the cluster would.

Every object validates against the Kubernetes OpenAPI schemas (kubernetes-validate, offline) and
applies to the API emulator; RBAC grants no wildcard, no escalation, no impersonation and no
cluster-wide read of Secrets; the pod meets Pod Security `restricted`; and the Deployment's
flags, ports, probes, Services and webhook agree with what `tenure run` actually serves.
"""

from __future__ import annotations

import argparse
import copy
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

import tenure
from tenure import admission
from tenure.app import LEASE_NAME
from tenure.config import add_run_arguments
from tenure_devtools.kubeapi import running_emulator

from .conftest import (
    DEPLOY,
    OPERATOR_NAMESPACE,
    OPERATOR_SERVICE_ACCOUNT,
    REPO,
    THIRD_PARTY_CRDS,
    Obj,
    find,
    kubectl_binary,
    load,
    of_kind,
)
from .pod_security import restricted_violations

RBAC = 'rbac.authorization.k8s.io'
THIRD_PARTY_KINDS = {'Certificate', 'Issuer', 'PrometheusRule', 'ServiceMonitor'}
"""Custom resources of cert-manager and the Prometheus Operator: no Kubernetes OpenAPI schema;
checked against their CRDs' schemas when applied to the emulator."""
READ_VERBS = {'get', 'list', 'watch'}


# -- what gets installed ---------------------------------------------------------------------


def test_the_install_renders_every_object_an_operator_needs(install: list[Obj]) -> None:
    """`kubectl kustomize deploy/` renders, and what it renders is this inventory (a new object
    in deploy/ is a decision worth a line here)."""
    rendered = sorted((o['kind'], o['metadata']['name']) for o in install)
    assert rendered == sorted(
        [
            ('Namespace', 'tenure-system'),
            ('CustomResourceDefinition', 'identitypolicies.tenure.dev'),
            ('CustomResourceDefinition', 'serviceidentities.tenure.dev'),
            ('CustomResourceDefinition', 'ticketsources.tenure.dev'),
            ('ServiceAccount', 'tenure'),
            ('ClusterRole', 'tenure-operator'),
            ('ClusterRoleBinding', 'tenure-operator'),
            ('Role', 'tenure-leader-election'),
            ('RoleBinding', 'tenure-leader-election'),
            ('Role', 'tenure-itsm-credentials'),
            ('RoleBinding', 'tenure-itsm-credentials'),
            ('ClusterRole', 'tenure-grantable'),
            ('ClusterRole', 'tenure-grantable-default'),
            ('ClusterRoleBinding', 'tenure-grantable'),
            ('ClusterRole', 'tenure-bindable'),
            ('ClusterRoleBinding', 'tenure-bindable'),
            ('ClusterRole', 'tenure-token-secrets'),
            ('ConfigMap', 'tenure-config'),
            ('Deployment', 'tenure'),
            ('PodDisruptionBudget', 'tenure'),
            ('Service', 'tenure-metrics'),
            ('Service', 'tenure-webhook'),
            ('ValidatingWebhookConfiguration', 'tenure'),
            ('Issuer', 'tenure-selfsigned'),
            ('Certificate', 'tenure-webhook'),
        ]
    )


def test_the_base_is_the_install_without_cert_manager(install: list[Obj], base: list[Obj]) -> None:
    """deploy/base/ serves clusters without cert-manager: the same objects but cert-manager's."""
    without = [o for o in install if o['apiVersion'].split('/')[0] != 'cert-manager.io']
    assert base == without


def test_the_namespace_enforces_pod_security_restricted(install: list[Obj]) -> None:
    """https://kubernetes.io/docs/concepts/security/pod-security-admission/#pod-security-admission-labels-for-namespaces"""
    labels = find(install, 'Namespace', OPERATOR_NAMESPACE)['metadata']['labels']
    for mode in ('enforce', 'audit', 'warn'):
        assert labels[f'pod-security.kubernetes.io/{mode}'] == 'restricted'
    namespaced = [o for o in install if o['kind'] not in CLUSTER_SCOPED]
    assert {o['metadata']['namespace'] for o in namespaced} == {OPERATOR_NAMESPACE}


CLUSTER_SCOPED = {
    'Namespace',
    'CustomResourceDefinition',
    'ClusterRole',
    'ClusterRoleBinding',
    'ValidatingWebhookConfiguration',
}


def test_the_crds_are_the_generated_ones_not_copies(install: list[Obj]) -> None:
    """deploy/ references crds/ through crds/Kustomization (so `make crds` output is what gets
    installed); that kustomization lists every CRD there and nothing else."""
    listed = yaml.safe_load((REPO / 'crds' / 'Kustomization').read_text(encoding='utf-8'))
    files = sorted(p.name for p in (REPO / 'crds').glob('*.yaml'))
    assert sorted(listed['resources']) == files
    generated = [doc for name in files for doc in load(REPO / 'crds' / name)]
    assert of_kind(install, 'CustomResourceDefinition') == generated


# -- the Kubernetes schemas ------------------------------------------------------------------


def _validator() -> Any:
    return pytest.importorskip(
        'kubernetes_validate',
        reason='kubernetes-validate (the Kubernetes OpenAPI schemas, offline) is not installed',
    )


@pytest.mark.parametrize('version', [pytest.param('1.30', id='k8s-1.30'), 'latest'])
def test_every_object_validates_against_the_kubernetes_schemas(
    everything: list[Obj], version: str
) -> None:
    """Strict validation (no unknown field) against the OpenAPI schemas of Kubernetes 1.30 and of
    the newest release kubernetes-validate knows. Custom resources of other projects are checked
    against their CRDs when applied to the emulator (test_the_install_applies_to_the_emulator)."""
    validator = _validator()
    target = validator.utils.latest_version() if version == 'latest' else version
    checked = set()
    for obj in everything:
        if obj['kind'] in THIRD_PARTY_KINDS:
            continue
        validator.validate(obj, target, strict=True)
        checked.add(obj['kind'])
    assert {o['kind'] for o in everything} - checked == THIRD_PARTY_KINDS


@pytest.mark.parametrize(
    ('path', 'value'),
    [
        pytest.param(('spec', 'replica'), 2, id='misspelt-field'),
        pytest.param(('spec', 'replicas'), 'two', id='wrong-type'),
    ],
)
def test_the_schema_check_would_catch_a_broken_manifest(
    deployment: Obj, path: tuple[str, ...], value: object
) -> None:
    """The validation above is not vacuous: a typo or a wrong type in the Deployment fails it."""
    validator = _validator()
    broken = copy.deepcopy(deployment)
    broken[path[0]][path[1]] = value
    with pytest.raises(validator.ValidationError):
        validator.validate(broken, validator.utils.latest_version(), strict=True)


# -- RBAC: least privilege and the grant ceiling ---------------------------------------------


def _rules(objects: list[Obj]) -> Iterator[tuple[str, dict[str, Any]]]:
    for role in of_kind(objects, 'Role', 'ClusterRole'):
        for index, rule in enumerate(role.get('rules') or []):
            yield f'{role["kind"]}/{role["metadata"]["name"]} rules[{index}]', rule


def test_no_rule_grants_a_wildcard_escalation_or_impersonation(everything: list[Obj]) -> None:
    """No `*` anywhere in a rule; no `escalate` (write Roles beyond what one holds) or
    `impersonate` (act as someone else); `bind` only on named roles
    (https://kubernetes.io/docs/concepts/security/rbac-good-practices/)."""
    found = list(_rules(everything))
    assert found
    for where, rule in found:
        for field in ('apiGroups', 'resources', 'verbs', 'resourceNames', 'nonResourceURLs'):
            assert '*' not in (rule.get(field) or []), f'{where}: * in {field}'
        assert not {'escalate', 'impersonate'} & set(rule['verbs']), where
        if 'bind' in rule['verbs']:
            assert rule.get('resourceNames'), f'{where}: bind on any role'


def _cluster_role_rules(objects: list[Obj], name: str) -> list[dict[str, Any]]:
    role = find(objects, 'ClusterRole', name)
    rules: list[dict[str, Any]] = list(role.get('rules') or [])
    selectors = (role.get('aggregationRule') or {}).get('clusterRoleSelectors') or []
    for selector in selectors:
        # An aggregated ClusterRole holds the rules of every ClusterRole its selectors match.
        wanted = selector['matchLabels'].items()
        for member in of_kind(objects, 'ClusterRole'):
            if wanted <= (member['metadata'].get('labels') or {}).items():
                rules.extend(member.get('rules') or [])
    return rules


def _reads_secrets(rule: dict[str, Any]) -> bool:
    return (
        '' in rule.get('apiGroups', [])
        and 'secrets' in rule.get('resources', [])
        and bool(READ_VERBS & set(rule['verbs']))
    )


BUILTIN_CLUSTER_ROLES = {'system:auth-delegator'}
"""Bound by deploy/vault/token-reviewer.yaml: create tokenreviews and subjectaccessreviews only."""


def test_no_secret_is_readable_cluster_wide(everything: list[Obj]) -> None:
    """Every ClusterRoleBinding's role, aggregated members included, reads no Secrets: the token
    Secrets the operator cleans up are granted per namespace (deploy/tenant-namespace/)."""
    bindings = of_kind(everything, 'ClusterRoleBinding')
    assert bindings
    for binding in bindings:
        name = binding['roleRef']['name']
        if name in BUILTIN_CLUSTER_ROLES:
            continue
        for rule in _cluster_role_rules(everything, name):
            assert not _reads_secrets(rule), f'{binding["metadata"]["name"]} reads secrets: {rule}'


def test_token_secrets_are_granted_only_namespace_by_namespace(
    everything: list[Obj], tenant: list[Obj]
) -> None:
    """The ClusterRole that lists and deletes Secrets is bound by RoleBindings in the namespaces
    that opt in, never by a ClusterRoleBinding."""
    rules = _cluster_role_rules(everything, 'tenure-token-secrets')
    assert rules == [{'apiGroups': [''], 'resources': ['secrets'], 'verbs': ['list', 'delete']}]
    cluster_wide = {b['roleRef']['name'] for b in of_kind(everything, 'ClusterRoleBinding')}
    assert 'tenure-token-secrets' not in cluster_wide
    [binding] = tenant
    assert binding['kind'] == 'RoleBinding'
    assert 'namespace' not in binding['metadata']  # it lands where `kubectl apply -n` says
    assert binding['roleRef'] == {
        'apiGroup': RBAC,
        'kind': 'ClusterRole',
        'name': 'tenure-token-secrets',
    }
    assert binding['subjects'] == [OPERATOR_SUBJECT]


OPERATOR_SUBJECT = {
    'kind': 'ServiceAccount',
    'name': OPERATOR_SERVICE_ACCOUNT,
    'namespace': OPERATOR_NAMESPACE,
}

# What the operator does with the API, call by call (the comments in deploy/base/rbac-operator.yaml
# say which code makes each call). A change here is a change of the operator's privileges.
OPERATOR_GRANTS = {
    ('tenure.dev', 'serviceidentities'): {'get', 'list', 'watch', 'patch'},
    ('tenure.dev', 'serviceidentities/status'): {'patch'},
    ('tenure.dev', 'identitypolicies'): {'get', 'list', 'watch'},
    ('tenure.dev', 'ticketsources'): {'list', 'watch'},
    ('apiextensions.k8s.io', 'customresourcedefinitions'): {'list', 'watch'},
    ('', 'namespaces'): {'get'},
    ('', 'serviceaccounts'): {'get', 'list', 'watch', 'create', 'patch', 'delete'},
    (RBAC, 'roles'): {'get', 'list', 'watch', 'create', 'patch', 'delete'},
    (RBAC, 'rolebindings'): {'get', 'list', 'watch', 'create', 'patch', 'delete'},
    # Read only: bindings outside Tenure that grant a managed ServiceAccount (issue #6).
    (RBAC, 'clusterrolebindings'): {'list', 'watch'},
    ('', 'events'): {'create'},
}


def test_the_operator_is_granted_what_it_uses_and_nothing_more(install: list[Obj]) -> None:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in _cluster_role_rules(install, 'tenure-operator'):
        assert 'resourceNames' not in rule
        for group in rule['apiGroups']:
            for resource in rule['resources']:
                granted.setdefault((group, resource), set()).update(rule['verbs'])
    assert granted == OPERATOR_GRANTS
    binding = find(install, 'ClusterRoleBinding', 'tenure-operator')
    assert binding['subjects'] == [OPERATOR_SUBJECT]


def test_the_leader_lease_is_granted_in_the_operator_namespace_only(install: list[Obj]) -> None:
    """Leader election (operator/tenure/leader.py) reads, creates and replaces one Lease; a create
    cannot be narrowed to a name (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-resources)."""
    role = find(install, 'Role', 'tenure-leader-election')
    assert role['metadata']['namespace'] == OPERATOR_NAMESPACE
    assert role['rules'] == [
        {'apiGroups': ['coordination.k8s.io'], 'resources': ['leases'], 'verbs': ['create']},
        {
            'apiGroups': ['coordination.k8s.io'],
            'resources': ['leases'],
            'resourceNames': [LEASE_NAME],
            'verbs': ['get', 'update'],
        },
    ]
    binding = find(install, 'RoleBinding', 'tenure-leader-election')
    assert binding['roleRef']['name'] == 'tenure-leader-election'
    assert binding['subjects'] == [OPERATOR_SUBJECT]


def test_inline_rules_are_capped_by_an_aggregated_cluster_role_the_operator_holds(
    install: list[Obj],
) -> None:
    """Escalation prevention: a Role can only be written by someone holding its permissions
    (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#restrictions-on-role-creation-or-update),
    so the operator can write identity Roles within `tenure-grantable` only. Admins extend it with
    labelled ClusterRoles (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#aggregated-clusterroles);
    the default content is harmless reading."""
    ceiling = find(install, 'ClusterRole', 'tenure-grantable')
    assert ceiling['aggregationRule'] == {
        'clusterRoleSelectors': [{'matchLabels': {'tenure.dev/aggregate-to-grantable': 'true'}}]
    }
    assert _cluster_role_rules(install, 'tenure-grantable') == [
        {'apiGroups': [''], 'resources': ['configmaps'], 'verbs': ['get', 'list', 'watch']}
    ]
    binding = find(install, 'ClusterRoleBinding', 'tenure-grantable')
    assert binding['roleRef'] == {
        'apiGroup': RBAC,
        'kind': 'ClusterRole',
        'name': 'tenure-grantable',
    }
    assert binding['subjects'] == [OPERATOR_SUBJECT]


def test_cluster_roles_are_bindable_only_from_the_policy_catalog(install: list[Obj]) -> None:
    """A RoleBinding to a ClusterRole needs `bind` on it (or all its permissions): the operator
    has `bind` on the catalog only, the same names the example IdentityPolicy allows
    (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#restrictions-on-role-binding-creation-or-update)."""
    [policy] = load(REPO / 'examples' / 'identitypolicy-default.yaml')
    assert _cluster_role_rules(install, 'tenure-bindable') == [
        {
            'apiGroups': [RBAC],
            'resources': ['clusterroles'],
            'resourceNames': policy['spec']['allowedClusterRoles'],
            'verbs': ['bind'],
        }
    ]
    assert find(install, 'ClusterRoleBinding', 'tenure-bindable')['subjects'] == [OPERATOR_SUBJECT]


def test_tokens_are_reviewed_by_vault_not_by_the_operator(everything: list[Obj]) -> None:
    """Vault's Kubernetes auth reviews logins with its own reviewer (deploy/vault/); the only
    binding to system:auth-delegator is that reviewer's, never the operator's."""
    delegators = [
        b
        for b in of_kind(everything, 'ClusterRoleBinding')
        if b['roleRef']['name'] == 'system:auth-delegator'
    ]
    assert [b['subjects'] for b in delegators] == [
        [{'kind': 'ServiceAccount', 'name': 'vault-token-reviewer', 'namespace': 'tenure-system'}]
    ]
    for _, rule in _rules(everything):
        assert 'tokenreviews' not in rule['resources']


# -- the pod ---------------------------------------------------------------------------------


def test_the_pod_meets_pod_security_restricted(pod_spec: Obj) -> None:
    assert restricted_violations(pod_spec) == []


@pytest.mark.parametrize(
    ('change', 'control'),
    [
        pytest.param(
            lambda s: s['containers'][0]['securityContext'].update(runAsNonRoot=False),
            'running as non-root',
            id='root',
        ),
        pytest.param(
            lambda s: s['containers'][0]['securityContext'].update(allowPrivilegeEscalation=True),
            'privilege escalation',
            id='escalation',
        ),
        pytest.param(
            lambda s: s['containers'][0]['securityContext']['capabilities'].update(drop=[]),
            'capabilities',
            id='capabilities-kept',
        ),
        pytest.param(
            lambda s: [
                ctx.pop('seccompProfile')
                for ctx in (s['securityContext'], s['containers'][0]['securityContext'])
            ],
            'seccomp',
            id='no-seccomp',
        ),
        pytest.param(
            lambda s: s['volumes'].append({'name': 'host', 'hostPath': {'path': '/'}}),
            'HostPath volumes',
            id='host-path',
        ),
        pytest.param(lambda s: s.update(hostNetwork=True), 'host namespaces', id='host-network'),
    ],
)
def test_the_pod_security_check_catches_each_control(
    pod_spec: Obj, change: Any, control: str
) -> None:
    """The check above is not vacuous: undoing one hardening setting is reported."""
    broken = copy.deepcopy(pod_spec)
    change(broken)
    assert any(v.startswith(control) for v in restricted_violations(broken))


def test_the_pod_is_hardened_and_bounded(deployment: Obj, pod_spec: Obj, container: Obj) -> None:
    """Beyond `restricted`: a read-only root filesystem with /tmp on an emptyDir, requests and
    limits, two replicas spread over nodes, a non-root numeric uid matching the image's user."""
    assert deployment['spec']['replicas'] == 2
    assert container['securityContext']['readOnlyRootFilesystem'] is True
    assert pod_spec['securityContext']['runAsUser'] == 65532
    resources = container['resources']
    for bound in ('requests', 'limits'):
        assert set(resources[bound]) == {'cpu', 'memory'}
    mounts = {m['mountPath']: m['name'] for m in container['volumeMounts']}
    volumes = {v['name']: v for v in pod_spec['volumes']}
    assert 'emptyDir' in volumes[mounts['/tmp']]
    assert pod_spec['topologySpreadConstraints'][0]['topologyKey'] == 'kubernetes.io/hostname'
    dockerfile = (REPO / 'Dockerfile').read_text(encoding='utf-8')
    assert 'USER 65532:65532' in dockerfile


def test_a_rolling_update_and_a_drain_always_leave_a_ready_replica(
    install: list[Obj], deployment: Obj
) -> None:
    """Every replica is Ready, leader or standby (tenure.health): a new pod becomes Ready before
    an old one stops (maxUnavailable 0), and evictions take one pod at a time from the same pods
    (https://kubernetes.io/docs/concepts/workloads/controllers/deployment/#rolling-update-deployment,
    https://kubernetes.io/docs/tasks/run-application/configure-pdb/)."""
    strategy = deployment['spec']['strategy']
    assert strategy == {
        'type': 'RollingUpdate',
        'rollingUpdate': {'maxSurge': 1, 'maxUnavailable': 0},
    }
    budget = find(install, 'PodDisruptionBudget', 'tenure')
    assert budget['metadata']['namespace'] == deployment['metadata']['namespace']
    assert budget['spec']['maxUnavailable'] == 1
    assert budget['spec']['maxUnavailable'] < deployment['spec']['replicas']
    assert budget['spec']['selector'] == deployment['spec']['selector']


def test_a_stopping_pod_keeps_answering_until_the_endpoints_moved_on(
    deployment: Obj, container: Obj
) -> None:
    """Endpoints are removed while the kubelet runs preStop and sends SIGTERM, in parallel
    (https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination): a pause
    first keeps admission calls to a stopping pod from failing, within the grace period."""
    pause = container['lifecycle']['preStop']['exec']['command']
    assert pause[0] == '/bin/sleep'
    grace = deployment['spec']['template']['spec']['terminationGracePeriodSeconds']
    assert 0 < int(pause[1]) <= grace / 3, 'most of the grace period stays for the shutdown'


# -- the container agrees with `tenure run` ---------------------------------------------------


def _run_flags(container: Obj) -> argparse.Namespace:
    """The container's args parsed by `tenure run`'s own argument parser."""
    args = container['args']
    assert args[0] == 'run'  # the image's ENTRYPOINT is `tenure`
    parser = argparse.ArgumentParser(prog='tenure run', exit_on_error=False)
    add_run_arguments(parser)
    parsed, unknown = parser.parse_known_args(args[1:])
    assert unknown == [], f'tenure run does not accept {unknown}'
    return parsed


def test_every_flag_is_one_tenure_run_accepts(container: Obj) -> None:
    flags = _run_flags(container)
    assert flags.leader_election is True
    assert flags.namespaces == []  # all namespaces: the ClusterRole is cluster-wide


def test_ports_probes_and_services_agree_with_the_flags(install: list[Obj], container: Obj) -> None:
    flags = _run_flags(container)
    ports = {p['name']: p['containerPort'] for p in container['ports']}
    assert ports == {
        'health': flags.health_port,
        'metrics': flags.metrics_port,
        'webhook': flags.webhook_port,
    }
    assert container['livenessProbe']['httpGet'] == {'path': '/healthz', 'port': 'health'}
    assert container['readinessProbe']['httpGet'] == {'path': '/readyz', 'port': 'health'}
    labels = find(install, 'Deployment', 'tenure')['spec']['template']['metadata']['labels']
    for name, port, target in (
        ('tenure-metrics', 9090, 'metrics'),
        ('tenure-webhook', 443, 'webhook'),
    ):
        service = find(install, 'Service', name)
        assert service['spec']['selector'].items() <= labels.items()
        assert [(p['port'], p['targetPort']) for p in service['spec']['ports']] == [(port, target)]


def _mounted_file(pod_spec: Obj, container: Obj, path: str) -> tuple[Obj, str]:
    """The volume a file path lives on, and the path inside it."""
    for mount in container['volumeMounts']:
        prefix = mount['mountPath'].rstrip('/') + '/'
        if path.startswith(prefix):
            volume = next(v for v in pod_spec['volumes'] if v['name'] == mount['name'])
            return volume, path.removeprefix(prefix)
    raise AssertionError(f'{path} is on no mounted volume')


def test_vault_login_uses_a_token_bound_to_the_vault_audience(
    install: list[Obj], pod_spec: Obj, container: Obj
) -> None:
    """--vault-auth-jwt-file is a projected ServiceAccount token for audience `vault`, not the
    API token (https://kubernetes.io/docs/concepts/storage/projected-volumes/#serviceaccounttoken);
    the Vault role is named outside the tenure-* pattern the operator manages; VAULT_ADDR comes
    from the ConfigMap."""
    flags = _run_flags(container)
    assert not flags.vault_auth_role.startswith('tenure-')
    volume, inside = _mounted_file(pod_spec, container, str(flags.vault_auth_jwt_file))
    [source] = volume['projected']['sources']
    assert source['serviceAccountToken']['audience'] == 'vault'
    assert source['serviceAccountToken']['path'] == inside
    [env_from] = container['envFrom']
    settings = find(install, 'ConfigMap', env_from['configMapRef']['name'])
    assert settings['data']['VAULT_ADDR'].startswith('https://')


def test_the_webhook_serves_where_the_api_server_calls_it(
    install: list[Obj], pod_spec: Obj, container: Obj
) -> None:
    """The ValidatingWebhookConfiguration calls the webhook Service at the path the operator
    serves, for the operations it validates, and fails closed
    (https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/)."""
    [hook] = find(install, 'ValidatingWebhookConfiguration', 'tenure')['webhooks']
    service = hook['clientConfig']['service']
    assert service == {
        'name': 'tenure-webhook',
        'namespace': OPERATOR_NAMESPACE,
        'path': admission.WEBHOOK_PATH,
        'port': 443,
    }
    assert hook['failurePolicy'] == 'Fail'
    assert hook['sideEffects'] == 'None'
    [rule] = hook['rules']
    assert rule['operations'] == list(admission.OPERATIONS)
    assert (rule['apiGroups'], rule['resources']) == (['tenure.dev'], ['serviceidentities'])
    flags = _run_flags(container)
    cert_volume, cert = _mounted_file(pod_spec, container, str(flags.webhook_cert))
    key_volume, key = _mounted_file(pod_spec, container, str(flags.webhook_key))
    assert cert_volume is key_volume
    assert (cert, key) == ('tls.crt', 'tls.key')  # a kubernetes.io/tls Secret's keys
    assert cert_volume['secret']['secretName'] == 'tenure-webhook-tls'


def test_cert_manager_issues_the_webhook_certificate_and_its_ca(install: list[Obj]) -> None:
    """cert-manager writes the Secret the pod mounts, for the names the API server dials, and its
    CA injector fills the webhook's caBundle from that Certificate
    (https://cert-manager.io/docs/concepts/ca-injector/)."""
    configuration = find(install, 'ValidatingWebhookConfiguration', 'tenure')
    namespace, name = configuration['metadata']['annotations'][
        'cert-manager.io/inject-ca-from'
    ].split('/')
    certificate = find(install, 'Certificate', name)
    assert certificate['metadata']['namespace'] == namespace == OPERATOR_NAMESPACE
    assert certificate['spec']['secretName'] == 'tenure-webhook-tls'
    assert 'tenure-webhook.tenure-system.svc' in certificate['spec']['dnsNames']
    issuer = certificate['spec']['issuerRef']
    assert find(install, issuer['kind'], issuer['name'])['metadata']['namespace'] == namespace


def test_the_image_is_this_release(container: Obj) -> None:
    assert container['image'] == f'tenure:{tenure.__version__}'


# -- applied to the API emulator -------------------------------------------------------------


def _kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> list[str]:
    result = subprocess.run(
        [kubectl_binary(), '--kubeconfig', str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_the_install_applies_to_the_emulator_and_reapplies_unchanged(tmp_path: Path) -> None:
    """`kubectl apply -k` of deploy/, deploy/monitoring/ and deploy/tenant-namespace/ against the
    API emulator (cert-manager's and the Prometheus Operator's CRDs loaded as their minimal
    subsets in third_party_crds.yaml): every object is created, custom resources pass their CRD
    schemas with unknown fields refused, and applying again changes nothing."""
    with running_emulator(crd_paths=[THIRD_PARTY_CRDS]) as emulator:
        kubeconfig = emulator.write_kubeconfig(tmp_path / 'kubeconfig')
        first = _kubectl(kubeconfig, 'apply', '-k', str(DEPLOY))
        assert first
        assert all(line.endswith(' created') for line in first), first
        again = _kubectl(kubeconfig, 'apply', '-k', str(DEPLOY))
        # kubectl always patches a PodDisruptionBudget's selector (patchStrategy replace in
        # policy/v1), so it says "configured" as against a real server; nothing changes.
        budget = 'poddisruptionbudget.policy/tenure configured'
        assert all(line.endswith(' unchanged') or line == budget for line in again), again
        monitoring = _kubectl(kubeconfig, 'apply', '-k', str(DEPLOY / 'monitoring'))
        assert all(line.endswith(' created') for line in monitoring), monitoring
        namespace = 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: payments\n'
        _kubectl(kubeconfig, 'apply', '-f', '-', stdin=namespace)
        _kubectl(kubeconfig, 'apply', '-n', 'payments', '-k', str(DEPLOY / 'tenant-namespace'))
        reviewer = _kubectl(
            kubeconfig, 'apply', '-f', str(DEPLOY / 'vault' / 'token-reviewer.yaml')
        )
        assert len(reviewer) == 3

        api = config.new_client_from_config(str(kubeconfig))
        try:
            apps = client.AppsV1Api(api)
            assert apps.read_namespaced_deployment('tenure', OPERATOR_NAMESPACE).spec.replicas == 2
            policy = client.PolicyV1Api(api)
            pdb = policy.read_namespaced_pod_disruption_budget('tenure', OPERATOR_NAMESPACE)
            assert (pdb.metadata.generation, pdb.spec.max_unavailable) == (1, 1)
            binding = client.RbacAuthorizationV1Api(api).read_namespaced_role_binding(
                'tenure-token-secrets', 'payments'
            )
            assert binding.role_ref.name == 'tenure-token-secrets'
            webhooks = client.AdmissionregistrationV1Api(api)
            assert webhooks.read_validating_webhook_configuration('tenure').webhooks[0].name
        finally:
            api.close()


def test_a_custom_resource_with_an_unknown_field_is_refused(tmp_path: Path) -> None:
    """The emulator check of the cert-manager and Prometheus Operator objects is a real one: a
    misspelt field in a PrometheusRule is refused, as `kubectl apply` (fieldValidation=Strict)
    would be by a real API server
    (https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation)."""
    [rule] = load(DEPLOY / 'monitoring' / 'prometheusrule.yaml')
    rule['spec']['groups'][0]['rules'][0]['expresion'] = 'vector(1)'
    with running_emulator(crd_paths=[THIRD_PARTY_CRDS]) as emulator:
        kubeconfig = emulator.write_kubeconfig(tmp_path / 'kubeconfig')
        namespace = {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': 'tenure-system'}}
        _kubectl(kubeconfig, 'apply', '-f', '-', stdin=yaml.safe_dump(namespace))
        result = subprocess.run(
            [kubectl_binary(), '--kubeconfig', str(kubeconfig), 'apply', '-f', '-'],
            input=yaml.safe_dump(rule),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode != 0
    assert 'expresion' in result.stderr

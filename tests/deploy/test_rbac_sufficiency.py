"""RBAC sufficiency of deploy/: the real operator, as its own ServiceAccount, on an API server that
enforces RBAC and escalation prevention (issue #8, "Checks in tests").

The Kubernetes API emulator runs with authorization on. deploy/ (with cert-manager's CRDs, as in
test_manifests.py), deploy/tenant-namespace/ and deploy/vault/token-reviewer.yaml are applied with
`kubectl` as the cluster admin. The operator then runs as `tenure-system/tenure`, with a token from
a TokenRequest, against a real OpenBao whose Kubernetes auth reviews logins with the reviewer's
token (system:auth-delegator): nothing in the scenario runs with more than deploy/ grants.

The IdentityPolicy `default` is the example's (the `view` catalog) in `Audit` mode: Tenure's
guardrails report violations but stop nothing, so whatever is refused below is refused by the API
server's RBAC (https://kubernetes.io/docs/reference/access-authn-authz/rbac/).

What is checked:
- a whole lifecycle (created inside the ceiling, bound to the catalog's `view`, a mover change,
  a legacy token Secret, deletion with revocation) meets no 401/403 at all;
- every verb and resource deploy/ grants the operator was used during it (the authorizer's
  decisions per rule, plus the rules escalation prevention relied on): nothing is granted for
  nothing;
- a ticket beyond the ceiling (`pods/exec`, a Secret) or binding `cluster-admin` is refused with
  403 by escalation prevention, through the operator with its guardrails in Audit mode and through
  its Kubernetes adapter directly, with `*` rules the CRD itself would not even accept.
"""

from __future__ import annotations

import base64
import dataclasses
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from tenure.adapters.kubernetes import KubeObjects
from tenure.domain.names import IdentityNames
from tenure.errors import PermanentError
from tenure_devtools.kubeapi import KubeApiEmulator, running_emulator
from tenure_devtools.kubeapi.authz import Coverage, Decision, Refusal
from tenure_devtools.openbao import OpenBaoDevServer, running_openbao
from tenure_devtools.operator_process import OperatorProcess
from tests.integration.stack import Obj, Stack, identity

from .conftest import (
    DEPLOY,
    OPERATOR_NAMESPACE,
    OPERATOR_SERVICE_ACCOUNT,
    REPO,
    THIRD_PARTY_CRDS,
    kubectl_binary,
    load,
)

pytestmark = pytest.mark.integration

RBAC = 'rbac.authorization.k8s.io'
OPERATOR = f'system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}'
ESCALATION = 'is attempting to grant RBAC permissions not currently held'
TENANT = f'payments-{uuid.uuid4().hex[:6]}'

Grant = tuple[str, str, str]  # (apiGroup, resource, verb)
RuleKey = tuple[str, str, int]  # (role kind, role name, rule index)


def _kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> list[str]:
    result = subprocess.run(
        [kubectl_binary(), '--kubeconfig', str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def _until(what: str, check: Callable[[], Any], timeout: float = 20) -> Any:
    """Poll `check` until it returns something truthy (a condition on another process)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f'{what}: not within {timeout}s')
        time.sleep(0.05)


@dataclasses.dataclass
class Install:
    emulator: KubeApiEmulator
    admin: kubernetes.client.ApiClient
    admin_kubeconfig: Path
    operator_kubeconfig: Path
    operator_token: str
    bao: OpenBaoDevServer

    @property
    def stack(self) -> Stack:
        return Stack(self.admin, self.bao)


@pytest.fixture(scope='module')
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    """An RBAC-enforcing emulator with deploy/ installed by an admin, and OpenBao set up to
    review logins with deploy/vault/'s reviewer."""
    tmp = tmp_path_factory.mktemp('rbac')
    with (
        running_emulator(crd_paths=[THIRD_PARTY_CRDS], authorization=True) as emulator,
        running_openbao() as bao,
    ):
        admin_kubeconfig = emulator.write_kubeconfig(tmp / 'admin')
        _kubectl(admin_kubeconfig, 'apply', '-k', str(DEPLOY))
        namespace = {
            'apiVersion': 'v1',
            'kind': 'Namespace',
            'metadata': {'name': TENANT, 'labels': {'tenure.dev/environment': 'production'}},
        }
        _kubectl(admin_kubeconfig, 'apply', '-f', '-', stdin=yaml.safe_dump(namespace))
        _kubectl(admin_kubeconfig, 'apply', '-n', TENANT, '-k', str(DEPLOY / 'tenant-namespace'))
        _kubectl(admin_kubeconfig, 'apply', '-f', str(DEPLOY / 'vault' / 'token-reviewer.yaml'))
        [policy] = load(REPO / 'examples' / 'identitypolicy-default.yaml')
        policy['spec']['mode'] = 'Audit'
        _kubectl(admin_kubeconfig, 'apply', '-f', '-', stdin=yaml.safe_dump(policy))
        admin = kubernetes.config.new_client_from_config(str(admin_kubeconfig))
        try:
            core = kubernetes.client.CoreV1Api(admin)
            rbac = kubernetes.client.RbacAuthorizationV1Api(admin)
            # The aggregation controller fills the ceiling from tenure-grantable-default.
            _until(
                'tenure-grantable aggregated',
                lambda: rbac.read_cluster_role('tenure-grantable').rules,
            )
            token = core.create_namespaced_service_account_token(
                OPERATOR_SERVICE_ACCOUNT, OPERATOR_NAMESPACE, {'spec': {'expirationSeconds': 3600}}
            ).status.token
            reviewer = _until(
                'the reviewer token Secret filled',
                lambda: (
                    core.read_namespaced_secret('vault-token-reviewer', OPERATOR_NAMESPACE).data
                    or {}
                ).get('token'),
            )
            bao.configure_kubernetes_auth(
                kubernetes_host=emulator.url,
                token_reviewer_jwt=base64.b64decode(reviewer).decode(),
            )
            yield Install(
                emulator=emulator,
                admin=admin,
                admin_kubeconfig=admin_kubeconfig,
                operator_kubeconfig=emulator.write_kubeconfig(tmp / 'operator', token=token),
                operator_token=token,
                bao=bao,
            )
        finally:
            admin.close()


@dataclasses.dataclass
class Observed:
    """What the scenario saw, for the tests to judge."""

    active: Obj
    bindings: list[str]
    vault_login: str
    revoked_leftovers: list[str]
    lifecycle_refusals: list[Refusal]
    refused: dict[str, Obj]
    refusals: list[Refusal]
    decisions: list[Decision]
    coverage: list[Coverage]


def _owner_patched(stack: Stack, name: str, team: str) -> Callable[[], bool]:
    def check() -> bool:
        for read in (
            lambda: stack.core.read_namespaced_service_account(name, TENANT),
            lambda: stack.rbac.read_namespaced_role(f'tenure-{name}', TENANT),
            lambda: stack.rbac.read_namespaced_role_binding(f'tenure-{name}', TENANT),
        ):
            annotations = read().metadata.annotations or {}
            if annotations.get('tenure.dev/owner-team') != team:
                return False
        return True

    return check


def _leftovers(stack: Stack, name: str) -> list[str]:
    found = []
    for what, read in (
        ('ServiceAccount', lambda: stack.core.read_namespaced_service_account(name, TENANT)),
        ('Role', lambda: stack.rbac.read_namespaced_role(f'tenure-{name}', TENANT)),
        ('RoleBinding', lambda: stack.rbac.read_namespaced_role_binding(f'tenure-{name}', TENANT)),
        ('Secret', lambda: stack.core.read_namespaced_secret(f'{name}-legacy-token', TENANT)),
    ):
        try:
            read()
        except ApiException as e:
            if e.status != 404:
                raise
            continue
        found.append(what)
    return found


def _failed_provisioning(obj: Obj) -> bool:
    conditions = (obj.get('status') or {}).get('conditions') or []
    return any(
        c['type'] == 'Provisioned' and c['reason'] == 'ProvisioningFailed' for c in conditions
    )


def _ticket_source(stack: Stack) -> None:
    """A TicketSource no identity cites, with its credentials in the operator's namespace: the
    operator lists and watches TicketSources and reads those credentials on each poll."""
    stack.core.create_namespaced_secret(
        OPERATOR_NAMESPACE,
        {
            'metadata': {'name': 'itsm-credentials'},
            'data': {'token': base64.b64encode(b'not-a-real-token').decode()},
        },
    )
    stack.custom.create_cluster_custom_object(
        'tenure.dev',
        'v1alpha1',
        'ticketsources',
        {
            'apiVersion': 'tenure.dev/v1alpha1',
            'kind': 'TicketSource',
            'metadata': {'name': 'itsm-rbac'},
            'spec': {
                'type': 'servicenow',
                'url': 'https://itsm.invalid',
                'credentialsSecretRef': {
                    'name': 'itsm-credentials',
                    'namespace': OPERATOR_NAMESPACE,
                },
            },
        },
    )


@pytest.fixture(scope='module')
def observed(install: Install, tmp_path_factory: pytest.TempPathFactory) -> Observed:
    """The operator's lifecycle and the refused tickets, run once for the module's tests."""
    stack = install.stack
    authz = install.emulator.authz
    assert authz is not None
    authz.clear()
    operator = OperatorProcess(
        kubeconfig=install.operator_kubeconfig,
        vault_addr=install.bao.addr,
        vault_token=install.bao.root_token,
        args=['--leader-election', '--leader-election-namespace', OPERATOR_NAMESPACE],
        log_dir=tmp_path_factory.mktemp('operator'),
    )
    _ticket_source(stack)
    try:
        operator.start()
        # Joiner: rules inside the ceiling (all of it: get, list and watch on one ConfigMap),
        # the catalog's `view`, and an environment (checked against the namespace's label).
        manifest = identity('exporter', TENANT, cluster_roles=('view',))
        manifest['spec']['kubernetes']['rules'][0]['verbs'] = ['get', 'list', 'watch']
        manifest['spec']['environment'] = 'production'
        stack.create(manifest)
        active = stack.wait_phase(TENANT, 'exporter', 'Active')
        bindings = sorted(
            b.role_ref.name
            for b in stack.rbac.list_namespaced_role_binding(
                TENANT, label_selector='tenure.dev/identity=exporter'
            ).items
        )
        # The identity logs in to Vault: OpenBao's TokenReview passes RBAC as the reviewer.
        vault_login = stack.vault_login(TENANT, 'exporter')
        # Mover: a new owner team is written to every object (patch).
        stack.patch(TENANT, 'exporter', {'spec': {'owner': {'team': 'settlements'}}})
        _until('owner annotations updated', _owner_patched(stack, 'exporter', 'settlements'))
        # A legacy token Secret of the identity's ServiceAccount, for revocation to delete.
        stack.core.create_namespaced_secret(
            TENANT,
            {
                'metadata': {
                    'name': 'exporter-legacy-token',
                    'annotations': {'kubernetes.io/service-account.name': 'exporter'},
                },
                'type': 'kubernetes.io/service-account-token',
            },
        )
        # Leaver.
        stack.delete(TENANT, 'exporter')
        stack.wait_gone(TENANT, 'exporter')
        leftovers = _leftovers(stack, 'exporter')
        lifecycle_refusals = authz.refusals()

        # Beyond the ceiling, with the guardrails only auditing.
        exec_please = identity('exec-please', TENANT)
        exec_please['spec']['kubernetes']['rules'] = [
            {'apiGroups': [''], 'resources': ['pods/exec'], 'verbs': ['create']},
            {
                'apiGroups': [''],
                'resources': ['secrets'],
                'resourceNames': ['db-password'],
                'verbs': ['get'],
            },
        ]
        root_please = identity('root-please', TENANT, cluster_roles=('cluster-admin',))
        refused = {}
        for manifest in (exec_please, root_please):
            name = manifest['metadata']['name']
            stack.create(manifest)
            refused[name] = stack.wait(TENANT, name, _failed_provisioning)
    finally:
        # A graceful stop: the leader releases its Lease (an update) on the way out.
        operator.stop()
    return Observed(
        active=active,
        bindings=bindings,
        vault_login=vault_login,
        revoked_leftovers=leftovers,
        lifecycle_refusals=lifecycle_refusals,
        refused=refused,
        refusals=authz.refusals(),
        decisions=authz.decisions(),
        coverage=authz.coverage(),
    )


# -- sufficiency -------------------------------------------------------------------------------


def test_a_whole_lifecycle_needs_nothing_beyond_what_deploy_grants(observed: Observed) -> None:
    assert observed.lifecycle_refusals == []
    status = observed.active['status']
    assert status['serviceAccount'] == 'exporter'
    assert observed.bindings == ['tenure-exporter', 'view']
    assert observed.vault_login
    assert observed.revoked_leftovers == []


def _operator_rules(admin: kubernetes.client.ApiClient) -> dict[RuleKey, set[Grant]]:
    """Every rule bound to the operator by deploy/ (live: the ceiling as aggregated), as the
    (group, resource, verb) triples it grants."""
    rbac = kubernetes.client.RbacAuthorizationV1Api(admin)
    subject = (OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT)
    refs: set[tuple[str, str, str]] = set()
    for binding in [
        *rbac.list_cluster_role_binding().items,
        *rbac.list_role_binding_for_all_namespaces().items,
    ]:
        if any(
            (s.kind, s.namespace, s.name) == ('ServiceAccount', *subject)
            for s in binding.subjects or []
        ):
            namespace = binding.metadata.namespace or ''
            refs.add((binding.role_ref.kind, binding.role_ref.name, namespace))
    granted: dict[RuleKey, set[Grant]] = {}
    for kind, name, namespace in refs:
        if kind == 'ClusterRole':
            rules = rbac.read_cluster_role(name).rules
        else:
            rules = rbac.read_namespaced_role(name, namespace).rules
        for index, rule in enumerate(rules or []):
            granted[(kind, name, index)] = {
                (group, resource, verb)
                for group in rule.api_groups or []
                for resource in rule.resources or []
                for verb in rule.verbs
            }
    return granted


def test_every_verb_and_resource_deploy_grants_is_used(
    install: Install, observed: Observed
) -> None:
    """Least privilege, measured: each rule of deploy/ bound to the operator allowed a request
    (or let escalation prevention accept a Role or binding the operator wrote) for every
    verb and resource it lists. `tenure-grantable`'s rules are used by escalation prevention
    (the identity's Role), `tenure-bindable`'s by `bind` on `view`."""
    granted = _operator_rules(install.admin)
    assert {name for _, name, _ in granted} == {
        'tenure-operator',
        'tenure-grantable',
        'tenure-bindable',
        'tenure-token-secrets',
        'tenure-leader-election',
        'tenure-itsm-credentials',
    }
    used: dict[RuleKey, set[Grant]] = {key: set() for key in granted}
    for decision in observed.decisions:
        source, attributes = decision.source, decision.attributes
        if attributes.user.name != OPERATOR or not decision.allowed or source is None:
            continue
        key = (source.role_kind, source.role_name, source.rule_index)
        triple = (attributes.api_group, attributes.combined_resource, attributes.verb)
        used.setdefault(key, set()).add(triple)
    for cover in observed.coverage:
        if cover.user != OPERATOR:
            continue
        key = (cover.source.role_kind, cover.source.role_name, cover.source.rule_index)
        [group], [resource], [verb] = (
            cover.atom['apiGroups'],
            cover.atom['resources'],
            cover.atom['verbs'],
        )
        used.setdefault(key, set()).add((group, resource, verb))
    unused = {key: sorted(granted[key] - used.get(key, set())) for key in granted}
    assert {key: missing for key, missing in unused.items() if missing} == {}


# -- the ceiling is the API server's ---------------------------------------------------------


def _refusal(observed: Observed, resource: str, name: str) -> Refusal:
    found = [
        r
        for r in observed.refusals
        if r.attributes is not None
        and r.attributes.user.name == OPERATOR
        and r.attributes.resource == resource
        and f'"{name}" is forbidden' in r.message
    ]
    assert found, observed.refusals
    assert {r.message for r in found} == {found[0].message}, 'a retry is refused alike'
    return found[0]


def test_only_the_writes_beyond_the_ceiling_were_refused(observed: Observed) -> None:
    """The operator kept working for the refused tickets: everything else it did was allowed."""
    refused = {
        (
            r.code,
            r.attributes.verb if r.attributes else '',
            r.attributes.resource if r.attributes else '',
        )
        for r in observed.refusals
    }
    assert refused == {(403, 'create', 'roles'), (403, 'create', 'rolebindings')}


def test_a_ticket_beyond_the_ceiling_is_refused_by_the_api_server(
    install: Install, observed: Observed
) -> None:
    """`pods/exec` and a named Secret pass the guardrails in Audit mode, not RBAC: the Role is
    refused with 403 by escalation prevention, the identity reports it, nothing is granted."""
    refusal = _refusal(observed, 'roles', 'tenure-exec-please')
    assert refusal.code == 403
    assert refusal.message.startswith(
        f'roles.{RBAC} "tenure-exec-please" is forbidden: user "{OPERATOR}" (groups=['
    )
    assert refusal.message.endswith(
        f'{ESCALATION}:\n'
        '{APIGroups:[""], Resources:["pods/exec"], Verbs:["create"]}\n'
        '{APIGroups:[""], Resources:["secrets"], ResourceNames:["db-password"], Verbs:["get"]}'
    )
    ready = next(
        c for c in observed.refused['exec-please']['status']['conditions'] if c['type'] == 'Ready'
    )
    assert '403' in ready['message']
    assert 'is forbidden' in ready['message']
    with pytest.raises(ApiException) as missing:
        install.stack.rbac.read_namespaced_role('tenure-exec-please', TENANT)
    assert missing.value.status == 404


def test_binding_cluster_admin_is_refused_by_the_api_server(
    install: Install, observed: Observed
) -> None:
    """`bind` is granted on the catalog only, and the operator does not hold cluster-admin's
    permissions: the RoleBinding is refused even though the guardrails let it through."""
    name = IdentityNames(namespace=TENANT, name='root-please').cluster_role_binding('cluster-admin')
    refusal = _refusal(observed, 'rolebindings', name)
    assert refusal.message.endswith(
        f'{ESCALATION}:\n'
        '{APIGroups:["*"], Resources:["*"], Verbs:["*"]}\n'
        '{NonResourceURLs:["*"], Verbs:["*"]}'
    )
    bound = [
        b.role_ref.name
        for b in install.stack.rbac.list_namespaced_role_binding(
            TENANT, label_selector='tenure.dev/identity=root-please'
        ).items
    ]
    assert bound == ['tenure-root-please'], 'its Role (inside the ceiling) is bound, nothing more'


@pytest.fixture
def adapter(install: Install) -> Iterator[KubeObjects]:
    """The operator's Kubernetes adapter with the operator's credentials: no guardrail, no CRD
    validation between it and the API server."""
    api = kubernetes.config.new_client_from_config(str(install.operator_kubeconfig))
    try:
        yield KubeObjects(api, clock=lambda: datetime.now(UTC))
    finally:
        api.close()


def _objects(names: IdentityNames, *extra: Obj) -> list[Obj]:
    labels = names.labels()
    meta = {'namespace': names.namespace, 'labels': labels}
    return [
        {'apiVersion': 'v1', 'kind': 'ServiceAccount', 'metadata': {'name': names.name, **meta}},
        *[{**obj, 'metadata': {**obj['metadata'], **meta}} for obj in extra],
    ]


@pytest.mark.parametrize(
    ('kind', 'body', 'missing'),
    [
        pytest.param(
            'Role',
            {'rules': [{'apiGroups': [''], 'resources': ['secrets'], 'verbs': ['*']}]},
            '{APIGroups:[""], Resources:["secrets"], Verbs:["*"]}',
            id='secrets-star',
        ),
        pytest.param(
            'Role',
            {'rules': [{'apiGroups': ['*'], 'resources': ['*'], 'verbs': ['*']}]},
            '{APIGroups:["*"], Resources:["*"], Verbs:["*"]}',
            id='everything',
        ),
        pytest.param(
            'RoleBinding',
            {'roleRef': {'apiGroup': RBAC, 'kind': 'ClusterRole', 'name': 'cluster-admin'}},
            '{NonResourceURLs:["*"], Verbs:["*"]}',
            id='bind-cluster-admin',
        ),
        pytest.param(
            'RoleBinding',
            {'roleRef': {'apiGroup': RBAC, 'kind': 'ClusterRole', 'name': 'edit'}},
            '{APIGroups:[""], Resources:["secrets"], Verbs:[',
            id='bind-edit-outside-the-catalog',
        ),
    ],
)
def test_the_operators_own_credentials_cannot_grant_beyond_the_ceiling(
    install: Install, adapter: KubeObjects, kind: str, body: Obj, missing: str
) -> None:
    """A compromised or buggy operator, its guardrails and the CRD's validation out of the way,
    still cannot write a Role or binding beyond what it holds: 403 from the API server."""
    names = IdentityNames(namespace=TENANT, name=f'direct-{uuid.uuid4().hex[:6]}')
    obj: Obj = {'apiVersion': f'{RBAC}/v1', 'kind': kind, 'metadata': {'name': names.role}, **body}
    if kind == 'RoleBinding':
        obj['subjects'] = [{'kind': 'ServiceAccount', 'name': names.name}]
    with pytest.raises(PermanentError) as refused:
        adapter.apply(names, _objects(names, obj))
    message = str(refused.value)
    assert f'403 {kind.lower()}s.{RBAC} "{names.role}" is forbidden: user "{OPERATOR}"' in message
    refusal = next(
        r
        for r in reversed(install.emulator.authz.refusals() if install.emulator.authz else [])
        if f'"{names.role}" is forbidden' in r.message
    )
    assert ESCALATION in refusal.message
    assert missing in refusal.message

"""Drift repair (issue #6): what is changed or deleted behind Tenure's back is put back, reported.

The real operator (a child process) against the emulator and OpenBao. Kubernetes drift arrives
through watches; Vault drift through the periodic check, here every second (`--vault-resync 1s`).
Each repair is a Warning event DriftRepaired naming the object and what differed, and one count of
tenure_drift_repairs_total{kind}. Bindings made outside Tenure for a managed ServiceAccount are
reported (UnexpectedBindings condition, UnexpectedBinding event) and, with
--remove-unexpected-bindings (on here), deleted when the ServiceAccount is their only subject.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from tenure.adapters.kubernetes import KubeObjects
from tenure.api.v1alpha1 import Owner, PolicyRule, Scope
from tenure.domain.desired import Identity, kubernetes_objects
from tenure.domain.names import IdentityNames
from tenure.inventory_scan import counts, scan
from tenure_devtools.openbao import OpenBaoDevServer
from tenure_devtools.operator_process import OperatorProcess
from tests.integration.stack import Obj, Stack, identity

pytestmark = pytest.mark.integration

RBAC = 'rbac.authorization.k8s.io'


@pytest.fixture(scope='module')
def drift_operator(
    kubeconfig: Path,
    vault_for_identities: OpenBaoDevServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    with OperatorProcess(
        kubeconfig=kubeconfig,
        vault_addr=vault_for_identities.addr,
        vault_token=vault_for_identities.root_token,
        args=[
            '--vault-resync',
            '1s',
            '--inventory-interval',
            '1s',
            '--remove-unexpected-bindings',
        ],
        log_dir=tmp_path_factory.mktemp('drift-operator'),
    ) as process:
        process.start()
        yield process


def metric(operator: OperatorProcess, name: str, **labels: str) -> float:
    """One series' value from /metrics (0 when absent)."""
    wanted = ','.join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = (
        rf'^{re.escape(name)}\{{{re.escape(wanted)}\}} (\S+)$' if labels else rf'^{name} (\S+)$'
    )
    found = re.search(pattern, operator.metrics(), re.M)
    return float(found.group(1)) if found else 0.0


def until(what: str, check: Callable[[], Any], timeout: float = 20) -> Any:
    """Poll `check` until it returns something truthy (a bounded condition poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f'{what}: not within {timeout}s')


def active(stack: Stack, name: str | None = None, **kwargs: Any) -> tuple[str, str]:
    ns = stack.namespace(f'drift-{uuid.uuid4().hex[:8]}')
    name = name or 'api'
    stack.create(identity(name, ns, **kwargs))
    stack.wait_phase(ns, name, 'Active')
    return ns, name


def drift_messages(stack: Stack, ns: str, name: str) -> list[str]:
    listed = stack.core.list_namespaced_event(ns, field_selector=f'involvedObject.name={name}')
    return [e.message for e in listed.items if e.reason == 'DriftRepaired']


def repaired(stack: Stack, ns: str, name: str, fragment: str, timeout: float = 20) -> str:
    """Wait for a DriftRepaired event whose message names `fragment`; return that message."""
    stack.wait_events(ns, name, {'DriftRepaired'}, timeout=timeout)
    return str(
        until(
            f'DriftRepaired naming {fragment!r}',
            lambda: next((m for m in drift_messages(stack, ns, name) if fragment in m), None),
            timeout,
        )
    )


# -- Kubernetes -------------------------------------------------------------------------------


def _strip_sa_label(stack: Stack, ns: str, name: str) -> None:
    stack.core.patch_namespaced_service_account(
        name, ns, {'metadata': {'labels': {'tenure.dev/identity': None}}}
    )


def _edit_sa_annotation(stack: Stack, ns: str, name: str) -> None:
    stack.core.patch_namespaced_service_account(
        name, ns, {'metadata': {'annotations': {'tenure.dev/owner-team': 'someone-else'}}}
    )


def _delete_sa(stack: Stack, ns: str, name: str) -> None:
    stack.core.delete_namespaced_service_account(name, ns)


def _widen_role(stack: Stack, ns: str, name: str) -> None:
    stack.rbac.patch_namespaced_role(
        f'tenure-{name}',
        ns,
        {'rules': [{'apiGroups': [''], 'resources': ['secrets'], 'verbs': ['get', 'list']}]},
    )


def _delete_binding(stack: Stack, ns: str, name: str) -> None:
    stack.rbac.delete_namespaced_role_binding(f'tenure-{name}', ns)


def _add_subject(stack: Stack, ns: str, name: str) -> None:
    stack.rbac.patch_namespaced_role_binding(
        f'tenure-{name}',
        ns,
        {
            'subjects': [
                {'kind': 'ServiceAccount', 'name': name, 'namespace': ns},
                {'kind': 'ServiceAccount', 'name': 'intruder', 'namespace': ns},
            ]
        },
    )


def _sa_as_approved(stack: Stack, ns: str, name: str) -> bool:
    sa = stack.core.read_namespaced_service_account(name, ns)
    labels, notes = sa.metadata.labels or {}, sa.metadata.annotations or {}
    return (
        labels.get('tenure.dev/identity') == name and notes['tenure.dev/owner-team'] == 'payments'
    )


def _role_as_approved(stack: Stack, ns: str, name: str) -> bool:
    role = stack.rbac.read_namespaced_role(f'tenure-{name}', ns)
    return [r.resources for r in role.rules] == [['configmaps']]


def _binding_as_approved(stack: Stack, ns: str, name: str) -> bool:
    binding = stack.rbac.read_namespaced_role_binding(f'tenure-{name}', ns)
    return [(s.namespace, s.name) for s in binding.subjects] == [(ns, name)]


@pytest.mark.parametrize(
    ('change', 'kind', 'fragment', 'restored'),
    [
        pytest.param(
            _strip_sa_label, 'ServiceAccount', 'labels', _sa_as_approved, id='sa-label-removed'
        ),
        pytest.param(
            _edit_sa_annotation,
            'ServiceAccount',
            'annotations',
            _sa_as_approved,
            id='sa-annotation-edited',
        ),
        pytest.param(
            _delete_sa, 'ServiceAccount', 'missing; created', _sa_as_approved, id='sa-deleted'
        ),
        pytest.param(_widen_role, 'Role', 'rules', _role_as_approved, id='role-rules-edited'),
        pytest.param(
            _delete_binding,
            'RoleBinding',
            'missing; created',
            _binding_as_approved,
            id='rolebinding-deleted',
        ),
        pytest.param(
            _add_subject, 'RoleBinding', 'subjects', _binding_as_approved, id='rolebinding-edited'
        ),
    ],
)
def test_kubernetes_objects_changed_outside_tenure_are_put_back_within_seconds(
    drift_operator: OperatorProcess,
    stack: Stack,
    change: Callable[[Stack, str, str], None],
    kind: str,
    fragment: str,
    restored: Callable[[Stack, str, str], bool],
) -> None:
    ns, name = active(stack)
    before = metric(drift_operator, 'tenure_drift_repairs_total', kind=kind)
    change(stack, ns, name)
    message = repaired(stack, ns, name, f'{kind}/')
    assert fragment in message
    until('the object as approved again', lambda: _safe(restored, stack, ns, name))
    until(
        'the repair counted',
        lambda: metric(drift_operator, 'tenure_drift_repairs_total', kind=kind) > before,
    )


def _safe(check: Callable[[Stack, str, str], bool], stack: Stack, ns: str, name: str) -> bool:
    try:
        return check(stack, ns, name)
    except ApiException as e:
        if e.status == 404:
            return False
        raise


def test_the_operators_own_writes_are_not_counted_as_drift(
    drift_operator: OperatorProcess, stack: Stack
) -> None:
    """Provisioning, and a narrowing applied through the spec, write objects the watches see;
    none of it is a repair, and the Vault checks that follow find nothing either."""
    before = drift_operator.metrics()
    ns, name = active(stack)
    stack.patch(ns, name, {'spec': {'kubernetes': {'rules': []}}})
    obj = stack.wait(ns, name, lambda o: o['status'].get('observedGeneration') == 2)
    assert obj['status']['phase'] == 'Active'
    until(
        'the narrowing applied',
        lambda: _gone(lambda: stack.rbac.read_namespaced_role_binding(f'tenure-{name}', ns)),
    )
    reads = _vault_reads(drift_operator.metrics())
    # Two passes of the Vault check (every second, three reads per Active identity) go by.
    until('two Vault checks', lambda: _vault_reads(drift_operator.metrics()) >= reads + 6)
    assert drift_messages(stack, ns, name) == []
    assert _repairs(drift_operator.metrics()) == _repairs(before)


def _vault_reads(text: str) -> float:
    return sum(
        float(v) for v in re.findall(r'^tenure_vault_requests_total\{[^}]*\} (\S+)$', text, re.M)
    )


def _repairs(text: str) -> dict[str, float]:
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'^tenure_drift_repairs_total\{kind="(\w+)"\} (\S+)$', text, re.M)
    }


# -- Vault ------------------------------------------------------------------------------------


def test_a_vault_policy_edited_outside_tenure_is_rewritten(
    drift_operator: OperatorProcess, stack: Stack
) -> None:
    ns, name = active(stack)
    root = stack.bao.client()
    policy = f'tenure-{ns}-{name}'
    original = root.sys.read_acl_policy(policy)['data']['policy']
    root.sys.create_or_update_acl_policy(
        policy, original + '\npath "secret/*" { capabilities = ["read"] }\n'
    )
    message = repaired(stack, ns, name, f'VaultPolicy/{policy}')
    assert 'policy text' in message
    until(
        'the policy text restored',
        lambda: root.sys.read_acl_policy(policy)['data']['policy'] == original,
    )


@pytest.mark.parametrize(
    ('change', 'fragment'),
    [
        pytest.param({'token_ttl': 86400, 'token_max_ttl': 86400}, 'token TTL', id='ttl-raised'),
        pytest.param(
            {'bound_service_account_names': ['intruder']},
            'bound ServiceAccount',
            id='bound-service-account-changed',
        ),
        pytest.param(
            {'bound_service_account_namespaces': ['*']},
            'bound ServiceAccount',
            id='bound-namespace-widened',
        ),
    ],
)
def test_a_vault_role_changed_outside_tenure_is_rewritten(
    drift_operator: OperatorProcess, stack: Stack, change: Obj, fragment: str
) -> None:
    ns, name = active(stack)
    root = stack.bao.client()
    path = f'auth/kubernetes/role/tenure-{ns}-{name}'
    original = root.read(path)['data']
    root.write(path, **change)
    message = repaired(stack, ns, name, f'VaultRole/tenure-{ns}-{name}')
    assert fragment in message
    fields = ('bound_service_account_names', 'bound_service_account_namespaces', 'token_max_ttl')
    until(
        'the role as Tenure wrote it',
        lambda: all(root.read(path)['data'][f] == original[f] for f in fields),
    )
    stack.vault_login(ns, name)  # the identity logs in again as approved


def test_a_secret_deleted_in_kv_is_recreated_with_new_values(
    drift_operator: OperatorProcess, stack: Stack
) -> None:
    ns, name = active(stack)
    root = stack.bao.client()
    before = metric(drift_operator, 'tenure_drift_repairs_total', kind='VaultSecret')
    root.secrets.kv.v2.delete_metadata_and_all_versions(path=f'tenure/{ns}/{name}')
    message = repaired(stack, ns, name, f'VaultSecret/tenure/{ns}/{name}')
    assert 'deleted; re-created with new values' in message
    secret = root.secrets.kv.v2.read_secret_version(
        path=f'tenure/{ns}/{name}', raise_on_deleted_version=True
    )
    value = secret['data']['data']['api-key']
    assert value not in message, 'a secret value is never put in an event'
    until(
        'the repair counted',
        lambda: metric(drift_operator, 'tenure_drift_repairs_total', kind='VaultSecret') > before,
    )
    events = stack.core.list_namespaced_event(ns, field_selector=f'involvedObject.name={name}')
    assert 'SecretRotated' not in {e.reason for e in events.items}


# -- bindings outside Tenure ------------------------------------------------------------------


def _condition(obj: Obj, type_: str) -> Obj | None:
    return next((c for c in obj['status'].get('conditions', []) if c['type'] == type_), None)


def test_an_unexpected_rolebinding_for_the_sole_subject_is_reported_and_removed(
    drift_operator: OperatorProcess, stack: Stack
) -> None:
    ns, name = active(stack)
    before = metric(drift_operator, 'tenure_drift_repairs_total', kind='RoleBinding')
    stack.rbac.create_namespaced_role_binding(
        ns,
        {
            'metadata': {'name': 'sneaky'},
            'roleRef': {'apiGroup': RBAC, 'kind': 'ClusterRole', 'name': 'edit'},
            'subjects': [{'kind': 'ServiceAccount', 'name': name, 'namespace': ns}],
        },
    )
    message = repaired(stack, ns, name, 'RoleBinding/')
    assert f'{ns}/sneaky' in message
    assert 'ClusterRole/edit' in message
    until(
        'the binding deleted',
        lambda: _gone(lambda: stack.rbac.read_namespaced_role_binding('sneaky', ns)),
    )
    until(  # counted right after the event is recorded: wait for it, do not race it
        'the removal counted',
        lambda: metric(drift_operator, 'tenure_drift_repairs_total', kind='RoleBinding') > before,
    )
    obj = stack.wait(
        ns,
        name,
        lambda o: (_condition(o, 'UnexpectedBindings') or {}).get('status') == 'False',
    )
    assert obj['status']['phase'] == 'Active'


def test_a_shared_unexpected_clusterrolebinding_is_reported_not_removed(
    drift_operator: OperatorProcess, stack: Stack
) -> None:
    """Removing a binding other subjects share would end their access too: it is reported
    (condition and Warning event) and left for a human."""
    ns, name = active(stack)
    binding = f'shared-{ns}'
    stack.rbac.create_cluster_role_binding(
        {
            'metadata': {'name': binding},
            'roleRef': {'apiGroup': RBAC, 'kind': 'ClusterRole', 'name': 'view'},
            'subjects': [
                {'kind': 'ServiceAccount', 'name': name, 'namespace': ns},
                {'kind': 'Group', 'name': 'auditors', 'apiGroup': RBAC},
            ],
        }
    )
    try:
        obj = stack.wait(
            ns,
            name,
            lambda o: (_condition(o, 'UnexpectedBindings') or {}).get('status') == 'True',
        )
        condition = _condition(obj, 'UnexpectedBindings')
        assert condition is not None
        assert f'ClusterRoleBinding/{binding}' in condition['message']
        assert 'other subjects share' in condition['message']
        stack.wait_events(ns, name, {'UnexpectedBinding'})
        stack.rbac.read_cluster_role_binding(binding)  # still there
    finally:
        stack.rbac.delete_cluster_role_binding(binding)
    stack.wait(
        ns,
        name,
        lambda o: (_condition(o, 'UnexpectedBindings') or {}).get('status') == 'False',
    )


def _gone(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


# -- inventory --------------------------------------------------------------------------------


def test_the_inventory_gauges_count_managed_leaked_and_unmanaged_identities(
    drift_operator: OperatorProcess, stack: Stack
) -> None:
    """Seeded: an Active identity (Managed), a ServiceAccount labelled for an identity that does
    not exist (Leaked), one made by hand (Unmanaged). The gauges show what `tenure report`'s
    classification of the same cluster counts."""
    ns, name = active(stack)
    stack.core.create_namespaced_service_account(ns, {'metadata': {'name': 'hand-made'}})
    stack.core.create_namespaced_service_account(
        ns,
        {
            'metadata': {
                'name': 'left-behind',
                'labels': {'app.kubernetes.io/managed-by': 'tenure', 'tenure.dev/identity': 'gone'},
            }
        },
    )
    kube = KubeObjects(stack.api, clock=lambda: datetime.now(UTC))
    findings = {
        (f.namespace, f.kind.value, f.name): f.class_.value for f in scan(kube, datetime.now(UTC))
    }
    assert findings[(ns, 'ServiceAccount', name)] == 'Managed'
    assert findings[(ns, 'ServiceAccount', 'left-behind')] == 'Leaked'
    assert findings[(ns, 'ServiceAccount', 'hand-made')] == 'Unmanaged'
    expected = counts(scan(kube, datetime.now(UTC)))

    def exported() -> bool:
        return all(
            metric(drift_operator, 'tenure_inventory_identities', **{'class': c, 'kind': k}) == n
            for (c, k), n in expected.items()
        )

    until('the gauges of a scan after the seeding', exported)


# -- the adapter's own writes, as the watches see them ------------------------------------------


def _events(list_call: Callable[..., Any], ns: str, since: str, count: int) -> list[Any]:
    """The first `count` watch events after resourceVersion `since` (bounded by a timeout)."""
    found = []
    stream = kubernetes.watch.Watch()
    for event in stream.stream(list_call, ns, resource_version=since, timeout_seconds=10):
        found.append(event)
        if len(found) == count:
            stream.stop()
    return found


def test_the_adapter_recognises_the_watch_events_of_its_own_writes_once(stack: Stack) -> None:
    """A watch event carries the object at the write's resourceVersion, and a DELETED event the
    object's last state, uid included (https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes):
    what the adapter needs to tell its own writes from anyone else's."""
    ns = stack.namespace(f'drift-{uuid.uuid4().hex[:8]}')
    kube = KubeObjects(stack.api, clock=lambda: datetime.now(UTC))
    names = IdentityNames(ns, 'api')
    identity = Identity(
        names=names,
        uid='',
        ticket_id='CHG1',
        owner=Owner(team='payments', contact='payments@example.com'),
        scope=Scope(rules=[PolicyRule(api_groups=[''], resources=['configmaps'], verbs=['get'])]),
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    desired = kubernetes_objects(identity)
    for manifest in desired:
        manifest['metadata'].pop('ownerReferences')  # no ServiceIdentity: nothing to collect it
    since = stack.core.list_namespaced_service_account(ns).metadata.resource_version
    kube.apply(names, desired)
    [created] = _events(stack.core.list_namespaced_service_account, ns, since, 1)
    version = created['object'].metadata.resource_version
    assert kube.own_write('ServiceAccount', ns, 'api', version)
    assert not kube.own_write('ServiceAccount', ns, 'api', version), 'recognised once'

    since = version
    stack.core.patch_namespaced_service_account('api', ns, {'metadata': {'labels': {'x': 'y'}}})
    [theirs] = _events(stack.core.list_namespaced_service_account, ns, since, 1)
    assert not kube.own_write(
        'ServiceAccount', ns, 'api', theirs['object'].metadata.resource_version
    )

    since = stack.rbac.list_namespaced_role(ns).metadata.resource_version
    kube.delete_access(names)
    [deleted] = _events(stack.rbac.list_namespaced_role, ns, since, 1)
    assert deleted['type'] == 'DELETED'
    assert kube.own_write('Role', ns, 'tenure-api', f'deleted:{deleted["object"].metadata.uid}')

"""Tenure's Vault adapter against a real OpenBao: what it writes, revokes and proves gone.

Tokens are obtained the way workloads obtain them: a ServiceAccount JWT from the Kubernetes API
emulator's TokenRequest, exchanged at the kubernetes auth method of OpenBao, which asks the
emulator's TokenReview about it (https://openbao.org/docs/auth/kubernetes/). Every test uses
names of its own, so tests share one OpenBao; those that seal, stop or rate-limit a server
start their own.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import hvac
import hvac.exceptions
import pytest
from kubernetes import client as k8s

from tenure.adapters.vault import ACCESSOR_REREAD, VaultMaterial, operator_policy
from tenure.domain.desired import VaultRole
from tenure.domain.names import IdentityNames
from tenure.errors import PermanentError, TransientError
from tenure_devtools.openbao import OpenBaoDevServer, running_openbao

pytestmark = pytest.mark.integration

AUTH_MOUNT = 'k8s-vault-adapter'
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TTL = 600


# -- a kubernetes auth mount backed by the emulator ------------------------------------------


@dataclasses.dataclass(frozen=True)
class Workload:
    """A ServiceAccount in the emulator and the Vault names Tenure gives its identity."""

    names: IdentityNames
    uid: str

    @property
    def role(self) -> VaultRole:
        return VaultRole(
            name=self.names.vault_role,
            service_account=self.names.service_account,
            namespace=self.names.namespace,
            policy=self.names.vault_policy,
            ttl_seconds=TTL,
        )


class KubeAuth:
    """Creates ServiceAccounts in the emulator and logs them in to OpenBao."""

    def __init__(self, bao: OpenBaoDevServer, core: k8s.CoreV1Api) -> None:
        self.bao = bao
        self.core = core

    def service_account(self, namespace: str, name: str) -> str:
        existing = {ns.metadata.name for ns in self.core.list_namespace().items}
        if namespace not in existing:
            self.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
        body = k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=name))
        uid: str = self.core.create_namespaced_service_account(namespace, body).metadata.uid
        return uid

    def jwt(self, namespace: str, name: str, audiences: list[str]) -> str:
        spec = k8s.V1TokenRequestSpec(audiences=audiences, expiration_seconds=600)
        request = k8s.AuthenticationV1TokenRequest(spec=spec)
        response = self.core.create_namespaced_service_account_token(name, namespace, request)
        token: str = response.status.token
        return token

    def workload(self) -> Workload:
        suffix = uuid.uuid4().hex[:8]
        names = IdentityNames(namespace=f'va-{suffix}', name='exporter', auth_mount=AUTH_MOUNT)
        return Workload(names, self.service_account(names.namespace, names.service_account))

    def login(self, workload: Workload) -> str:
        """Log in as the workload through its Tenure role; return the Vault token."""
        jwt = self.jwt(workload.names.namespace, workload.names.service_account, ['vault'])
        answer = self.bao.client(token='').auth.kubernetes.login(
            workload.names.vault_role, jwt, mount_point=AUTH_MOUNT
        )
        token: str = answer['auth']['client_token']
        return token


@pytest.fixture(scope='module')
def kube_auth(openbao: OpenBaoDevServer, kube_emulator: Any) -> Iterator[KubeAuth]:
    with k8s.ApiClient(k8s.Configuration(host=kube_emulator.url)) as api:
        auth = KubeAuth(openbao, k8s.CoreV1Api(api))
        # The reviewer is bound to system:auth-delegator, as OpenBao's own docs set it up.
        reviewer_ns = f'va-reviewer-{uuid.uuid4().hex[:8]}'
        auth.service_account(reviewer_ns, 'token-reviewer')
        k8s.RbacAuthorizationV1Api(api).create_cluster_role_binding(
            k8s.V1ClusterRoleBinding(
                metadata=k8s.V1ObjectMeta(name=reviewer_ns),
                role_ref=k8s.V1RoleRef(
                    api_group='rbac.authorization.k8s.io',
                    kind='ClusterRole',
                    name='system:auth-delegator',
                ),
                subjects=[
                    k8s.RbacV1Subject(
                        kind='ServiceAccount', name='token-reviewer', namespace=reviewer_ns
                    )
                ],
            )
        )
        openbao.configure_kubernetes_auth(
            kubernetes_host=kube_emulator.url,
            mount=AUTH_MOUNT,
            token_reviewer_jwt=auth.jwt(reviewer_ns, 'token-reviewer', []),
        )
        yield auth


@pytest.fixture
def material(openbao: OpenBaoDevServer) -> VaultMaterial:
    return VaultMaterial(openbao.client(), auth_mount=AUTH_MOUNT, clock=lambda: NOW)


@pytest.fixture
def workload(kube_auth: KubeAuth) -> Workload:
    return kube_auth.workload()


def provision(material: VaultMaterial, workload: Workload) -> None:
    """What the reconcile does for an Active identity: its policy, then its role."""
    path = workload.names.secret_data_path
    material.ensure_policy(
        workload.names.vault_policy, f'path "{path}" {{\n  capabilities = ["read"]\n}}\n'
    )
    material.ensure_role(workload.role)


def usable(bao: OpenBaoDevServer, token: str) -> bool:
    """Whether Vault still accepts the token: `token lookup-self` is the least it allows."""
    try:
        bao.client(token=token).auth.token.lookup_self()
    except hvac.exceptions.Forbidden:
        return False
    return True


def token_with_policy(bao: OpenBaoDevServer, policy: str, *, default: bool = True) -> str:
    name = f'va-test-{uuid.uuid4().hex[:8]}'
    root = bao.client()
    root.sys.create_or_update_acl_policy(name=name, policy=policy)
    created = root.auth.token.create(policies=[name], no_default_policy=not default, ttl='10m')
    token: str = created['auth']['client_token']
    return token


# -- policies --------------------------------------------------------------------------------


def test_policy_write_reports_created_changed_and_unchanged(
    material: VaultMaterial, openbao: OpenBaoDevServer
) -> None:
    name = f'tenure-va-{uuid.uuid4().hex[:8]}-app'
    first = 'path "secret/data/a" {\n  capabilities = ["read"]\n}\n'
    second = 'path "secret/data/b" {\n  capabilities = ["read"]\n}\n'

    assert material.ensure_policy(name, first) is True, 'created'
    assert material.ensure_policy(name, first) is False, 'already as desired'
    assert material.ensure_policy(name, second) is True, 'changed'
    assert openbao.client().sys.read_acl_policy(name)['data']['policy'] == second


# -- roles -----------------------------------------------------------------------------------


def counting_material(
    openbao: OpenBaoDevServer, clock: Callable[[], datetime] = lambda: NOW
) -> tuple[VaultMaterial, list[str]]:
    """A VaultMaterial that records the operation of each request it sends, in order."""
    sent: list[str] = []
    material = VaultMaterial(
        openbao.client(),
        auth_mount=AUTH_MOUNT,
        clock=clock,
        observe=lambda op, _result: sent.append(op),
    )
    return material, sent


def test_role_is_written_as_configured_and_its_ttl_reads_back(
    material: VaultMaterial, openbao: OpenBaoDevServer, workload: Workload
) -> None:
    assert material.role_token_ttl(workload.role.name) is None, 'no role yet'

    assert material.ensure_role(workload.role) is True
    assert material.ensure_role(workload.role) is False, 'a second pass writes nothing'

    stored = openbao.client().auth.kubernetes.read_role(workload.role.name, mount_point=AUTH_MOUNT)
    assert {key: stored[key] for key in workload.role.config()} == workload.role.config()
    assert material.role_token_ttl(workload.role.name) == TTL


def test_role_is_rewritten_when_its_ttl_changes(
    material: VaultMaterial, workload: Workload
) -> None:
    material.ensure_role(workload.role)
    shorter = dataclasses.replace(workload.role, ttl_seconds=120)

    assert material.ensure_role(shorter) is True
    assert material.role_token_ttl(workload.role.name) == 120


def test_a_ttl_refresh_writes_the_role_in_one_request(
    openbao: OpenBaoDevServer, workload: Workload
) -> None:
    material, sent = counting_material(openbao)
    material.ensure_role(workload.role)
    sent.clear()
    material.write_role(dataclasses.replace(workload.role, ttl_seconds=30))
    assert sent == ['write'], 'no read first: the refresh knows the TTL differs'
    stored = openbao.client().auth.kubernetes.read_role(workload.role.name, mount_point=AUTH_MOUNT)
    assert (stored['token_ttl'], stored['token_explicit_max_ttl']) == (30, 30)
    assert stored['bound_service_account_names'] == [workload.names.service_account]


def test_reads_repeated_within_one_reconcile_ask_vault_once_until_a_write(
    openbao: OpenBaoDevServer, workload: Workload
) -> None:
    material, sent = counting_material(openbao)
    material.ensure_role(workload.role)
    sent.clear()
    with material.memoised_reads():
        # The three looks a reconcile takes at the role: one request.
        material.role_subject(workload.role.name)
        material.role_token_ttl(workload.role.name)
        assert material.ensure_role(workload.role) is False
        assert sent == ['read']
        material.delete_role(workload.role.name)
        # After a write, the next read is Vault's answer, not the memory of the role.
        assert material.role_token_ttl(workload.role.name) is None
        assert sent == ['read', 'delete', 'read']
    material.ensure_role(workload.role)
    sent.clear()
    material.role_token_ttl(workload.role.name)
    material.role_token_ttl(workload.role.name)
    assert sent == ['read', 'read'], 'outside the block every read asks Vault'


@pytest.mark.parametrize(
    'drift',
    [
        pytest.param({'bound_service_account_namespaces': ['*']}, id='namespaces-widened'),
        pytest.param({'token_policies': ['default', 'admin']}, id='policy-added'),
        pytest.param(
            {'bound_service_account_namespace_selector': '{"matchLabels":{"team":"x"}}'},
            id='namespace-selector-set',
        ),
        pytest.param({'token_period': 86400}, id='token-made-periodic'),
    ],
)
def test_role_changed_outside_tenure_is_put_back(
    material: VaultMaterial, openbao: OpenBaoDevServer, workload: Workload, drift: dict[str, Any]
) -> None:
    material.ensure_role(workload.role)
    path = f'/v1/auth/{AUTH_MOUNT}/role/{workload.role.name}'
    openbao.client().adapter.post(path, json=drift)

    assert material.ensure_role(workload.role) is True
    stored = openbao.client().adapter.get(path)['data']
    assert stored['bound_service_account_namespaces'] == [workload.names.namespace]
    assert stored['token_policies'] == [workload.names.vault_policy]
    assert stored['bound_service_account_namespace_selector'] == ''
    assert stored['token_period'] == 0


# -- readiness -------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def odd_mounts(openbao: OpenBaoDevServer) -> dict[str, str]:
    """An approle auth method and a KV version 1 engine: mounts Tenure must refuse to use."""
    root = openbao.client()
    suffix = uuid.uuid4().hex[:8]
    mounts = {'approle': f'va-approle-{suffix}', 'kv1': f'va-kv1-{suffix}'}
    root.sys.enable_auth_method(method_type='approle', path=mounts['approle'])
    root.sys.enable_secrets_engine('kv', path=mounts['kv1'], options={'version': '1'})
    return mounts


def test_check_ready_passes_on_a_configured_vault(
    material: VaultMaterial, kube_auth: KubeAuth
) -> None:
    material.check_ready()


@pytest.mark.parametrize(
    ('setting', 'message'),
    [
        pytest.param(
            {'auth_mount': 'no-such-auth'},
            "auth mount 'no-such-auth/' does not exist; enable it with "
            '`bao auth enable -path=no-such-auth kubernetes`',
            id='missing-auth-mount',
        ),
        pytest.param(
            {'auth_mount': 'approle'},
            "is a 'approle' auth method, not kubernetes",
            id='auth-mount-of-another-type',
        ),
        pytest.param(
            {'kv_mount': 'no-such-kv'},
            "KV mount 'no-such-kv/' does not exist; enable it with "
            '`bao secrets enable -path=no-such-kv -version=2 kv`',
            id='missing-kv-mount',
        ),
        pytest.param(
            {'kv_mount': 'kv1'}, 'is KV version 1; Tenure needs version 2', id='kv-version-1'
        ),
        pytest.param(
            {'token': 'not-a-real-token'},
            'refused the operator token (auth/token/lookup-self answered 403)',
            id='bad-token',
        ),
        pytest.param({'token': ''}, 'no Vault token is configured', id='no-token'),
    ],
)
def test_check_ready_says_what_to_fix(
    openbao: OpenBaoDevServer,
    kube_auth: KubeAuth,
    odd_mounts: dict[str, str],
    setting: dict[str, str],
    message: str,
) -> None:
    kv_mount = odd_mounts.get(setting.get('kv_mount', ''), setting.get('kv_mount', 'secret'))
    auth_mount = odd_mounts.get(
        setting.get('auth_mount', ''), setting.get('auth_mount', AUTH_MOUNT)
    )
    client = openbao.client(token=setting.get('token'))
    material = VaultMaterial(client, kv_mount=kv_mount, auth_mount=auth_mount)

    with pytest.raises(PermanentError) as raised:
        material.check_ready()
    assert message in str(raised.value)
    assert openbao.root_token not in str(raised.value)


@pytest.fixture
def own_openbao() -> Iterator[OpenBaoDevServer]:
    """A server of the test's own, for tests that seal, stop or throttle it."""
    with running_openbao() as server:
        server.client().sys.enable_auth_method(method_type='kubernetes', path='kubernetes')
        yield server


def test_sealed_vault_is_a_transient_failure_until_unsealed(own_openbao: OpenBaoDevServer) -> None:
    material = VaultMaterial(own_openbao.client())
    own_openbao.seal()

    with pytest.raises(TransientError, match='is sealed; unseal it'):
        material.check_ready()
    with pytest.raises(TransientError, match=r"could not read Vault policy 'p': .*HTTP 503"):
        material.ensure_policy('p', 'path "x" { capabilities = ["read"] }')

    own_openbao.unseal()
    material.check_ready()


def test_stopped_vault_is_a_transient_failure_never_a_proof(
    own_openbao: OpenBaoDevServer,
) -> None:
    material = VaultMaterial(own_openbao.client())
    own_openbao.stop()

    with pytest.raises(TransientError, match='Vault is unreachable'):
        material.check_ready()
    with pytest.raises(TransientError, match="could not delete Vault role 'r'"):
        material.delete_role('r')
    with pytest.raises(TransientError, match='unreachable'):
        material.verify_gone(
            role='r', policy='p', secret_path='s', namespace='ns', service_account='sa'
        )


def test_rate_limited_request_is_transient_and_says_when_to_retry(
    own_openbao: OpenBaoDevServer,
) -> None:
    """Vault sends Retry-After on a 429 when rate limit response headers are on
    (https://openbao.org/docs/concepts/resource-quotas, sys/quotas/config)."""
    root = own_openbao.client()
    root.adapter.post('/v1/sys/quotas/config', json={'enable_rate_limit_response_headers': True})
    root.adapter.post(
        '/v1/sys/quotas/rate-limit/tenure-test',
        json={'path': 'secret/', 'rate': 1, 'interval': '1m', 'block_interval': '2m'},
    )
    material = VaultMaterial(own_openbao.client())
    material.secret_version('tenure/ns/app')

    with pytest.raises(TransientError, match=r'HTTP 429: .*rate limit quota exceeded') as raised:
        material.secret_version('tenure/ns/app')
    assert raised.value.retry_after is not None
    assert 60 < raised.value.retry_after <= 120


def test_permission_denied_is_permanent_and_names_the_action(
    openbao: OpenBaoDevServer,
) -> None:
    token = token_with_policy(openbao, 'path "sys/policies/acl/*" { capabilities = ["read"] }')
    material = VaultMaterial(openbao.client(token=token))

    with pytest.raises(PermanentError) as raised:
        material.ensure_policy('tenure-va-denied', 'path "x" { capabilities = ["read"] }')
    assert str(raised.value).startswith(
        "could not write Vault policy 'tenure-va-denied': Vault answered HTTP 403: "
        'permission denied'
    )
    assert token not in str(raised.value)


def test_invalid_request_is_permanent_with_vaults_reason(material: VaultMaterial) -> None:
    with pytest.raises(PermanentError, match='HTTP 400: failed to parse policy'):
        material.ensure_policy('tenure-va-broken', 'path "x" {')


# -- secrets ---------------------------------------------------------------------------------


def read_version(bao: OpenBaoDevServer, path: str, version: int) -> dict[str, str] | None:
    """The values of one version as root reads them; None when Vault no longer has them."""
    response = bao.client().adapter.get(
        f'/v1/secret/data/{path}', params={'version': version}, raise_exception=False
    )
    if not isinstance(response, dict):
        assert response.status_code == 404
        return None
    data: dict[str, str] | None = response['data']['data']
    return data


def test_rotation_keeps_the_previous_version_and_drops_older_ones(
    material: VaultMaterial, openbao: OpenBaoDevServer, workload: Workload
) -> None:
    path = workload.names.secret_path
    metadata = {'managed-by': 'tenure', 'ticket': 'CHG0001'}

    assert material.secret_version(path) is None
    assert material.write_secret(path, ['password'], metadata) == 1
    assert material.write_secret(path, ['password'], metadata) == 2
    assert material.secret_version(path) == 2
    assert read_version(openbao, path, 1) is not None, 'the previous version stays for rollover'

    assert material.write_secret(path, ['password'], metadata) == 3
    assert read_version(openbao, path, 1) is None, 'max_versions 2: version 1 is gone'
    assert read_version(openbao, path, 2) is not None
    stored = openbao.client().adapter.get(f'/v1/secret/metadata/{path}')['data']
    assert stored['max_versions'] == 2
    assert stored['custom_metadata'] == metadata
    assert sorted(stored['versions']) == ['2', '3']


@pytest.mark.parametrize(
    ('end_latest', 'expected'),
    [
        pytest.param(None, 2, id='live'),
        pytest.param('delete', None, id='latest-deleted'),
        pytest.param('destroy', None, id='latest-destroyed'),
        pytest.param('delete-metadata', None, id='metadata-deleted'),
    ],
)
def test_secret_version_is_the_current_live_one(
    material: VaultMaterial,
    openbao: OpenBaoDevServer,
    workload: Workload,
    end_latest: str | None,
    expected: int | None,
) -> None:
    path = workload.names.secret_path
    material.write_secret(path, ['password'], {})
    material.write_secret(path, ['password'], {})
    kv = openbao.client().secrets.kv.v2
    if end_latest == 'delete':
        kv.delete_latest_version_of_secret(path)
    elif end_latest == 'destroy':
        kv.destroy_secret_versions(path, versions=[2])
    elif end_latest == 'delete-metadata':
        kv.delete_metadata_and_all_versions(path)

    assert material.secret_version(path) == expected


def test_secret_metadata_is_updated_only_when_it_differs(
    material: VaultMaterial, openbao: OpenBaoDevServer, workload: Workload
) -> None:
    path = workload.names.secret_path
    assert material.update_secret_metadata(path, {'owner-team': 'a'}) is False, 'no secret yet'
    material.write_secret(path, ['password'], {'owner-team': 'a'})

    assert material.update_secret_metadata(path, {'owner-team': 'a'}) is False
    assert material.update_secret_metadata(path, {'owner-team': 'b'}) is True

    stored = openbao.client().adapter.get(f'/v1/secret/metadata/{path}')['data']
    assert stored['custom_metadata'] == {'owner-team': 'b'}
    assert stored['current_version'] == 1, 'a metadata change is not a rotation'


def test_generated_values_are_fresh_strong_and_distinct(
    material: VaultMaterial, openbao: OpenBaoDevServer, workload: Workload
) -> None:
    path = workload.names.secret_path
    material.write_secret(path, ['password', 'api-key'], {})
    material.write_secret(path, ['password', 'api-key'], {})
    values = [
        value
        for version in (1, 2)
        for value in (read_version(openbao, path, version) or {}).values()
    ]

    assert len(values) == 4
    assert len(set(values)) == 4, 'different across keys and rotations'
    for value in values:
        raw = base64.urlsafe_b64decode(value + '=' * (-len(value) % 4))
        assert len(raw) >= 32, 'at least 32 bytes of entropy'


def _everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            parts.extend(traceback.format_exception(record.exc_info[1]))
    return '\n'.join(parts)


def test_secret_values_never_reach_logs_or_errors(
    material: VaultMaterial,
    openbao: OpenBaoDevServer,
    workload: Workload,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    path = workload.names.secret_path
    material.write_secret(path, ['password', 'api-key'], {'ticket': 'CHG1'})
    material.write_secret(path, ['password', 'api-key'], {'ticket': 'CHG1'})
    generated = [v for n in (1, 2) for v in (read_version(openbao, path, n) or {}).values()]

    # Failing writes, with a recognisable canary as the value: refused by Vault, then no Vault.
    canary = f'canary-{uuid.uuid4().hex}'
    errors: list[BaseException] = []
    metadata_only = token_with_policy(
        openbao, 'path "secret/metadata/*" { capabilities = ["create", "update", "read"] }'
    )
    refused = VaultMaterial(openbao.client(token=metadata_only))
    with pytest.raises(PermanentError) as denied:
        refused.write_secret(path, ['password'], {}, generate=lambda: canary)
    errors.append(denied.value)
    with running_openbao() as doomed:
        unreachable = VaultMaterial(doomed.client())
        doomed.stop()
        with pytest.raises(TransientError) as down:
            unreachable.write_secret(path, ['password'], {}, generate=lambda: canary)
        errors.append(down.value)

    logged = _everything_logged(caplog)
    raised = '\n'.join(''.join(traceback.format_exception(e)) for e in errors)
    assert 'secret/data/' in logged, 'the canary check looks at real log output'
    for secret in [*generated, canary]:
        assert secret not in logged
        assert secret not in raised


# -- tokens and entities ---------------------------------------------------------------------


def test_revoked_tokens_get_403_while_a_new_login_works(
    material: VaultMaterial, openbao: OpenBaoDevServer, kube_auth: KubeAuth
) -> None:
    workload, neighbour = kube_auth.workload(), kube_auth.workload()
    provision(material, workload)
    provision(material, neighbour)
    held = [kube_auth.login(workload), kube_auth.login(workload)]
    neighbours = kube_auth.login(neighbour)
    assert all(usable(openbao, t) for t in held)

    revoked = material.revoke_issued_tokens(
        role=workload.role.name,
        namespace=workload.names.namespace,
        service_account=workload.names.service_account,
    )

    assert revoked == 2
    assert not any(usable(openbao, t) for t in held), 'lookup-self included'
    assert usable(openbao, neighbours), 'another identity in the same Vault is untouched'
    assert usable(openbao, kube_auth.login(workload)), 'the workload can log in again'


def test_revoking_again_finds_nothing_more(
    material: VaultMaterial, kube_auth: KubeAuth, workload: Workload
) -> None:
    provision(material, workload)
    kube_auth.login(workload)
    scope = {
        'role': workload.role.name,
        'namespace': workload.names.namespace,
        'service_account': workload.names.service_account,
    }

    assert material.revoke_issued_tokens(**scope) == 1
    assert material.revoke_issued_tokens(**scope) == 0


def test_the_token_scan_looks_each_token_up_once_in_its_life(
    openbao: OpenBaoDevServer, kube_auth: KubeAuth
) -> None:
    material, sent = counting_material(openbao)
    workload, neighbour = kube_auth.workload(), kube_auth.workload()
    provision(material, workload)
    provision(material, neighbour)
    kube_auth.login(neighbour)
    scope = {
        'role': workload.role.name,
        'namespace': workload.names.namespace,
        'service_account': workload.names.service_account,
    }
    assert material.revoke_issued_tokens(**scope) == 0  # learns every token Vault holds
    sent.clear()
    assert material.revoke_issued_tokens(**scope) == 0
    assert sent == ['list'], 'nothing new: one listing, no lookup'

    kube_auth.login(workload)
    sent.clear()
    assert material.revoke_issued_tokens(**scope) == 1
    assert sent == ['list', 'write', 'write'], 'one lookup of the new token, then its revocation'


def test_disabled_entity_refuses_every_token_of_that_service_account(
    material: VaultMaterial, openbao: OpenBaoDevServer, kube_auth: KubeAuth
) -> None:
    workload, neighbour = kube_auth.workload(), kube_auth.workload()
    provision(material, workload)
    provision(material, neighbour)
    held = kube_auth.login(workload)
    neighbours = kube_auth.login(neighbour)

    assert material.disable_entity(service_account_uid=workload.uid) is True

    assert not usable(openbao, held)
    assert usable(openbao, neighbours)
    assert material.disable_entity(service_account_uid=workload.uid) is False, 'already off'
    assert material.disable_entity(service_account_uid=str(uuid.uuid4())) is False, 'no entity'


def test_the_auth_mount_accessor_is_read_once_a_minute_not_once_per_revocation(
    openbao: OpenBaoDevServer, kube_auth: KubeAuth
) -> None:
    now = [NOW]
    material, sent = counting_material(openbao, clock=lambda: now[0])
    first, second = kube_auth.workload(), kube_auth.workload()
    provision(material, first)
    provision(material, second)
    held = kube_auth.login(first)
    kube_auth.login(second)
    sent.clear()
    assert material.disable_entity(service_account_uid=first.uid) is True
    assert sent == ['read', 'write', 'write'], 'the mount, the entity lookup, the disable'
    assert not usable(openbao, held)
    sent.clear()
    assert material.disable_entity(service_account_uid=second.uid) is True
    assert sent == ['write', 'write'], 'the accessor is remembered'
    now[0] += ACCESSOR_REREAD
    sent.clear()
    material.disable_entity(service_account_uid=str(uuid.uuid4()))
    assert sent == ['read', 'write'], 'a minute later it is read again'


# -- deletion and proof ----------------------------------------------------------------------


def test_deleting_is_idempotent_including_what_never_existed(
    material: VaultMaterial, workload: Workload
) -> None:
    provision(material, workload)
    material.write_secret(workload.names.secret_path, ['password'], {})
    for _ in range(2):
        material.delete_role(workload.role.name)
        material.delete_policy(workload.names.vault_policy)
        material.delete_secret(workload.names.secret_path)

    assert material.role_token_ttl(workload.role.name) is None
    assert material.secret_version(workload.names.secret_path) is None


def test_proof_reports_each_object_still_present_then_gone(
    material: VaultMaterial, openbao: OpenBaoDevServer, kube_auth: KubeAuth, workload: Workload
) -> None:
    names = workload.names
    provision(material, workload)
    material.write_secret(names.secret_path, ['password'], {})
    held = kube_auth.login(workload)

    def proof() -> dict[str, tuple[str, str]]:
        checks = material.verify_gone(
            role=names.vault_role,
            policy=names.vault_policy,
            secret_path=names.secret_path,
            namespace=names.namespace,
            service_account=names.service_account,
        )
        assert all(c.at == NOW for c in checks)
        return {c.object: (c.check, c.result) for c in checks}

    role_object = f'vault:auth/{AUTH_MOUNT}/role/{names.vault_role}'
    policy_object = f'vault:sys/policies/acl/{names.vault_policy}'
    secret_object = f'vault:secret/metadata/{names.secret_path}'
    tokens_object = f'vault:tokens/{names.vault_role}'
    before = proof()
    assert {obj: result for obj, (_, result) in before.items()} == {
        role_object: 'StillPresent: the role still exists',
        policy_object: 'StillPresent: the policy still exists',
        secret_object: 'StillPresent: the secret still has 1 version(s)',
        tokens_object: 'StillPresent: 1 token(s) not revoked',
    }
    assert before[role_object][0] == f'GET auth/{AUTH_MOUNT}/role/{names.vault_role} returned 200'
    assert before[tokens_object][0] == (
        f'accessor scan found 1 unrevoked token(s) issued through '
        f'auth/{AUTH_MOUNT}/role/{names.vault_role} to {names.namespace}/{names.service_account}'
    )

    # The revocation order of BRIEF.md: role, tokens, entity, policy, secret.
    material.delete_role(names.vault_role)
    material.revoke_issued_tokens(
        role=names.vault_role, namespace=names.namespace, service_account=names.service_account
    )
    material.disable_entity(service_account_uid=workload.uid)
    material.delete_policy(names.vault_policy)
    material.delete_secret(names.secret_path)

    after = proof()
    assert {obj: result for obj, (_, result) in after.items()} == {
        role_object: 'Gone',
        policy_object: 'Gone',
        secret_object: 'Gone',
        tokens_object: 'Gone',
    }
    assert after[role_object][0] == f'GET auth/{AUTH_MOUNT}/role/{names.vault_role} returned 404'
    assert after[tokens_object][0].startswith('accessor scan found 0 unrevoked token(s)')
    assert not usable(openbao, held)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        kube_auth.login(workload)  # the role is gone


def test_proof_without_a_secret_has_no_secret_check(
    material: VaultMaterial, workload: Workload
) -> None:
    checks = material.verify_gone(
        role=workload.names.vault_role,
        policy=workload.names.vault_policy,
        secret_path=None,
        namespace=workload.names.namespace,
        service_account=workload.names.service_account,
    )
    assert [c.object.split(':')[1].split('/')[0] for c in checks] == ['auth', 'sys', 'tokens']
    assert all(c.result == 'Gone' for c in checks)


# -- the operator's own permissions ----------------------------------------------------------


def test_operator_policy_is_enough_for_the_whole_lifecycle(
    openbao: OpenBaoDevServer, kube_auth: KubeAuth, workload: Workload
) -> None:
    """A token holding only `operator_policy()` (not even `default`) does everything Tenure
    does, cannot read the secrets it writes, and cannot give an entity policies."""
    token = token_with_policy(openbao, operator_policy(auth_mount=AUTH_MOUNT), default=False)
    material = VaultMaterial(openbao.client(token=token), auth_mount=AUTH_MOUNT)
    names = workload.names

    material.check_ready()
    provision(material, workload)
    assert material.role_token_ttl(names.vault_role) == TTL
    assert material.write_secret(names.secret_path, ['password'], {'ticket': 'A'}) == 1
    assert material.update_secret_metadata(names.secret_path, {'ticket': 'B'}) is True
    assert material.secret_version(names.secret_path) == 1
    held = kube_auth.login(workload)
    revoked = material.revoke_issued_tokens(
        role=names.vault_role, namespace=names.namespace, service_account=names.service_account
    )
    assert revoked == 1
    assert material.disable_entity(service_account_uid=workload.uid) is True
    material.delete_role(names.vault_role)
    material.delete_policy(names.vault_policy)

    operator = openbao.client(token=token)
    with pytest.raises(hvac.exceptions.Forbidden):
        operator.secrets.kv.v2.read_secret_version(names.secret_path, raise_on_deleted_version=True)
    root = openbao.client()
    mount_accessor = root.sys.list_auth_methods()[f'{AUTH_MOUNT}/']['accessor']
    entity = root.adapter.post(
        '/v1/identity/lookup/entity',
        json={'alias_name': workload.uid, 'alias_mount_accessor': mount_accessor},
    )['data']
    assert entity['disabled'] is True
    with pytest.raises(hvac.exceptions.Forbidden):
        operator.adapter.post(f'/v1/identity/entity/id/{entity["id"]}', json={'policies': ['root']})
    material.delete_secret(names.secret_path)
    proof = material.verify_gone(
        role=names.vault_role,
        policy=names.vault_policy,
        secret_path=names.secret_path,
        namespace=names.namespace,
        service_account=names.service_account,
    )
    assert [c.result for c in proof] == ['Gone'] * 4
    assert not usable(openbao, held)

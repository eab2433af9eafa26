"""Authentication, RBAC authorization and escalation prevention (`authorization=True`).

Each test pins one rule of https://kubernetes.io/docs/reference/access-authn-authz/rbac/ (or of
the authentication and authorization overviews) as a client sees it: the status code and, where
clients or people read it, the exact message. Setup is done as the cluster admin (no token);
the behaviour under test is exercised with ServiceAccount tokens from TokenRequest, through raw
HTTP so that status codes and messages are visible as sent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenure_devtools.kubeapi import KubeApiEmulator, running_emulator

from .conftest import eventually

RBAC = 'rbac.authorization.k8s.io'
RBAC_V1 = f'/apis/{RBAC}/v1'
MERGE = 'application/merge-patch+json'
ESCALATION = 'is attempting to grant RBAC permissions not currently held'


@dataclass
class Reply:
    status: int
    body: Any

    @property
    def message(self) -> str:
        return str((self.body or {}).get('message', ''))


def call(
    emulator: KubeApiEmulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    content_type: str = 'application/json',
) -> Reply:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(emulator.url + path, data=data, method=method)
    if data is not None:
        request.add_header('Content-Type', content_type)
    if token is not None:
        request.add_header('Authorization', f'Bearer {token}')
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, payload = error.code, error.read()
    try:
        decoded = json.loads(payload) if payload else None
    except ValueError:
        decoded = payload.decode()
    return Reply(status, decoded)


@pytest.fixture(scope='module')
def emu() -> Iterator[KubeApiEmulator]:
    with running_emulator(authorization=True) as emulator:
        yield emulator


@pytest.fixture
def ns(emu: KubeApiEmulator) -> str:
    name = f'rbac-{uuid.uuid4().hex[:8]}'
    assert call(emu, 'POST', '/api/v1/namespaces', {'metadata': {'name': name}}).status == 201
    return name


def admin(emu: KubeApiEmulator, method: str, path: str, body: Any = None) -> Any:
    """A setup step as the cluster admin; it must succeed."""
    reply = call(emu, method, path, body)
    assert reply.status < 300, reply.body
    return reply.body


def account(emu: KubeApiEmulator, namespace: str, name: str = 'robot') -> str:
    """A ServiceAccount and a token for it (TokenRequest)."""
    admin(
        emu, 'POST', f'/api/v1/namespaces/{namespace}/serviceaccounts', {'metadata': {'name': name}}
    )
    issued = admin(emu, 'POST', f'/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token', {})
    token: str = issued['status']['token']
    return token


def rule(verbs: list[str], resources: list[str], group: str = '', **extra: Any) -> dict[str, Any]:
    return {'apiGroups': [group], 'resources': resources, 'verbs': verbs, **extra}


def sa(namespace: str, name: str = 'robot') -> dict[str, str]:
    return {'kind': 'ServiceAccount', 'name': name, 'namespace': namespace}


def grant(
    emu: KubeApiEmulator,
    namespace: str,
    rules: list[dict[str, Any]],
    subject: dict[str, str],
    *,
    name: str | None = None,
) -> str:
    """A Role with `rules` bound to `subject` in `namespace` (by the admin)."""
    name = name or f'g-{uuid.uuid4().hex[:6]}'
    admin(emu, 'POST', f'{RBAC_V1}/namespaces/{namespace}/roles', role(name, rules))
    admin(
        emu,
        'POST',
        f'{RBAC_V1}/namespaces/{namespace}/rolebindings',
        binding(name, 'Role', name, subject),
    )
    return name


def grant_cluster_role(
    emu: KubeApiEmulator, cluster_role: str, subject: dict[str, str], namespace: str = ''
) -> None:
    """Bind an existing ClusterRole: in `namespace` (RoleBinding) or cluster-wide."""
    name = f'b-{uuid.uuid4().hex[:6]}'
    body = binding(name, 'ClusterRole', cluster_role, subject)
    if namespace:
        admin(emu, 'POST', f'{RBAC_V1}/namespaces/{namespace}/rolebindings', body)
    else:
        admin(emu, 'POST', f'{RBAC_V1}/clusterrolebindings', body)


def role(name: str, rules: list[dict[str, Any]], **metadata: Any) -> dict[str, Any]:
    return {'metadata': {'name': name, **metadata}, 'rules': rules}


def binding(name: str, kind: str, role_name: str, subject: dict[str, str]) -> dict[str, Any]:
    return {
        'metadata': {'name': name},
        'roleRef': {'apiGroup': RBAC, 'kind': kind, 'name': role_name},
        'subjects': [subject],
    }


def user(namespace: str, name: str = 'robot') -> str:
    return f'system:serviceaccount:{namespace}:{name}'


def groups(namespace: str) -> str:
    return f'["system:serviceaccounts" "system:serviceaccounts:{namespace}" "system:authenticated"]'


# -- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    'subject',
    [
        pytest.param(lambda ns: sa(ns), id='service-account'),
        pytest.param(
            lambda ns: {'kind': 'ServiceAccount', 'name': 'robot'},
            id='service-account-of-the-binding-namespace',
        ),
        pytest.param(
            lambda ns: {'kind': 'User', 'apiGroup': RBAC, 'name': user(ns)}, id='user-name'
        ),
        pytest.param(
            lambda ns: {'kind': 'Group', 'apiGroup': RBAC, 'name': f'system:serviceaccounts:{ns}'},
            id='group-of-the-namespace',
        ),
        pytest.param(
            lambda ns: {'kind': 'Group', 'apiGroup': RBAC, 'name': 'system:serviceaccounts'},
            id='group-of-all-service-accounts',
        ),
        pytest.param(
            lambda ns: {'kind': 'Group', 'apiGroup': RBAC, 'name': 'system:authenticated'},
            id='group-of-everyone-authenticated',
        ),
    ],
)
def test_a_service_account_token_is_the_service_account_its_groups_and_no_more(
    emu: KubeApiEmulator, ns: str, subject: Any
) -> None:
    """A ServiceAccount authenticates as `system:serviceaccount:<ns>:<name>` in the groups
    `system:serviceaccounts`, `system:serviceaccounts:<ns>` and `system:authenticated`
    (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-subjects,
    https://kubernetes.io/docs/reference/access-authn-authz/authentication/#service-account-tokens);
    a ServiceAccount subject without a namespace is one of the binding's namespace."""
    token = account(emu, ns)
    path = f'/api/v1/namespaces/{ns}/configmaps'
    assert call(emu, 'GET', path, token=token).status == 403
    grant(emu, ns, [rule(['list'], ['configmaps'])], subject(ns))
    assert call(emu, 'GET', path, token=token).status == 200


def test_a_bearer_token_that_does_not_authenticate_gets_401(emu: KubeApiEmulator, ns: str) -> None:
    """ "If the request cannot be authenticated, it is rejected with HTTP status code 401"
    (https://kubernetes.io/docs/reference/access-authn-authz/authentication/): a made-up token,
    and the token of a ServiceAccount that was deleted since."""
    token = account(emu, ns)
    admin(emu, 'DELETE', f'/api/v1/namespaces/{ns}/serviceaccounts/robot')
    for bad in ('not-a-token', token):
        reply = call(emu, 'GET', '/api', token=bad)
        assert reply.status == 401
        assert reply.body == {
            'kind': 'Status',
            'apiVersion': 'v1',
            'metadata': {},
            'status': 'Failure',
            'message': 'Unauthorized',
            'reason': 'Unauthorized',
            'code': 401,
        }


def test_the_admin_token_and_a_request_without_a_token_act_as_cluster_admin(
    emu: KubeApiEmulator, ns: str
) -> None:
    """The emulator's stand-in for an admin kubeconfig (group `system:masters`, bound to
    `cluster-admin`: https://kubernetes.io/docs/reference/access-authn-authz/rbac/#user-facing-roles).
    Without a token at all the request is the admin too (a real server: `system:anonymous`)."""
    for token in (emu.admin_token, None):
        assert call(emu, 'GET', '/api/v1/secrets', token=token).status == 200
        created = call(
            emu,
            'POST',
            f'{RBAC_V1}/clusterroles',
            role(f'anything-{uuid.uuid4().hex[:6]}', [rule(['*'], ['*'], '*')]),
            token=token,
        )
        assert created.status == 201


def test_without_authorization_every_request_is_served_as_before() -> None:
    """Authorization is opt-in: the default emulator ignores tokens and has no bootstrap roles."""
    with running_emulator() as plain:
        assert call(plain, 'GET', '/api/v1/secrets', token='not-a-token').status == 200
        assert call(plain, 'GET', f'{RBAC_V1}/clusterroles').body['items'] == []


def _get(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={'Authorization': f'Bearer {token}'})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_the_command_prints_the_admin_token_and_puts_it_in_the_kubeconfig(
    tmp_path: Path,
) -> None:
    """`python -m tenure_devtools.kubeapi --authorization`: the admin's bearer token, as a
    kubeconfig user token (https://kubernetes.io/docs/reference/access-authn-authz/authentication/#putting-a-bearer-token-in-a-request)."""
    kubeconfig = tmp_path / 'kubeconfig'
    command = [sys.executable, '-m', 'tenure_devtools.kubeapi', '--authorization']
    with subprocess.Popen(
        [*command, '--kubeconfig', str(kubeconfig)], stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip().rsplit(' ', 1)[1]
            line = process.stdout.readline().strip()
            assert line.startswith('kubeapi admin token: ')
            token = line.rsplit(' ', 1)[1]
            assert yaml.safe_load(kubeconfig.read_text())['users'][0]['user'] == {'token': token}
            assert _get(f'{url}/api/v1/secrets', token) == 200
            assert _get(f'{url}/api/v1/secrets', 'not-the-token') == 401
        finally:
            process.terminate()
            process.wait(timeout=20)


# -- authorization -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('method', 'path', 'expected'),
    [
        pytest.param(
            'POST',
            '/api/v1/namespaces/{ns}/serviceaccounts',
            'serviceaccounts is forbidden: User "{user}" cannot create resource "serviceaccounts" '
            'in API group "" in the namespace "{ns}"',
            id='namespaced',
        ),
        pytest.param(
            'GET',
            '/api/v1/namespaces/{ns}/configmaps/settings',
            'configmaps "settings" is forbidden: User "{user}" cannot get resource "configmaps" '
            'in API group "" in the namespace "{ns}"',
            id='named',
        ),
        pytest.param(
            'GET',
            '/api/v1/namespaces',
            'namespaces is forbidden: User "{user}" cannot list resource "namespaces" '
            'in API group "" at the cluster scope',
            id='cluster-scoped',
        ),
        pytest.param(
            'GET',
            f'{RBAC_V1}/namespaces/{{ns}}/roles?watch=true',
            f'roles.{RBAC} is forbidden: User "{{user}}" cannot watch resource "roles" '
            f'in API group "{RBAC}" in the namespace "{{ns}}"',
            id='watch-in-a-group',
        ),
        pytest.param(
            'POST',
            '/api/v1/namespaces/{ns}/serviceaccounts/robot/token',
            'serviceaccounts "robot" is forbidden: User "{user}" cannot create resource '
            '"serviceaccounts/token" in API group "" in the namespace "{ns}"',
            id='subresource',
        ),
        pytest.param(
            'GET',
            '/logs',
            'forbidden: User "{user}" cannot get path "/logs"',
            id='non-resource-url',
        ),
    ],
)
def test_a_denied_request_gets_403_with_the_api_servers_message(
    emu: KubeApiEmulator, ns: str, method: str, path: str, expected: str
) -> None:
    """RBAC denies by default ("there are no deny rules",
    https://kubernetes.io/docs/reference/access-authn-authz/rbac/#role-and-clusterrole); the
    answer is a Forbidden Status naming the user, verb, resource and scope
    (https://kubernetes.io/docs/reference/access-authn-authz/authorization/#determine-whether-a-request-is-allowed-or-denied)."""
    token = account(emu, ns)
    reply = call(emu, method, path.format(ns=ns), {} if method == 'POST' else None, token=token)
    assert reply.status == 403
    assert reply.body['reason'] == 'Forbidden'
    assert reply.message == expected.format(ns=ns, user=user(ns))


def test_a_binding_to_a_missing_role_is_named_in_the_denial(emu: KubeApiEmulator, ns: str) -> None:
    """A binding may reference a role that does not exist (yet); the denial says so
    (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#rolebinding-and-clusterrolebinding)."""
    token = account(emu, ns)
    grant_cluster_role(emu, 'ghost', sa(ns), ns)
    reply = call(emu, 'GET', f'/api/v1/namespaces/{ns}/pods', token=token)
    assert reply.status == 403
    assert reply.message.endswith(f': RBAC: clusterrole.{RBAC} "ghost" not found')


@pytest.mark.parametrize(
    ('granted', 'method', 'path', 'status'),
    [
        pytest.param(['list'], 'GET', '', 200, id='list-is-get-on-the-collection'),
        pytest.param(['list'], 'GET', '/cm', 403, id='list-does-not-get-one'),
        pytest.param(['get'], 'GET', '/cm', 200, id='get-one'),
        pytest.param(['list'], 'GET', '?watch=true&timeoutSeconds=1', 403, id='list-is-not-watch'),
        pytest.param(['watch'], 'GET', '?watch=1&timeoutSeconds=1', 200, id='watch'),
        pytest.param(['patch'], 'PATCH', '/cm', 200, id='patch'),
        pytest.param(['patch'], 'PUT', '/cm', 403, id='patch-is-not-update'),
        pytest.param(['update'], 'PUT', '/cm', 200, id='update'),
        pytest.param(['delete'], 'DELETE', '/cm', 200, id='delete-one'),
        pytest.param(['delete'], 'DELETE', '', 403, id='delete-is-not-deletecollection'),
        pytest.param(['deletecollection'], 'DELETE', '', 200, id='deletecollection'),
    ],
)
def test_the_verb_follows_the_http_method_and_the_url(
    emu: KubeApiEmulator, ns: str, granted: list[str], method: str, path: str, status: int
) -> None:
    """Request verbs: GET on a collection is `list` (`watch` with ?watch), on an object `get`;
    PUT `update`, PATCH `patch`; DELETE on a collection `deletecollection`
    (https://kubernetes.io/docs/reference/access-authn-authz/authorization/#determine-the-request-verb)."""
    token = account(emu, ns)
    collection = f'/api/v1/namespaces/{ns}/configmaps'
    admin(emu, 'POST', collection, {'metadata': {'name': 'cm'}, 'data': {'a': '1'}})
    grant(emu, ns, [rule(granted, ['configmaps'])], sa(ns))
    body: Any = None
    if method == 'PATCH':
        body = {'data': {'a': '2'}}
    elif method == 'PUT':
        body = {'metadata': {'name': 'cm'}, 'data': {'a': '3'}}
    content_type = MERGE if method == 'PATCH' else 'application/json'
    reply = call(emu, method, collection + path, body, token=token, content_type=content_type)
    assert reply.status == status, reply.body


@pytest.mark.parametrize(
    ('method', 'path', 'status'),
    [
        pytest.param('GET', '/configmaps/allowed', 200, id='get-the-named-one'),
        pytest.param('GET', '/configmaps/other', 403, id='get-another'),
        pytest.param('GET', '/configmaps', 403, id='list-all'),
        pytest.param(
            'GET', '/configmaps?fieldSelector=metadata.name%3Dallowed', 200, id='list-the-named-one'
        ),
        pytest.param(
            'GET',
            '/configmaps?watch=true&timeoutSeconds=1&fieldSelector=metadata.name%3Dallowed',
            200,
            id='watch-the-named-one',
        ),
        pytest.param('POST', '/configmaps', 403, id='create-has-no-name-yet'),
    ],
)
def test_resource_names_narrow_requests_that_name_one_object(
    emu: KubeApiEmulator, ns: str, method: str, path: str, status: int
) -> None:
    """`resourceNames`: get/update/delete of those names; a list or watch only when it is
    narrowed to one of them by `metadata.name`; never create, whose name is not known when it
    is authorized (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-resources)."""
    token = account(emu, ns)
    for name in ('allowed', 'other'):
        admin(emu, 'POST', f'/api/v1/namespaces/{ns}/configmaps', {'metadata': {'name': name}})
    verbs = ['get', 'list', 'watch', 'create']
    grant(emu, ns, [rule(verbs, ['configmaps'], resourceNames=['allowed'])], sa(ns))
    body = {'metadata': {'name': 'allowed-2'}} if method == 'POST' else None
    reply = call(emu, method, f'/api/v1/namespaces/{ns}{path}', body, token=token)
    assert reply.status == status, reply.body


@pytest.mark.parametrize(
    ('resources', 'status'),
    [
        pytest.param(['serviceaccounts'], 403, id='the-resource-is-not-its-subresource'),
        pytest.param(['serviceaccounts/token'], 201, id='the-subresource'),
        pytest.param(['*/token'], 201, id='any-resources-subresource'),
    ],
)
def test_subresources_are_granted_by_name(
    emu: KubeApiEmulator, ns: str, resources: list[str], status: int
) -> None:
    """`serviceaccounts/token` is its own resource in rules; `*/token` matches that subresource
    of every resource (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-resources)."""
    token = account(emu, ns)
    account(emu, ns, 'other')
    grant(emu, ns, [rule(['create', 'get'], resources)], sa(ns))
    path = f'/api/v1/namespaces/{ns}/serviceaccounts/other/token'
    assert call(emu, 'POST', path, {}, token=token).status == status


def test_the_api_group_is_part_of_the_rule(emu: KubeApiEmulator, ns: str) -> None:
    """`apiGroups` must match: core events and events.k8s.io events are granted separately
    (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#role-examples)."""
    token = account(emu, ns)
    grant(emu, ns, [rule(['list'], ['events'])], sa(ns))
    assert call(emu, 'GET', f'/api/v1/namespaces/{ns}/events', token=token).status == 200
    other = f'/apis/events.k8s.io/v1/namespaces/{ns}/events'
    assert call(emu, 'GET', other, token=token).status == 403


def test_a_cluster_role_bound_in_a_namespace_grants_only_there(
    emu: KubeApiEmulator, ns: str
) -> None:
    """A RoleBinding to a ClusterRole grants its permissions in the binding's namespace only
    (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#rolebinding-and-clusterrolebinding)."""
    token = account(emu, ns)
    elsewhere = f'rbac-{uuid.uuid4().hex[:8]}'
    admin(emu, 'POST', '/api/v1/namespaces', {'metadata': {'name': elsewhere}})
    grant_cluster_role(emu, 'view', sa(ns), ns)
    assert call(emu, 'GET', f'/api/v1/namespaces/{ns}/configmaps', token=token).status == 200
    assert call(emu, 'GET', f'/api/v1/namespaces/{elsewhere}/configmaps', token=token).status == 403
    assert call(emu, 'GET', '/api/v1/configmaps', token=token).status == 403


@pytest.mark.parametrize(
    'path',
    [
        '/api',
        '/api/v1',
        '/apis',
        f'/apis/{RBAC}',
        f'/apis/{RBAC}/v1',
        '/version',
        '/healthz',
        '/openapi/v3',
        '/.well-known/openid-configuration',
        '/openid/v1/jwks',
    ],
)
def test_discovery_is_open_to_every_authenticated_service_account(
    emu: KubeApiEmulator, ns: str, path: str
) -> None:
    """`system:discovery`, `system:public-info-viewer` (system:authenticated) and
    `system:service-account-issuer-discovery` (system:serviceaccounts) are bound by default
    (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#discovery-roles,
    https://kubernetes.io/docs/tasks/configure-pod-container/configure-service-account/#service-account-issuer-discovery)."""
    token = account(emu, ns)
    assert call(emu, 'GET', path, token=token).status == 200


# -- aggregation ---------------------------------------------------------------------------------


def test_an_aggregated_cluster_role_holds_the_rules_its_selectors_gather(
    emu: KubeApiEmulator,
) -> None:
    """The control plane fills `rules` of a ClusterRole with an `aggregationRule` from every
    ClusterRole its selectors match, and keeps them current; its own rules are replaced
    (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#aggregated-clusterroles)."""
    label = f'example.com/aggregate-{uuid.uuid4().hex[:6]}'
    aggregated = f'agg-{uuid.uuid4().hex[:6]}'
    admin(
        emu,
        'POST',
        f'{RBAC_V1}/clusterroles',
        {
            'metadata': {'name': aggregated},
            'aggregationRule': {'clusterRoleSelectors': [{'matchLabels': {label: 'true'}}]},
            'rules': [rule(['get'], ['pods'])],
        },
    )
    path = f'{RBAC_V1}/clusterroles/{aggregated}'
    eventually(lambda: admin(emu, 'GET', path).get('rules') in (None, []), what='own rules gone')
    members = {'b-member': rule(['list'], ['secrets']), 'a-member': rule(['get'], ['configmaps'])}
    for name, member_rule in members.items():
        body = role(name + aggregated, [member_rule], labels={label: 'true'})
        admin(emu, 'POST', f'{RBAC_V1}/clusterroles', body)
    eventually(
        lambda: admin(emu, 'GET', path).get('rules') == [members['a-member'], members['b-member']],
        what='both members gathered, sorted by name',
    )
    admin(emu, 'DELETE', f'{RBAC_V1}/clusterroles/b-member{aggregated}')
    eventually(
        lambda: admin(emu, 'GET', path).get('rules') == [members['a-member']],
        what='a deleted member dropped',
    )


def test_the_user_facing_roles_are_aggregated_from_their_parts(emu: KubeApiEmulator) -> None:
    """`view` ⊂ `edit` ⊂ `admin`, each gathered from `system:aggregate-to-*` roles, and none of
    `view` reads Secrets (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#user-facing-roles)."""
    rules = {
        name: admin(emu, 'GET', f'{RBAC_V1}/clusterroles/{name}')['rules']
        for name in ('view', 'edit', 'admin')
    }
    assert all(r in rules['edit'] for r in rules['view'])
    assert all(r in rules['admin'] for r in rules['edit'])
    assert not any('secrets' in r['resources'] for r in rules['view'])
    assert any('secrets' in r['resources'] for r in rules['edit'])


# -- escalation prevention -----------------------------------------------------------------------


@pytest.fixture
def writer(emu: KubeApiEmulator, ns: str) -> str:
    """A ServiceAccount that may write Roles and RoleBindings in `ns` and holds `view` there."""
    token = account(emu, ns)
    verbs = ['create', 'update', 'patch', 'get']
    grant(emu, ns, [rule(verbs, ['roles', 'rolebindings'], RBAC)], sa(ns))
    grant_cluster_role(emu, 'view', sa(ns), ns)
    return token


@pytest.mark.parametrize(
    ('rules', 'missing'),
    [
        pytest.param([rule(['get', 'list'], ['configmaps', 'pods'])], None, id='held'),
        pytest.param(
            [rule(['get'], ['configmaps'], resourceNames=['one'])], None, id='held-narrowed'
        ),
        pytest.param(
            [rule(['get'], ['secrets'], resourceNames=['db'])],
            '{APIGroups:[""], Resources:["secrets"], ResourceNames:["db"], Verbs:["get"]}',
            id='a-named-secret',
        ),
        pytest.param(
            [rule(['get', 'delete'], ['configmaps'])],
            '{APIGroups:[""], Resources:["configmaps"], Verbs:["delete"]}',
            id='one-verb-more',
        ),
        pytest.param(
            [rule(['*'], ['configmaps'])],
            '{APIGroups:[""], Resources:["configmaps"], Verbs:["*"]}',
            id='star-verb-is-more-than-every-verb-held',
        ),
        pytest.param(
            [rule(['create'], ['pods/exec'])],
            '{APIGroups:[""], Resources:["pods/exec"], Verbs:["create"]}',
            id='a-subresource',
        ),
    ],
)
def test_a_role_may_only_grant_what_its_writer_holds(
    emu: KubeApiEmulator, ns: str, writer: str, rules: list[dict[str, Any]], missing: str | None
) -> None:
    """ "You can only create/update a role if ... you already have all the permissions contained
    in the role, at the same scope as the role"
    (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#restrictions-on-role-creation-or-update);
    the refusal lists what is missing (pkg/registry/rbac/validation ConfirmNoEscalation)."""
    reply = call(emu, 'POST', f'{RBAC_V1}/namespaces/{ns}/roles', role('r', rules), token=writer)
    if missing is None:
        assert reply.status == 201, reply.body
        return
    assert reply.status == 403
    assert reply.body['details'] == {'name': 'r', 'group': RBAC, 'kind': 'roles'}
    assert reply.message == (
        f'roles.{RBAC} "r" is forbidden: user "{user(ns)}" (groups={groups(ns)}) {ESCALATION}:\n'
        + missing
    )


@pytest.mark.parametrize(
    ('method', 'body', 'content_type'),
    [
        pytest.param(
            'PATCH', {'rules': [rule(['create'], ['pods/exec'])]}, MERGE, id='merge-patch'
        ),
        pytest.param(
            'PATCH',
            [{'op': 'add', 'path': '/rules/-', 'value': rule(['get'], ['secrets'])}],
            'application/json-patch+json',
            id='json-patch',
        ),
        pytest.param(
            'PUT', role('r', [rule(['delete'], ['configmaps'])]), 'application/json', id='update'
        ),
    ],
)
def test_changing_a_role_is_checked_like_creating_it(
    emu: KubeApiEmulator, ns: str, writer: str, method: str, body: Any, content_type: str
) -> None:
    """Updates are held to the same rule, whatever the patch type: the object the change would
    store must be within the writer's permissions
    (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#restrictions-on-role-creation-or-update)."""
    path = f'{RBAC_V1}/namespaces/{ns}/roles/r'
    admin(emu, 'POST', f'{RBAC_V1}/namespaces/{ns}/roles', role('r', [rule(['get'], ['pods'])]))
    reply = call(emu, method, path, body, token=writer, content_type=content_type)
    assert reply.status == 403
    assert ESCALATION in reply.message
    assert admin(emu, 'GET', path)['rules'] == [rule(['get'], ['pods'])]
    labelled = call(
        emu, 'PATCH', path, {'metadata': {'labels': {'a': 'b'}}}, token=writer, content_type=MERGE
    )
    assert labelled.status == 200, 'a change within what the writer holds is fine'


def test_the_garbage_collectors_changes_are_not_escalation_checked(
    emu: KubeApiEmulator, ns: str, writer: str
) -> None:
    """A change to ownerReferences and finalizers only is allowed on a role the writer could
    not write (pkg/registry/rbac/helpers.go IsOnlyMutatingGCFields, so that the garbage
    collector can always clean up: https://kubernetes.io/docs/concepts/architecture/garbage-collection/)."""
    path = f'{RBAC_V1}/namespaces/{ns}/roles/powerful'
    admin(emu, 'POST', f'{RBAC_V1}/namespaces/{ns}/roles', role('powerful', [rule(['*'], ['*'])]))
    gc_only = {'metadata': {'finalizers': ['example.com/hold']}}
    assert call(emu, 'PATCH', path, gc_only, token=writer, content_type=MERGE).status == 200
    other = {'metadata': {'labels': {'a': 'b'}}}
    assert call(emu, 'PATCH', path, other, token=writer, content_type=MERGE).status == 403


def test_escalate_lets_a_writer_grant_more_than_it_holds(emu: KubeApiEmulator, ns: str) -> None:
    """The `escalate` verb on roles lifts the restriction
    (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#restrictions-on-role-creation-or-update)."""
    token = account(emu, ns)
    grant(emu, ns, [rule(['create', 'escalate'], ['roles'], RBAC)], sa(ns))
    body = role('r', [rule(['*'], ['secrets'])])
    assert call(emu, 'POST', f'{RBAC_V1}/namespaces/{ns}/roles', body, token=token).status == 201


@pytest.mark.parametrize(
    ('bindable', 'cluster_role', 'status'),
    [
        pytest.param(None, 'view', 201, id='holding-the-roles-permissions'),
        pytest.param(None, 'edit', 403, id='not-holding-them'),
        pytest.param(['edit'], 'edit', 201, id='bind-on-that-role'),
        pytest.param(['view'], 'edit', 403, id='bind-on-another-role'),
        pytest.param([], 'cluster-admin', 201, id='bind-on-any-role'),
        pytest.param(None, 'no-such-role', 404, id='a-missing-role-without-bind'),
        pytest.param(['no-such-role'], 'no-such-role', 201, id='a-missing-role-with-bind'),
    ],
)
def test_a_binding_needs_the_roles_permissions_or_bind_on_it(
    emu: KubeApiEmulator,
    ns: str,
    writer: str,
    bindable: list[str] | None,
    cluster_role: str,
    status: int,
) -> None:
    """ "You can only create/update a role binding if you already have all the permissions
    contained in the referenced role ... or if you have been authorized to perform the bind
    verb on the referenced role", which `resourceNames` can narrow
    (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#restrictions-on-role-binding-creation-or-update)."""
    if bindable is not None:
        names = {'resourceNames': bindable} if bindable else {}
        grant(emu, ns, [rule(['bind'], ['clusterroles'], RBAC, **names)], sa(ns))
    body = binding('b', 'ClusterRole', cluster_role, sa(ns, 'someone'))
    reply = call(emu, 'POST', f'{RBAC_V1}/namespaces/{ns}/rolebindings', body, token=writer)
    assert reply.status == status, reply.body
    if status == 403:
        assert reply.message.startswith(
            f'rolebindings.{RBAC} "b" is forbidden: user "{user(ns)}" (groups={groups(ns)}) '
            f'{ESCALATION}:\n'
        )
    if status == 404:
        assert reply.message == f'clusterroles.{RBAC} "no-such-role" not found'


def test_permissions_held_in_a_namespace_do_not_cover_the_cluster(
    emu: KubeApiEmulator, ns: str
) -> None:
    """ "at the same scope": `view` bound in one namespace lets its holder bind `view` there,
    not cluster-wide, nor write a ClusterRole with its rules
    (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#privilege-escalation-prevention-and-bootstrapping)."""
    token = account(emu, ns)
    grant_cluster_role(emu, 'view', sa(ns), ns)
    cluster_writer = f'w-{uuid.uuid4().hex[:6]}'
    verbs = ['create']
    admin(
        emu,
        'POST',
        f'{RBAC_V1}/clusterroles',
        role(cluster_writer, [rule(verbs, ['clusterroles', 'clusterrolebindings'], RBAC)]),
    )
    grant_cluster_role(emu, cluster_writer, sa(ns))
    body = binding(f'v-{uuid.uuid4().hex[:6]}', 'ClusterRole', 'view', sa(ns, 'someone'))
    reply = call(emu, 'POST', f'{RBAC_V1}/clusterrolebindings', body, token=token)
    assert reply.status == 403
    assert ESCALATION in reply.message
    wide = role(f'c-{uuid.uuid4().hex[:6]}', [rule(['get'], ['configmaps'])])
    reply = call(emu, 'POST', f'{RBAC_V1}/clusterroles', wide, token=token)
    assert reply.status == 403
    assert ESCALATION in reply.message


def test_an_aggregation_rule_needs_cluster_admins_authority(emu: KubeApiEmulator, ns: str) -> None:
    """An aggregated ClusterRole can gather anything, so setting one needs `*` on everything:
    "must have cluster-admin privileges to use the aggregationRule"
    (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#aggregated-clusterroles;
    pkg/registry/rbac/clusterrole/policybased/storage.go)."""
    token = account(emu, ns)
    grant_cluster_role(emu, 'view', sa(ns))
    writer = f'w-{uuid.uuid4().hex[:6]}'
    admin(
        emu,
        'POST',
        f'{RBAC_V1}/clusterroles',
        role(writer, [rule(['create'], ['clusterroles'], RBAC)]),
    )
    grant_cluster_role(emu, writer, sa(ns))
    name = f'agg-{uuid.uuid4().hex[:6]}'
    body = {
        'metadata': {'name': name},
        'aggregationRule': {'clusterRoleSelectors': [{'matchLabels': {'x': 'y'}}]},
    }
    reply = call(emu, 'POST', f'{RBAC_V1}/clusterroles', body, token=token)
    assert reply.status == 403
    assert reply.message == (
        f'clusterroles.{RBAC} "{name}" is forbidden: must have cluster-admin privileges to use '
        'the aggregationRule'
    )


# -- what tests can see ----------------------------------------------------------------------


def test_decisions_name_the_binding_role_and_rule_that_allowed_them(
    emu: KubeApiEmulator, ns: str
) -> None:
    """The records behind the RBAC sufficiency check (tests/deploy/test_rbac_sufficiency.py):
    which rule allowed a request, which `bind` was asked, and which held rule let a Role be
    written."""
    token = account(emu, ns)
    authz = emu.authz
    assert authz is not None
    rules = [rule(['list'], ['pods']), rule(['create'], ['roles'], RBAC)]
    granted = grant(emu, ns, rules, sa(ns), name='two-rules')
    assert granted == 'two-rules'
    assert call(emu, 'GET', f'/api/v1/namespaces/{ns}/pods', token=token).status == 200
    body = role('sub', [rule(['list'], ['pods'])])
    assert call(emu, 'POST', f'{RBAC_V1}/namespaces/{ns}/roles', body, token=token).status == 201
    mine = [d for d in authz.decisions() if d.attributes.user.name == user(ns)]
    listed = next(d for d in mine if d.attributes.verb == 'list')
    assert listed.allowed
    assert listed.source is not None
    assert (listed.source.role_kind, listed.source.role_name, listed.source.rule_index) == (
        'Role',
        'two-rules',
        0,
    )
    assert str(listed.source) == (
        f'RoleBinding "two-rules/{ns}" of Role "two-rules" to ServiceAccount "robot/{ns}"'
    )
    escalate = next(d for d in mine if d.purpose == 'escalate')
    assert not escalate.allowed, 'asked first, then the permissions were compared'
    [covered] = [c for c in authz.coverage() if c.user == user(ns)]
    assert covered.atom == rule(['list'], ['pods'])
    assert covered.source.rule_index == 0

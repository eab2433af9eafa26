"""ServiceAccount tokens: TokenRequest, TokenReview, issuer discovery, legacy token Secrets."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client, config

from tenure_devtools.kubeapi import KubeApiEmulator, running_emulator

from .conftest import eventually, http

ISSUER = 'https://kubernetes.default.svc.cluster.local'


def _claims(token: str) -> dict[str, object]:
    payload = token.split('.')[1]
    decoded: dict[str, object] = json.loads(
        base64.urlsafe_b64decode(payload + '=' * (-len(payload) % 4))
    )
    return decoded


def _review(
    auth: client.AuthenticationV1Api, token: str, audiences: list[str] | None = None
) -> client.V1TokenReviewStatus:
    spec: dict[str, object] = {'token': token}
    if audiences is not None:
        spec['audiences'] = audiences
    review = auth.create_token_review({'spec': spec})
    return review.status


@pytest.fixture
def auth(api_client: client.ApiClient) -> client.AuthenticationV1Api:
    return client.AuthenticationV1Api(api_client)


def test_token_request_issues_a_token_bound_to_the_service_account(
    core: client.CoreV1Api, auth: client.AuthenticationV1Api, namespace: str
) -> None:
    """TokenRequest (https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/token-request-v1/)
    and TokenReview (https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/token-review-v1/)."""
    account = core.create_namespaced_service_account(namespace, {'metadata': {'name': 'robot'}})
    issued = core.create_namespaced_service_account_token(
        'robot', namespace, {'spec': {'audiences': ['vault'], 'expirationSeconds': 900}}
    )
    assert issued.spec.audiences == ['vault']
    assert issued.spec.expiration_seconds == 900
    claims = _claims(issued.status.token)
    assert claims['iss'] == ISSUER
    assert claims['sub'] == f'system:serviceaccount:{namespace}:robot'
    assert claims['aud'] == ['vault']
    assert claims['exp'] == int(issued.status.expiration_timestamp.timestamp())
    status = _review(auth, issued.status.token, ['vault'])
    assert status.authenticated is True
    assert status.user.username == f'system:serviceaccount:{namespace}:robot'
    assert status.user.uid == account.metadata.uid
    assert status.user.groups == [
        'system:serviceaccounts',
        f'system:serviceaccounts:{namespace}',
        'system:authenticated',
    ]
    assert status.audiences == ['vault']


def test_default_token_is_for_the_api_server_for_an_hour(
    core: client.CoreV1Api, auth: client.AuthenticationV1Api, namespace: str
) -> None:
    """Without audiences the token is for the API server (--api-audiences defaults to the
    issuer); expirationSeconds defaults to 3600."""
    core.create_namespaced_service_account(namespace, {'metadata': {'name': 'robot'}})
    issued = core.create_namespaced_service_account_token('robot', namespace, {'spec': {}})
    assert issued.spec.audiences == [ISSUER]
    assert issued.spec.expiration_seconds == 3600
    assert _review(auth, issued.status.token).authenticated is True


def test_a_deleted_service_account_invalidates_its_tokens(
    core: client.CoreV1Api, auth: client.AuthenticationV1Api, namespace: str
) -> None:
    """Bound tokens are valid only while their ServiceAccount exists with the same uid
    (https://kubernetes.io/docs/concepts/security/service-accounts/#bound-service-account-tokens),
    even if an account of the same name is created again."""
    core.create_namespaced_service_account(namespace, {'metadata': {'name': 'robot'}})
    token = core.create_namespaced_service_account_token(
        'robot', namespace, {'spec': {}}
    ).status.token
    core.delete_namespaced_service_account('robot', namespace)
    gone = _review(auth, token)
    assert not gone.authenticated
    assert gone.error == '[invalid bearer token, service account token has been invalidated]'
    core.create_namespaced_service_account(namespace, {'metadata': {'name': 'robot'}})
    replaced = _review(auth, token)
    assert not replaced.authenticated
    assert 'does not match claim' in replaced.error


def test_a_token_for_another_audience_is_not_authenticated(
    core: client.CoreV1Api, auth: client.AuthenticationV1Api, namespace: str
) -> None:
    core.create_namespaced_service_account(namespace, {'metadata': {'name': 'robot'}})
    token = core.create_namespaced_service_account_token(
        'robot', namespace, {'spec': {'audiences': ['vault']}}
    ).status.token
    assert not _review(auth, token, ['someone-else']).authenticated
    assert not _review(auth, token).authenticated  # the API server's own audience


def test_an_expired_token_is_not_authenticated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Tokens stop authenticating at their expiry (the clock is the emulator's, moved here)."""
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    with running_emulator(clock=lambda: now[0]) as emu:
        api = config.new_client_from_config(str(emu.write_kubeconfig(tmp_path / 'kubeconfig')))
        try:
            core, auth = client.CoreV1Api(api), client.AuthenticationV1Api(api)
            core.create_namespaced_service_account('default', {'metadata': {'name': 'robot'}})
            token = core.create_namespaced_service_account_token(
                'robot', 'default', {'spec': {'expirationSeconds': 600}}
            ).status.token
            assert _review(auth, token).authenticated is True
            now[0] += timedelta(seconds=600 + 61)  # past exp and the one-minute leeway
            expired = _review(auth, token)
        finally:
            api.close()
    assert not expired.authenticated
    assert expired.error.startswith('[invalid bearer token, ')


@pytest.mark.parametrize(
    ('seconds', 'message'),
    [
        pytest.param(599, 'may not specify a duration less than 10 minutes', id='too-short'),
        pytest.param(
            2**32 + 1, 'may not specify a duration larger than 2^32 seconds', id='too-long'
        ),
    ],
)
def test_token_lifetimes_are_bounded(
    emulator: KubeApiEmulator, namespace: str, seconds: int, message: str
) -> None:
    http(
        emulator,
        'POST',
        f'/api/v1/namespaces/{namespace}/serviceaccounts',
        {'metadata': {'name': 'robot'}},
    )
    answer = http(
        emulator,
        'POST',
        f'/api/v1/namespaces/{namespace}/serviceaccounts/robot/token',
        {
            'apiVersion': 'authentication.k8s.io/v1',
            'kind': 'TokenRequest',
            'spec': {'expirationSeconds': seconds},
        },
    )
    assert answer.status == 422
    assert answer.body['details']['causes'][0]['field'] == 'spec.expirationSeconds'
    assert message in answer.body['message']


def test_tokens_for_missing_accounts_are_404(emulator: KubeApiEmulator, namespace: str) -> None:
    answer = http(
        emulator,
        'POST',
        f'/api/v1/namespaces/{namespace}/serviceaccounts/ghost/token',
        {'spec': {}},
    )
    assert answer.status == 404
    assert answer.body['message'] == 'serviceaccounts "ghost" not found'


def test_issuer_discovery_publishes_the_signing_key(emulator: KubeApiEmulator) -> None:
    """Service account issuer discovery
    (https://kubernetes.io/docs/tasks/configure-pod-container/configure-service-account/#service-account-issuer-discovery)."""
    discovery = http(emulator, 'GET', '/.well-known/openid-configuration').body
    assert discovery['issuer'] == ISSUER
    assert discovery['jwks_uri'] == f'{emulator.url}/openid/v1/jwks'
    assert discovery['id_token_signing_alg_values_supported'] == ['RS256']
    keys = http(emulator, 'GET', '/openid/v1/jwks')
    assert keys.headers['Content-Type'].startswith('application/jwk-set+json')
    assert keys.body == emulator.token_issuer.jwks()
    assert keys.body['keys'][0]['kty'] == 'RSA'


def test_legacy_token_secrets_are_filled_and_die_with_the_secret(
    core: client.CoreV1Api, auth: client.AuthenticationV1Api, namespace: str
) -> None:
    """A `kubernetes.io/service-account-token` Secret gets a token from the tokens controller
    (https://kubernetes.io/docs/concepts/configuration/secret/#serviceaccount-token-secrets);
    the token stops authenticating when the Secret is deleted."""
    core.create_namespaced_service_account(namespace, {'metadata': {'name': 'robot'}})
    core.create_namespaced_secret(
        namespace,
        {
            'metadata': {
                'name': 'robot-token',
                'annotations': {'kubernetes.io/service-account.name': 'robot'},
            },
            'type': 'kubernetes.io/service-account-token',
        },
    )
    secret = eventually(
        lambda: (s := core.read_namespaced_secret('robot-token', namespace)).data and s,
        what='the token',
    )
    token = base64.b64decode(secret.data['token']).decode()
    assert secret.metadata.annotations['kubernetes.io/service-account.uid']
    assert _review(auth, token).authenticated is True
    core.delete_namespaced_secret('robot-token', namespace)
    assert not _review(auth, token).authenticated


def test_token_secrets_go_with_their_service_account(
    core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_service_account(namespace, {'metadata': {'name': 'robot'}})
    core.create_namespaced_secret(
        namespace,
        {
            'metadata': {
                'name': 'robot-token',
                'annotations': {'kubernetes.io/service-account.name': 'robot'},
            },
            'type': 'kubernetes.io/service-account-token',
        },
    )
    eventually(lambda: core.read_namespaced_secret('robot-token', namespace).data, what='the token')
    core.delete_namespaced_service_account('robot', namespace)

    def secret_gone() -> bool:
        return not [
            s
            for s in core.list_namespaced_secret(namespace).items
            if s.metadata.name == 'robot-token'
        ]

    eventually(secret_gone, what='the token secret to be deleted')

"""ServiceAccount tokens from the emulator look, verify and expire like a real cluster's.

Contracts: TokenRequest (https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/token-request-v1/),
bound service account tokens
(https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/#bound-service-account-token-volume),
the claims of k8s.io/kubernetes/pkg/serviceaccount Claims and the checks of its JWT authenticator,
JWS/JWK/JWT (RFC 7515, 7517, 7519) and the service account issuer discovery
(https://kubernetes.io/docs/tasks/configure-pod-container/configure-service-account/#service-account-issuer-discovery).
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given
from hypothesis import strategies as st

from tenure_devtools.kubeapi.tokens import DEFAULT_ISSUER, InvalidToken, TokenClaims, TokenIssuer

NOW = datetime(2026, 12, 1, 9, 30, 15, 750000, tzinfo=UTC)
ISSUED_AT = int(datetime(2026, 12, 1, 9, 30, 15, tzinfo=UTC).timestamp())


@pytest.fixture(scope='module')
def issuer() -> TokenIssuer:
    # One RSA key for the module: generating 2048-bit keys is the slow part of these tests.
    return TokenIssuer()


def b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + '=' * (-len(part) % 4))


def decode(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split('.')
    return json.loads(b64decode(header)), json.loads(b64decode(payload))


def issue(issuer: TokenIssuer, **overrides: Any) -> tuple[str, datetime]:
    arguments: dict[str, Any] = {
        'namespace': 'payments',
        'name': 'exporter',
        'uid': '8a1e77d0-2c3b-4f19-b0a7-91e5cf30d2b6',
        'audiences': [],
        'expiration_seconds': 3600,
        'now': NOW,
    }
    return issuer.issue(**(arguments | overrides))


def test_token_claims_are_those_of_a_bound_service_account_token(issuer: TokenIssuer) -> None:
    """pkg/serviceaccount Claims: sub system:serviceaccount:<ns>:<name>, aud as a list, iat = nbf
    = now and exp = now + expirationSeconds in whole seconds (JWT NumericDate), a jti
    (ServiceAccountTokenJTI, GA in 1.32) and the private kubernetes.io claim."""
    token, expires_at = issue(issuer, audiences=['vault'])
    header, claims = decode(token)
    assert header == {'alg': 'RS256', 'kid': issuer.key_id}
    uuid.UUID(claims.pop('jti'))
    assert claims == {
        'aud': ['vault'],
        'exp': ISSUED_AT + 3600,
        'iat': ISSUED_AT,
        'iss': DEFAULT_ISSUER,
        'kubernetes.io': {
            'namespace': 'payments',
            'serviceaccount': {'name': 'exporter', 'uid': '8a1e77d0-2c3b-4f19-b0a7-91e5cf30d2b6'},
        },
        'nbf': ISSUED_AT,
        'sub': 'system:serviceaccount:payments:exporter',
    }
    assert expires_at == datetime.fromtimestamp(ISSUED_AT + 3600, UTC)


def test_token_without_audiences_is_for_the_api_server(issuer: TokenIssuer) -> None:
    """kube-apiserver --api-audiences defaults to the service account issuer, and TokenRequest
    uses the API audiences when spec.audiences is empty."""
    token, _ = issue(issuer)
    assert decode(token)[1]['aud'] == [DEFAULT_ISSUER]
    assert issuer.verify(token, now=NOW).audiences == (DEFAULT_ISSUER,)


def test_each_token_has_its_own_id(issuer: TokenIssuer) -> None:
    """ServiceAccountTokenJTI: the jti identifies one issued credential in audit logs."""
    assert decode(issue(issuer)[0])[1]['jti'] != decode(issue(issuer)[0])[1]['jti']


def test_key_id_is_the_hash_of_the_public_key(issuer: TokenIssuer) -> None:
    """pkg/serviceaccount keyIDFromPublicKey: base64url(SHA-256(PKIX DER)) without padding."""
    public_key = serialization.load_pem_public_key(issuer.public_key_pem().encode())
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b'=').decode()
    assert issuer.key_id == expected


def test_jwks_lets_a_relying_party_verify_tokens(issuer: TokenIssuer) -> None:
    """RFC 7517 section 6.3 RSA key with kid, alg RS256 and use sig, as /openid/v1/jwks serves
    it: OpenBao's kubernetes auth (or any OIDC client) checks the RS256 signature with it."""
    (key,) = issuer.jwks()['keys']
    assert {k: key[k] for k in ('kty', 'alg', 'use', 'kid')} == {
        'kty': 'RSA',
        'alg': 'RS256',
        'use': 'sig',
        'kid': issuer.key_id,
    }
    public_key = rsa.RSAPublicNumbers(
        e=int.from_bytes(b64decode(key['e']), 'big'), n=int.from_bytes(b64decode(key['n']), 'big')
    ).public_key()
    assert public_key.key_size == 2048
    token, _ = issue(issuer)
    signing_input, _, signature = token.rpartition('.')
    public_key.verify(
        b64decode(signature), signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
    )


def test_pem_and_jwks_publish_the_same_key(issuer: TokenIssuer) -> None:
    """The PEM (e.g. OpenBao pem_keys) and the JWK describe one RSA public key."""
    public_key = serialization.load_pem_public_key(issuer.public_key_pem().encode())
    assert isinstance(public_key, rsa.RSAPublicKey)
    (key,) = issuer.jwks()['keys']
    assert public_key.public_numbers().n == int.from_bytes(b64decode(key['n']), 'big')
    assert public_key.public_numbers().e == int.from_bytes(b64decode(key['e']), 'big')


def test_verified_token_names_its_service_account(issuer: TokenIssuer) -> None:
    """TokenReview status.user: the service account named by the token's private claims, and
    status.audiences: the requested audiences the token carries."""
    token, expires_at = issue(issuer, audiences=['vault', 'other'])
    claims = issuer.verify(token, now=NOW, audiences=['vault', 'unrelated'])
    assert claims == TokenClaims(
        namespace='payments',
        name='exporter',
        uid='8a1e77d0-2c3b-4f19-b0a7-91e5cf30d2b6',
        audiences=('vault',),
        expires_at=expires_at,
    )


@pytest.mark.parametrize(
    ('offset', 'reason'),
    [
        pytest.param(timedelta(seconds=3600), None, id='at-expiry'),
        pytest.param(timedelta(seconds=3659), None, id='within-one-minute-leeway'),
        pytest.param(timedelta(seconds=3661), 'service account token has expired', id='expired'),
        pytest.param(timedelta(seconds=-59), None, id='slightly-before-issue-within-leeway'),
        pytest.param(
            timedelta(seconds=-61), 'service account token is not valid yet', id='not-valid-yet'
        ),
    ],
)
def test_token_lifetime_has_the_servers_one_minute_leeway(
    issuer: TokenIssuer, offset: timedelta, reason: str | None
) -> None:
    """pkg/serviceaccount validator: go-jose Claims.Validate with DefaultLeeway (1 minute) and
    its messages "service account token has expired" / "is not valid yet"."""
    token, _ = issue(issuer)
    at = datetime.fromtimestamp(ISSUED_AT, UTC) + offset
    if reason is None:
        assert issuer.verify(token, now=at).name == 'exporter'
    else:
        with pytest.raises(InvalidToken, match=reason):
            issuer.verify(token, now=at)


@pytest.mark.parametrize(
    ('issued_for', 'wanted', 'accepted'),
    [
        pytest.param(['vault'], None, False, id='vault-token-against-the-api'),
        pytest.param([], ['vault'], False, id='api-token-for-vault'),
        pytest.param(['vault'], ['vault'], True, id='same-audience'),
        pytest.param(['a', 'b'], ['b', 'c'], True, id='one-common-audience-is-enough'),
        pytest.param([], [DEFAULT_ISSUER], True, id='api-token-against-the-api'),
    ],
)
def test_audiences_must_intersect(
    issuer: TokenIssuer, issued_for: list[str], wanted: list[str] | None, accepted: bool
) -> None:
    """jwtTokenAuthenticator: the token's audiences must intersect the requested ones (the API
    audiences by default), else "token audiences ... is invalid for the target audiences"."""
    token, _ = issue(issuer, audiences=issued_for)
    if accepted:
        assert issuer.verify(token, now=NOW, audiences=wanted).audiences
    else:
        with pytest.raises(InvalidToken, match='is invalid for the target audiences'):
            issuer.verify(token, now=NOW, audiences=wanted)


def _resign_header(token: str, header: dict[str, Any]) -> str:
    _, payload, signature = token.split('.')
    raw = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b'=').decode()
    return f'{raw}.{payload}.{signature}'


def _replace_claims(token: str, **changes: Any) -> str:
    header, payload, signature = token.split('.')
    claims = json.loads(b64decode(payload)) | changes
    raw = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b'=').decode()
    return f'{header}.{raw}.{signature}'


@pytest.mark.parametrize(
    ('forge', 'reason'),
    [
        pytest.param(
            lambda t, _: _replace_claims(t, sub='system:serviceaccount:kube-system:admin'),
            'invalid signature',
            id='edited-claims',
        ),
        pytest.param(
            lambda t, _: _replace_claims(t, iss='https://elsewhere.example'),
            'token issuer is not recognised',
            id='other-issuer',
        ),
        pytest.param(
            lambda t, _: _resign_header(t, {'alg': 'none', 'kid': ''}),
            'unsupported algorithm',
            id='alg-none',
        ),
        pytest.param(
            lambda t, _: _resign_header(t, {'alg': 'RS256', 'kid': 'someone-else'}),
            'no keys found',
            id='unknown-key-id',
        ),
        pytest.param(lambda _t, other: other, 'no keys found', id='signed-by-another-cluster'),
        pytest.param(lambda t, _: t.rsplit('.', 1)[0], 'malformed token', id='missing-signature'),
        pytest.param(lambda _t, _o: 'not-a-jwt', 'malformed token', id='garbage'),
        pytest.param(lambda t, _: t + '!', 'malformed token', id='not-base64url'),
    ],
)
def test_forged_or_foreign_tokens_are_refused_without_echoing_them(
    issuer: TokenIssuer, forge: Any, reason: str
) -> None:
    """jwtTokenAuthenticator: issuer, key id and RS256 signature checks. Nothing of the token is
    repeated in the error (a token in a log is a leaked credential)."""
    token, _ = issue(issuer)
    foreign, _ = issue(TokenIssuer())
    forged = forge(token, foreign)
    with pytest.raises(InvalidToken) as raised:
        issuer.verify(forged, now=NOW)
    error = raised.value
    assert reason in str(error)
    # No chained exception either: its message could quote the token.
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__
    for part in forged.split('.'):
        if len(part) > 8:
            assert part not in str(error)


def test_issuer_repr_does_not_show_the_key(issuer: TokenIssuer) -> None:
    """The private key lives in memory only; printing the issuer shows its public identity."""
    assert repr(issuer) == f'TokenIssuer(issuer={DEFAULT_ISSUER!r}, key_id={issuer.key_id!r})'


def test_custom_issuer_is_the_tokens_iss(issuer: TokenIssuer) -> None:
    """--service-account-issuer sets iss; a token from another issuer does not authenticate."""
    custom = TokenIssuer('https://tenure.example/cluster')
    token, _ = issue(custom)
    assert decode(token)[1]['iss'] == 'https://tenure.example/cluster'
    assert decode(token)[1]['aud'] == ['https://tenure.example/cluster']
    assert custom.verify(token, now=NOW).name == 'exporter'
    with pytest.raises(InvalidToken, match='issuer'):
        issuer.verify(token, now=NOW)


@pytest.mark.parametrize(
    'call',
    [
        pytest.param(lambda i: issue(i, now=datetime(2026, 1, 1)), id='naive-now-on-issue'),
        pytest.param(lambda i: i.verify(issue(i)[0], now=datetime(2026, 1, 1)), id='naive-now'),
        pytest.param(lambda i: issue(i, expiration_seconds=0), id='zero-lifetime'),
    ],
)
def test_programming_errors_are_value_errors(issuer: TokenIssuer, call: Any) -> None:
    """Time is an argument and must be timezone-aware; a lifetime must be positive."""
    with pytest.raises(ValueError, match=r'timezone-aware|positive'):
        call(issuer)


_names = st.from_regex(r'[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?', fullmatch=True)


@given(
    namespace=_names,
    name=_names,
    uid=st.uuids().map(str),
    audiences=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=3),
    lifetime=st.integers(600, 2**32),
)
def test_issued_tokens_verify_until_they_expire(
    issuer: TokenIssuer, namespace: str, name: str, uid: str, audiences: list[str], lifetime: int
) -> None:
    """Every issued token authenticates as its service account for its audiences until
    exp + leeway, and not after."""
    token, expires_at = issue(
        issuer,
        namespace=namespace,
        name=name,
        uid=uid,
        audiences=audiences,
        expiration_seconds=lifetime,
    )
    claims = issuer.verify(token, now=expires_at, audiences=audiences)
    assert (claims.namespace, claims.name, claims.uid) == (namespace, name, uid)
    assert set(claims.audiences) == set(audiences)
    with pytest.raises(InvalidToken, match='expired'):
        issuer.verify(token, now=expires_at + timedelta(seconds=61), audiences=audiences)

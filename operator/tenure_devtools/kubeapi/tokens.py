"""Bound ServiceAccount tokens, issued and verified like the Kubernetes API server does.

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

The emulator answers TokenRequest (`POST .../serviceaccounts/<name>/token`) and TokenReview with
these tokens, so that a real OpenBao Kubernetes auth method can log in with them. They are RS256
JWTs with the claims of k8s.io/kubernetes/pkg/serviceaccount `Claims` (iss, sub, aud, exp, iat,
nbf, jti and the private `kubernetes.io` claim) and the key id of `keyIDFromPublicKey`; see
https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/#bound-service-account-token-volume
and https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/token-request-v1/ .

Pure: no clock reads (`now` is an argument) and no logging. A token, its claims or the private
key never appear in an exception message: a log line of the error is safe to keep.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

DEFAULT_ISSUER: Final = 'https://kubernetes.default.svc.cluster.local'

# go-jose jwt.DefaultLeeway, which the service account token validator applies to exp, nbf and
# iat: a token stays valid one minute past its expiry (pkg/serviceaccount/claims.go Validate).
LEEWAY: Final = timedelta(minutes=1)

_ALGORITHM: Final = 'RS256'


class InvalidToken(Exception):
    """A token the API server would not authenticate; the message is a short reason only."""


@dataclass(frozen=True)
class TokenClaims:
    """Who a verified token authenticates, as a TokenReview reports it.

    `audiences` are the token's audiences that the verifier accepted (TokenReview
    status.audiences); `expires_at` is the token's `exp`, in UTC.
    """

    namespace: str
    name: str
    uid: str
    audiences: tuple[str, ...]
    expires_at: datetime


def _b64(data: bytes) -> str:
    # JOSE uses base64url without padding (RFC 7515 section 2).
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode('ascii')


def _unb64(text: str) -> bytes:
    if not text or any(c not in _B64URL for c in text):
        raise ValueError('not base64url')
    return base64.urlsafe_b64decode(text + '=' * (-len(text) % 4))


_B64URL: Final = frozenset('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_')


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(',', ':'), sort_keys=True).encode()


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f'{what} must be timezone-aware')
    return moment.astimezone(UTC)


def _int_bytes(number: int) -> bytes:
    return number.to_bytes((number.bit_length() + 7) // 8 or 1, 'big')


class TokenIssuer:
    """Signs and verifies bound ServiceAccount tokens with one RSA 2048 key pair.

    The key is generated at construction and lives only in memory; `repr()` does not show it.
    """

    def __init__(self, issuer: str = DEFAULT_ISSUER) -> None:
        self.issuer = issuer
        self._private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._public_key = self._private_key.public_key()
        der = self._public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # keyIDFromPublicKey: base64url(SHA-256(PKIX DER of the public key)), not reversible.
        self.key_id = _b64(hashlib.sha256(der).digest())

    def __repr__(self) -> str:
        return f'TokenIssuer(issuer={self.issuer!r}, key_id={self.key_id!r})'

    def issue(
        self,
        *,
        namespace: str,
        name: str,
        uid: str,
        audiences: Sequence[str],
        expiration_seconds: int,
        now: datetime,
    ) -> tuple[str, datetime]:
        """Sign a token for ServiceAccount `namespace/name` (uid `uid`); return it and its expiry.

        With no audiences the token is for the API server itself: its audience is the issuer,
        the default of kube-apiserver `--api-audiences`. Times are whole seconds (JWT
        NumericDate), so the expiry is `now` truncated plus `expiration_seconds`. Validating
        `expiration_seconds` against the API's minimum (600) is the TokenRequest handler's job.
        """
        if isinstance(audiences, str):
            raise TypeError('audiences must be a sequence of strings, not a string')
        if expiration_seconds <= 0:
            raise ValueError('expiration_seconds must be positive')
        issued = int(_utc(now, 'now').timestamp())
        expires = issued + expiration_seconds
        claims = {
            'aud': list(audiences) or [self.issuer],
            'exp': expires,
            'iat': issued,
            'iss': self.issuer,
            # ServiceAccountTokenJTI (GA in 1.32): a unique id, shown in audit logs.
            'jti': str(uuid.uuid4()),
            'kubernetes.io': {
                'namespace': namespace,
                'serviceaccount': {'name': name, 'uid': uid},
            },
            'nbf': issued,
            'sub': f'system:serviceaccount:{namespace}:{name}',
        }
        header = {'alg': _ALGORITHM, 'kid': self.key_id}
        signing_input = f'{_b64(_json(header))}.{_b64(_json(claims))}'.encode('ascii')
        signature = self._private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        token = f'{signing_input.decode("ascii")}.{_b64(signature)}'
        return token, datetime.fromtimestamp(expires, UTC)

    def verify(
        self, token: str, *, now: datetime, audiences: Sequence[str] | None = None
    ) -> TokenClaims:
        """Authenticate `token` as the API server's service account authenticator would.

        Checks, in the server's order: the issuer, the RS256 signature with this key, the
        audiences, then exp/nbf/iat with a one-minute leeway. `audiences` are the audiences the
        caller wants (TokenReview spec.audiences); None means the API server's own, [issuer].
        Raises InvalidToken with a short reason.
        """
        if isinstance(audiences, str):
            raise TypeError('audiences must be a sequence of strings, not a string')
        wanted = [self.issuer] if audiences is None else list(audiences)
        moment = _utc(now, 'now')
        header, claims, signing_input, signature = self._decode(token)
        # jwtTokenAuthenticator.hasCorrectIssuer: a token from another issuer is not ours.
        if claims.get('iss') != self.issuer:
            raise InvalidToken('token issuer is not recognised')
        if header.get('alg') != _ALGORITHM:
            raise InvalidToken('invalid signature: unsupported algorithm')
        kid = header.get('kid')
        if kid not in (None, '', self.key_id):
            raise InvalidToken('invalid signature, no keys found')
        try:
            self._public_key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise InvalidToken('invalid signature') from None

        token_audiences = _string_list(claims.get('aud'))
        if token_audiences is None:
            raise InvalidToken('token audiences are malformed')
        # A token without audiences is a legacy token: it is for the API server only.
        effective = token_audiences or [self.issuer]
        accepted = tuple(a for a in effective if a in wanted)
        if not accepted:
            raise InvalidToken(
                f'token audiences {json.dumps(effective)} is invalid for the target audiences '
                f'{json.dumps(wanted)}'
            )

        _check_times(claims, moment)
        private = claims.get('kubernetes.io')
        account = private.get('serviceaccount') if isinstance(private, dict) else None
        namespace = private.get('namespace') if isinstance(private, dict) else None
        if not (
            isinstance(namespace, str)
            and isinstance(account, dict)
            and isinstance(account.get('name'), str)
            and isinstance(account.get('uid'), str)
        ):
            raise InvalidToken('token lacks the kubernetes.io service account claims')
        return TokenClaims(
            namespace=namespace,
            name=account['name'],
            uid=account['uid'],
            audiences=accepted,
            expires_at=datetime.fromtimestamp(claims['exp'], UTC),
        )

    @staticmethod
    def _decode(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
        """Split a compact JWS; every failure is the same opaque reason (no token content)."""
        if not isinstance(token, str):
            raise InvalidToken('malformed token')
        parts = token.strip().split('.')
        if len(parts) != 3:
            raise InvalidToken('malformed token')
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            signature = _unb64(parts[2])
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidToken('malformed token') from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise InvalidToken('malformed token')
        return header, claims, f'{parts[0]}.{parts[1]}'.encode('ascii'), signature

    def jwks(self) -> dict[str, Any]:
        """The JWK set (RFC 7517) served at /openid/v1/jwks: this key, for RS256 signatures."""
        numbers = self._public_key.public_numbers()
        return {
            'keys': [
                {
                    'use': 'sig',
                    'kty': 'RSA',
                    'kid': self.key_id,
                    'alg': _ALGORITHM,
                    'n': _b64(_int_bytes(numbers.n)),
                    'e': _b64(_int_bytes(numbers.e)),
                }
            ]
        }

    def public_key_pem(self) -> str:
        """The public key as PEM (SubjectPublicKeyInfo), e.g. for `--service-account-key-file`
        or an OpenBao Kubernetes auth `pem_keys` entry."""
        return self._public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode('ascii')


def _string_list(value: Any) -> list[str] | None:
    """The `aud` claim: a string or an array of strings (RFC 7519 section 4.1.3)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _numeric_date(claims: dict[str, Any], name: str) -> int | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f'token claim {name} is malformed')
    return int(value)


def _check_times(claims: dict[str, Any], moment: datetime) -> None:
    """go-jose Claims.Validate with DefaultLeeway, and the messages of the SA validator."""
    now = moment.timestamp()
    leeway = LEEWAY.total_seconds()
    expires = _numeric_date(claims, 'exp')
    if expires is None:
        # Bound tokens always carry exp; one without it is not one of ours.
        raise InvalidToken('token has no expiry')
    not_before = _numeric_date(claims, 'nbf')
    issued = _numeric_date(claims, 'iat')
    if not_before is not None and now + leeway < not_before:
        raise InvalidToken('service account token is not valid yet')
    if now - leeway > expires:
        raise InvalidToken('service account token has expired')
    if issued is not None and now + leeway < issued:
        raise InvalidToken(
            'service account token claims could not be validated due to unexpected validation error'
        )

"""ServiceAccount tokens in the Kubernetes API emulator: TokenRequest, TokenReview, OIDC discovery.

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

- `POST .../serviceaccounts/<name>/token` (TokenRequest,
  https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/token-request-v1/)
  issues a bound token for the ServiceAccount's uid: default audience the API server's
  (its issuer), default lifetime 1 h, at least 10 minutes.
- `POST /apis/authentication.k8s.io/v1/tokenreviews` (TokenReview,
  https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/token-review-v1/)
  authenticates a token only while it is unexpired, meant for one of the requested audiences,
  and its ServiceAccount still exists with the uid the token was bound to (deleting the
  ServiceAccount revokes every token issued for it).
- `/.well-known/openid-configuration` and `/openid/v1/jwks` (service account issuer discovery,
  https://kubernetes.io/docs/tasks/configure-pod-container/configure-service-account/#service-account-issuer-discovery).

Deviation: a `boundObjectRef` (Pod or Secret) is checked and echoed, but the token is not
invalidated when that object is deleted (the ServiceAccount binding is).
"""

from __future__ import annotations

from typing import Any

from . import errors, meta
from .errors import GroupResource
from .operations import Api, Outcome, WriteOptions
from .tokens import InvalidToken, TokenIssuer

SERVICE_ACCOUNTS = 'core/serviceaccounts'
AUTH_GROUP = 'authentication.k8s.io'
MIN_EXPIRATION = 600
MAX_EXPIRATION = 2**32
DEFAULT_EXPIRATION = 3600
_BOUND_KINDS = {'Pod': 'core/pods', 'Secret': 'core/secrets'}


class TokenApi:
    def __init__(self, api: Api, issuer: TokenIssuer) -> None:
        self.api = api
        self.issuer = issuer
        # Tokens the tokens controller put into Secrets: valid only while that Secret exists.
        self.legacy_tokens: dict[str, tuple[str, str, str, str]] = {}

    @property
    def api_audiences(self) -> list[str]:
        # --api-audiences defaults to the service account issuer.
        return [self.issuer.issuer]

    def token_request(self, namespace: str, name: str, body: Any, options: WriteOptions) -> Outcome:
        account = self.api.store.get(SERVICE_ACCOUNTS, namespace, name)
        if account is None:
            raise errors.not_found(GroupResource('', 'serviceaccounts'), name)
        if not isinstance(body, dict):
            raise errors.bad_request(
                'the body of the request could not be decoded into a TokenRequest'
            )
        if body.get('kind') not in (None, 'TokenRequest') or body.get('apiVersion') not in (
            None,
            f'{AUTH_GROUP}/v1',
        ):
            raise errors.bad_request(
                f'the API version in the data ({body.get("apiVersion")}) does not match the '
                f'expected API version ({AUTH_GROUP}/v1)'
            )
        raw_spec = body.get('spec')
        spec: dict[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
        audiences = list(spec.get('audiences') or self.api_audiences)
        seconds = spec.get('expirationSeconds') or DEFAULT_EXPIRATION
        problems = []
        if not isinstance(seconds, int):
            problems.append(meta.invalid('spec.expirationSeconds', seconds, 'must be an integer'))
        elif seconds < MIN_EXPIRATION:
            problems.append(
                meta.invalid(
                    'spec.expirationSeconds',
                    seconds,
                    'may not specify a duration less than 10 minutes',
                )
            )
        elif seconds > MAX_EXPIRATION:
            problems.append(
                meta.invalid(
                    'spec.expirationSeconds',
                    seconds,
                    'may not specify a duration larger than 2^32 seconds',
                )
            )
        bound = spec.get('boundObjectRef')
        if bound:
            kind = bound.get('kind')
            table = _BOUND_KINDS.get(kind or '')
            if table is None:
                problems.append(
                    meta.not_supported('spec.boundObjectRef.kind', kind or '', sorted(_BOUND_KINDS))
                )
            else:
                target = self.api.store.get(table, namespace, bound.get('name') or '')
                if target is None:
                    raise errors.not_found(
                        GroupResource('', table.split('/')[1]), bound.get('name') or ''
                    )
                if bound.get('uid') and bound['uid'] != target['metadata']['uid']:
                    raise errors.conflict(
                        GroupResource('', table.split('/')[1]),
                        bound.get('name') or '',
                        f'the UID in the bound object reference ({bound["uid"]}) does not match '
                        f'the UID in record. The object might have been deleted and then recreated',
                    )
        if problems:
            raise errors.invalid(AUTH_GROUP, 'TokenRequest', name, problems)
        result: dict[str, Any] = {
            'kind': 'TokenRequest',
            'apiVersion': f'{AUTH_GROUP}/v1',
            'metadata': {'name': name, 'namespace': namespace, 'creationTimestamp': None},
            'spec': {
                'audiences': audiences,
                'expirationSeconds': seconds,
                'boundObjectRef': bound or None,
            },
            'status': {'token': '', 'expirationTimestamp': None},
        }
        if options.dry_run:
            return Outcome(201, result)
        token, expires = self.issuer.issue(
            namespace=namespace,
            name=name,
            uid=account['metadata']['uid'],
            audiences=audiences,
            expiration_seconds=int(seconds),
            now=self.api.clock(),
        )
        result['status'] = {'token': token, 'expirationTimestamp': meta.format_time(expires)}
        return Outcome(201, result)

    def token_review(self, body: Any) -> Outcome:
        if not isinstance(body, dict):
            raise errors.bad_request(
                'the body of the request could not be decoded into a TokenReview'
            )
        raw_spec = body.get('spec')
        spec: dict[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
        token = spec.get('token') or ''
        if not token:
            raise errors.bad_request(f'token is required for TokenReview in {AUTH_GROUP}')
        requested = list(spec.get('audiences') or [])
        result: dict[str, Any] = {
            'kind': 'TokenReview',
            'apiVersion': f'{AUTH_GROUP}/v1',
            'metadata': {'creationTimestamp': None},
            'spec': {'token': token, **({'audiences': requested} if requested else {})},
        }
        audiences = requested or self.api_audiences
        try:
            claims = self.issuer.verify(token, now=self.api.clock(), audiences=audiences)
        except InvalidToken as exc:
            result['status'] = {'user': {}, 'error': f'[invalid bearer token, {exc}]'}
            return Outcome(201, result)
        account = self.api.store.get(SERVICE_ACCOUNTS, claims.namespace, claims.name)
        if account is None:
            problem = 'service account token has been invalidated'
        elif account['metadata']['uid'] != claims.uid:
            stored = account['metadata']['uid']
            problem = f'service account UID ({stored}) does not match claim ({claims.uid})'
        else:
            problem = ''
        legacy = self.legacy_tokens.get(token)
        if not problem and legacy is not None:
            table, namespace, secret_name, secret_uid = legacy
            secret = self.api.store.get(table, namespace, secret_name)
            if secret is None or secret['metadata']['uid'] != secret_uid:
                problem = 'service account token has been invalidated'
        if problem:
            result['status'] = {'user': {}, 'error': f'[invalid bearer token, {problem}]'}
            return Outcome(201, result)
        result['status'] = {
            'authenticated': True,
            'user': {
                'username': f'system:serviceaccount:{claims.namespace}:{claims.name}',
                'uid': claims.uid,
                'groups': [
                    'system:serviceaccounts',
                    f'system:serviceaccounts:{claims.namespace}',
                    'system:authenticated',
                ],
            },
            'audiences': [a for a in audiences if a in claims.audiences],
        }
        return Outcome(201, result)

    def openid_configuration(self, base_url: str) -> dict[str, Any]:
        return {
            'issuer': self.issuer.issuer,
            'jwks_uri': f'{base_url}/openid/v1/jwks',
            'response_types_supported': ['id_token'],
            'subject_types_supported': ['public'],
            'id_token_signing_alg_values_supported': ['RS256'],
        }

"""Vault material of an identity: ACL policy, Kubernetes-auth role, generated KV v2 secret, tokens.

The only module of the operator that imports hvac. It takes and returns the operator's values
(`VaultRole`, names, versions, `ProofCheck`) and raises only `TransientError` / `PermanentError`.
Everything was checked against a real OpenBao (2.7, `tests/integration/test_vault_adapter.py`);
OpenBao keeps Vault's HTTP API, so the same calls work on HashiCorp Vault.

How it talks to Vault
---------------------
hvac gives the transport: `hvac.adapters.RawAdapter.from_adapter(client.adapter)` carries the
client's address, token, namespace (`VAULT_NAMESPACE`), TLS settings and session, and is rebuilt
for every request so that a token the caller renews on the client is picked up. The requests
themselves are the documented API paths (https://openbao.org/api-docs/) sent with
`raise_exception=False`, because hvac's typed helpers drop what the operator needs: the status
code of a miss (404 versus a 400 "no such mount"), the `Retry-After` header of a 429, and
control over what an error message may contain (hvac puts the server's whole error text and the
URL into its exceptions). All answers go through `translated()`.

Ending access that was already granted
--------------------------------------
Deleting a role or a policy does not end tokens already issued (hashicorp/vault#1243), so
`revoke_issued_tokens` finds and revokes them, by an accessor scan:
`LIST auth/token/accessors`, `auth/token/lookup-accessor` on each, and
`auth/token/revoke-accessor` on every token whose login path is `auth/<mount>/login` and whose
metadata (written by the kubernetes auth method at login) names the role, the ServiceAccount's
namespace and its name. Revocation takes effect at once: the next request with the token,
`auth/token/lookup-self` included, gets 403 "permission denied", and child tokens go with it.

The alternative, disabling the ServiceAccount's identity entity, also denies every token of the
entity at once, but it refuses new logins of the same ServiceAccount as well (observed: login
answers 403 while the entity is disabled). An owner change must end the former owner's tokens
and keep the workload's next login working, so the scan is the mechanism for both owner change
and revocation. `disable_entity` is added on revocation only, as a second lock that holds even
for a token the scan could not see (issued while the scan ran); it is harmless to later
identities because roles use `alias_name_source=serviceaccount_uid` and a re-created
ServiceAccount has a new uid, hence a new entity. The scan costs one request per token in Vault;
`LIST auth/token/accessors` needs `sudo`, which is why the operator's policy must hold it.

Permissions
-----------
`operator_policy()` renders the exact ACL policy the operator needs for given mounts (tested: a
token holding only that policy runs every method here). Per method:

- `check_ready`: read `auth/token/lookup-self`; read+sudo `sys/auth/<auth mount>` (a
  root-protected path); read `sys/mounts/<kv mount>`. `sys/health` needs no token.
- policies: create/read/update/delete `sys/policies/acl/tenure-*`.
- roles: create/read/update/delete `auth/<auth mount>/role/tenure-*`.
- secrets: create/update `<kv>/data/tenure/*` (never read: Tenure does not read secret values);
  create/read/update/delete `<kv>/metadata/tenure/*`.
- `revoke_issued_tokens`, `verify_gone`: list+sudo `auth/token/accessors`; update
  `auth/token/lookup-accessor` and `auth/token/revoke-accessor`.
- `disable_entity`: read+sudo `sys/auth/<auth mount>` (its accessor); update
  `identity/lookup/entity`; update `identity/entity/id/*` restricted to `disabled=true`, so the
  operator can switch an entity off but cannot grant an entity policies.
- `list_auth_roles`, `list_acl_policies`, `read_role` (for `tenure report` and `tenure plan`, run
  with an auditor's token rather than the operator's): list and read `auth/<auth mount>/role/*`
  and `sys/policies/acl/*`; `tenure plan` also reads `<kv>/metadata/tenure/*`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import logging
import re
import secrets
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

import hvac.adapters
import requests

from tenure.api.v1alpha1 import ProofCheck
from tenure.domain.desired import VaultRole
from tenure.domain.inventory import VaultPolicyRecord, VaultRoleRecord
from tenure.domain.names import DEFAULT_AUTH_MOUNT, DEFAULT_KV_MOUNT
from tenure.errors import PermanentError, TransientError

log = logging.getLogger(__name__)

GONE: Final = 'Gone'
STILL_PRESENT: Final = 'StillPresent'

SECRET_MAX_VERSIONS: Final = 2
"""The current version and the previous one, for a zero-downtime rollover; older ones go."""
ACCESSOR_REREAD: Final = timedelta(minutes=1)
"""How long the auth mount's accessor is used before it is read again."""

# Role fields that the kubernetes auth method keeps from earlier writes when a write leaves them
# out, and that would widen who may log in or how long a token lives if someone set them outside
# Tenure: a namespace selector admits ServiceAccounts of other namespaces, a period makes tokens
# renewable without end. They are pinned to "off" unless `VaultRole.config()` says otherwise.
_ROLE_PINNED: Final[Mapping[str, Any]] = {
    'bound_service_account_namespace_selector': '',
    'token_period': 0,
}

_DETAIL_LIMIT: Final = 200
_MULTIERROR_HEADER: Final = re.compile(r'^\d+ errors? occurred:\s*')


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _generate_value() -> str:
    # 32 random bytes, URL-safe base64 (43 characters): usable as a password or an API key.
    return secrets.token_urlsafe(32)


def operator_policy(
    *, kv_mount: str = DEFAULT_KV_MOUNT, auth_mount: str = DEFAULT_AUTH_MOUNT
) -> str:
    """The Vault ACL policy the operator's own token needs, and nothing more (module docstring)."""
    kv, auth = kv_mount.strip('/'), auth_mount.strip('/')
    return f"""\
# Tenure operator: manages tenure-* policies and roles and the secrets under {kv}/tenure/.
path "auth/token/lookup-self" {{
  capabilities = ["read"]
}}

# The auth mount's type (check_ready) and accessor (disable_entity); sys/auth/<path> needs sudo.
path "sys/auth/{auth}" {{
  capabilities = ["read", "sudo"]
}}

path "sys/mounts/{kv}" {{
  capabilities = ["read"]
}}

path "sys/policies/acl/tenure-*" {{
  capabilities = ["create", "read", "update", "delete"]
}}

path "auth/{auth}/role/tenure-*" {{
  capabilities = ["create", "read", "update", "delete"]
}}

# Write only: Tenure generates secret values and never reads them back.
path "{kv}/data/tenure/*" {{
  capabilities = ["create", "update"]
}}

path "{kv}/metadata/tenure/*" {{
  capabilities = ["create", "read", "update", "delete"]
}}

# The accessor scan that finds and revokes tokens issued to an identity.
path "auth/token/accessors" {{
  capabilities = ["list", "sudo"]
}}

path "auth/token/lookup-accessor" {{
  capabilities = ["update"]
}}

path "auth/token/revoke-accessor" {{
  capabilities = ["update"]
}}

# Switch a revoked ServiceAccount's entity off; nothing else about entities may be changed.
path "identity/lookup/entity" {{
  capabilities = ["update"]
}}

path "identity/entity/id/*" {{
  capabilities = ["update"]
  allowed_parameters = {{
    "disabled" = [true]
  }}
}}
"""


# -- errors ----------------------------------------------------------------------------------


class VaultHttpError(Exception):
    """Vault answered with a status the caller did not expect. Raised inside `translated()`."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f'HTTP {status}')
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


def _summarise(errors: object) -> str:
    """Vault's `errors` list as one short line (hashicorp/go-multierror framing removed)."""
    if not isinstance(errors, list):
        return ''
    parts = []
    for error in errors:
        text = _MULTIERROR_HEADER.sub('', str(error).replace('\t* ', ' ')).strip()
        text = ' '.join(text.split())
        if text:
            parts.append(text)
    summary = '; '.join(parts)
    return summary if len(summary) <= _DETAIL_LIMIT else summary[: _DETAIL_LIMIT - 1] + '…'


def _is_transient(status: int) -> bool:
    # 412: a performance standby has not caught up with the index the request needs yet.
    return status in (412, 429) or status >= 500


@contextlib.contextmanager
def translated(action: str, *, carries_secrets: bool = False) -> Iterator[None]:
    """Re-raise Vault and transport failures as TransientError (retry) or PermanentError (stop).

    `action` names what was attempted and on which object ("write Vault policy 'x'"). Messages
    hold the HTTP status and Vault's own short error text, never a token, a request body or a
    response body; with `carries_secrets` (a request whose body holds secret values) Vault's
    text is left out too. The original exception is never shown in a traceback (`from None`):
    a requests exception holds the request it failed on, headers and body included.
    """
    try:
        yield
    except VaultHttpError as e:
        detail = '' if carries_secrets or not e.detail else f': {e.detail}'
        message = f'could not {action}: Vault answered HTTP {e.status}{detail}'
        if e.status == 403:
            message += (
                " (the operator's Vault token lacks a capability here, or expired; "
                'see tenure.adapters.vault.operator_policy)'
            )
        if _is_transient(e.status):
            raise TransientError(message, retry_after=e.retry_after) from None
        raise PermanentError(message) from None
    except requests.exceptions.SSLError as e:
        # A certificate that does not verify needs a configuration change, not a retry.
        raise PermanentError(
            f'could not {action}: TLS verification of Vault failed ({type(e).__name__})'
        ) from None
    except (requests.ConnectionError, requests.Timeout) as e:
        reason = 'timed out' if isinstance(e, requests.Timeout) else 'connection failed'
        raise TransientError(
            f'could not {action}: Vault is unreachable ({reason}, {type(e).__name__})'
        ) from None
    except requests.RequestException as e:
        # Invalid URL or schema, redirect loops: the address is wrong, retrying will not help.
        raise PermanentError(
            f'could not {action}: bad Vault request ({type(e).__name__})'
        ) from None


# -- answers ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Login:
    """What a token was issued for by a Kubernetes-auth login."""

    role: str
    namespace: str
    service_account: str


@dataclasses.dataclass(frozen=True)
class _Answer:
    status: int
    body: Mapping[str, Any]
    retry_after: float | None = None

    @property
    def data(self) -> Mapping[str, Any]:
        """The `data` object of a Vault answer (sys/ endpoints also repeat it at the top)."""
        data = self.body.get('data')
        return data if isinstance(data, dict) else self.body

    @property
    def detail(self) -> str:
        return _summarise(self.body.get('errors'))

    @property
    def warnings(self) -> list[str]:
        warnings = self.body.get('warnings')
        return [str(w) for w in warnings] if isinstance(warnings, list) else []


def _role_fields(role: VaultRole) -> dict[str, Any]:
    """Every field Tenure writes on a role: its own settings and the pinned ones."""
    return {**_ROLE_PINNED, **role.config()}


def _role_matches(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    return all(
        _normalised(current.get(key)) == _normalised(value) for key, value in desired.items()
    )


def _normalised(value: Any) -> Any:
    # Vault keeps lists in the order written; order has no meaning for these role fields.
    return sorted(value) if isinstance(value, list) else value


_OPERATIONS: Final = {
    'GET': 'read',
    'LIST': 'list',
    'POST': 'write',
    'PUT': 'write',
    'PATCH': 'write',
    'DELETE': 'delete',
}
"""Bounded `op` label values of tenure_vault_requests_total."""


class VaultMaterial:
    """An identity's Vault objects: written, compared, revoked and proven gone, idempotently."""

    def __init__(
        self,
        client: hvac.Client,
        *,
        kv_mount: str = DEFAULT_KV_MOUNT,
        auth_mount: str = DEFAULT_AUTH_MOUNT,
        clock: Callable[[], datetime] = _utc_now,
        limiter: Callable[[], None] | None = None,
        observe: Callable[[str, str], None] | None = None,
        throttled: Callable[[float], None] | None = None,
    ) -> None:
        self._client = client
        self.kv_mount = kv_mount.strip('/')
        self.auth_mount = auth_mount.strip('/')
        self._clock = clock
        self._limiter = limiter
        """Called before every request (a rate limit, see tenure.limits)."""
        self._observe = observe
        """Called after every request with (operation, result), for metrics."""
        self._throttled = throttled
        """Called with Retry-After (seconds) when Vault answers 429: pause every request."""
        self._memo = threading.local()
        """Per thread: the answers to reads inside `memoised_reads` (None outside one)."""
        self._logins: dict[str, _Login | None] = {}
        """What each live token accessor was issued for (None: not a Kubernetes login of ours).
        A token's path and metadata never change, so each is looked up once in its life, not
        once per revocation: the scan then costs one listing, however many tokens Vault holds."""
        self._logins_lock = threading.Lock()
        self._accessor: tuple[str | None, datetime] | None = None
        """The auth mount's accessor and when it was read (see `_mount_accessor`)."""

    def __repr__(self) -> str:
        # Spelled out so that the client (and its token) never reaches a repr.
        return (
            f'VaultMaterial(addr={self._address!r}, kv_mount={self.kv_mount!r}, '
            f'auth_mount={self.auth_mount!r})'
        )

    # -- transport ---------------------------------------------------------------------------

    @property
    def _address(self) -> str:
        return str(self._client.adapter.base_uri)

    @contextlib.contextmanager
    def memoised_reads(self) -> Iterator[None]:
        """Inside this block (one reconcile), a read repeated with no write in between is
        answered from memory: a reconcile looks at the same role, policy and secret metadata
        from several angles, and each look would otherwise be a request. Any write forgets
        everything read, so a read after a write (the proof after a revocation) goes to Vault."""
        self._memo.answers = {}
        try:
            yield
        finally:
            self._memo.answers = None

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        accept: Collection[int] = (),
    ) -> _Answer:
        """Send one request; a status that is neither 2xx nor in `accept` raises VaultHttpError."""
        answers: dict[tuple[str, tuple[tuple[str, str], ...]], _Answer] | None = getattr(
            self._memo, 'answers', None
        )
        if answers is not None:
            if method != 'GET':
                answers.clear()
            else:
                key = (path, tuple(sorted((params or {}).items())))
                if key not in answers:
                    answers[key] = self._send(method, path, json=json, params=params, accept=accept)
                return self._accepted(answers[key], accept)
        return self._accepted(
            self._send(method, path, json=json, params=params, accept=accept), accept
        )

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None,
        params: Mapping[str, str] | None,
        accept: Collection[int],
    ) -> _Answer:
        if self._limiter is not None:
            self._limiter()
        adapter = hvac.adapters.RawAdapter.from_adapter(self._client.adapter)
        listing = method == 'GET' and (params or {}).get('list') == 'true'
        operation = 'list' if listing else _OPERATIONS.get(method, 'other')
        try:
            response: requests.Response = adapter.request(
                method,
                f'/v1/{quote(path)}',
                json=json,
                params=params,
                raise_exception=False,
            )
        except Exception:
            if self._observe is not None:
                self._observe(operation, 'unreachable')
            raise
        if self._observe is not None:
            ok = response.ok or response.status_code in accept
            self._observe(operation, 'ok' if ok else f'{response.status_code // 100}xx')
        body: Any = {}
        if response.content:
            try:
                body = response.json()
            except ValueError:
                body = {}
        answer = _Answer(
            response.status_code,
            body if isinstance(body, dict) else {},
            self._retry_after(response.headers.get('Retry-After')),
        )
        if answer.status == 429 and self._throttled is not None:
            self._throttled(answer.retry_after or 1.0)
        return answer

    @staticmethod
    def _accepted(answer: _Answer, accept: Collection[int]) -> _Answer:
        if 200 <= answer.status < 300 or answer.status in accept:
            return answer
        raise VaultHttpError(answer.status, answer.detail, retry_after=answer.retry_after)

    def _retry_after(self, header: str | None) -> float | None:
        """Retry-After as seconds (RFC 9110: delay-seconds or an HTTP-date)."""
        if not header:
            return None
        try:
            return max(0.0, float(header))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - self._clock()).total_seconds())

    # -- readiness ---------------------------------------------------------------------------

    def check_ready(self) -> None:
        """At start: Vault reachable, initialised and unsealed, token valid, both mounts right.

        TransientError when Vault is unreachable, not initialised or sealed (it may come up);
        PermanentError, saying what to change, for a bad token or a missing or wrong mount.
        """
        with translated(f'check the health of Vault at {self._address}'):
            health = self._request(
                'GET',
                'sys/health',
                params={'standbyok': 'true', 'perfstandbyok': 'true'},
                accept=(501, 503),
            )
        if health.status == 501 or health.body.get('initialized') is False:
            raise TransientError(
                f'Vault at {self._address} is not initialised; initialise it '
                '(`bao operator init`) and unseal it'
            )
        if health.status == 503 or health.body.get('sealed') is True:
            raise TransientError(
                f'Vault at {self._address} is sealed; unseal it (`bao operator unseal`)'
            )

        if not self._client.token:
            raise PermanentError('no Vault token is configured (VAULT_TOKEN or --vault-token-file)')
        with translated("look up the operator's own Vault token"):
            me = self._request('GET', 'auth/token/lookup-self', accept=(403,))
        if me.status == 403:
            raise PermanentError(
                f'Vault at {self._address} refused the operator token (auth/token/lookup-self '
                'answered 403): it is invalid, expired or revoked, or lacks the default policy'
            )

        auth = self._auth_mount_config()
        if auth.get('type') != 'kubernetes':
            raise PermanentError(
                f"auth mount '{self.auth_mount}/' is a {auth.get('type')!r} auth method, not "
                f'kubernetes; pass the path of a kubernetes auth method with --auth-mount'
            )

        with translated(f"read the secrets engine mounted at '{self.kv_mount}/'"):
            mount = self._request('GET', f'sys/mounts/{self.kv_mount}', accept=(400,))
            if mount.status == 400 and 'no secret engine' not in mount.detail.lower():
                raise VaultHttpError(mount.status, mount.detail)
        if mount.status == 400:
            raise PermanentError(
                f"KV mount '{self.kv_mount}/' does not exist; enable it with "
                f'`bao secrets enable -path={self.kv_mount} -version=2 kv`'
            )
        kv_type = mount.data.get('type')
        options = mount.data.get('options') or {}
        if kv_type not in ('kv', 'generic'):
            raise PermanentError(
                f"KV mount '{self.kv_mount}/' is a {kv_type!r} secrets engine, not kv; pass "
                'the path of a KV version 2 mount with --kv-mount'
            )
        if str(options.get('version', '1')) != '2':
            raise PermanentError(
                f"KV mount '{self.kv_mount}/' is KV version 1; Tenure needs version 2 (versions "
                f'and metadata): upgrade it with `bao kv enable-versioning {self.kv_mount}/`'
            )
        log.info(
            'Vault at %s is ready: auth mount %s/, KV v2 mount %s/',
            self._address,
            self.auth_mount,
            self.kv_mount,
        )

    def _auth_mount_config(self) -> Mapping[str, Any]:
        """The auth mount's `sys/auth/<path>` entry (type, accessor); PermanentError if absent."""
        with translated(f"read the auth method mounted at '{self.auth_mount}/'"):
            auth = self._request('GET', f'sys/auth/{self.auth_mount}', accept=(400,))
            if auth.status == 400 and 'no auth engine' not in auth.detail.lower():
                raise VaultHttpError(auth.status, auth.detail)
        if auth.status == 400:
            raise PermanentError(
                f"auth mount '{self.auth_mount}/' does not exist; enable it with "
                f'`bao auth enable -path={self.auth_mount} kubernetes` and configure it '
                f'(auth/{self.auth_mount}/config)'
            )
        return auth.data

    def _mount_accessor(self) -> str | None:
        """The auth mount's accessor (entity aliases name it), re-read at most once a minute:
        it changes only if the auth method is disabled and enabled again, not per revocation."""
        now = self._clock()
        cached = self._accessor
        if cached is None or now - cached[1] >= ACCESSOR_REREAD:
            accessor = self._auth_mount_config().get('accessor')
            cached = (None if accessor is None else str(accessor), now)
            self._accessor = cached
        return cached[0]

    # -- policy ------------------------------------------------------------------------------

    def policy_text(self, name: str) -> str | None:
        """The ACL policy's text, None when there is no such policy."""
        with translated(f'read Vault policy {name!r}'):
            current = self._request('GET', f'sys/policies/acl/{name}', accept=(404,))
        if current.status != 200:
            return None
        return str(current.data.get('policy', ''))

    def role_subject(self, role: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """(bound namespaces, bound ServiceAccount names) of a role, None when there is none."""
        current = self._read_role(role)
        if current is None:
            return None
        return (
            tuple(current.get('bound_service_account_namespaces') or ()),
            tuple(current.get('bound_service_account_names') or ()),
        )

    def ensure_policy(self, name: str, text: str) -> bool:
        """Write the ACL policy unless it already has exactly this text. True when written."""
        with translated(f'read Vault policy {name!r}'):
            current = self._request('GET', f'sys/policies/acl/{name}', accept=(404,))
        if current.status == 200 and current.data.get('policy') == text:
            log.debug('Vault policy %s is up to date', name)
            return False
        with translated(f'write Vault policy {name!r}'):
            self._request('POST', f'sys/policies/acl/{name}', json={'policy': text})
        log.info('%s Vault policy %s', 'updated' if current.status == 200 else 'created', name)
        return True

    def delete_policy(self, name: str) -> None:
        with translated(f'delete Vault policy {name!r}'):
            self._request('DELETE', f'sys/policies/acl/{name}', accept=(404,))
        log.info('deleted Vault policy %s', name)

    # -- role --------------------------------------------------------------------------------

    def _role_path(self, role: str) -> str:
        return f'auth/{self.auth_mount}/role/{role}'

    def _read_role(self, role: str) -> Mapping[str, Any] | None:
        with translated(f'read Vault role {role!r} on auth mount {self.auth_mount}/'):
            answer = self._request('GET', self._role_path(role), accept=(404,))
        return answer.data if answer.status == 200 else None

    def role_token_ttl(self, role: str) -> int | None:
        """The role's current token_max_ttl in seconds, None when there is no such role."""
        current = self._read_role(role)
        if current is None:
            return None
        return int(current.get('token_max_ttl', 0))

    def ensure_role(self, role: VaultRole) -> bool:
        """Write the Kubernetes-auth role unless every field it sets already matches."""
        current = self._read_role(role.name)
        if current is not None and _role_matches(current, _role_fields(role)):
            log.debug('Vault role %s is up to date', role.name)
            return False
        self._write_role(role, 'updated' if current is not None else 'created')
        return True

    def write_role(self, role: VaultRole) -> None:
        """Write the role as given, without reading it first: one request (a TTL refresh)."""
        self._write_role(role, 'wrote')

    def _write_role(self, role: VaultRole, done: str) -> None:
        with translated(f'write Vault role {role.name!r} on auth mount {self.auth_mount}/'):
            self._request('POST', self._role_path(role.name), json=_role_fields(role))
        log.info(
            '%s Vault role %s for ServiceAccount %s/%s (token TTL %ds)',
            done,
            role.name,
            role.namespace,
            role.service_account,
            role.ttl_seconds,
        )

    def role_matches(self, role: VaultRole) -> bool:
        """Whether the role exists with every field Tenure sets as in `role` (one read, no
        write: the periodic drift check)."""
        current = self._read_role(role.name)
        return current is not None and _role_matches(current, _role_fields(role))

    def delete_role(self, role: str) -> None:
        with translated(f'delete Vault role {role!r} on auth mount {self.auth_mount}/'):
            self._request('DELETE', self._role_path(role), accept=(404,))
        log.info('deleted Vault role %s', role)

    # -- secret ------------------------------------------------------------------------------

    def _metadata_path(self, path: str) -> str:
        return f'{self.kv_mount}/metadata/{path}'

    def _read_metadata(self, path: str) -> Mapping[str, Any] | None:
        with translated(f'read the metadata of secret {self._metadata_path(path)!r}'):
            answer = self._request('GET', self._metadata_path(path), accept=(404,))
        return answer.data if answer.status == 200 else None

    def secret_version(self, path: str) -> int | None:
        """The current version, None when there is none or it is deleted or destroyed."""
        metadata = self._read_metadata(path)
        if metadata is None:
            return None
        version = int(metadata.get('current_version') or 0)
        entry = (metadata.get('versions') or {}).get(str(version))
        if version == 0 or not isinstance(entry, dict) or entry.get('destroyed'):
            return None
        deleted_at = entry.get('deletion_time') or ''
        # A deletion time in the future is a scheduled deletion (delete_version_after).
        if deleted_at and _parse_rfc3339(deleted_at) <= self._clock():
            return None
        return version

    def _write_metadata(self, path: str, metadata: Mapping[str, str]) -> None:
        with translated(f'write the metadata of secret {self._metadata_path(path)!r}'):
            self._request(
                'POST',
                self._metadata_path(path),
                json={'max_versions': SECRET_MAX_VERSIONS, 'custom_metadata': dict(metadata)},
            )

    def write_secret(
        self,
        path: str,
        keys: Sequence[str],
        metadata: Mapping[str, str],
        generate: Callable[[], str] = _generate_value,
    ) -> int:
        """Write a new version with a fresh random value for every key; return its number.

        The metadata goes first (custom metadata, max_versions 2), so the write that creates
        version 3 already drops version 1. The values exist only in this call and in the request
        to Vault: they are never logged, returned or put in an error.
        """
        if not keys:
            raise ValueError(f'a generated secret needs at least one key ({path})')
        self._write_metadata(path, metadata)
        data_path = f'{self.kv_mount}/data/{path}'
        with translated(f'write a new version of secret {data_path!r}', carries_secrets=True):
            answer = self._request('POST', data_path, json={'data': {k: generate() for k in keys}})
        version = int(answer.data.get('version') or 0)
        log.info(
            'wrote version %d of secret %s (keys: %s)', version, data_path, ', '.join(sorted(keys))
        )
        return version

    def update_secret_metadata(self, path: str, metadata: Mapping[str, str]) -> bool:
        """Set the custom metadata (and max_versions) of an existing secret. True when written;
        False when it already matches or there is no secret (write_secret creates it)."""
        current = self._read_metadata(path)
        if current is None:
            return False
        same_metadata = (current.get('custom_metadata') or {}) == dict(metadata)
        if same_metadata and current.get('max_versions') == SECRET_MAX_VERSIONS:
            return False
        self._write_metadata(path, metadata)
        log.info('updated the metadata of secret %s', self._metadata_path(path))
        return True

    def delete_secret(self, path: str) -> None:
        """Delete the secret's metadata and with it every version (and their values)."""
        with translated(f'delete secret {self._metadata_path(path)!r} with all its versions'):
            self._request('DELETE', self._metadata_path(path), accept=(404,))
        log.info('deleted secret %s with all its versions', self._metadata_path(path))

    # -- tokens and entities -----------------------------------------------------------------

    def _issued_tokens(self, *, role: str, namespace: str, service_account: str) -> list[str]:
        """Accessors of the live tokens issued by logging in through `role` as that
        ServiceAccount. Returns an empty list when Vault has no tokens at all."""
        with translated('list Vault token accessors'):
            # GET with list=true, as Vault's own Go client sends a LIST: HTTP intermediaries
            # (proxies, load balancers, WAFs) may refuse the LIST method (hvac/hvac#947).
            listing = self._request(
                'GET', 'auth/token/accessors', params={'list': 'true'}, accept=(404,)
            )
        live = [str(accessor) for accessor in listing.data.get('keys') or []]
        with self._logins_lock:
            known = dict(self._logins)
        logins = {accessor: known[accessor] for accessor in live if accessor in known}
        for accessor in live:
            if accessor not in logins:
                with translated('look up a Vault token by accessor'):
                    # 400 "invalid accessor": the token expired or was revoked since the list.
                    token = self._request(
                        'POST',
                        'auth/token/lookup-accessor',
                        json={'accessor': accessor},
                        accept=(400,),
                    )
                if token.status == 200:
                    logins[accessor] = self._login_of(token.data)
        with self._logins_lock:
            # Only the live ones are kept: the memory is bounded by the tokens Vault holds.
            self._logins = logins
        wanted = _Login(role, namespace, service_account)
        return [accessor for accessor, login in logins.items() if login == wanted]

    def _login_of(self, token: Mapping[str, Any]) -> _Login | None:
        if token.get('path') != f'auth/{self.auth_mount}/login':
            return None
        meta = token.get('meta') or {}
        return _Login(
            str(meta.get('role')),
            str(meta.get('service_account_namespace')),
            str(meta.get('service_account_name')),
        )

    def revoke_issued_tokens(self, *, role: str, namespace: str, service_account: str) -> int:
        """Revoke every token issued through `role` to that ServiceAccount (and their children).

        Used on owner change and on revocation; new logins keep working (module docstring).
        Returns how many tokens were revoked by this call.
        """
        accessors = self._issued_tokens(
            role=role, namespace=namespace, service_account=service_account
        )
        revoked = 0
        for accessor in accessors:
            with translated(f'revoke a Vault token issued through role {role!r}'):
                answer = self._request(
                    'POST', 'auth/token/revoke-accessor', json={'accessor': accessor}
                )
            # 200 with the warning "No token found with this accessor": it ended on its own.
            if not any('no token found' in w.lower() for w in answer.warnings):
                revoked += 1
        log.info(
            'revoked %d Vault token(s) issued through role %s to ServiceAccount %s/%s',
            revoked,
            role,
            namespace,
            service_account,
        )
        return revoked

    def disable_entity(self, *, service_account_uid: str) -> bool:
        """Disable the identity entity of that ServiceAccount: its tokens get 403 from then on.

        True when this call disabled it; False when there is no entity (it never logged in) or
        it is already disabled.
        """
        mount_accessor = self._mount_accessor()
        with translated(f'look up the Vault entity of ServiceAccount uid {service_account_uid}'):
            entity = self._request(
                'POST',
                'identity/lookup/entity',
                json={'alias_name': service_account_uid, 'alias_mount_accessor': mount_accessor},
            )
        # 204, no body: no entity has an alias of that name on this mount.
        entity_id = entity.data.get('id') if entity.status == 200 else None
        if not entity_id:
            log.debug('no Vault entity for ServiceAccount uid %s', service_account_uid)
            return False
        if entity.data.get('disabled') is True:
            return False
        with translated(f'disable Vault entity {entity_id}'):
            self._request('POST', f'identity/entity/id/{entity_id}', json={'disabled': True})
        log.info(
            'disabled Vault entity %s of ServiceAccount uid %s', entity_id, service_account_uid
        )
        return True

    # -- proof -------------------------------------------------------------------------------

    def _gone(self, kind: str, path: str, present: Callable[[_Answer], str]) -> ProofCheck:
        with translated(f'check that {kind} {path!r} is gone'):
            answer = self._request('GET', path, accept=(404,))
        result = GONE if answer.status == 404 else f'{STILL_PRESENT}: {present(answer)}'
        return ProofCheck(
            object=f'vault:{path}',
            check=f'GET {path} returned {answer.status}',
            result=result,
            at=self._clock(),
        )

    def verify_gone(
        self,
        *,
        role: str,
        policy: str,
        secret_path: str | None,
        namespace: str,
        service_account: str,
    ) -> list[ProofCheck]:
        """One proof check per Vault object of the identity: 'Gone', or what is still there."""
        checks = [
            self._gone('role', self._role_path(role), lambda _: 'the role still exists'),
            self._gone('policy', f'sys/policies/acl/{policy}', lambda _: 'the policy still exists'),
        ]
        if secret_path is not None:
            checks.append(
                self._gone(
                    'secret',
                    self._metadata_path(secret_path),
                    lambda a: (
                        f'the secret still has {len(a.data.get("versions") or {})} version(s)'
                    ),
                )
            )
        live = self._issued_tokens(role=role, namespace=namespace, service_account=service_account)
        checks.append(
            ProofCheck(
                object=f'vault:tokens/{role}',
                check=(
                    f'accessor scan found {len(live)} unrevoked token(s) issued through '
                    f'auth/{self.auth_mount}/role/{role} to {namespace}/{service_account}'
                ),
                result=GONE if not live else f'{STILL_PRESENT}: {len(live)} token(s) not revoked',
                at=self._clock(),
            )
        )
        return checks

    # -- inventory (read-only, for `tenure report`) -------------------------------------------

    def _list(self, path: str, what: str) -> list[str]:
        """The keys of a LIST; empty when there are none (Vault answers 404 then)."""
        with translated(f'list {what}'):
            answer = self._request('GET', path, params={'list': 'true'}, accept=(404,))
        return [str(key) for key in answer.data.get('keys') or []]

    def list_auth_roles(self) -> list[VaultRoleRecord]:
        """Every role of the Kubernetes auth mount, with who may log in and what they get."""
        records = []
        for name in self._list(f'auth/{self.auth_mount}/role', f'roles of auth/{self.auth_mount}'):
            role = self._read_role(name)
            if role is None:
                continue  # deleted between the list and the read
            records.append(
                VaultRoleRecord(
                    name=name,
                    bound_namespaces=tuple(role.get('bound_service_account_namespaces') or ()),
                    bound_service_accounts=tuple(role.get('bound_service_account_names') or ()),
                    policies=tuple(role.get('token_policies') or role.get('policies') or ()),
                    token_max_ttl=int(role.get('token_max_ttl') or 0),
                )
            )
        return records

    def read_role(self, role: str) -> Mapping[str, Any] | None:
        """A Kubernetes-auth role's fields as Vault returns them, None when there is none."""
        return self._read_role(role)

    def list_acl_policies(self) -> list[VaultPolicyRecord]:
        """Every ACL policy with its text."""
        records = []
        for name in self._list('sys/policies/acl', 'Vault ACL policies'):
            text = self.policy_text(name)
            if text is not None:
                records.append(VaultPolicyRecord(name=name, text=text))
        return records


def _parse_rfc3339(value: str) -> datetime:
    """Vault's timestamps carry nanoseconds; Python 3.11 parses at most microseconds."""
    trimmed = re.sub(r'(\.\d{6})\d+', r'\1', value)
    parsed = datetime.fromisoformat(trimmed.replace('Z', '+00:00'))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

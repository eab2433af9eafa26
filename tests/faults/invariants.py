"""What must hold after any fault, crash or storm of changes (issue #5, "Faults"):

1. No access exists for an identity that is not Active: a Pending, Denied, Revoked or deleted
   identity has no ServiceAccount, Role, RoleBinding (by label or by name) or token Secret of
   its ServiceAccount, no Vault role, policy or secret, no live Vault token issued through its
   role, and every token the test got while it was Active is refused.
2. Every identity that should be Active converges within a bound: phase Active, Ready=True, the
   generation observed, its Kubernetes objects and its Vault material present.
3. No object is created twice: the uids of managed objects are those seen earlier when nothing
   should have re-created them, there are no extra bindings, and the Vault secret's version moves
   only for a cause (creation, rotation), matching `status.vault.secretVersion`.
4. `status.revocation.verified` is never true while anything still exists: checked at the end for
   every identity, and (with `VerifiedWatch`) at the moment the operator first says so.

The test's view is the emulator through the exempt client and OpenBao through a root client that
does not go through the fault proxy, so what it sees is the truth, not what the operator sees.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import hvac.exceptions
import kubernetes
from kubernetes.client.exceptions import ApiException

from tenure.api.v1alpha1 import GROUP, PLURAL, VERSION
from tests.integration.stack import Obj, Stack

Key = tuple[str, str]
"""(namespace, name) of a ServiceIdentity."""

MANAGED = 'app.kubernetes.io/managed-by=tenure'
CONVERGE_TIMEOUT = 45.0
"""The bound within which every identity must reach its expected state once faults are healed."""


class Expect(enum.StrEnum):
    """What an identity should end as."""

    ACTIVE = 'Active'
    PENDING = 'Pending'
    DENIED = 'Denied'
    REVOKED = 'Revoked'
    GONE = 'Gone'
    """Deleted: the object is gone once revocation was verified."""


@dataclasses.dataclass(frozen=True)
class Access:
    """What exists for one identity, as the API server and Vault (root) say."""

    kubernetes: Mapping[str, str]
    """'Kind/name' -> uid of its ServiceAccount, Roles and RoleBindings (by label or by name)."""
    vault_role: bool
    vault_policy: bool
    secret_version: int | None
    """The KV v2 secret's current version, None when the secret does not exist."""
    token_secrets: tuple[str, ...]
    """Legacy token Secrets of its ServiceAccount (type kubernetes.io/service-account-token)."""
    tokens: int
    """Live Vault tokens issued through its role to its ServiceAccount (root accessor scan)."""

    @property
    def anything(self) -> bool:
        return bool(
            self.kubernetes
            or self.vault_role
            or self.vault_policy
            or self.secret_version is not None
            or self.token_secrets
            or self.tokens
        )

    def describe(self) -> str:
        parts = sorted(self.kubernetes)
        if self.vault_role:
            parts.append('Vault role')
        if self.vault_policy:
            parts.append('Vault policy')
        if self.secret_version is not None:
            parts.append(f'Vault secret v{self.secret_version}')
        parts += [f'token Secret/{name}' for name in self.token_secrets]
        if self.tokens:
            parts.append(f'{self.tokens} live Vault token(s)')
        return ', '.join(parts) or 'nothing'


def _phase(obj: Obj | None) -> str | None:
    return None if obj is None else (obj.get('status') or {}).get('phase')


def _verified(obj: Obj | None) -> bool:
    return bool(obj and ((obj.get('status') or {}).get('revocation') or {}).get('verified'))


def condition(obj: Obj, type_: str) -> dict[str, Any]:
    """The condition of `type_` in the object's status ({} when there is none)."""
    conditions = (obj.get('status') or {}).get('conditions') or []
    return next((c for c in conditions if c['type'] == type_), {})


def reached(obj: Obj | None, expect: Expect) -> bool:
    """Whether the identity is where `expect` says it should end."""
    if expect is Expect.GONE:
        return obj is None
    if obj is None:
        return False
    if expect is Expect.REVOKED:
        return _phase(obj) == 'Revoked' and _verified(obj)
    status = obj.get('status') or {}
    caught_up = status.get('observedGeneration') == obj['metadata'].get('generation')
    if expect is Expect.ACTIVE:
        return (
            _phase(obj) == 'Active'
            and caught_up
            and condition(obj, 'Ready').get('status') == 'True'
            and not status.get('revocation')
        )
    return _phase(obj) == expect.value and caught_up


@dataclasses.dataclass
class World(Stack):
    """The emulator and OpenBao as they really are, and the invariants over them."""

    issued: dict[Key, list[tuple[str, str]]] = dataclasses.field(default_factory=dict)
    """(ServiceAccount token, Vault token) pairs the test obtained as each identity."""

    # -- reading the truth -------------------------------------------------------------------

    def identities(self, namespace: str) -> dict[Key, Obj]:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        return {(namespace, o['metadata']['name']): o for o in listed['items']}

    def kubernetes_objects(self, namespace: str, name: str) -> dict[str, str]:
        """'Kind/name' -> uid of what exists for the identity: labelled, or at its names."""
        selector = f'{MANAGED},tenure.dev/identity={name}'
        found: dict[str, str] = {}
        listed = {
            'ServiceAccount': self.core.list_namespaced_service_account,
            'Role': self.rbac.list_namespaced_role,
            'RoleBinding': self.rbac.list_namespaced_role_binding,
        }
        for kind, list_objects in listed.items():
            for item in list_objects(namespace, label_selector=selector).items:
                found[f'{kind}/{item.metadata.name}'] = item.metadata.uid
        for kind, read, object_name in (
            ('ServiceAccount', self.core.read_namespaced_service_account, name),
            ('Role', self.rbac.read_namespaced_role, f'tenure-{name}'),
            ('RoleBinding', self.rbac.read_namespaced_role_binding, f'tenure-{name}'),
        ):
            try:
                found[f'{kind}/{object_name}'] = read(object_name, namespace).metadata.uid
            except ApiException as e:
                if e.status != 404:
                    raise
        return found

    def token_secrets(self, namespace: str, name: str) -> tuple[str, ...]:
        """Names of the legacy token Secrets of the ServiceAccount `name`."""
        listed = self.core.list_namespaced_secret(
            namespace, field_selector='type=kubernetes.io/service-account-token'
        )
        return tuple(
            sorted(
                item.metadata.name
                for item in listed.items
                if (item.metadata.annotations or {}).get('kubernetes.io/service-account.name')
                == name
            )
        )

    def live_tokens(self) -> collections.Counter[Key]:
        """Live tokens issued by a Kubernetes-auth login, per (namespace, ServiceAccount)."""
        root = self.bao.client()
        listed = root.list('auth/token/accessors')
        counts: collections.Counter[Key] = collections.Counter()
        for accessor in (listed or {}).get('data', {}).get('keys', []):
            try:
                token = root.auth.token.lookup_accessor(accessor)['data']
            except hvac.exceptions.InvalidRequest:
                continue  # expired or revoked since the list
            meta = token.get('meta') or {}
            if token.get('path') == 'auth/kubernetes/login':
                owner = (meta.get('service_account_namespace'), meta.get('service_account_name'))
                counts[owner] += 1
        return counts

    def access(
        self, namespace: str, name: str, tokens: collections.Counter[Key] | None = None
    ) -> Access:
        root = self.bao.client()
        vault_name = f'tenure-{namespace}-{name}'
        secret = root.read(f'secret/metadata/tenure/{namespace}/{name}')
        tokens = self.live_tokens() if tokens is None else tokens
        return Access(
            kubernetes=self.kubernetes_objects(namespace, name),
            vault_role=root.read(f'auth/kubernetes/role/{vault_name}') is not None,
            vault_policy=root.read(f'sys/policies/acl/{vault_name}') is not None,
            secret_version=None if secret is None else int(secret['data']['current_version']),
            token_secrets=self.token_secrets(namespace, name),
            tokens=tokens[(namespace, name)],
        )

    def wait_condition(
        self, namespace: str, name: str, type_: str, reason: str, timeout: float = 30
    ) -> Obj:
        """Watch until the identity's condition `type_` has `reason` (Ready, ProvisioningFailed)."""
        return self.wait(
            namespace, name, lambda o: condition(o, type_).get('reason') == reason, timeout
        )

    def managed(self, namespace: str) -> dict[Key, dict[str, str]]:
        """Every Tenure-labelled object of the namespace, by identity: 'Kind/name' -> uid."""
        found: dict[Key, dict[str, str]] = {}
        listed = {
            'ServiceAccount': self.core.list_namespaced_service_account,
            'Role': self.rbac.list_namespaced_role,
            'RoleBinding': self.rbac.list_namespaced_role_binding,
        }
        for kind, list_objects in listed.items():
            for item in list_objects(namespace, label_selector=MANAGED).items:
                owner = (namespace, (item.metadata.labels or {}).get('tenure.dev/identity', ''))
                found.setdefault(owner, {})[f'{kind}/{item.metadata.name}'] = item.metadata.uid
        return found

    def uids(self, keys: Iterable[Key]) -> dict[Key, dict[str, str]]:
        """The Kubernetes objects of each identity now, to compare with later (invariant 3)."""
        return {key: self.kubernetes_objects(*key) for key in keys}

    # -- acting as the identity (to prove later that it no longer works) ------------------

    def login(self, namespace: str, name: str) -> None:
        """Get a ServiceAccount token and a Vault token as the identity, and remember them."""
        sa_token = self.service_account_token(namespace, name)
        vault_token = self.vault_login(namespace, name, sa_token)
        self.issued.setdefault((namespace, name), []).append((sa_token, vault_token))

    # -- the invariants ----------------------------------------------------------------------

    def converge(
        self, expected: Mapping[Key, Expect], timeout: float = CONVERGE_TIMEOUT
    ) -> dict[Key, Obj | None]:
        """Poll until every identity is where it should end (invariant 2's bound)."""
        namespaces = sorted({ns for ns, _ in expected})
        deadline = time.monotonic() + timeout
        while True:
            found: dict[Key, Obj] = {}
            for namespace in namespaces:
                found.update(self.identities(namespace))
            objs = {key: found.get(key) for key in expected}
            late = {key: e for key, e in expected.items() if not reached(objs[key], e)}
            if not late:
                return objs
            if time.monotonic() >= deadline:
                lines = [
                    f'  {ns}/{name}: expected {e.value}, is {_phase(objs[(ns, name)]) or "absent"}'
                    f' {_brief(objs[(ns, name)])}'
                    for (ns, name), e in sorted(late.items())
                ]
                raise AssertionError(
                    f'{len(late)} of {len(expected)} identities did not converge within '
                    f'{timeout}s:\n' + '\n'.join(lines)
                )
            time.sleep(0.1)

    def check(
        self,
        expected: Mapping[Key, Expect],
        *,
        uids: Mapping[Key, Mapping[str, str]] | None = None,
        secret_versions: Mapping[Key, Iterable[int]] | None = None,
        timeout: float = CONVERGE_TIMEOUT,
    ) -> dict[Key, Obj | None]:
        """Wait for convergence, then assert every invariant; all violations in one message.

        `uids`: objects seen earlier that nothing should have re-created since (invariant 3).
        `secret_versions`: the Vault secret versions each identity may have now (invariant 3).
        """
        objs = self.converge(expected, timeout)
        tokens = self.live_tokens()
        problems: list[str] = []
        for key, expect in sorted(expected.items()):
            problems += self._violations(key, expect, objs[key], tokens, uids, secret_versions)
        for namespace in sorted({ns for ns, _ in expected}):
            for key, obj in self.identities(namespace).items():
                if key not in expected and _verified(obj):
                    problems += self._violations(key, Expect.REVOKED, obj, tokens, None, None)
        assert not problems, 'invariants violated:\n' + '\n'.join(problems)
        return objs

    def _violations(
        self,
        key: Key,
        expect: Expect,
        obj: Obj | None,
        tokens: collections.Counter[Key],
        uids: Mapping[Key, Mapping[str, str]] | None,
        secret_versions: Mapping[Key, Iterable[int]] | None,
    ) -> list[str]:
        ns, name = key
        where = f'{ns}/{name} ({expect.value})'
        access = self.access(ns, name, tokens)
        problems = []
        if expect is not Expect.ACTIVE:
            if access.anything:
                problems.append(f'{where}: access exists while not Active: {access.describe()}')
            problems += self._issued_refused(key, where)
            return problems
        assert obj is not None
        status = obj['status']
        wanted = {f'ServiceAccount/{name}', f'Role/tenure-{name}', f'RoleBinding/tenure-{name}'}
        wanted |= {
            f'RoleBinding/tenure-{name}-{role}'
            for role in obj['spec'].get('kubernetes', {}).get('clusterRoles', [])
        }
        if set(access.kubernetes) != wanted:
            have = sorted(access.kubernetes)
            problems.append(f'{where}: Kubernetes objects {have}, expected {sorted(wanted)}')
        if not (access.vault_role and access.vault_policy):
            problems.append(f'{where}: Vault material missing: has {access.describe()}')
        has_secret = bool(obj['spec'].get('vault', {}).get('secret', {}).get('keys'))
        recorded = (status.get('vault') or {}).get('secretVersion')
        if has_secret and (access.secret_version is None or access.secret_version != recorded):
            problems.append(
                f'{where}: Vault secret at version {access.secret_version}, '
                f'status.vault.secretVersion says {recorded}'
            )
        if secret_versions is not None and key in secret_versions:
            allowed = sorted(secret_versions[key])
            if access.secret_version not in allowed:
                problems.append(
                    f'{where}: Vault secret at version {access.secret_version}, expected one of '
                    f'{allowed} (a write without a cause)'
                )
        if uids is not None and key in uids:
            for object_key, uid in sorted(uids[key].items()):
                now = access.kubernetes.get(object_key)
                if now is not None and now != uid:
                    problems.append(f'{where}: {object_key} was re-created (uid {uid} -> {now})')
        return problems

    def _issued_refused(self, key: Key, where: str) -> list[str]:
        problems = []
        for sa_token, vault_token in self.issued.get(key, []):
            if self.token_review(sa_token):
                problems.append(f'{where}: a ServiceAccount token issued earlier still passes')
            if not self.vault_denied(vault_token):
                problems.append(f'{where}: a Vault token issued earlier still works')
        return problems


@contextlib.contextmanager
def scenario(description: str) -> Iterator[None]:
    """Prefix any assertion failure with the scenario (a seed, a kill point) to replay it."""
    try:
        yield
    except AssertionError as e:
        raise AssertionError(f'[{description}] {e}') from e


def _brief(obj: Obj | None) -> str:
    if obj is None:
        return ''
    status = obj.get('status') or {}
    ready = condition(obj, 'Ready')
    revocation = status.get('revocation') or {}
    return (
        f'(Ready={ready.get("status")} {ready.get("reason")}: {ready.get("message", "")[:160]}; '
        f'revocation={revocation.get("reason")} verified={revocation.get("verified")}; '
        f'generation {obj["metadata"].get("generation")} observed '
        f'{status.get("observedGeneration")})'
    )


class VerifiedWatch:
    """Invariant 4 at the moment it matters: watches ServiceIdentities and, the first time one
    says `verified: true` (or goes away after a deletion), checks that nothing of it exists.

        with VerifiedWatch(world, {ns}) as watch:
            ...  # revoke things, break things
        watch.assert_clean()
    """

    def __init__(self, world: World, namespaces: Iterable[str]) -> None:
        self.world = world
        self.namespaces = set(namespaces)
        self.checked: set[Key] = set()
        self.violations: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='verified-watch', daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> VerifiedWatch:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def assert_clean(self) -> None:
        assert self._error is None, f'the watch failed: {self._error!r}'
        assert not self.violations, 'verified while access still existed:\n' + '\n'.join(
            self.violations
        )

    def _inspect(self, key: Key, why: str) -> None:
        if key in self.checked:
            return
        self.checked.add(key)
        access = self.world.access(*key)
        if access.anything:
            self.violations.append(f'{key[0]}/{key[1]} {why}, but {access.describe()} exists')

    def _events(self) -> Iterator[tuple[str, Obj]]:
        custom = self.world.custom
        listed = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        for obj in listed['items']:
            yield 'ADDED', obj
        version = listed['metadata']['resourceVersion']
        self._started.set()
        while not self._stop.is_set():
            watch = kubernetes.watch.Watch()
            for event in watch.stream(
                custom.list_cluster_custom_object,
                GROUP,
                VERSION,
                PLURAL,
                resource_version=version,
                timeout_seconds=1,
            ):
                obj = event['object']
                version = obj['metadata']['resourceVersion']
                yield event['type'], obj

    def _run(self) -> None:
        deleting: set[Key] = set()
        try:
            for kind, obj in self._events():
                meta = obj['metadata']
                key = (meta['namespace'], meta['name'])
                if key[0] not in self.namespaces:
                    continue
                if kind == 'DELETED':
                    if key in deleting:
                        self._inspect(key, 'was released after its revocation')
                    continue
                if meta.get('deletionTimestamp'):
                    deleting.add(key)
                if _verified(obj):
                    self._inspect(key, 'says revocation.verified')
        except BaseException as e:  # reported by assert_clean, in the test's thread
            self._error = e
            self._started.set()

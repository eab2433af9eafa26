"""In-memory stand-ins for the Kubernetes and Vault ports, recording every call in order."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tenure.api.v1alpha1 import ProofCheck
from tenure.domain.desired import Manifest, VaultRole
from tenure.domain.names import IdentityNames
from tenure.errors import NameConflict, TransientError

AT = datetime(2026, 12, 1, tzinfo=UTC)


class Calls(list[str]):
    """The shared call log of both fakes."""


class FakeKube:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.objects: dict[tuple[str, str], Manifest] = {}
        self.foreign: set[tuple[str, str]] = set()
        self.status_patches: list[dict[str, Any]] = []
        self.events: list[tuple[bool, str, str]] = []
        self.uids = itertools.count(1)
        self.namespaces: dict[str, dict[str, str]] = {}

    def apply(
        self,
        names: IdentityNames,
        desired: Sequence[Manifest],
        *,
        changes: dict[str, str] | None = None,
    ) -> list[str]:
        for obj in desired:
            key = (obj['kind'], obj['metadata']['name'])
            if key in self.foreign:
                raise NameConflict(*key, 'it has no tenure.dev/identity label')
        changed = []
        wanted = {(o['kind'], o['metadata']['name']) for o in desired}
        for key in [k for k in self.objects if k not in wanted and k[0] != 'ServiceAccount']:
            del self.objects[key]
            changed.append('/'.join(key))
        for obj in desired:
            key = (obj['kind'], obj['metadata']['name'])
            stored = dict(obj, uid=self.objects.get(key, {}).get('uid') or f'uid-{next(self.uids)}')
            if self.objects.get(key) != stored:
                if changes is not None:
                    changes['/'.join(key)] = (
                        'missing; created' if key not in self.objects else 'changed'
                    )
                self.objects[key] = stored
                changed.append('/'.join(key))
        if changed:
            self.calls.append(f'kube.apply {",".join(changed)}')
        return changed

    def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        return self.namespaces.get(namespace, {})

    def service_account_uid(self, names: IdentityNames) -> str | None:
        sa = self.objects.get(('ServiceAccount', names.name))
        return None if sa is None else str(sa['uid'])

    def delete_access(self, names: IdentityNames) -> None:
        self.calls.append('kube.delete_access')
        for key in [k for k in self.objects if k[0] != 'ServiceAccount']:
            del self.objects[key]

    def delete_service_account(self, names: IdentityNames) -> None:
        self.calls.append('kube.delete_service_account')
        self.objects.clear()

    def verify_gone(self, names: IdentityNames) -> list[ProofCheck]:
        result = 'Gone' if not self.objects else f'StillPresent: {sorted(self.objects)}'
        return [
            ProofCheck(
                object=f'k8s:{names.namespace}/{names.name}', check='GET', result=result, at=AT
            )
        ]

    def patch_status(self, names: IdentityNames, status: Mapping[str, Any]) -> None:
        self.status_patches.append(dict(status))

    def post_event(
        self, names: IdentityNames, uid: str, *, warning: bool, reason: str, message: str
    ) -> None:
        self.events.append((warning, reason, message))


class FakeVault:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.policies: dict[str, str] = {}
        self.roles: dict[str, VaultRole] = {}
        self.secrets: dict[str, int] = {}
        self.secret_metadata: dict[str, dict[str, str]] = {}
        self.tokens = 0
        self.down = False

    def _io(self, call: str) -> None:
        if self.down:
            raise TransientError(f'could not {call}: Vault is sealed')

    def memoised_reads(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def policy_text(self, name: str) -> str | None:
        self._io('read policy')
        return self.policies.get(name)

    def role_subject(self, role: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        self._io('read role')
        found = self.roles.get(role)
        return None if found is None else ((found.namespace,), (found.service_account,))

    def ensure_policy(self, name: str, text: str) -> bool:
        self._io('write policy')
        if self.policies.get(name) == text:
            return False
        self.policies[name] = text
        self.calls.append(f'vault.policy {name}')
        return True

    def role_token_ttl(self, role: str) -> int | None:
        self._io('read role')
        found = self.roles.get(role)
        return None if found is None else found.ttl_seconds

    def ensure_role(self, role: VaultRole) -> bool:
        self._io('write role')
        if self.roles.get(role.name) == role:
            return False
        self.write_role(role)
        return True

    def write_role(self, role: VaultRole) -> None:
        self._io('write role')
        self.roles[role.name] = role
        self.calls.append(f'vault.role {role.name} ttl={role.ttl_seconds}')

    def secret_version(self, path: str) -> int | None:
        self._io('read secret')
        return self.secrets.get(path)

    def write_secret(
        self,
        path: str,
        keys: Sequence[str],
        metadata: Mapping[str, str],
        generate: Callable[[], str] = lambda: 'x',
    ) -> int:
        self._io('write secret')
        self.secrets[path] = self.secrets.get(path, 0) + 1
        self.secret_metadata[path] = dict(metadata)
        self.calls.append(f'vault.secret {path} v{self.secrets[path]}')
        return self.secrets[path]

    def update_secret_metadata(self, path: str, metadata: Mapping[str, str]) -> bool:
        self._io('write metadata')
        if self.secret_metadata.get(path) == dict(metadata):
            return False
        self.secret_metadata[path] = dict(metadata)
        self.calls.append(f'vault.metadata {path}')
        return True

    def revoke_issued_tokens(self, *, role: str, namespace: str, service_account: str) -> int:
        self._io('revoke tokens')
        self.calls.append('vault.revoke_tokens')
        count, self.tokens = self.tokens, 0
        return count

    def disable_entity(self, *, service_account_uid: str) -> bool:
        self._io('disable entity')
        self.calls.append(f'vault.disable_entity {service_account_uid}')
        return True

    def delete_role(self, role: str) -> None:
        self._io('delete role')
        self.roles.pop(role, None)
        self.calls.append('vault.delete_role')

    def delete_policy(self, name: str) -> None:
        self._io('delete policy')
        self.policies.pop(name, None)
        self.calls.append('vault.delete_policy')

    def delete_secret(self, path: str) -> None:
        self._io('delete secret')
        self.secrets.pop(path, None)
        self.calls.append('vault.delete_secret')

    def verify_gone(
        self,
        *,
        role: str,
        policy: str,
        secret_path: str | None,
        namespace: str,
        service_account: str,
    ) -> list[ProofCheck]:
        self._io('verify')
        # Named as the real adapter names them (the reconcile matches on these names).
        objects = {
            f'vault:auth/kubernetes/role/{role}': role in self.roles,
            f'vault:sys/policies/acl/{policy}': policy in self.policies,
            f'vault:secret/metadata/{secret_path}': bool(
                secret_path and secret_path in self.secrets
            ),
        }
        return [
            ProofCheck(
                object=name, check='GET', result='StillPresent' if present else 'Gone', at=AT
            )
            for name, present in objects.items()
        ]

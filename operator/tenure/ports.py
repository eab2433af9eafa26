"""What the reconcile needs from the outside world. The adapters implement these; tests fake them.

Each method is idempotent: the reconcile may run again at any point after a crash or a retry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from tenure.api.v1alpha1 import ProofCheck
from tenure.domain.desired import Manifest, VaultRole
from tenure.domain.drift import BindingRef
from tenure.domain.names import IdentityNames


class KubernetesPort(Protocol):
    def apply(
        self,
        names: IdentityNames,
        desired: Sequence[Manifest],
        *,
        changes: dict[str, str] | None = None,
    ) -> list[str]:
        """Create or update `desired`; delete this identity's managed Roles and RoleBindings that
        are not in it. Return 'Kind/name' of what changed (and, into `changes`, what differed in
        each, e.g. 'labels, annotations'). Raise NameConflict for an object of that name not
        managed by this identity (it is never adopted or overwritten)."""

    def delete_binding(self, binding: BindingRef) -> None:
        """Delete a RoleBinding or ClusterRoleBinding outside Tenure (exactly that uid)."""

    def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        """The namespace's labels, None when it does not exist."""

    def service_account_uid(self, names: IdentityNames) -> str | None:
        """The uid of the identity's ServiceAccount, None when there is none."""

    def delete_access(self, names: IdentityNames) -> None:
        """Delete the identity's RoleBindings, Role and its ServiceAccount's token Secrets."""

    def delete_service_account(self, names: IdentityNames) -> None:
        """Delete the identity's ServiceAccount (after `delete_access`: its uid tells its token
        Secrets apart from a same-named stranger's, and names its Vault entity)."""

    def verify_gone(self, names: IdentityNames) -> list[ProofCheck]:
        """One proof check per kind of object: gone, or what is still there."""

    def patch_status(self, names: IdentityNames, status: Mapping[str, Any]) -> None:
        """Merge-patch the ServiceIdentity's status subresource."""

    def post_event(
        self, names: IdentityNames, uid: str, *, warning: bool, reason: str, message: str
    ) -> None:
        """Record an Event about the ServiceIdentity."""


class VaultPort(Protocol):
    def memoised_reads(self) -> AbstractContextManager[None]:
        """Within the block (one reconcile), a repeated read with no write in between may be
        answered without asking Vault again."""

    def policy_text(self, name: str) -> str | None: ...

    def role_subject(self, role: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None: ...

    def ensure_policy(self, name: str, text: str) -> bool: ...

    def role_token_ttl(self, role: str) -> int | None: ...

    def ensure_role(self, role: VaultRole) -> bool: ...

    def write_role(self, role: VaultRole) -> None:
        """Write the role without reading it first (a TTL refresh knows it differs)."""

    def secret_version(self, path: str) -> int | None: ...

    def write_secret(
        self,
        path: str,
        keys: Sequence[str],
        metadata: Mapping[str, str],
        generate: Callable[[], str] = ...,
    ) -> int: ...

    def update_secret_metadata(self, path: str, metadata: Mapping[str, str]) -> bool: ...

    def revoke_issued_tokens(self, *, role: str, namespace: str, service_account: str) -> int: ...

    def disable_entity(self, *, service_account_uid: str) -> bool: ...

    def delete_role(self, role: str) -> None: ...

    def delete_policy(self, name: str) -> None: ...

    def delete_secret(self, path: str) -> None: ...

    def verify_gone(
        self,
        *,
        role: str,
        policy: str,
        secret_path: str | None,
        namespace: str,
        service_account: str,
    ) -> list[ProofCheck]: ...

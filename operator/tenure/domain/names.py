"""Names, labels and annotations of everything Tenure manages (the public contract, BRIEF.md)."""

from __future__ import annotations

import dataclasses
from typing import Final

MANAGED_BY_LABEL: Final = 'app.kubernetes.io/managed-by'
MANAGED_BY: Final = 'tenure'
IDENTITY_LABEL: Final = 'tenure.dev/identity'

TICKET_ANNOTATION: Final = 'tenure.dev/ticket'
OWNER_TEAM_ANNOTATION: Final = 'tenure.dev/owner-team'
OWNER_CONTACT_ANNOTATION: Final = 'tenure.dev/owner-contact'
EXPIRES_ANNOTATION: Final = 'tenure.dev/expires-at'

REVOKE_ANNOTATION: Final = 'tenure.dev/revoke'
"""Set on a ServiceIdentity (any non-empty value: the reason) to revoke it at once."""

ROTATE_ANNOTATION: Final = 'tenure.dev/rotate'
"""Set to a new value (any) to rotate the generated secret once, on demand."""

FINALIZER: Final = 'tenure.dev/revocation'
"""Holds a deleted ServiceIdentity until its revocation is verified."""

DEFAULT_KV_MOUNT: Final = 'secret'
DEFAULT_AUTH_MOUNT: Final = 'kubernetes'


@dataclasses.dataclass(frozen=True)
class IdentityNames:
    """Where an identity's objects live, derived from its namespace and name only."""

    namespace: str
    name: str
    kv_mount: str = DEFAULT_KV_MOUNT
    auth_mount: str = DEFAULT_AUTH_MOUNT

    @property
    def service_account(self) -> str:
        return self.name

    @property
    def role(self) -> str:
        """The Role, and the RoleBinding that binds it."""
        return f'tenure-{self.name}'

    @property
    def role_binding(self) -> str:
        return f'tenure-{self.name}'

    def cluster_role_binding(self, cluster_role: str) -> str:
        """The RoleBinding (in the identity's namespace) that grants one ClusterRole."""
        return f'tenure-{self.name}-{cluster_role}'

    @property
    def vault_policy(self) -> str:
        return f'tenure-{self.namespace}-{self.name}'

    @property
    def vault_role(self) -> str:
        return f'tenure-{self.namespace}-{self.name}'

    @property
    def secret_path(self) -> str:
        """The generated secret's path inside the KV v2 mount."""
        return f'tenure/{self.namespace}/{self.name}'

    @property
    def secret_data_path(self) -> str:
        """The ACL path that reads the generated secret."""
        return f'{self.kv_mount}/data/{self.secret_path}'

    @property
    def selector(self) -> str:
        """A label selector for every Kubernetes object managed for this identity."""
        return f'{MANAGED_BY_LABEL}={MANAGED_BY},{IDENTITY_LABEL}={self.name}'

    def labels(self) -> dict[str, str]:
        return {MANAGED_BY_LABEL: MANAGED_BY, IDENTITY_LABEL: self.name}

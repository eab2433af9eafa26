"""Every reason Tenure reports, in one place: condition reasons and event reasons share them."""

from __future__ import annotations

from enum import StrEnum


class ConditionType(StrEnum):
    READY = 'Ready'
    """The identity is usable (Active and converged), or not and why."""
    VALID = 'Valid'
    """The spec is acceptable as it stands (schema, approval, scope changes)."""
    PROVISIONED = 'Provisioned'
    """The Kubernetes and Vault objects exist as desired."""
    EXPIRING_SOON = 'ExpiringSoon'
    """The expiry is within the warning lead (default 7 days)."""
    UNEXPECTED_BINDINGS = 'UnexpectedBindings'
    """True while bindings Tenure did not make grant the ServiceAccount other roles (issue #6)."""


class Reason(StrEnum):
    # Valid
    SPEC_VALID = 'SpecValid'
    INVALID_SPEC = 'InvalidSpec'
    NAME_CONFLICT = 'NameConflict'
    NOT_APPROVED = 'NotApproved'
    SCOPE_CHANGE_NOT_APPROVED = 'ScopeChangeNotApproved'
    EXTENSION_NOT_APPROVED = 'ExtensionNotApproved'
    REVOKED_IS_TERMINAL = 'RevokedIsTerminal'
    # Provisioned / Ready
    PROVISIONED = 'Provisioned'
    PROVISIONING_FAILED = 'ProvisioningFailed'
    AWAITING_APPROVAL = 'AwaitingApproval'
    ACTIVE = 'Active'
    DENIED = 'Denied'
    REVOKING = 'Revoking'
    REVOCATION_FAILED = 'RevocationFailed'
    REVOKED = 'Revoked'
    EXPIRING_SOON = 'ExpiringSoon'
    EXPIRES_LATER = 'ExpiresLater'
    # Ticket sources (issue #7): Ready=Unknown while the ITSM cannot say; Denied when it refutes
    TICKET_NOT_OBSERVED = 'TicketNotObserved'
    TICKET_SOURCE_UNAVAILABLE = 'TicketSourceUnavailable'
    APPROVAL_NOT_VERIFIED = 'ApprovalNotVerified'
    # Events only
    OWNER_CHANGED = 'OwnerChanged'
    SECRET_ROTATED = 'SecretRotated'
    DRIFT_REPAIRED = 'DriftRepaired'
    """A managed object changed outside Tenure was put back (issue #6)."""
    UNEXPECTED_BINDING = 'UnexpectedBinding'
    NO_UNEXPECTED_BINDINGS = 'NoUnexpectedBindings'
    """A binding outside Tenure grants a managed ServiceAccount (issue #6)."""

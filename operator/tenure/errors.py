"""The operator's own error vocabulary. Adapters translate client errors into these.

- `TransientError`: worth retrying (network, 5xx, 429, Vault sealed or down, conflicts).
- `PermanentError`: retrying will not help until something changes (403, 422, a name conflict).

Messages name the action and the object, never a secret value or a token.
"""

from __future__ import annotations


class TenureError(Exception):
    """Base of the errors Tenure raises on purpose."""


class TransientError(TenureError):
    """A failure expected to pass: the reconcile is retried with backoff."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(TenureError):
    """A failure that needs a change (of spec, configuration or permissions) to go away."""


class NameConflict(PermanentError):
    """An object Tenure would manage exists and is not managed by this identity.

    It is never adopted or overwritten (issue #4, NameConflict).
    """

    def __init__(self, kind: str, name: str, detail: str) -> None:
        super().__init__(
            f'{kind} {name} already exists and is not managed by this identity: {detail}'
        )
        self.kind = kind
        self.name = name

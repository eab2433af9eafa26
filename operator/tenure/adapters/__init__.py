"""The only modules that talk to Kubernetes and Vault.

Each adapter speaks the operator's vocabulary (`tenure.ports`): it takes and returns plain values,
is idempotent, and translates every client failure into `TransientError` (worth a retry) or
`PermanentError` (needs a change first), with messages that name the action and the object and
never carry a token or a secret value.
"""

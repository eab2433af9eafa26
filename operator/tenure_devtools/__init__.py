"""Development and test tooling for Tenure. NOT part of the operator's runtime.

- `tenure_devtools.kubeapi`: a local Kubernetes API emulator (HTTP), faithful to the real API
  semantics that Tenure and kopf rely on, for tests and the `tenure dev` sandbox.
- `tenure_devtools.openbao`: starts and configures a real OpenBao dev server.

The operator package `tenure` never imports this package at runtime (ruff bans it), except the
`tenure dev` command, which imports it lazily.
"""

#!/usr/bin/env bash
# Prepare Vault (or OpenBao) for Tenure: the Kubernetes auth method, the KV v2 mount, and the
# operator's own policy and role. Idempotent: run it again after a change and it converges.
# README.md beside this file explains each step; tests/deploy runs this script against a real
# OpenBao server and the Kubernetes API emulator.
#
# Needs a token allowed to manage auth methods, mounts and policies (VAULT_ADDR, VAULT_TOKEN).
#
#   KUBERNETES_HOST           the API server's URL as Vault reaches it (required)
#   KUBERNETES_CA_CERT        file with the API server's CA (PEM); leave unset when Vault runs
#                             in the cluster and should use its pod's CA
#   TOKEN_REVIEWER_JWT_FILE   file with the token Vault presents to review logins (needs
#                             system:auth-delegator, see token-reviewer.yaml); leave unset when
#                             Vault runs in the cluster and should use its pod's own token
#   VAULT_CLI                 vault or bao [vault]
#   AUTH_MOUNT, KV_MOUNT      mounts of the identities [kubernetes, secret]: the same values as
#                             tenure run's --auth-mount and --kv-mount
#   POLICY_FILE               the operator's policy [operator-policy.hcl beside this script; it
#                             is written for the default mounts, so other mounts need their own]
#   OPERATOR_NAMESPACE        where the operator runs [tenure-system]
#   OPERATOR_SERVICE_ACCOUNT  its ServiceAccount [tenure]
#   OPERATOR_ROLE             its Vault role and policy name [tenure_operator]: outside the
#                             tenure-* pattern that the operator manages, so it cannot edit them
set -euo pipefail

VAULT_CLI=${VAULT_CLI:-vault}
AUTH_MOUNT=${AUTH_MOUNT:-kubernetes}
KV_MOUNT=${KV_MOUNT:-secret}
OPERATOR_NAMESPACE=${OPERATOR_NAMESPACE:-tenure-system}
OPERATOR_SERVICE_ACCOUNT=${OPERATOR_SERVICE_ACCOUNT:-tenure}
OPERATOR_ROLE=${OPERATOR_ROLE:-tenure_operator}
: "${KUBERNETES_HOST:?set KUBERNETES_HOST to the API server URL as Vault reaches it}"

if [[ -z ${POLICY_FILE:-} ]]; then
  if [[ $AUTH_MOUNT != kubernetes || $KV_MOUNT != secret ]]; then
    echo "operator-policy.hcl is written for the mounts kubernetes and secret: render one for" \
      "yours with tenure.adapters.vault.operator_policy(kv_mount=..., auth_mount=...) and set" \
      "POLICY_FILE" >&2
    exit 2
  fi
  POLICY_FILE=$(dirname "${BASH_SOURCE[0]}")/operator-policy.hcl
fi
case $OPERATOR_ROLE in
  tenure-*)
    echo "OPERATOR_ROLE=$OPERATOR_ROLE matches tenure-*, which the operator manages:" \
      "it could rewrite its own role and policy" >&2
    exit 2
    ;;
esac

vault() { "$VAULT_CLI" "$@"; }

# 1. The Kubernetes auth method that both the operator and its identities log in with.
# (The listings are read whole before grep: with pipefail, `grep -q` closing the pipe early
# would fail the listing and send us down the wrong branch.)
methods=$(vault auth list -format=json)
if ! grep -q "\"$AUTH_MOUNT/\"" <<<"$methods"; then
  vault auth enable -path="$AUTH_MOUNT" kubernetes
fi
config=("kubernetes_host=$KUBERNETES_HOST")
if [[ -n ${KUBERNETES_CA_CERT:-} || -n ${TOKEN_REVIEWER_JWT_FILE:-} ]]; then
  # Vault outside the cluster: never fall back to a pod's files it might happen to run next to.
  config+=("disable_local_ca_jwt=true")
fi
if [[ -n ${KUBERNETES_CA_CERT:-} ]]; then
  config+=("kubernetes_ca_cert=@$KUBERNETES_CA_CERT")
fi
if [[ -n ${TOKEN_REVIEWER_JWT_FILE:-} ]]; then
  config+=("token_reviewer_jwt=@$TOKEN_REVIEWER_JWT_FILE")
fi
vault write "auth/$AUTH_MOUNT/config" "${config[@]}"

# 2. The KV v2 mount where Tenure writes generated secrets (under <mount>/tenure/).
engines=$(vault secrets list -format=json)
if ! grep -q "\"$KV_MOUNT/\"" <<<"$engines"; then
  vault secrets enable -path="$KV_MOUNT" -version=2 kv
fi

# 3. The operator's policy: exactly tenure.adapters.vault.operator_policy().
vault policy write "$OPERATOR_ROLE" "$POLICY_FILE"

# 4. The operator's role. Bound to its ServiceAccount in its namespace, and to the audience
#    `vault` of the projected token it presents (deploy/base/deployment.yaml), so a token meant for
#    the API server is refused here. No default policy: only what operator_policy() grants. Short
#    tokens: the operator logs in again before its token runs out.
vault write "auth/$AUTH_MOUNT/role/$OPERATOR_ROLE" \
  bound_service_account_names="$OPERATOR_SERVICE_ACCOUNT" \
  bound_service_account_namespaces="$OPERATOR_NAMESPACE" \
  audience=vault \
  alias_name_source=serviceaccount_uid \
  token_policies="$OPERATOR_ROLE" \
  token_no_default_policy=true \
  token_type=service \
  token_ttl=15m \
  token_max_ttl=1h

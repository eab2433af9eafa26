# Tenure operator: manages tenure-* policies and roles and the secrets under secret/tenure/.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

# The auth mount's type (check_ready) and accessor (disable_entity); sys/auth/<path> needs sudo.
path "sys/auth/kubernetes" {
  capabilities = ["read", "sudo"]
}

path "sys/mounts/secret" {
  capabilities = ["read"]
}

path "sys/policies/acl/tenure-*" {
  capabilities = ["create", "read", "update", "delete"]
}

path "auth/kubernetes/role/tenure-*" {
  capabilities = ["create", "read", "update", "delete"]
}

# Write only: Tenure generates secret values and never reads them back.
path "secret/data/tenure/*" {
  capabilities = ["create", "update"]
}

path "secret/metadata/tenure/*" {
  capabilities = ["create", "read", "update", "delete"]
}

# The accessor scan that finds and revokes tokens issued to an identity.
path "auth/token/accessors" {
  capabilities = ["list", "sudo"]
}

path "auth/token/lookup-accessor" {
  capabilities = ["update"]
}

path "auth/token/revoke-accessor" {
  capabilities = ["update"]
}

# Switch a revoked ServiceAccount's entity off; nothing else about entities may be changed.
path "identity/lookup/entity" {
  capabilities = ["update"]
}

path "identity/entity/id/*" {
  capabilities = ["update"]
  allowed_parameters = {
    "disabled" = [true]
  }
}

"""An identity's scope (the access it holds) and whether one scope stays within another.

Narrowing applies at once; widening needs a new approval (issue #3, "Mover"). `covers(applied,
requested)` is the test: True when every permission `requested` grants is already granted by
`applied`, conservatively (a False answer only ever asks for an approval, never grants access).
"""

from __future__ import annotations

from collections.abc import Iterable

from tenure.api.v1alpha1 import PolicyRule, Scope, ServiceIdentitySpec, VaultPathRule


def scope_of(spec: ServiceIdentitySpec) -> Scope:
    """The access a spec asks for."""
    k8s = spec.kubernetes
    vault = spec.vault
    return Scope(
        rules=list(k8s.rules) if k8s else [],
        cluster_roles=list(k8s.cluster_roles) if k8s else [],
        vault_policy=list(vault.policy) if vault else [],
        secret_keys=list(vault.secret.keys) if vault and vault.secret else [],
    )


def _rule_covered(requested: PolicyRule, granted: Iterable[PolicyRule]) -> bool:
    """Whether one granted rule alone allows everything `requested` allows."""

    def within(asked: Iterable[str], allowed: Iterable[str]) -> bool:
        allowed_set = set(allowed)
        return '*' in allowed_set or set(asked) <= allowed_set

    for rule in granted:
        asked_names = set(requested.resource_names)
        names_ok = not rule.resource_names or (
            bool(asked_names) and asked_names <= set(rule.resource_names)
        )
        if (
            within(requested.api_groups, rule.api_groups)
            and within(requested.resources, rule.resources)
            and within(requested.verbs, rule.verbs)
            and names_ok
        ):
            return True
    return False


def _path_covered(requested: VaultPathRule, granted: Iterable[VaultPathRule]) -> bool:
    """Vault paths are compared literally: a different glob is a different grant."""
    if 'deny' in requested.capabilities and set(requested.capabilities) == {'deny'}:
        return True  # a pure deny never widens access
    return any(
        rule.path == requested.path and set(requested.capabilities) <= set(rule.capabilities)
        for rule in granted
    )


def _denies(rules: Iterable[VaultPathRule]) -> set[str]:
    return {r.path for r in rules if 'deny' in r.capabilities}


def covers(applied: Scope, requested: Scope) -> bool:
    """True when `requested` grants nothing that `applied` does not.

    Dropping a `deny` path widens access, so every deny in force must still be requested.
    """
    return (
        _denies(applied.vault_policy) <= _denies(requested.vault_policy)
        and all(_rule_covered(r, applied.rules) for r in requested.rules)
        and set(requested.cluster_roles) <= set(applied.cluster_roles)
        and all(_path_covered(p, applied.vault_policy) for p in requested.vault_policy)
        and set(requested.secret_keys) <= set(applied.secret_keys)
    )

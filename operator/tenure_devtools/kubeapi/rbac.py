"""RBAC in the Kubernetes API emulator: rule matching, rule resolution, escalation arithmetic and
the ClusterRole aggregation controller.

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

Everything here follows https://kubernetes.io/docs/reference/access-authn-authz/rbac/ and the
code it documents:

- `rule_allows` is the RBAC authorizer's `RuleAllows` (plugin/pkg/auth/authorizer/rbac): verbs,
  API groups, `resource/subresource` (and `*/subresource`), `resourceNames`, non-resource URLs
  with a trailing `*`;
- `RuleResolver` is `DefaultRuleResolver` (pkg/registry/rbac/validation/rule.go): the rules of
  every ClusterRoleBinding, then of every RoleBinding of the namespace, whose subjects match the
  user (a ServiceAccount subject without a namespace means the binding's own);
- `covers`, `compact_rules` and `compact_string` are `validation.Covers`, `CompactRules` and
  `CompactString`, the pieces of escalation prevention's "attempting to grant RBAC permissions not
  currently held" message;
- `ClusterRoleAggregator` is the clusterrole-aggregation controller
  (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#aggregated-clusterroles): a
  ClusterRole with an `aggregationRule` gets the rules of every ClusterRole its selectors match,
  sorted by name, without duplicates; whatever its own `rules` said is replaced.

Rules are handled as the JSON the API stores (`{'apiGroups': [...], 'resources': [...], ...}`).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from . import selectors
from .errors import ApiError
from .operations import Api, WriteOptions
from .resources import Registry, ResourceType
from .store import Event, Obj

log = logging.getLogger(__name__)

RBAC_GROUP: Final = 'rbac.authorization.k8s.io'
ROLES: Final = f'{RBAC_GROUP}/roles'
CLUSTER_ROLES: Final = f'{RBAC_GROUP}/clusterroles'
ROLE_BINDINGS: Final = f'{RBAC_GROUP}/rolebindings'
CLUSTER_ROLE_BINDINGS: Final = f'{RBAC_GROUP}/clusterrolebindings'
ALL: Final = '*'

Rule = Mapping[str, Any]


def _strings(rule: Rule, field: str) -> list[str]:
    values = rule.get(field)
    return [str(v) for v in values] if isinstance(values, list) else []


# ---- matching a request (RuleAllows) -------------------------------------------------------


def verb_matches(rule: Rule, verb: str) -> bool:
    return any(v in (ALL, verb) for v in _strings(rule, 'verbs'))


def api_group_matches(rule: Rule, group: str) -> bool:
    return any(g in (ALL, group) for g in _strings(rule, 'apiGroups'))


def resource_matches(rule: Rule, combined: str, subresource: str) -> bool:
    for resource in _strings(rule, 'resources'):
        if resource in (ALL, combined):
            return True
        # `*/status` matches the status subresource of every resource, and nothing else.
        if subresource and resource == f'*/{subresource}':
            return True
    return False


def resource_name_matches(rule: Rule, name: str) -> bool:
    names = _strings(rule, 'resourceNames')
    return not names or name in names


def non_resource_url_matches(rule: Rule, path: str) -> bool:
    for url in _strings(rule, 'nonResourceURLs'):
        if url in (ALL, path):
            return True
        if url.endswith('*') and path.startswith(url.rstrip('*')):
            return True
    return False


def rule_allows(
    rule: Rule,
    *,
    verb: str,
    resource_request: bool,
    api_group: str = '',
    resource: str = '',
    subresource: str = '',
    name: str = '',
    path: str = '',
) -> bool:
    """Whether `rule` allows the request (RBAC `RuleAllows`)."""
    if resource_request:
        combined = f'{resource}/{subresource}' if subresource else resource
        return (
            verb_matches(rule, verb)
            and api_group_matches(rule, api_group)
            and resource_matches(rule, combined, subresource)
            and resource_name_matches(rule, name)
        )
    return verb_matches(rule, verb) and non_resource_url_matches(rule, path)


# ---- escalation arithmetic (validation.Covers) ---------------------------------------------


def breakdown_rule(rule: Rule) -> list[dict[str, list[str]]]:
    """The rule as atoms of one group, resource, verb and resource name (or URL and verb)."""
    atoms: list[dict[str, list[str]]] = []
    names = _strings(rule, 'resourceNames')
    for group in _strings(rule, 'apiGroups'):
        for resource in _strings(rule, 'resources'):
            for verb in _strings(rule, 'verbs'):
                base = {'apiGroups': [group], 'resources': [resource], 'verbs': [verb]}
                if names:
                    atoms.extend({**base, 'resourceNames': [n]} for n in names)
                else:
                    atoms.append(base)
    for url in _strings(rule, 'nonResourceURLs'):
        for verb in _strings(rule, 'verbs'):
            atoms.append({'nonResourceURLs': [url], 'verbs': [verb]})
    return atoms


def _resource_covers_all(owned: Sequence[str], wanted: Sequence[str]) -> bool:
    if ALL in owned or set(wanted) <= set(owned):
        return True
    for path in wanted:
        if path in owned:
            continue
        if '/' not in path:
            return False
        if f'*/{path.split("/", 1)[1]}' not in owned:
            return False
    return True


def _url_covers(owner: str, path: str) -> bool:
    return owner == path or (owner.endswith('*') and path.startswith(owner.rstrip('*')))


def rule_covers(owner: Rule, atom: Rule) -> bool:
    """Whether `owner` grants everything in `atom` (one of `breakdown_rule`'s pieces)."""
    owner_verbs, owner_groups = _strings(owner, 'verbs'), _strings(owner, 'apiGroups')
    verbs = ALL in owner_verbs or set(_strings(atom, 'verbs')) <= set(owner_verbs)
    groups = ALL in owner_groups or set(_strings(atom, 'apiGroups')) <= set(owner_groups)
    resources = _resource_covers_all(_strings(owner, 'resources'), _strings(atom, 'resources'))
    owner_urls = _strings(owner, 'nonResourceURLs')
    urls = all(
        any(_url_covers(o, path) for o in owner_urls) for path in _strings(atom, 'nonResourceURLs')
    )
    owner_names, atom_names = _strings(owner, 'resourceNames'), _strings(atom, 'resourceNames')
    # An owner rule narrowed to names covers only those names, never "any name".
    names = not owner_names or (bool(atom_names) and set(atom_names) <= set(owner_names))
    return verbs and groups and resources and names and urls


def covers(
    owner_rules: Sequence[Rule], servant_rules: Iterable[Rule]
) -> tuple[bool, list[dict[str, list[str]]]]:
    """(whether `owner_rules` grant all of `servant_rules`, the atoms they do not grant)."""
    missing = [
        atom
        for rule in servant_rules
        for atom in breakdown_rule(rule)
        if not any(rule_covers(owner, atom) for owner in owner_rules)
    ]
    return not missing, missing


def compact_rules(rules: Sequence[Rule]) -> list[dict[str, list[str]]]:
    """Merge the verbs of rules naming one group and one resource and nothing else
    (validation.CompactRules): the missing atoms of a refusal, readable."""
    compacted: list[dict[str, list[str]]] = []
    simple: dict[tuple[str, str], dict[str, list[str]]] = {}
    for rule in rules:
        groups, resources = _strings(rule, 'apiGroups'), _strings(rule, 'resources')
        is_simple = (
            not rule.get('resourceNames')
            and not rule.get('nonResourceURLs')
            and len(groups) == 1
            and len(resources) == 1
        )
        if not is_simple:
            compacted.append({k: _strings(rule, k) for k in rule if _strings(rule, k)})
            continue
        key = (groups[0], resources[0])
        if key in simple:
            simple[key]['verbs'].extend(_strings(rule, 'verbs'))
        else:
            simple[key] = {
                'apiGroups': groups,
                'resources': resources,
                'verbs': list(_strings(rule, 'verbs')),
            }
    # Go iterates the map in random order; the message sorts the descriptions anyway.
    compacted.extend(simple.values())
    return compacted


def go_quoted(values: Sequence[str]) -> str:
    """A string slice as Go's `%q` prints it: `["a" "b"]`."""
    return '[' + ' '.join(json.dumps(v, ensure_ascii=False) for v in values) + ']'


def compact_string(rule: Rule) -> str:
    """`rbacv1helpers.CompactString`: `{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}`."""
    parts = []
    for field, label in (
        ('apiGroups', 'APIGroups'),
        ('resources', 'Resources'),
        ('nonResourceURLs', 'NonResourceURLs'),
        ('resourceNames', 'ResourceNames'),
        ('verbs', 'Verbs'),
    ):
        values = _strings(rule, field)
        if values:
            parts.append(f'{label}:{go_quoted(values)}')
    return '{' + ', '.join(parts) + '}'


# ---- who holds what (DefaultRuleResolver) --------------------------------------------------


@dataclass(frozen=True)
class RuleSource:
    """Where a rule a user holds comes from: the binding, its role, the rule's index there."""

    binding_kind: str
    binding_name: str
    binding_namespace: str
    role_kind: str
    role_name: str
    rule_index: int
    subject: str

    def __str__(self) -> str:
        # The describers of rule.go, as the RBAC authorizer logs them.
        if self.binding_kind == 'ClusterRoleBinding':
            binding = f'ClusterRoleBinding {json.dumps(self.binding_name)}'
        else:
            binding = f'RoleBinding {json.dumps(f"{self.binding_name}/{self.binding_namespace}")}'
        return f'{binding} of {self.role_kind} {json.dumps(self.role_name)} to {self.subject}'


class RoleNotFound(Exception):
    """A binding's roleRef names no role; `str()` is the message the API server uses."""

    def __init__(self, message: str, resource: str = '', name: str = '') -> None:
        super().__init__(message)
        self.resource = resource
        self.name = name


def _describe_subject(subject: Mapping[str, Any], namespace: str) -> str:
    kind, name = subject.get('kind', ''), subject.get('name', '')
    if kind == 'ServiceAccount':
        account = f'{name}/{subject.get("namespace") or namespace}'
        return f'{kind} {json.dumps(account)}'
    return f'{kind} {json.dumps(name)}'


def subject_applies(
    subject: Mapping[str, Any], username: str, groups: Sequence[str], namespace: str
) -> bool:
    """Whether a binding subject names this user (rule.go `appliesToUser`)."""
    kind, name = subject.get('kind'), subject.get('name')
    if kind == 'User':
        return bool(username == name)
    if kind == 'Group':
        return name in groups
    if kind == 'ServiceAccount':
        sa_namespace = subject.get('namespace') or namespace
        return bool(sa_namespace) and username == f'system:serviceaccount:{sa_namespace}:{name}'
    return False


class RuleResolver:
    """The rules a user holds in a namespace, resolved from the store's roles and bindings."""

    def __init__(self, api: Api, *, singular_not_found: bool = False) -> None:
        self.store = api.store
        # The authorizer resolves roles through listers, whose NotFound names the resource in
        # the singular ("clusterrole.rbac.authorization.k8s.io"); the RBAC storage (escalation
        # prevention) through the registry, which uses the plural.
        self.singular_not_found = singular_not_found

    def _not_found(self, resource: str, name: str) -> RoleNotFound:
        shown = resource[:-1] if self.singular_not_found else resource
        return RoleNotFound(f'{shown}.{RBAC_GROUP} {json.dumps(name)} not found', resource, name)

    def role_rules(self, role_ref: Mapping[str, Any], namespace: str) -> list[dict[str, Any]]:
        """The rules of a roleRef (`GetRoleReferenceRules`); RoleNotFound when it is missing."""
        kind, name = role_ref.get('kind'), str(role_ref.get('name') or '')
        if kind == 'Role':
            role = self.store.get(ROLES, namespace, name) if namespace else None
            if role is None:
                raise self._not_found('roles', name)
        elif kind == 'ClusterRole':
            role = self.store.get(CLUSTER_ROLES, '', name)
            if role is None:
                raise self._not_found('clusterroles', name)
        else:
            raise RoleNotFound(f'unsupported role reference kind: {json.dumps(kind)}')
        return [r for r in role.get('rules') or [] if isinstance(r, dict)]

    def visit(
        self, username: str, groups: Sequence[str], namespace: str
    ) -> Iterator[tuple[RuleSource, dict[str, Any]] | RoleNotFound]:
        """Each rule the user holds with its source, and each binding whose role is missing."""
        tables: list[tuple[str, str]] = [(CLUSTER_ROLE_BINDINGS, '')]
        if namespace:
            tables.append((ROLE_BINDINGS, namespace))
        for table, scope in tables:
            bindings = sorted(
                self.store.items(table, scope if table == ROLE_BINDINGS else None),
                key=lambda b: str(b['metadata']['name']),
            )
            for binding in bindings:
                subjects = [s for s in binding.get('subjects') or [] if isinstance(s, dict)]
                subject = next(
                    (s for s in subjects if subject_applies(s, username, groups, scope)), None
                )
                if subject is None:
                    continue
                ref = binding.get('roleRef') or {}
                try:
                    rules = self.role_rules(ref, scope)
                except RoleNotFound as missing:
                    yield missing
                    continue
                for index, rule in enumerate(rules):
                    source = RuleSource(
                        binding_kind=binding.get('kind') or table.rsplit('/', 1)[1],
                        binding_name=binding['metadata']['name'],
                        binding_namespace=scope,
                        role_kind=str(ref.get('kind') or ''),
                        role_name=str(ref.get('name') or ''),
                        rule_index=index,
                        subject=_describe_subject(subject, scope),
                    )
                    yield source, rule

    def rules_for(
        self, username: str, groups: Sequence[str], namespace: str
    ) -> tuple[list[tuple[RuleSource, dict[str, Any]]], list[str]]:
        """(every rule the user holds with its source, the resolution errors)."""
        held: list[tuple[RuleSource, dict[str, Any]]] = []
        problems: list[str] = []
        for item in self.visit(username, groups, namespace):
            if isinstance(item, RoleNotFound):
                problems.append(str(item))
            else:
                held.append(item)
        return held, problems


def aggregate_errors(messages: Sequence[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): duplicates dropped, brackets around several."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else '[' + ', '.join(unique) + ']'


# ---- the clusterrole-aggregation controller -----------------------------------------------


def _aggregated_rules(role: Obj, candidates: Sequence[Obj]) -> list[Any] | None:
    """The rules `role` aggregates, None when it has no aggregationRule (or a broken one)."""
    rule = role.get('aggregationRule')
    if not isinstance(rule, dict):
        return None
    gathered: list[Any] = []
    for selector in rule.get('clusterRoleSelectors') or []:
        try:
            matches = selectors.label_selector_from_object(selector)
        except selectors.SelectorError:
            return None  # the controller logs it and retries; the role keeps its rules
        for other in candidates:
            if other['metadata']['name'] == role['metadata']['name']:
                continue
            if not matches(other['metadata'].get('labels') or {}):
                continue
            for policy in other.get('rules') or []:
                if policy not in gathered:
                    gathered.append(copy.deepcopy(policy))
    return gathered


class ClusterRoleAggregator:
    """Keeps every aggregated ClusterRole's `rules` equal to what its selectors gather.

    Event-driven like the real controller: any ClusterRole change re-checks all aggregated
    ClusterRoles, on the emulator's loop right after the write that triggered it.
    """

    def __init__(self, api: Api, registry: Registry) -> None:
        self.api = api
        self.registry = registry
        self._scheduled = False
        api.store.add_listener(self._on_event)

    def _on_event(self, table: str, event: Event) -> None:
        if table != CLUSTER_ROLES or self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous bootstrap): `sync()` is called explicitly there
        self._scheduled = True
        loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        self.sync()

    def sync(self) -> None:
        """Bring every aggregated ClusterRole up to date now.

        An aggregated role can aggregate another (`admin` gathers `edit`, which gathers `view`):
        passes repeat until one changes nothing, as the real controller's re-queues converge.
        """
        rt = self.registry.get(RBAC_GROUP, 'v1', 'clusterroles')
        if rt is None:
            return
        for _ in range(1 + sum(1 for _ in self.api.store.items(CLUSTER_ROLES))):
            if not self._pass(rt):
                return

    def _pass(self, rt: ResourceType) -> bool:
        changed = False
        roles = sorted(self.api.store.items(CLUSTER_ROLES), key=lambda r: r['metadata']['name'])
        for role in roles:
            current = self.api.store.get(CLUSTER_ROLES, '', role['metadata']['name'])
            if current is None:
                continue
            wanted = _aggregated_rules(current, roles)
            if wanted is None or wanted == (current.get('rules') or []):
                continue
            updated = copy.deepcopy(current)
            updated['rules'] = wanted
            try:
                self.api.update(rt, '', current['metadata']['name'], updated, WriteOptions())
            except ApiError as exc:
                # A race with a client's write: the event of that write brings us back.
                log.debug('aggregating ClusterRole %s: %s', role['metadata']['name'], exc.message)
                continue
            changed = True
        return changed

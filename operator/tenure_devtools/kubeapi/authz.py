"""Authentication, RBAC authorization and escalation prevention for the Kubernetes API emulator.

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

Opt-in (`KubeApiEmulator(authorization=True)`); without it every request is served as before,
unauthenticated. With it, each request goes through the steps a real kube-apiserver applies,
between parsing the request and serving it:

1. Authentication
   (https://kubernetes.io/docs/reference/access-authn-authz/authentication/#service-account-tokens):
   `Authorization: Bearer <token>` with a ServiceAccount token the emulator issued (TokenRequest,
   or a legacy token Secret) authenticates as `system:serviceaccount:<ns>:<name>`, groups
   `system:serviceaccounts`, `system:serviceaccounts:<ns>` and `system:authenticated`; the same
   checks as TokenReview apply (expiry, the API server's audience, the ServiceAccount still there
   with the uid the token is bound to). A bearer token that does not authenticate gets 401
   Unauthorized. `admin_token`, and a request with no bearer token at all, act as a cluster admin
   (user `kubernetes-admin`, group `system:masters`), so that tooling and tests that do not care
   keep working. (A real server would treat the latter as `system:anonymous`.)
2. Authorization: the request's attributes, derived as `RequestInfoFactory` does
   (https://kubernetes.io/docs/reference/access-authn-authz/authorization/#determine-the-request-verb:
   get/list/watch, create, update, patch, delete/deletecollection; `resource/subresource`; a
   list or watch narrowed to one name by `fieldSelector=metadata.name=<name>` carries that name;
   paths outside `/api/<v>/...` and `/apis/<g>/<v>/...` are non-resource URLs such as `/api`,
   `/apis/<g>/<v>` or `/version`), are checked by the members of `system:masters` (always
   allowed, as kube-apiserver's privileged-group authorizer does) and then by RBAC
   (https://kubernetes.io/docs/reference/access-authn-authz/rbac/) over the Roles, ClusterRoles
   and bindings in the store. A denial is 403 Forbidden with the server's message,
   `<resource> "<name>" is forbidden: User "<user>" cannot <verb> resource "<resource>" in API
   group "<group>" in the namespace "<ns>"` (`at the cluster scope`, or `cannot get path "/x"`
   for a non-resource URL), followed by `: RBAC: <errors>` when a binding of the user names a
   role that does not exist.
3. Escalation prevention on RBAC writes
   (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#privilege-escalation-prevention-and-bootstrapping):
   creating or changing a Role or ClusterRole needs every permission in it (in the request's
   namespace; cluster-wide for a ClusterRole) or `escalate` on it; an `aggregationRule` needs
   cluster-admin's full authority; creating or changing a RoleBinding or ClusterRoleBinding
   needs `bind` on the referenced role (`resourceNames` narrow it) or every permission in that
   role. A refusal is 403 `<kind>.rbac.authorization.k8s.io "<name>" is forbidden: user "<user>"
   (groups=[...]) is attempting to grant RBAC permissions not currently held:` and the missing
   rules, one per line. Members of `system:masters` skip these checks; so do changes that only
   touch ownerReferences and finalizers (what the garbage collector writes).

With authorization on, the emulator also starts with the default ClusterRoles and bindings of an
RBAC cluster (bootstrap_policy.py: `cluster-admin`, `admin`/`edit`/`view`, `system:discovery`...).

What happened is recorded for tests: every RBAC decision about a user outside
`system:masters` (`decisions()`: the attributes, the purpose `request`/`bind`/`escalate`, and
the binding, role and rule index that allowed it), every held rule that let a Role or binding be
written (`coverage()`), and every request refused with 401 or 403 (`refusals()`).

Deviations: anonymous requests are the admin (above); webhook and Node authorizers,
impersonation, client certificates and the token cache are not emulated; a malformed RBAC
write that would be refused anyway (bad body, failed patch, invalid object) is left to the
request's own error instead of being checked for escalation first; a patch or update is checked
on the object a dry run of it produces.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import yaml
from aiohttp import web

from . import bootstrap_policy, errors, meta
from .auth import TokenApi
from .errors import ApiError, GroupResource
from .operations import APPLY_PATCH, Api, WriteOptions, patch_types
from .rbac import (
    RBAC_GROUP,
    RoleNotFound,
    RuleResolver,
    RuleSource,
    aggregate_errors,
    breakdown_rule,
    compact_rules,
    compact_string,
    go_quoted,
    rule_allows,
    rule_covers,
)
from .resources import Registry

SYSTEM_MASTERS: Final = 'system:masters'
ADMIN_NAME: Final = 'kubernetes-admin'
DECISION_LOG: Final = 100_000
"""Decisions kept (oldest dropped first): enough for a test scenario, bounded for a sandbox."""

_SPECIAL_VERBS: Final = frozenset({'proxy', 'watch'})
_NAMESPACE_SUBRESOURCES: Final = frozenset({'status', 'finalize'})
_ROLE_RESOURCES: Final = frozenset({'roles', 'clusterroles'})
_BINDING_RESOURCES: Final = frozenset({'rolebindings', 'clusterrolebindings'})
_FULL_AUTHORITY: Final = (
    {'apiGroups': ['*'], 'resources': ['*'], 'verbs': ['*']},
    {'nonResourceURLs': ['*'], 'verbs': ['*']},
)
# Avoid messages that look like HTML (responsewriters.Forbidden); quotes are fine.
_SANITIZE: Final = str.maketrans({'&': '&amp;', '<': '&lt;', '>': '&gt;'})


@dataclass(frozen=True)
class User:
    """An authenticated user (user.Info)."""

    name: str
    groups: tuple[str, ...]
    uid: str = ''


ADMIN: Final = User(ADMIN_NAME, (SYSTEM_MASTERS, 'system:authenticated'))
"""Who `admin_token`, and a request without a bearer token, act as."""


@dataclass(frozen=True)
class Attributes:
    """What the authorizer decides on (authorizer.Attributes)."""

    user: User
    verb: str
    path: str
    resource_request: bool
    api_group: str = ''
    api_version: str = ''
    namespace: str = ''
    resource: str = ''
    subresource: str = ''
    name: str = ''

    @property
    def combined_resource(self) -> str:
        return f'{self.resource}/{self.subresource}' if self.subresource else self.resource


@dataclass(frozen=True)
class Decision:
    """One authorization decision. `purpose`: `request` (the request itself), `bind` or
    `escalate` (escalation prevention asking). `source`/`rule`: what allowed it."""

    attributes: Attributes
    allowed: bool
    purpose: str
    source: RuleSource | None
    rule: Mapping[str, Any] | None
    reason: str


@dataclass(frozen=True)
class Coverage:
    """A permission written into a Role (or granted by a binding) and the rule of the writer
    that covered it: escalation prevention used that rule."""

    user: str
    atom: Mapping[str, Any]
    source: RuleSource
    rule: Mapping[str, Any]


@dataclass(frozen=True)
class Refusal:
    """A request answered 401 or 403 by authentication, authorization or escalation checks."""

    attributes: Attributes | None
    code: int
    message: str


def _valid_name(name: str) -> bool:
    return bool(name) and not meta.path_segment_name(name)


def _name_from_field_selector(selector: str) -> str:
    """`fields.Selector.RequiresExactMatch("metadata.name")` for the simple selectors clients
    send (`metadata.name=x`, `metadata.name==x`, possibly ANDed with other terms)."""
    for term in selector.split(','):
        for operator in ('==', '='):
            prefix = f'metadata.name{operator}'
            if term.startswith(prefix):
                return term[len(prefix) :]
    return ''


def request_attributes(method: str, path: str, query: Mapping[str, str], user: User) -> Attributes:
    """The request as the authorizer sees it (k8s.io/apiserver RequestInfoFactory)."""
    parts = [p for p in path.strip('/').split('/') if p] if path.strip('/') else []
    non_resource = Attributes(user=user, verb=method.lower(), path=path, resource_request=False)
    if len(parts) < 3 or parts[0] not in ('api', 'apis'):
        return non_resource
    prefix, rest = parts[0], parts[1:]
    group = ''
    if prefix == 'apis':
        if len(rest) < 3:
            return non_resource
        group, rest = rest[0], rest[1:]
    version, rest = rest[0], rest[1:]
    verb = {
        'POST': 'create',
        'GET': 'get',
        'HEAD': 'get',
        'PUT': 'update',
        'PATCH': 'patch',
        'DELETE': 'delete',
    }.get(method.upper(), '')
    if rest and rest[0] in _SPECIAL_VERBS and len(rest) > 1:
        verb, rest = rest[0], rest[1:]
    namespace = ''
    if rest and rest[0] == 'namespaces' and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] if rest else ''
    name = rest[1] if len(rest) > 1 else ''
    subresource = rest[2] if len(rest) > 2 and verb != 'proxy' else ''
    if not name and verb == 'get':
        watch = query.get('watch')
        verb = 'watch' if watch is not None and watch.lower() not in ('false', '0') else 'list'
    if not name and verb in ('list', 'watch'):
        selected = _name_from_field_selector(query.get('fieldSelector', ''))
        if _valid_name(selected):
            name = selected
    if not name and verb == 'delete':
        verb = 'deletecollection'
    return Attributes(
        user=user,
        verb=verb,
        path=path,
        resource_request=True,
        api_group=group,
        api_version=version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
    )


def forbidden_message(attributes: Attributes) -> str:
    """responsewriters.forbiddenMessage."""
    user = json.dumps(attributes.user.name)
    if not attributes.resource_request:
        return f'User {user} cannot {attributes.verb} path {json.dumps(attributes.path)}'
    what = (
        f'User {user} cannot {attributes.verb} resource '
        f'{json.dumps(attributes.combined_resource)} in API group '
        f'{json.dumps(attributes.api_group)}'
    )
    if attributes.namespace:
        return f'{what} in the namespace {json.dumps(attributes.namespace)}'
    return f'{what} at the cluster scope'


def forbidden(attributes: Attributes, reason: str = '') -> ApiError:
    """The 403 of a request the authorizers did not allow (responsewriters.Forbidden)."""
    message = forbidden_message(attributes).translate(_SANITIZE)
    if reason:
        message = f'{message}: {reason}'
    if not attributes.resource_request:
        # NewForbidden with an empty GroupResource: "forbidden: <why>".
        return ApiError(403, 'Forbidden', f'forbidden: {message}', {})
    return errors.forbidden(
        GroupResource(attributes.api_group, attributes.resource), attributes.name, message
    )


def unauthorized() -> ApiError:
    """What an unauthenticated request gets (a bearer token no authenticator accepts)."""
    return ApiError(401, 'Unauthorized', 'Unauthorized')


def _only_gc_fields(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """rbac.IsOnlyMutatingGCFields: nothing but ownerReferences and finalizers changes."""
    stomped = dict(new)
    metadata = dict(new.get('metadata') or {})
    old_metadata = old.get('metadata') or {}
    for key in ('ownerReferences', 'finalizers', 'selfLink'):
        if key in old_metadata:
            metadata[key] = old_metadata[key]
        else:
            metadata.pop(key, None)
    stomped['metadata'] = metadata
    return stomped == old


def _has_aggregation_rule(role: Mapping[str, Any] | None) -> bool:
    rule = (role or {}).get('aggregationRule')
    return isinstance(rule, dict) and bool(rule.get('clusterRoleSelectors'))


class Authorization:
    """The emulator's authenticator, authorizer and RBAC escalation checks, with their records."""

    def __init__(self, api: Api, registry: Registry, tokens: TokenApi, *, admin_token: str) -> None:
        self.api = api
        self.registry = registry
        self.tokens = tokens
        self.admin_token = admin_token
        self.authorizer_rules = RuleResolver(api, singular_not_found=True)
        self.storage_rules = RuleResolver(api)
        self._lock = threading.Lock()
        self._decisions: collections.deque[Decision] = collections.deque(maxlen=DECISION_LOG)
        self._coverage: list[Coverage] = []
        self._refusals: list[Refusal] = []

    # ---- the cluster's default policy --------------------------------------------------

    def bootstrap(self) -> None:
        """Create the bootstrap ClusterRoles and ClusterRoleBindings (bootstrap_policy.py)."""
        for plural, objects in (
            ('clusterroles', bootstrap_policy.CLUSTER_ROLES),
            ('clusterrolebindings', bootstrap_policy.CLUSTER_ROLE_BINDINGS),
        ):
            rt = self.registry.get(RBAC_GROUP, 'v1', plural)
            assert rt is not None
            for obj in objects:
                self.api.create(rt, '', json.loads(json.dumps(obj)), WriteOptions())

    # ---- records (read from any thread) ------------------------------------------------

    def decisions(self) -> list[Decision]:
        with self._lock:
            return list(self._decisions)

    def coverage(self) -> list[Coverage]:
        with self._lock:
            return list(self._coverage)

    def refusals(self) -> list[Refusal]:
        with self._lock:
            return list(self._refusals)

    def clear(self) -> None:
        """Forget what was recorded (a test starting a new phase)."""
        with self._lock:
            self._decisions.clear()
            self._coverage.clear()
            self._refusals.clear()

    def _refused(self, attributes: Attributes | None, error: ApiError) -> ApiError:
        with self._lock:
            self._refusals.append(Refusal(attributes, error.code, error.message))
        return error

    # ---- authentication ----------------------------------------------------------------

    def authenticate(self, header: str | None) -> User | None:
        """The user a request's Authorization header names; None when it does not
        authenticate (401)."""
        scheme, _, token = (header or '').strip().partition(' ')
        token = token.strip()
        if scheme.lower() != 'bearer' or not token:
            return ADMIN
        if token == self.admin_token:
            return ADMIN
        review = self.tokens.token_review({'spec': {'token': token}}).body.get('status') or {}
        if not review.get('authenticated'):
            return None
        user = review.get('user') or {}
        return User(str(user.get('username')), tuple(user.get('groups') or ()), user.get('uid', ''))

    # ---- authorization -----------------------------------------------------------------

    def authorize(self, attributes: Attributes, purpose: str = 'request') -> Decision:
        """The union of the privileged-group authorizer and RBAC."""
        user = attributes.user
        if SYSTEM_MASTERS in user.groups:
            return Decision(attributes, True, purpose, None, None, '')
        problems: list[str] = []
        decision: Decision | None = None
        for item in self.authorizer_rules.visit(user.name, user.groups, attributes.namespace):
            if isinstance(item, RoleNotFound):
                problems.append(str(item))
                continue
            source, rule = item
            if rule_allows(
                rule,
                verb=attributes.verb,
                resource_request=attributes.resource_request,
                api_group=attributes.api_group,
                resource=attributes.resource,
                subresource=attributes.subresource,
                name=attributes.name,
                path=attributes.path,
            ):
                decision = Decision(attributes, True, purpose, source, rule, '')
                break
        if decision is None:
            reason = f'RBAC: {aggregate_errors(problems)}' if problems else ''
            decision = Decision(attributes, False, purpose, None, None, reason)
        with self._lock:
            self._decisions.append(decision)
        return decision

    # ---- the request path --------------------------------------------------------------

    async def admit(self, request: web.Request) -> None:
        """Authenticate and authorize a request; raise the ApiError that answers it if refused."""
        user = self.authenticate(request.headers.get('Authorization'))
        if user is None:
            raise self._refused(None, unauthorized())
        attributes = request_attributes(request.method, request.path, request.query, user)
        decision = self.authorize(attributes)
        if not decision.allowed:
            raise self._refused(attributes, forbidden(attributes, decision.reason))
        if (
            attributes.resource_request
            and attributes.api_group == RBAC_GROUP
            and attributes.resource in _ROLE_RESOURCES | _BINDING_RESOURCES
            and not attributes.subresource
            and attributes.verb in ('create', 'update', 'patch')
            and SYSTEM_MASTERS not in user.groups
        ):
            try:
                await self._prevent_escalation(request, attributes)
            except ApiError as refusal:
                if refusal.code == 403:
                    self._refused(attributes, refusal)
                raise

    # ---- escalation prevention ---------------------------------------------------------

    async def _prevent_escalation(self, request: web.Request, attributes: Attributes) -> None:
        resource = attributes.resource
        if resource in _ROLE_RESOURCES:
            asking = dataclasses.replace(attributes, verb='escalate', subresource='')
            if self.authorize(asking, 'escalate').allowed:
                return
        candidate = await self._candidate(request, attributes)
        if candidate is None:
            return  # the request fails on its own (body, patch, validation, missing object)
        new, old = candidate
        if old is not None and _only_gc_fields(new, old):
            return
        name = str((new.get('metadata') or {}).get('name') or '')
        if resource in _ROLE_RESOURCES:
            rules = [r for r in new.get('rules') or [] if isinstance(r, dict)]
            self._confirm_no_escalation(attributes, name, rules)
            if resource == 'clusterroles' and (
                _has_aggregation_rule(new) or _has_aggregation_rule(old)
            ):
                # Aggregation can gather anything: setting or changing it needs `*` on `*`.
                self._confirm_no_escalation(
                    attributes,
                    name,
                    _FULL_AUTHORITY,
                    instead='must have cluster-admin privileges to use the aggregationRule',
                )
            return
        ref = new.get('roleRef') if isinstance(new.get('roleRef'), dict) else {}
        assert isinstance(ref, dict)
        kind = ref.get('kind')
        if kind in ('Role', 'ClusterRole'):
            asking = Attributes(
                user=attributes.user,
                verb='bind',
                path=attributes.path,
                resource_request=True,
                api_group=str(ref.get('apiGroup') or ''),
                api_version='*',
                namespace=attributes.namespace,
                resource='clusterroles' if kind == 'ClusterRole' else 'roles',
                name=str(ref.get('name') or ''),
            )
            if self.authorize(asking, 'bind').allowed:
                return
        try:
            rules = self.storage_rules.role_rules(ref, attributes.namespace)
        except RoleNotFound as missing:
            if not missing.resource:
                return  # an unsupported roleRef kind: validation refuses the binding
            raise errors.not_found(
                GroupResource(RBAC_GROUP, missing.resource), missing.name
            ) from None
        self._confirm_no_escalation(attributes, name, rules)

    def _confirm_no_escalation(
        self,
        attributes: Attributes,
        name: str,
        rules: Sequence[Mapping[str, Any]],
        *,
        instead: str = '',
    ) -> None:
        """validation.ConfirmNoEscalation: the writer holds every permission in `rules`."""
        user = attributes.user
        held, problems = self.storage_rules.rules_for(user.name, user.groups, attributes.namespace)
        used: list[Coverage] = []
        missing = []
        for rule in rules:
            for atom in breakdown_rule(rule):
                owner = next(((s, r) for s, r in held if rule_covers(r, atom)), None)
                if owner is None:
                    missing.append(atom)
                else:
                    used.append(Coverage(user.name, atom, owner[0], owner[1]))
        gr = GroupResource(RBAC_GROUP, attributes.resource)
        if not missing:
            with self._lock:
                self._coverage.extend(used)
            return
        if instead:
            raise errors.forbidden(gr, name, instead)
        described = sorted({compact_string(r) for r in compact_rules(missing)})
        message = (
            f'user {json.dumps(user.name)} (groups={go_quoted(user.groups)}) is attempting to '
            'grant RBAC permissions not currently held:\n' + '\n'.join(described)
        )
        if problems:
            message += f'; resolution errors: [{aggregate_errors(problems)}]'
        raise errors.forbidden(gr, name, message)

    async def _candidate(
        self, request: web.Request, attributes: Attributes
    ) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """(the object the write would store, the stored one) or None when the write fails."""
        rt = self.registry.get(attributes.api_group, attributes.api_version, attributes.resource)
        if rt is None:
            return None
        raw = await request.read()
        media = request.headers.get('Content-Type', '').split(';', 1)[0].strip().lower()
        namespace = attributes.namespace if rt.namespaced else ''
        dry_run = WriteOptions(dry_run=True, field_validation='Ignore')
        try:
            if attributes.verb == 'patch':
                if media == APPLY_PATCH or media not in patch_types(rt):
                    return None
                outcome = self.api.patch(
                    rt, namespace, attributes.name, media, json.loads(raw or b'null'), dry_run
                )
            else:
                body = yaml.safe_load(raw) if 'yaml' in media else json.loads(raw or b'null')
                if not isinstance(body, dict):
                    return None
                if attributes.verb == 'create':
                    # Checked before the object is decoded and validated, as the RBAC storage
                    # does: a forbidden role is refused whatever else is wrong with it.
                    return body, None
                outcome = self.api.update(rt, namespace, attributes.name, body, dry_run)
        except (ApiError, ValueError, yaml.YAMLError):
            return None
        old = self.api.store.get(rt.table, namespace, attributes.name)
        return outcome.body, old

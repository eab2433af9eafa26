"""The Kubernetes adapter: the only operator module that talks to the Kubernetes API.

Thin and idempotent: reads before it writes, writes only what differs, deletes only objects that
carry this identity's labels (a ServiceAccount of the same name created by someone else is never
adopted, overwritten or deleted). Client errors become `TransientError` or `PermanentError`.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, cast

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tenure.api.base import format_timestamp
from tenure.api.v1alpha1 import API_VERSION, GROUP, KIND, PLURAL, VERSION, ProofCheck
from tenure.domain.desired import Manifest
from tenure.domain.names import IDENTITY_LABEL, MANAGED_BY, MANAGED_BY_LABEL, IdentityNames
from tenure.errors import NameConflict, PermanentError, TransientError

log = logging.getLogger(__name__)

SA_TOKEN_TYPE: Final = 'kubernetes.io/service-account-token'
SA_NAME_ANNOTATION: Final = 'kubernetes.io/service-account.name'
EVENT_MESSAGE_LIMIT: Final = 1024
GONE: Final = 'Gone'


@contextlib.contextmanager
def translated(action: str) -> Iterator[None]:
    """Re-raise client errors as TransientError (retry) or PermanentError (needs a change)."""
    try:
        yield
    except ApiException as e:
        status = e.status or 0
        reason = e.reason or 'error'
        if status == 429 or status >= 500 or status in (0, 409):
            retry_after = None
            headers = e.headers or {}
            if headers.get('Retry-After', '').isdigit():
                retry_after = float(headers['Retry-After'])
            raise TransientError(
                f'could not {action}: {status} {reason}', retry_after=retry_after
            ) from e
        raise PermanentError(f'could not {action}: {status} {reason}') from e
    except (OSError, urllib3.exceptions.HTTPError) as e:
        raise TransientError(f'could not {action}: {type(e).__name__}') from e


def _owned_by(obj: Any, names: IdentityNames, uid: str | None) -> bool:
    """Labelled for this identity and, when `uid` is given, owned by that ServiceIdentity."""
    meta = obj.metadata
    labels = meta.labels or {}
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY or labels.get(IDENTITY_LABEL) != names.name:
        return False
    if uid is None:
        return True
    return any(ref.uid == uid for ref in meta.owner_references or [])


def _owner_uid(desired: Sequence[Manifest]) -> str | None:
    refs = desired[0]['metadata'].get('ownerReferences') if desired else None
    return refs[0]['uid'] if refs else None


def _normalised_rules(rules: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for rule in rules:
        data = rule if isinstance(rule, Mapping) else rule.model_dump(by_alias=True)
        out.append(
            {
                'apiGroups': list(data.get('apiGroups') or []),
                'resources': list(data.get('resources') or []),
                'resourceNames': list(data.get('resourceNames') or []),
                'verbs': list(data.get('verbs') or []),
            }
        )
    return out


def _by_kind(methods: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    return methods


class KubeObjects:
    """ServiceAccounts, Roles, RoleBindings, token Secrets, Events and ServiceIdentity status."""

    def __init__(self, api: client.ApiClient, *, clock: Callable[[], datetime]) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.clock = clock

    # -- startup ---------------------------------------------------------------------------

    def check_ready(self) -> None:
        """Fail fast: the API answers and the ServiceIdentity CRD is installed."""
        with translated('reach the Kubernetes API'):
            client.VersionApi(self.api).get_code()
        try:
            resources = client.CustomObjectsApi(self.api).api_client.call_api(
                f'/apis/{GROUP}/{VERSION}',
                'GET',
                response_type='object',
                _return_http_data_only=True,
            )
        except ApiException as e:
            if e.status == 404:
                raise PermanentError(
                    f'the {GROUP}/{VERSION} API is not served: install the CRD '
                    '(kubectl apply -f crds/)'
                ) from e
            raise
        if not any(r.get('name') == PLURAL for r in resources.get('resources', [])):
            raise PermanentError(f'{PLURAL}.{GROUP} is not served: kubectl apply -f crds/')

    # -- reads -----------------------------------------------------------------------------

    def read_identity(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ServiceIdentity as the API has it now, None when it is gone."""
        try:
            with translated(f'read ServiceIdentity {namespace}/{name}'):
                obj = self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name
                )
                return cast(dict[str, Any], obj)
        except PermanentError as e:
            if isinstance(e.__cause__, ApiException) and e.__cause__.status == 404:
                return None
            raise

    def service_account_uid(self, names: IdentityNames) -> str | None:
        sa = self._get('ServiceAccount', names.namespace, names.service_account)
        if sa is None or not _owned_by(sa, names, None):
            return None
        uid: str = sa.metadata.uid
        return uid

    def _get(self, kind: str, namespace: str, name: str) -> Any | None:
        reader = _by_kind(
            {
                'ServiceAccount': self.core.read_namespaced_service_account,
                'Role': self.rbac.read_namespaced_role,
                'RoleBinding': self.rbac.read_namespaced_role_binding,
            }
        )[kind]
        try:
            return reader(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            with translated(f'read {kind} {namespace}/{name}'):
                raise

    def _managed(self, kind: str, names: IdentityNames) -> list[Any]:
        lister = _by_kind(
            {
                'ServiceAccount': self.core.list_namespaced_service_account,
                'Role': self.rbac.list_namespaced_role,
                'RoleBinding': self.rbac.list_namespaced_role_binding,
            }
        )[kind]
        with translated(f'list {kind}s of {names.namespace}/{names.name}'):
            items: list[Any] = lister(names.namespace, label_selector=names.selector).items
            return items

    def _token_secrets(self, names: IdentityNames) -> list[Any]:
        with translated(f'list token Secrets of {names.namespace}/{names.name}'):
            secrets = self.core.list_namespaced_secret(
                names.namespace, field_selector=f'type={SA_TOKEN_TYPE}'
            ).items
        return [
            s
            for s in secrets
            if s.metadata is not None
            and (s.metadata.annotations or {}).get(SA_NAME_ANNOTATION) == names.service_account
        ]

    # -- apply -----------------------------------------------------------------------------

    def apply(self, names: IdentityNames, desired: Sequence[Manifest]) -> list[str]:
        """Converge the identity's objects to `desired`; return 'Kind/name' of what changed."""
        uid = _owner_uid(desired)
        current: dict[tuple[str, str], Any] = {}
        # Every name is checked before anything is written: a conflict creates nothing.
        for obj in desired:
            kind, name = obj['kind'], obj['metadata']['name']
            found = self._get(kind, names.namespace, name)
            if found is not None and not _owned_by(found, names, uid):
                labels = found.metadata.labels or {}
                detail = (
                    'it belongs to another ServiceIdentity of that name'
                    if labels.get(IDENTITY_LABEL) == names.name
                    else 'it has no Tenure labels for this identity'
                )
                raise NameConflict(kind, f'{names.namespace}/{name}', detail)
            current[(kind, name)] = found
        changed: list[str] = []
        wanted = {(o['kind'], o['metadata']['name']) for o in desired}
        for kind in ('RoleBinding', 'Role'):
            for obj in self._managed(kind, names):
                if (kind, obj.metadata.name) not in wanted:
                    self._delete(kind, names.namespace, obj.metadata.name)
                    changed.append(f'{kind}/{obj.metadata.name}')
        for obj in desired:
            kind, name = obj['kind'], obj['metadata']['name']
            if self._converge(kind, names.namespace, obj, current[(kind, name)]):
                changed.append(f'{kind}/{name}')
        return changed

    def _converge(self, kind: str, namespace: str, desired: Manifest, found: Any | None) -> bool:
        name = desired['metadata']['name']
        if found is None:
            self._create(kind, namespace, desired)
            return True
        if kind == 'RoleBinding':
            found_ref = found.role_ref
            ref = desired['roleRef']
            if (found_ref.kind, found_ref.name) != (ref['kind'], ref['name']):
                # roleRef is immutable: a different role means a new binding.
                self._delete(kind, namespace, name)
                self._create(kind, namespace, desired)
                return True
        patch = self._difference(kind, desired, found)
        if not patch:
            return False
        patcher = _by_kind(
            {
                'ServiceAccount': self.core.patch_namespaced_service_account,
                'Role': self.rbac.patch_namespaced_role,
                'RoleBinding': self.rbac.patch_namespaced_role_binding,
            }
        )[kind]
        with translated(f'update {kind} {namespace}/{name}'):
            patcher(name, namespace, patch)
        return True

    def _difference(self, kind: str, desired: Manifest, found: Any) -> dict[str, Any]:
        """A merge patch with only what differs (labels and annotations others added stay)."""
        patch: dict[str, Any] = {}
        meta = found.metadata
        want = desired['metadata']
        labels = {k: v for k, v in want['labels'].items() if (meta.labels or {}).get(k) != v}
        annotations = {
            k: v for k, v in want['annotations'].items() if (meta.annotations or {}).get(k) != v
        }
        refs = [(r.uid, r.name) for r in meta.owner_references or []]
        metadata: dict[str, Any] = {}
        if labels:
            metadata['labels'] = labels
        if annotations:
            metadata['annotations'] = annotations
        if refs != [(r['uid'], r['name']) for r in want['ownerReferences']]:
            metadata['ownerReferences'] = want['ownerReferences']
        if metadata:
            patch['metadata'] = metadata
        if kind == 'Role' and _normalised_rules(found.rules or []) != _normalised_rules(
            desired['rules']
        ):
            patch['rules'] = desired['rules']
        if kind == 'RoleBinding':
            subjects = [(s.kind, s.name, s.namespace) for s in found.subjects or []]
            if subjects != [(s['kind'], s['name'], s['namespace']) for s in desired['subjects']]:
                patch['subjects'] = desired['subjects']
        return patch

    def _create(self, kind: str, namespace: str, body: Manifest) -> None:
        creator = _by_kind(
            {
                'ServiceAccount': self.core.create_namespaced_service_account,
                'Role': self.rbac.create_namespaced_role,
                'RoleBinding': self.rbac.create_namespaced_role_binding,
            }
        )[kind]
        with translated(f'create {kind} {namespace}/{body["metadata"]["name"]}'):
            creator(namespace, body)

    def _delete(self, kind: str, namespace: str, name: str) -> None:
        deleter = _by_kind(
            {
                'ServiceAccount': self.core.delete_namespaced_service_account,
                'Role': self.rbac.delete_namespaced_role,
                'RoleBinding': self.rbac.delete_namespaced_role_binding,
                'Secret': self.core.delete_namespaced_secret,
            }
        )[kind]
        try:
            deleter(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return
            with translated(f'delete {kind} {namespace}/{name}'):
                raise

    # -- revocation ------------------------------------------------------------------------

    def delete_all(self, names: IdentityNames) -> None:
        """RoleBindings, Role, the ServiceAccount's token Secrets, then the ServiceAccount."""
        for kind in ('RoleBinding', 'Role'):
            for obj in self._managed(kind, names):
                self._delete(kind, names.namespace, obj.metadata.name)
        for secret in self._token_secrets(names) if self._managed('ServiceAccount', names) else []:
            self._delete('Secret', names.namespace, secret.metadata.name)
        for sa in self._managed('ServiceAccount', names):
            self._delete('ServiceAccount', names.namespace, sa.metadata.name)

    def verify_gone(self, names: IdentityNames) -> list[ProofCheck]:
        checks = []
        for kind in ('RoleBinding', 'Role', 'ServiceAccount'):
            left = [o.metadata.name for o in self._managed(kind, names)]
            checks.append(
                self._proof(
                    f'k8s:{kind}/{names.namespace}/{names.selector}',
                    f'LIST {kind.lower()}s with labelSelector {names.selector} '
                    f'returned {len(left)}',
                    left,
                )
            )
        sa = self._get('ServiceAccount', names.namespace, names.service_account)
        tokens = [s.metadata.name for s in self._token_secrets(names)] if sa is None else []
        checks.append(
            self._proof(
                f'k8s:Secret/{names.namespace}/type={SA_TOKEN_TYPE},sa={names.service_account}',
                f'LIST secrets of type {SA_TOKEN_TYPE} for {names.service_account} '
                f'returned {len(tokens)}',
                tokens,
            )
        )
        return checks

    def _proof(self, obj: str, check: str, left: list[str]) -> ProofCheck:
        result = GONE if not left else f'StillPresent: {", ".join(sorted(left))}'
        return ProofCheck(object=obj, check=check, result=result[:256], at=self.clock())

    # -- status and events -----------------------------------------------------------------

    def patch_status(self, names: IdentityNames, status: Mapping[str, Any]) -> None:
        with translated(f'write status of ServiceIdentity {names.namespace}/{names.name}'):
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, names.namespace, PLURAL, names.name, {'status': dict(status)}
            )

    def post_event(
        self, names: IdentityNames, uid: str, *, warning: bool, reason: str, message: str
    ) -> None:
        now = format_timestamp(self.clock().replace(microsecond=0))
        body = {
            'metadata': {'generateName': f'{names.name}.', 'namespace': names.namespace},
            'involvedObject': {
                'apiVersion': API_VERSION,
                'kind': KIND,
                'name': names.name,
                'namespace': names.namespace,
                'uid': uid,
            },
            'reason': reason,
            'message': message[:EVENT_MESSAGE_LIMIT],
            'type': 'Warning' if warning else 'Normal',
            'source': {'component': 'tenure'},
            'reportingComponent': 'tenure.dev/operator',
            'reportingInstance': socket.gethostname()[:128],
            'firstTimestamp': now,
            'lastTimestamp': now,
            'count': 1,
        }
        try:
            with translated(f'record event {reason} for {names.namespace}/{names.name}'):
                self.core.create_namespaced_event(names.namespace, cast(Any, body))
        except (TransientError, PermanentError) as e:
            # Events are best effort (like kubectl's recorder): never fail a reconcile for one.
            log.warning('%s', e)

"""The Kubernetes adapter: the only operator module that talks to the Kubernetes API.

Thin and idempotent: reads before it writes, writes only what differs, deletes only objects that
carry this identity's labels (a ServiceAccount of the same name created by someone else is never
adopted, overwritten or deleted). Client errors become `TransientError` or `PermanentError`.

Compare-then-write is guarded by the API's own optimistic concurrency: a patch carries the
`resourceVersion` that was compared, a delete carries the `uid` that was checked, so an object
changed or replaced in between answers 409 Conflict (a TransientError: the next reconcile reads
again) instead of being overwritten or deleted by mistake (API conventions, "Concurrency Control
and Consistency"; a resourceVersion in a patch is a precondition, kubernetes/kubernetes#63104;
DeleteOptions.preconditions, https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/delete-options/).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, Literal, cast

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tenure.api.v1alpha1 import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    POLICY_PLURAL,
    SOURCE_PLURAL,
    VERSION,
    ProofCheck,
)
from tenure.domain.desired import Manifest
from tenure.domain.drift import BindingRef
from tenure.domain.inventory import (
    BindingRecord,
    ServiceAccountRecord,
    TokenSecretRecord,
)
from tenure.domain.leadership import LeaseState
from tenure.domain.names import IDENTITY_LABEL, MANAGED_BY, MANAGED_BY_LABEL, IdentityNames
from tenure.errors import NameConflict, PermanentError, TenureError, TransientError

log = logging.getLogger(__name__)

SA_TOKEN_TYPE: Final = 'kubernetes.io/service-account-token'
SA_NAME_ANNOTATION: Final = 'kubernetes.io/service-account.name'
SA_UID_ANNOTATION: Final = 'kubernetes.io/service-account.uid'
EVENT_MESSAGE_LIMIT: Final = 1024
GONE: Final = 'Gone'
MERGE_PATCH: Final = 'application/merge-patch+json'
"""RFC 7386: maps merge, lists are replaced whole, null removes. Chosen over the client's default
(strategic merge) so a patch means the same for built-in kinds and for the custom resource."""
STATUS_MESSAGE_LIMIT: Final = 300

Kind = Literal['ServiceAccount', 'Role', 'RoleBinding']
Managed = client.V1ServiceAccount | client.V1Role | client.V1RoleBinding


def _status_message(e: ApiException) -> str:
    """The API's own explanation (a `Status.message`), never the request or response object."""
    try:
        body = json.loads(e.body or '')
    except ValueError:
        return ''
    if not isinstance(body, dict) or body.get('kind') != 'Status':
        return ''
    message = str(body.get('message') or '')
    if len(message) > STATUS_MESSAGE_LIMIT:
        message = message[: STATUS_MESSAGE_LIMIT - 3] + '...'
    return message


def retry_after(e: ApiException) -> float | None:
    return retry_after_seconds((e.headers or {}).get('Retry-After'))


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header as seconds, None when absent or not a number of seconds."""
    # The apiserver sends whole seconds (429 from API Priority and Fairness, 5xx while starting);
    # an HTTP-date form is not used by it and is ignored rather than guessed at.
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def translate(e: ApiException, action: str) -> TenureError:
    """An API error as the operator's vocabulary: 409, 429 and 5xx are worth retrying."""
    status = e.status or 0
    explanation = _status_message(e) or e.reason or 'error'
    message = f'could not {action}: {status} {explanation}'
    # 409: a conflict (stale resourceVersion, uid precondition, object being deleted) passes
    # once the next reconcile has read the object again. 0: the client gave up without a reply.
    if status in (0, 409, 429) or status >= 500:
        return TransientError(message, retry_after=retry_after(e))
    return PermanentError(message)


@contextlib.contextmanager
def translated(action: str) -> Iterator[None]:
    """Re-raise client errors as TransientError (retry) or PermanentError (needs a change)."""
    try:
        yield
    except ApiException as e:
        raise translate(e, action) from e
    except (OSError, urllib3.exceptions.HTTPError) as e:
        # Connection refused, DNS, TLS, timeouts: the API is not reachable right now.
        raise TransientError(f'could not {action}: {type(e).__name__}') from e


def _meta(obj: Managed | client.V1Secret) -> client.V1ObjectMeta:
    # Objects read from the API always have metadata.
    return cast(client.V1ObjectMeta, obj.metadata)


def _name(obj: Managed | client.V1Secret) -> str:
    return cast(str, _meta(obj).name)


def _uid(obj: Managed | client.V1Secret) -> str:
    return cast(str, _meta(obj).uid)


def _labelled(obj: Managed, names: IdentityNames) -> bool:
    labels = _meta(obj).labels or {}
    return labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(IDENTITY_LABEL) == names.name


def _resource_version(obj: Any) -> str | None:
    meta = getattr(obj, 'metadata', None)
    return getattr(meta, 'resource_version', None) if meta is not None else None


def _owner_uid(desired: Sequence[Manifest]) -> str | None:
    refs = desired[0]['metadata'].get('ownerReferences') if desired else None
    return cast(str, refs[0]['uid']) if refs else None


def _conflict(obj: Managed, names: IdentityNames, uid: str | None) -> str | None:
    """Why `obj` is not this identity's to manage, or None when it is."""
    owned = uid is not None and any(ref.uid == uid for ref in _meta(obj).owner_references or [])
    # Owned by this very ServiceIdentity (its uid), it is Tenure's even with its labels stripped
    # by someone: drift to put back (issue #6), not a stranger's object.
    if not _labelled(obj, names) and not owned:
        return f'it is not labelled {names.selector}'
    if uid is not None and not owned:
        # Labelled for this name but owned by another (e.g. an earlier, deleted) ServiceIdentity:
        # adopting it would carry that identity's grants and tokens over to a new approval.
        return f'it is owned by another ServiceIdentity than {names.namespace}/{names.name}'
    return None


def _pruned(value: Any) -> Any:
    """A value with unset fields dropped, so `[]`, `''` and absent compare equal as the API
    treats them (the server omits empty optional fields; models render them as None)."""
    if isinstance(value, Mapping):
        out = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, '', [], {})}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


class KubeObjects:
    """ServiceAccounts, Roles, RoleBindings, token Secrets, Events and ServiceIdentity status."""

    def __init__(self, api: client.ApiClient, *, clock: Callable[[], datetime]) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.clock = clock
        self._written: dict[tuple[str, str, str], str] = {}
        """(kind, namespace, name) -> the resourceVersion (or deleted:<uid>) of this adapter's
        last write, for `own_write`."""
        self._written_lock = threading.Lock()

    # -- startup ---------------------------------------------------------------------------

    def check_ready(self) -> None:
        """Fail fast: the API answers and the ServiceIdentity CRD (with status) is served."""
        with translated('reach the Kubernetes API'):
            client.VersionApi(self.api).get_code()
        install = 'install the CRD: kubectl apply -f crds/'
        try:
            resources = self.custom.get_api_resources(GROUP, VERSION)
        except ApiException as e:
            if e.status == 404:
                raise PermanentError(f'the {GROUP}/{VERSION} API is not served: {install}') from e
            raise translate(e, f'discover the {GROUP}/{VERSION} API') from e
        except (OSError, urllib3.exceptions.HTTPError) as e:
            raise TransientError(f'could not discover {GROUP}/{VERSION}: {type(e).__name__}') from e
        served = {r.name for r in resources.resources}
        for needed in (PLURAL, f'{PLURAL}/status'):
            if needed not in served:
                raise PermanentError(f'{needed}.{GROUP}/{VERSION} is not served: {install}')

    # -- reads -----------------------------------------------------------------------------

    def read_identity(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ServiceIdentity as the API has it now, None when it is gone."""
        try:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise translate(e, f'read ServiceIdentity {namespace}/{name}') from e
        except (OSError, urllib3.exceptions.HTTPError) as e:
            raise TransientError(
                f'could not read ServiceIdentity {namespace}/{name}: {type(e).__name__}'
            ) from e
        return cast(dict[str, Any], obj)

    def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        """The namespace's labels, None when it does not exist."""
        with translated(f'read Namespace {namespace}'):
            try:
                found = self.core.read_namespace(namespace)
            except ApiException as e:
                if e.status == 404:
                    return None
                raise
        meta = found.metadata
        return dict(meta.labels or {}) if meta is not None else {}

    def read_policy(self, name: str) -> dict[str, Any] | None:
        """The cluster-scoped IdentityPolicy `name`, None when there is none."""
        with translated(f'read IdentityPolicy {name}'):
            try:
                obj = self.custom.get_cluster_custom_object(GROUP, VERSION, POLICY_PLURAL, name)
            except ApiException as e:
                if e.status == 404:
                    return None
                raise
        return cast(dict[str, Any], obj)

    def read_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's decoded data (a TicketSource's credentials), None when there is none.

        The values are returned to the caller only: never logged, never put in a message."""
        with translated(f'read Secret {namespace}/{name}'):
            try:
                found = self.core.read_namespaced_secret(name, namespace)
            except ApiException as e:
                if e.status == 404:
                    return None
                raise
        return {
            key: base64.b64decode(value).decode('utf-8', errors='replace')
            for key, value in (found.data or {}).items()
        }

    def list_ticket_sources(self) -> list[dict[str, Any]]:
        """Every TicketSource (cluster-scoped); none when the CRD is not installed (then none can
        exist). Any other failure is raised: starting without them would judge identities that
        cite one on their manifest alone."""
        with translated('list TicketSources'):
            try:
                listed = self.custom.list_cluster_custom_object(GROUP, VERSION, SOURCE_PLURAL)
            except ApiException as e:
                if e.status == 404:
                    return []
                raise
        return list(cast(dict[str, Any], listed).get('items', []))

    def list_identities(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every ServiceIdentity (in `namespace`, or in all namespaces)."""
        with translated('list ServiceIdentities'):
            if namespace is None:
                listed = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            else:
                listed = self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL
                )
        return list(cast(dict[str, Any], listed).get('items', []))

    # -- the leader Lease ------------------------------------------------------------------

    def read_lease(self, namespace: str, name: str) -> tuple[LeaseState, str] | None:
        """The Lease and its resourceVersion, None when there is none."""
        with translated(f'read Lease {namespace}/{name}'):
            try:
                lease = client.CoordinationV1Api(self.api).read_namespaced_lease(name, namespace)
            except ApiException as e:
                if e.status == 404:
                    return None
                raise
        spec = lease.spec
        meta = lease.metadata
        state = LeaseState(
            holder=spec.holder_identity if spec else None,
            renewed_at=spec.renew_time if spec else None,
            duration=timedelta(seconds=(spec.lease_duration_seconds or 0) if spec else 0),
            transitions=(spec.lease_transitions or 0) if spec else 0,
        )
        return state, str(meta.resource_version if meta else '')

    def write_lease(
        self,
        namespace: str,
        name: str,
        *,
        holder: str,
        duration: timedelta,
        transitions: int,
        acquired: bool,
        resource_version: str | None,
    ) -> bool:
        """Create or replace the Lease, guarded by `resource_version`; False when another
        replica wrote it first (409), so two replicas never both believe they lead."""
        now = self.clock().isoformat().replace('+00:00', 'Z')
        spec: dict[str, Any] = {
            'holderIdentity': holder,
            'leaseDurationSeconds': max(1, int(duration.total_seconds())),
            'renewTime': now,
            'leaseTransitions': transitions,
        }
        if acquired:
            spec['acquireTime'] = now
        body: dict[str, Any] = {
            'apiVersion': 'coordination.k8s.io/v1',
            'kind': 'Lease',
            'metadata': {'name': name, 'namespace': namespace},
            'spec': spec,
        }
        leases = client.CoordinationV1Api(self.api)
        try:
            if resource_version is None:
                leases.create_namespaced_lease(namespace, cast(Any, body))
            else:
                body['metadata']['resourceVersion'] = resource_version
                leases.replace_namespaced_lease(name, namespace, cast(Any, body))
        except ApiException as e:
            if e.status == 409:
                return False
            raise translate(e, f'write Lease {namespace}/{name}') from e
        except (OSError, urllib3.exceptions.HTTPError) as e:
            raise TransientError(
                f'could not write Lease {namespace}/{name}: {type(e).__name__}'
            ) from e
        return True

    def service_account_uid(self, names: IdentityNames) -> str | None:
        sa = self._get('ServiceAccount', names.namespace, names.service_account)
        if sa is None or not _labelled(sa, names):
            return None
        return _uid(sa)

    def _get(self, kind: Kind, namespace: str, name: str) -> Managed | None:
        with translated(f'read {kind} {namespace}/{name}'):
            try:
                if kind == 'ServiceAccount':
                    return self.core.read_namespaced_service_account(name, namespace)
                if kind == 'Role':
                    return self.rbac.read_namespaced_role(name, namespace)
                return self.rbac.read_namespaced_role_binding(name, namespace)
            except ApiException as e:
                if e.status == 404:
                    return None
                raise

    def _managed(self, kind: Kind, names: IdentityNames) -> list[Managed]:
        """This identity's objects of `kind`, found by their labels."""
        selector = names.selector
        with translated(f'list {kind}s of {names.namespace}/{names.name}'):
            items: Sequence[Managed]
            if kind == 'ServiceAccount':
                items = self.core.list_namespaced_service_account(
                    names.namespace, label_selector=selector
                ).items
            elif kind == 'Role':
                items = self.rbac.list_namespaced_role(
                    names.namespace, label_selector=selector
                ).items
            else:
                items = self.rbac.list_namespaced_role_binding(
                    names.namespace, label_selector=selector
                ).items
        return list(items)

    def _token_secrets(self, names: IdentityNames) -> list[client.V1Secret]:
        """The ServiceAccount's legacy token Secrets, when the ServiceAccount is (or was) ours.

        A token Secret belongs to the ServiceAccount named in its annotation, and to the one with
        the uid in its uid annotation once the tokens controller has filled it in
        (https://kubernetes.io/docs/concepts/configuration/secret/#serviceaccount-token-secrets).
        Those of a same-named ServiceAccount that Tenure does not manage are left alone.
        """
        sa = self._get('ServiceAccount', names.namespace, names.service_account)
        if sa is not None and not _labelled(sa, names):
            return []
        sa_uid = None if sa is None else _uid(sa)
        with translated(f'list token Secrets of {names.namespace}/{names.name}'):
            secrets = self.core.list_namespaced_secret(
                names.namespace, field_selector=f'type={SA_TOKEN_TYPE}'
            ).items
        found = []
        for secret in secrets:
            annotations = _meta(secret).annotations or {}
            if annotations.get(SA_NAME_ANNOTATION) != names.service_account:
                continue
            if sa_uid is not None and annotations.get(SA_UID_ANNOTATION) not in (None, sa_uid):
                continue
            found.append(secret)
        return found

    # -- apply -----------------------------------------------------------------------------

    def apply(
        self,
        names: IdentityNames,
        desired: Sequence[Manifest],
        *,
        changes: dict[str, str] | None = None,
    ) -> list[str]:
        """Converge the identity's objects to `desired`; return 'Kind/name' of what changed.

        `changes`, when given, receives what differed for each of them ('labels, annotations',
        'rules', 'missing; created', ...): the drift report names it (never a value).
        """
        uid = _owner_uid(desired)
        current: dict[tuple[str, str], Managed | None] = {}
        # Every name is checked before anything is written: a conflict writes nothing at all.
        for obj in desired:
            kind, name = cast(Kind, obj['kind']), cast(str, obj['metadata']['name'])
            found = self._get(kind, names.namespace, name)
            if found is not None:
                detail = _conflict(found, names, uid)
                if detail is not None:
                    raise NameConflict(kind, f'{names.namespace}/{name}', detail)
            current[(kind, name)] = found
        described = {} if changes is None else changes
        # Narrowing first: grants no longer approved go before anything new is written.
        for kind in ('RoleBinding', 'Role'):
            for managed in self._managed(kind, names):
                if (kind, _name(managed)) not in current:
                    self._delete(kind, names.namespace, managed)
                    described[f'{kind}/{_name(managed)}'] = 'not in the approved scope; deleted'
        for obj in desired:
            kind, name = cast(Kind, obj['kind']), cast(str, obj['metadata']['name'])
            what = self._converge(kind, names.namespace, obj, current[(kind, name)])
            if what is not None:
                described[f'{kind}/{name}'] = what
        return list(described)

    def own_write(self, kind: str, namespace: str, name: str, marker: str) -> bool:
        """Whether a watch event shows this adapter's own last write of the object (its
        resourceVersion, or `deleted:<uid>` for a delete): such an event needs no drift check.
        Each write is recognised once."""
        with self._written_lock:
            key = (kind, namespace, name)
            if self._written.get(key) != marker:
                return False
            del self._written[key]
            return True

    def _wrote(self, kind: str, namespace: str, name: str, marker: str | None) -> None:
        if marker:
            with self._written_lock:
                self._written[(kind, namespace, name)] = marker

    def _converge(
        self, kind: Kind, namespace: str, desired: Manifest, found: Managed | None
    ) -> str | None:
        """Write what differs; say what that was, None when nothing did."""
        if found is None:
            self._create(kind, namespace, desired)
            return 'missing; created'
        if isinstance(found, client.V1RoleBinding):
            ref = found.role_ref.model_dump(mode='json', by_alias=True)
            if _pruned(ref) != _pruned(desired['roleRef']):
                # roleRef is immutable (the API answers 422): a different role is a new binding.
                self._delete(kind, namespace, found)
                self._create(kind, namespace, desired)
                return 'roleRef; re-created'
        patch = self._difference(desired, found)
        if patch is None:
            return None
        name = _name(found)
        with translated(f'update {kind} {namespace}/{name}'):
            written: Managed
            if kind == 'ServiceAccount':
                written = self.core.patch_namespaced_service_account(
                    name, namespace, patch, _content_type=MERGE_PATCH
                )
            elif kind == 'Role':
                written = self.rbac.patch_namespaced_role(
                    name, namespace, patch, _content_type=MERGE_PATCH
                )
            else:
                written = self.rbac.patch_namespaced_role_binding(
                    name, namespace, patch, _content_type=MERGE_PATCH
                )
        self._wrote(kind, namespace, name, _resource_version(written))
        fields = [k for k in ('labels', 'annotations') if k in patch['metadata']]
        fields += [k for k in patch if k != 'metadata']
        return ', '.join(fields)

    def _difference(self, desired: Manifest, found: Managed) -> dict[str, Any] | None:
        """A merge patch of what differs, None when nothing does.

        Only the labels and annotations Tenure sets are compared and written: those added by
        others (GitOps tools, kubectl) stay. Ownership was checked before, so ownerReferences are
        left as they are. Every other top-level field of the manifest (rules, subjects) is
        Tenure's alone and replaced whole when it differs.
        """
        meta = _meta(found)
        want = desired['metadata']
        metadata: dict[str, Any] = {}
        for field, have in (('labels', meta.labels or {}), ('annotations', meta.annotations or {})):
            differs = {k: v for k, v in want.get(field, {}).items() if have.get(k) != v}
            if differs:
                metadata[field] = differs
        patch: dict[str, Any] = {}
        wire = found.model_dump(mode='json', by_alias=True)
        for field, value in desired.items():
            if field in ('apiVersion', 'kind', 'metadata', 'roleRef'):
                continue
            if _pruned(value) != _pruned(wire.get(field)):
                patch[field] = value
        if not metadata and not patch:
            return None
        # The resourceVersion compared against: a write in between makes this patch a 409.
        metadata['resourceVersion'] = meta.resource_version
        patch['metadata'] = metadata
        return patch

    def _create(self, kind: Kind, namespace: str, body: Manifest) -> None:
        name = cast(str, body['metadata']['name'])
        with translated(f'create {kind} {namespace}/{name}'):
            created: Managed
            if kind == 'ServiceAccount':
                sa = cast(client.V1ServiceAccount, client.V1ServiceAccount.from_dict(body))
                created = self.core.create_namespaced_service_account(namespace, sa)
            elif kind == 'Role':
                role = cast(client.V1Role, client.V1Role.from_dict(body))
                created = self.rbac.create_namespaced_role(namespace, role)
            else:
                binding = cast(client.V1RoleBinding, client.V1RoleBinding.from_dict(body))
                created = self.rbac.create_namespaced_role_binding(namespace, binding)
        self._wrote(kind, namespace, name, _resource_version(created))

    def _delete(
        self, kind: Kind | Literal['Secret'], namespace: str, obj: Managed | client.V1Secret
    ) -> None:
        """Delete exactly the object that was read: a same-named replacement answers 409."""
        name = _name(obj)
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=_uid(obj)))
        if kind != 'Secret':  # Secrets are not watched
            self._wrote(kind, namespace, name, f'deleted:{_uid(obj)}')
        with translated(f'delete {kind} {namespace}/{name}'):
            try:
                if kind == 'ServiceAccount':
                    self.core.delete_namespaced_service_account(name, namespace, body=options)
                elif kind == 'Role':
                    self.rbac.delete_namespaced_role(name, namespace, body=options)
                elif kind == 'RoleBinding':
                    self.rbac.delete_namespaced_role_binding(name, namespace, body=options)
                else:
                    self.core.delete_namespaced_secret(name, namespace, body=options)
            except ApiException as e:
                if e.status != 404:  # already gone is what was wanted
                    raise

    def delete_binding(self, binding: BindingRef) -> None:
        """Delete a binding outside Tenure that grants a managed ServiceAccount (only with
        --remove-unexpected-bindings); a binding replaced since it was seen answers 409."""
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=binding.uid))
        where = f'{binding.namespace}/' if binding.namespace else ''
        with translated(f'delete {binding.kind} {where}{binding.name}'):
            try:
                if binding.kind == 'ClusterRoleBinding':
                    self.rbac.delete_cluster_role_binding(binding.name, body=options)
                else:
                    self.rbac.delete_namespaced_role_binding(
                        binding.name, binding.namespace, body=options
                    )
            except ApiException as e:
                if e.status != 404:
                    raise

    # -- revocation ------------------------------------------------------------------------

    def delete_access(self, names: IdentityNames) -> None:
        """RoleBindings, Role, then the ServiceAccount's token Secrets.

        Bindings go first so that access ends at the first write. The ServiceAccount itself is
        left for `delete_service_account`: while it exists, its token Secrets can be told apart
        from a same-named stranger's, and a revocation retried after a failure can still read
        the uid that names its Vault entity.
        """
        for kind in ('RoleBinding', 'Role'):
            for obj in self._managed(kind, names):
                self._delete(kind, names.namespace, obj)
        for secret in self._token_secrets(names):
            self._delete('Secret', names.namespace, secret)

    def delete_service_account(self, names: IdentityNames) -> None:
        for sa in self._managed('ServiceAccount', names):
            self._delete('ServiceAccount', names.namespace, sa)

    def verify_gone(self, names: IdentityNames) -> list[ProofCheck]:
        checks = []
        for kind in ('RoleBinding', 'Role', 'ServiceAccount'):
            left = [_name(o) for o in self._managed(kind, names)]
            checks.append(
                self._proof(
                    f'k8s:{kind}/{names.namespace}/{names.selector}',
                    f'LIST {kind.lower()}s with labelSelector {names.selector} '
                    f'returned {len(left)}',
                    left,
                )
            )
        tokens = [_name(s) for s in self._token_secrets(names)]
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
        """Merge-patch the status subresource: `spec` is never written (GitOps owns it)."""
        with translated(f'write status of ServiceIdentity {names.namespace}/{names.name}'):
            self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                names.namespace,
                PLURAL,
                names.name,
                {'status': dict(status)},
                _content_type=MERGE_PATCH,
            )

    def post_event(
        self, names: IdentityNames, uid: str, *, warning: bool, reason: str, message: str
    ) -> None:
        """A core/v1 Event about the ServiceIdentity, as client-go's recorder writes one."""
        now = self.clock().replace(microsecond=0)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f'{names.name}.', namespace=names.namespace),
            involved_object=client.V1ObjectReference(
                api_version=API_VERSION,
                kind=KIND,
                name=names.name,
                namespace=names.namespace,
                uid=uid,
            ),
            reason=reason,
            message=message[:EVENT_MESSAGE_LIMIT],
            type='Warning' if warning else 'Normal',
            source=client.V1EventSource(component='tenure'),
            reporting_component='tenure.dev/operator',
            reporting_instance=socket.gethostname()[:128],
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            with translated(f'record event {reason} for {names.namespace}/{names.name}'):
                self.core.create_namespaced_event(names.namespace, event)
        except (TransientError, PermanentError) as e:
            # Events are best effort (like client-go's recorder): never fail a reconcile for one.
            log.warning('%s', e)

    # -- inventory (read-only, for `tenure report`) -------------------------------------------

    def list_service_accounts(self, namespace: str | None = None) -> list[ServiceAccountRecord]:
        """Every ServiceAccount (in `namespace`, or in all namespaces)."""
        with translated('list ServiceAccounts'):
            if namespace is None:
                items = self.core.list_service_account_for_all_namespaces().items
            else:
                items = self.core.list_namespaced_service_account(namespace).items
        return [
            ServiceAccountRecord(
                **_record_fields(sa),
                secrets=tuple(ref.name for ref in sa.secrets or [] if ref.name),
            )
            for sa in items
        ]

    def list_token_secrets(self, namespace: str | None = None) -> list[TokenSecretRecord]:
        """Every Secret of type kubernetes.io/service-account-token: names and annotations only,
        the token itself is never kept."""
        selector = f'type={SA_TOKEN_TYPE}'
        with translated('list token Secrets'):
            if namespace is None:
                items = self.core.list_secret_for_all_namespaces(field_selector=selector).items
            else:
                items = self.core.list_namespaced_secret(namespace, field_selector=selector).items
        return [
            TokenSecretRecord(
                **_record_fields(secret),
                service_account=(_meta(secret).annotations or {}).get(SA_NAME_ANNOTATION, ''),
            )
            for secret in items
        ]

    def list_bindings(self, namespace: str | None = None) -> list[BindingRecord]:
        """RoleBindings (in `namespace`, or all) and every ClusterRoleBinding, with their
        ServiceAccount subjects (a ClusterRoleBinding can grant a ServiceAccount of any
        namespace, so all of them are read)."""
        with translated('list RoleBindings'):
            if namespace is None:
                role_bindings = self.rbac.list_role_binding_for_all_namespaces().items
            else:
                role_bindings = self.rbac.list_namespaced_role_binding(namespace).items
        with translated('list ClusterRoleBindings'):
            cluster_bindings = self.rbac.list_cluster_role_binding().items
        records = [self._binding_record(b, cluster_wide=False) for b in role_bindings]
        records += [self._binding_record(b, cluster_wide=True) for b in cluster_bindings]
        return records

    def read_objects(
        self, names: IdentityNames, wanted: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], Manifest]:
        """For `tenure plan`: the objects of the names in `wanted` (kind, name), whoever's they
        are, and every object labelled for this identity, as the API returns them (plain JSON)."""
        found: dict[tuple[str, str], Manifest] = {}
        for kind, name in wanted:
            obj = self._get(cast(Kind, kind), names.namespace, name)
            if obj is not None:
                found[(kind, name)] = self._plain(obj)
        kinds: tuple[Kind, ...] = ('ServiceAccount', 'Role', 'RoleBinding')
        for managed_kind in kinds:
            for managed in self._managed(managed_kind, names):
                found[(managed_kind, _name(managed))] = self._plain(managed)
        return found

    def _plain(self, obj: Managed) -> Manifest:
        return cast(Manifest, self.api.sanitize_for_serialization(obj))  # type: ignore[no-untyped-call]

    @staticmethod
    def _binding_record(
        binding: client.V1RoleBinding | client.V1ClusterRoleBinding, *, cluster_wide: bool
    ) -> BindingRecord:
        home = '' if cluster_wide else str(_meta_of(binding).namespace or '')
        accounts = tuple(
            # A RoleBinding's ServiceAccount subject without a namespace means its own.
            (subject.namespace or home, subject.name)
            for subject in binding.subjects or []
            if subject.kind == 'ServiceAccount'
        )
        return BindingRecord(
            **_record_fields(binding),
            cluster_wide=cluster_wide,
            role_kind=binding.role_ref.kind,
            role_name=binding.role_ref.name,
            service_accounts=accounts,
            other_subjects=len(binding.subjects or []) - len(accounts),
        )


def _meta_of(obj: Any) -> client.V1ObjectMeta:
    # Objects read from the API always have metadata.
    return cast(client.V1ObjectMeta, obj.metadata)


def _record_fields(obj: Any) -> dict[str, Any]:
    """The metadata every inventory record carries."""
    meta = _meta_of(obj)
    return {
        'namespace': str(meta.namespace or ''),
        'name': str(meta.name),
        'uid': str(meta.uid or ''),
        'labels': dict(meta.labels or {}),
        'annotations': dict(meta.annotations or {}),
        'owner_uids': tuple(ref.uid for ref in meta.owner_references or []),
    }

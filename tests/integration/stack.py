"""Test helpers for the running stack: build identities, wait for status, act as an identity."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import hvac
import hvac.exceptions
import kubernetes
from kubernetes.client.exceptions import ApiException

from tenure.api.v1alpha1 import GROUP, PLURAL, VERSION
from tenure_devtools.openbao import OpenBaoDevServer

Obj = dict[str, Any]


def stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def identity(
    name: str,
    namespace: str,
    *,
    state: str = 'Approved',
    expires_in: timedelta = timedelta(days=30),
    on_close: str = 'Revoke',
    ticket: str = 'CHG0031337',
    secret: bool = True,
    cluster_roles: tuple[str, ...] = (),
) -> Obj:
    now = datetime.now(UTC)
    approved = now - timedelta(minutes=1)
    ticket_spec: Obj = {
        'id': ticket,
        'system': 'servicenow',
        'state': state,
        'requester': 'alice@example.com',
        'approver': 'bob@example.com',
        'justification': 'Integration test of the Tenure lifecycle.',
        'onClose': on_close,
    }
    if state != 'Requested':
        ticket_spec['approvedAt'] = stamp(approved)
    vault: Obj = {
        'policy': [{'path': f'secret/data/{namespace}/shared/*', 'capabilities': ['read']}]
    }
    if secret:
        vault['secret'] = {'keys': ['api-key']}
    return {
        'apiVersion': 'tenure.dev/v1alpha1',
        'kind': 'ServiceIdentity',
        'metadata': {'name': name, 'namespace': namespace},
        'spec': {
            'ticket': ticket_spec,
            'owner': {'team': 'payments', 'contact': 'payments@example.com'},
            'service': name,
            'expiresAt': stamp(now + expires_in),
            'kubernetes': {
                'rules': [
                    {
                        'apiGroups': [''],
                        'resources': ['configmaps'],
                        'resourceNames': [f'{name}-config'],
                        'verbs': ['get'],
                    }
                ],
                'clusterRoles': list(cluster_roles),
            },
            'vault': vault,
        },
    }


@dataclasses.dataclass
class Stack:
    """The emulator (through the official client) and OpenBao, as a test sees them."""

    api: kubernetes.client.ApiClient
    bao: OpenBaoDevServer

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.api)

    @property
    def rbac(self) -> kubernetes.client.RbacAuthorizationV1Api:
        return kubernetes.client.RbacAuthorizationV1Api(self.api)

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.api)

    def namespace(self, name: str) -> str:
        self.core.create_namespace({'metadata': {'name': name}})
        return name

    def create(self, manifest: Obj) -> Obj:
        ns = manifest['metadata']['namespace']
        created: Obj = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, manifest
        )
        return created

    def patch(self, namespace: str, name: str, patch: Obj) -> Obj:
        patched: Obj = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, patch
        )
        return patched

    def delete(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def get(self, namespace: str, name: str) -> Obj | None:
        try:
            found: Obj = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
            return found
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def wait(
        self, namespace: str, name: str, predicate: Callable[[Obj], bool], timeout: float = 30
    ) -> Obj:
        """Watch until `predicate(object)` holds (from a fresh read's resourceVersion: no gap)."""
        current = self.get(namespace, name)
        if current is None:
            raise AssertionError(f'{namespace}/{name} does not exist')
        if predicate(current):
            return current
        watch = kubernetes.watch.Watch()
        for event in watch.stream(
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            field_selector=f'metadata.name={name}',
            resource_version=current['metadata']['resourceVersion'],
            timeout_seconds=int(timeout),
        ):
            current = event['object']
            if event['type'] != 'DELETED' and predicate(current):
                watch.stop()
                return current
        raise AssertionError(
            f'{namespace}/{name} did not reach the expected state in {timeout}s; last status: '
            f'{current.get("status")}'
        )

    def wait_phase(self, namespace: str, name: str, phase: str, timeout: float = 30) -> Obj:
        return self.wait(
            namespace, name, lambda o: o.get('status', {}).get('phase') == phase, timeout
        )

    def wait_gone(self, namespace: str, name: str, timeout: float = 30) -> None:
        current = self.get(namespace, name)
        if current is None:
            return
        watch = kubernetes.watch.Watch()
        for event in watch.stream(
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            field_selector=f'metadata.name={name}',
            resource_version=current['metadata']['resourceVersion'],
            timeout_seconds=int(timeout),
        ):
            if event['type'] == 'DELETED':
                watch.stop()
                return
        raise AssertionError(f'{namespace}/{name} was not deleted in {timeout}s')

    def wait_events(
        self, namespace: str, name: str, reasons: set[str], timeout: float = 30
    ) -> set[str]:
        """Watch Events about `name` until all `reasons` have been recorded; return all seen."""
        selector = f'involvedObject.name={name}'
        listed = self.core.list_namespaced_event(namespace, field_selector=selector)
        seen = {e.reason for e in listed.items}
        if reasons <= seen:
            return seen
        watch = kubernetes.watch.Watch()
        for event in watch.stream(
            self.core.list_namespaced_event,
            namespace,
            field_selector=selector,
            resource_version=listed.metadata.resource_version,
            timeout_seconds=int(timeout),
        ):
            seen.add(event['object'].reason)
            if reasons <= seen:
                watch.stop()
                return seen
        raise AssertionError(f'events {sorted(reasons - seen)} not recorded in {timeout}s')

    # -- acting as the identity ------------------------------------------------------------

    def service_account_token(self, namespace: str, name: str) -> str:
        answer = self.core.create_namespaced_service_account_token(
            name, namespace, {'spec': {'expirationSeconds': 600}}
        )
        token: str = answer.status.token
        return token

    def token_review(self, token: str) -> bool:
        review = kubernetes.client.AuthenticationV1Api(self.api).create_token_review(
            {'spec': {'token': token}}
        )
        return bool(review.status.authenticated)

    def vault_login(self, namespace: str, name: str, jwt: str | None = None) -> str:
        """Log in to Vault through Kubernetes auth as the identity; return the Vault token."""
        jwt = jwt or self.service_account_token(namespace, name)
        client = hvac.Client(url=self.bao.addr)
        answer = client.auth.kubernetes.login(f'tenure-{namespace}-{name}', jwt)
        token: str = answer['auth']['client_token']
        return token

    def vault_as(self, token: str) -> hvac.Client:
        return hvac.Client(url=self.bao.addr, token=token)

    def vault_denied(self, token: str) -> bool:
        """True when the token gets 403 on lookup-self (and so on anything)."""
        try:
            self.vault_as(token).auth.token.lookup_self()
        except hvac.exceptions.Forbidden:
            return True
        return False

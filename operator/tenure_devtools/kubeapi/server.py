"""The HTTP face of the Kubernetes API emulator: URL routing, content negotiation, lifecycle.

Development/test tool: a local, in-memory Kubernetes API server for tests and the `tenure dev`
sandbox. Never part of the operator's runtime.

Requests are parsed into a `RequestInfo` (verb, group, version, resource, subresource,
namespace, name) exactly as the apiserver's `RequestInfoFactory` does
(https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-uris). By default every
request is accepted without authentication. With `authorization=True`, bearer-token
authentication, RBAC authorization and escalation prevention (authz.py, rbac.py) run first in
`_dispatch`, where the real server authenticates and authorizes too, and the cluster starts
with the default RBAC roles, aggregated ClusterRoles filled by their controller (rbac.py).

Bodies: JSON or YAML in; JSON out (YAML when asked first). Protobuf bodies and unknown media
types are refused with 415; a protobuf `Accept` falls back to JSON (the real server does the same
for types without protobuf). Server-side apply is not implemented: `application/apply-patch+yaml`
answers 415 with an explanation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from . import crds, errors, openapi, tables
from .auth import TokenApi
from .authz import Authorization
from .controllers import Controllers
from .errors import ApiError
from .faults import FaultInjector
from .operations import (
    APPLY_PATCH,
    Api,
    ListOptions,
    Outcome,
    WriteOptions,
    patch_types,
)
from .rbac import ClusterRoleAggregator
from .resources import Registry, ResourceType, builtin_types
from .store import Store
from .tokens import TokenIssuer
from .watch import WatchServer

log = logging.getLogger(__name__)

SERVER_VERSION = {
    'major': '1',
    'minor': '33',
    'gitVersion': 'v1.33.0',
    'gitCommit': 'tenure-kubeapi-emulator',
    'gitTreeState': 'clean',
    'buildDate': '2025-04-23T00:00:00Z',
    'goVersion': 'go1.24.2',
    'compiler': 'gc',
    'platform': 'linux/amd64',
}
MAX_BODY = 3 * 1024 * 1024  # the apiserver's request body limit for JSON/YAML
BODY_TYPES = ('application/json', 'application/yaml')
NAMESPACE_SUBRESOURCES = frozenset({'status', 'finalize'})
INITIAL_NAMESPACES = ('default', 'kube-system', 'kube-public', 'kube-node-lease')


@dataclass(frozen=True)
class RequestInfo:
    """What an authorizer would look at (k8s.io/apiserver/pkg/endpoints/request.RequestInfo)."""

    verb: str
    group: str
    version: str
    resource: str
    subresource: str
    namespace: str
    name: str


def _json_response(body: Any, status: int = 200, *, yaml_out: bool = False) -> web.Response:
    if yaml_out:
        text = yaml.safe_dump(body, sort_keys=False)
        return web.Response(status=status, text=text, content_type='application/yaml')
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(',', ':')).encode(),
        content_type='application/json',
    )


def _status_response(err: ApiError) -> web.Response:
    return _json_response(err.status(), err.code)


def _truthy(value: str | None) -> bool:
    return value in ('true', '1', 'True')


def _media_type(header: str) -> str:
    return header.split(';', 1)[0].strip().lower()


class KubeApiEmulator:
    """A local Kubernetes API server (development and test tool), on an asyncio loop.

    `crd_paths`: CRD YAML files or directories, loaded at start. `clock` lets tests move time
    (token expiry). `bookmark_interval`: seconds between watch BOOKMARK events (the real
    server: about a minute). `watch_window`: events kept per resource for watch replay.
    `authorization`: authenticate bearer tokens and enforce RBAC (authz.py); `admin_token`
    then acts as a cluster admin, and so does a request without a token.
    """

    def __init__(
        self,
        crd_paths: Sequence[Path] = (),
        *,
        clock: Callable[[], datetime] | None = None,
        bookmark_interval: float = 60.0,
        watch_window: int = 10_000,
        token_issuer: TokenIssuer | None = None,
        authorization: bool = False,
    ) -> None:
        self.crd_paths = [Path(p) for p in crd_paths]
        self.clock = clock or (lambda: datetime.now(UTC))
        self.bookmark_interval = bookmark_interval
        self.watch_window = watch_window
        self.token_issuer = token_issuer or TokenIssuer()
        self.url = ''
        # ---- authentication and authorization (opt-in, see authz.py) ----------------------
        self.authorization = authorization
        self.admin_token = secrets.token_urlsafe(32)
        self.authz: Authorization | None = None
        # ---- end authentication and authorization ---------------------------------------
        # ---- fault injection (test tooling, see faults.py): rules that tests add at any time.
        self.faults = FaultInjector(
            parse_request=self._request_info, resource_version=lambda: self.store.rv
        )
        self._runner: web.AppRunner | None = None
        self._controller_task: asyncio.Task[None] | None = None
        self.store: Store
        self.registry: Registry
        self.api: Api
        self.tokens: TokenApi
        self.controllers: Controllers
        self._watches: WatchServer
        self.aggregator: ClusterRoleAggregator | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    async def start(self, host: str = '127.0.0.1', port: int = 0) -> None:
        self.store = Store(window=self.watch_window)
        self.registry = Registry(builtin_types())
        self.api = Api(self.store, self.registry, self.clock)
        self.tokens = TokenApi(self.api, self.token_issuer)
        self.controllers = Controllers(self.api, self.registry, self.tokens)
        self._watches = WatchServer(self.api, bookmark_interval=self.bookmark_interval)
        # ---- RBAC (opt-in, see authz.py and rbac.py) --------------------------------------
        if self.authorization:
            self.aggregator = ClusterRoleAggregator(self.api, self.registry)
            self.authz = Authorization(
                self.api, self.registry, self.tokens, admin_token=self.admin_token
            )
        # ---- end RBAC -----------------------------------------------------------------
        self._bootstrap()
        # ---- RBAC: the default roles of an RBAC cluster, then aggregation at once ----------
        if self.authz is not None and self.aggregator is not None:
            self.authz.bootstrap()
            self.aggregator.sync()
        # ---- end RBAC -----------------------------------------------------------------
        app = web.Application(client_max_size=MAX_BODY)
        # ---- fault injection (test tooling, see faults.py): every request passes the rules on
        # its way to self._handle; the control API is served under faults.CONTROL_PATH.
        self.faults.install(app, self._handle)
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            handler_cancellation=True,
            shutdown_timeout=1.0,
            access_log=None,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self.url = f'http://{host}:{bound_port}'
        self._controller_task = asyncio.get_running_loop().create_task(self.controllers.run())
        log.info('kubeapi emulator listening on %s', self.url)

    def _bootstrap(self) -> None:
        """Namespaces of a fresh cluster, and the CRDs given at start (established at once)."""
        for rt in self.registry.all():
            if rt.stored:
                self.store.table(rt.table)  # their event logs start with the cluster
        namespaces = self.registry.get('', 'v1', 'namespaces')
        assert namespaces is not None
        for name in INITIAL_NAMESPACES:
            self.api.create(namespaces, '', {'metadata': {'name': name}}, WriteOptions())
        crd_type = self.registry.get('apiextensions.k8s.io', 'v1', 'customresourcedefinitions')
        assert crd_type is not None
        for document in crds.load_documents(self.crd_paths):
            self.api.create(crd_type, '', document, WriteOptions())
        self.controllers.run_pending()

    async def stop(self) -> None:
        if self._controller_task is not None:
            self._controller_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._controller_task
            self._controller_task = None
        if self._runner is not None:
            # End watch streams first so that shutdown does not wait for them.
            for table in self.store.tables():
                for watcher in list(table.watchers):
                    watcher.close()
            await self._runner.cleanup()
            self._runner = None

    def write_kubeconfig(self, path: Path, *, token: str | None = None) -> Path:
        """A kubeconfig for the kubernetes client, kopf and kubectl.

        No credentials by default (the admin, see `authorization`); `token` makes its user
        authenticate with that bearer token, e.g. a ServiceAccount's from a TokenRequest.
        """
        config = {
            'apiVersion': 'v1',
            'kind': 'Config',
            'clusters': [{'name': 'tenure-emulator', 'cluster': {'server': self.url}}],
            'users': [{'name': 'tenure-emulator', 'user': {'token': token} if token else {}}],
            'contexts': [
                {
                    'name': 'tenure-emulator',
                    'context': {
                        'cluster': 'tenure-emulator',
                        'user': 'tenure-emulator',
                        'namespace': 'default',
                    },
                }
            ],
            'current-context': 'tenure-emulator',
            'preferences': {},
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # ---- HTTP ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except ApiError as exc:
            return _status_response(exc)
        except web.HTTPRequestEntityTooLarge:
            return _status_response(errors.request_entity_too_large(MAX_BODY))
        except Exception as exc:
            log.exception('kubeapi emulator: %s %s failed', request.method, request.path)
            return _status_response(errors.internal(f'{type(exc).__name__}: {exc}'))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        # ---- authentication and authorization (opt-in, see authz.py): raises 401/403 ------
        if self.authz is not None:
            await self.authz.admit(request)
        # ---- end authentication and authorization ---------------------------------------
        path = request.path
        if path in ('/healthz', '/readyz', '/livez') or path.startswith(
            ('/healthz/', '/readyz/', '/livez/')
        ):
            return web.Response(text='ok', content_type='text/plain')
        if path in ('/version', '/version/'):  # the official Python client asks for /version/
            return _json_response(SERVER_VERSION)
        if path == '/.well-known/openid-configuration':
            return _json_response(self.tokens.openid_configuration(self.url))
        if path == '/openid/v1/jwks':
            return web.Response(
                body=json.dumps(self.token_issuer.jwks()).encode(),
                content_type='application/jwk-set+json',
            )
        if path == '/openapi/v3' or path.startswith('/openapi/v3/'):
            return self._openapi(path)
        parts = [p for p in path.split('/') if p]
        if not parts or parts[0] not in ('api', 'apis'):
            return web.Response(status=404, text='404 page not found\n', content_type='text/plain')
        accept = self._negotiate(request)
        yaml_out = accept == 'yaml'
        if parts[0] == 'api':
            if len(parts) == 1:
                return _json_response(self._api_versions(request), yaml_out=yaml_out)
            group, rest = '', parts[1:]
        else:
            if len(parts) == 1:
                return _json_response(self._group_list(), yaml_out=yaml_out)
            group = parts[1]
            if len(parts) == 2:
                return _json_response(self._group(group), yaml_out=yaml_out)
            rest = parts[2:]
        version, rest = rest[0], rest[1:]
        if not rest:
            return _json_response(self._resource_list(group, version), yaml_out=yaml_out)
        info, watch_path = self._request_info(request.method, group, version, rest)
        rt = self.registry.get(group, version, info.resource)
        if rt is None or not self._path_fits(rt, info):
            raise errors.not_found_path()
        return await self._serve(request, rt, info, watch_path=watch_path, accept=accept)

    @staticmethod
    def _request_info(
        method: str, group: str, version: str, parts: list[str]
    ) -> tuple[RequestInfo, bool]:
        watch_path = False
        if parts[0] == 'watch':  # the deprecated /watch/ prefix
            watch_path, parts = True, parts[1:]
        namespace = ''
        if parts and parts[0] == 'namespaces' and len(parts) > 1:
            namespace = parts[1]
            if len(parts) > 2 and parts[2] not in NAMESPACE_SUBRESOURCES:
                parts = parts[2:]
        if not parts or len(parts) > 3:
            raise errors.not_found_path()
        resource = parts[0]
        name = parts[1] if len(parts) > 1 else ''
        subresource = parts[2] if len(parts) > 2 else ''
        if resource == 'namespaces':
            namespace = ''
        verb = {
            'GET': 'get' if name else 'list',
            'POST': 'create',
            'PUT': 'update',
            'PATCH': 'patch',
            'DELETE': 'delete' if name else 'deletecollection',
        }.get(method, method.lower())
        return RequestInfo(verb, group, version, resource, subresource, namespace, name), watch_path

    @staticmethod
    def _path_fits(rt: ResourceType, info: RequestInfo) -> bool:
        if info.subresource and info.subresource not in rt.subresources:
            return False
        if rt.namespaced:
            return bool(info.namespace) or not info.name
        return not info.namespace

    def _negotiate(self, request: web.Request) -> str:
        """'json', 'yaml' or 'table' from the Accept header (406 when nothing fits)."""
        header = request.headers.get('Accept', '')
        if not header:
            return 'json'
        for clause in header.split(','):
            media, *params = [p.strip() for p in clause.split(';')]
            media = media.lower()
            options = dict(p.split('=', 1) for p in params if '=' in p)
            if options.get('as') == 'Table':
                if options.get('g') == 'meta.k8s.io' and options.get('v') in ('v1', 'v1beta1'):
                    return 'table'
                continue
            if options.get('as'):
                continue  # e.g. aggregated discovery or PartialObjectMetadata: fall back
            if media in (
                'application/json',
                '*/*',
                'application/*',
                'application/vnd.kubernetes.protobuf',
            ):
                return 'json'
            if media == 'application/yaml':
                return 'yaml'
        raise errors.not_acceptable(['application/json', 'application/yaml'])

    # ---- discovery ----------------------------------------------------------------------

    def _openapi(self, path: str) -> web.Response:
        if path.rstrip('/') == '/openapi/v3':
            return _json_response(openapi.root_document(self.registry))
        parts = path[len('/openapi/v3/') :].strip('/').split('/')
        if parts[0] == 'api' and len(parts) == 2:
            document = openapi.group_version_document(self.registry, '', parts[1])
        elif parts[0] == 'apis' and len(parts) == 3:
            document = openapi.group_version_document(self.registry, parts[1], parts[2])
        else:
            document = None
        if document is None:
            raise errors.not_found_path()
        return _json_response(document)

    def _api_versions(self, request: web.Request) -> dict[str, Any]:
        return {
            'kind': 'APIVersions',
            'versions': ['v1'],
            'serverAddressByClientCIDRs': [
                {'clientCIDR': '0.0.0.0/0', 'serverAddress': request.host}
            ],
        }

    def _group(self, group: str) -> dict[str, Any]:
        versions = self.registry.groups().get(group)
        if not versions or not group:
            raise errors.not_found_path()
        entries = [{'groupVersion': f'{group}/{v}', 'version': v} for v in versions]
        return {
            'kind': 'APIGroup',
            'apiVersion': 'v1',
            'name': group,
            'versions': entries,
            'preferredVersion': entries[0],
        }

    def _group_list(self) -> dict[str, Any]:
        groups = []
        for group in self.registry.groups():
            if group:
                document = self._group(group)
                del document['kind'], document['apiVersion']
                groups.append(document)
        return {'kind': 'APIGroupList', 'apiVersion': 'v1', 'groups': groups}

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        types = self.registry.in_group_version(group, version)
        if not types:
            raise errors.not_found_path()
        resources = []
        for rt in sorted(types, key=lambda t: t.plural):
            resources.extend(rt.discovery())
        return {
            'kind': 'APIResourceList',
            'apiVersion': 'v1',
            'groupVersion': f'{group}/{version}' if group else version,
            'resources': resources,
        }

    # ---- resources ----------------------------------------------------------------------

    async def _serve(
        self,
        request: web.Request,
        rt: ResourceType,
        info: RequestInfo,
        *,
        watch_path: bool,
        accept: str,
    ) -> web.StreamResponse:
        query = request.query
        method = request.method
        namespace = info.namespace if rt.namespaced else ''
        verb = info.verb
        if watch_path or (method == 'GET' and _truthy(query.get('watch'))):
            if info.subresource:
                raise errors.method_not_allowed()
            verb = 'watch'
        if info.subresource == 'token':
            if method != 'POST':
                raise errors.method_not_allowed()
            body = await self._read_body(request)
            outcome = self.tokens.token_request(
                namespace, info.name, body, self._write_options(request, 'CreateOptions')
            )
            return self._outcome(outcome, accept)
        if info.subresource:
            # Discovery lists `plural/status` with get/patch/update, `namespaces/finalize` update.
            allowed = ('PUT',) if info.subresource == 'finalize' else ('GET', 'PUT', 'PATCH')
            if method not in allowed:
                raise errors.method_not_allowed()
        elif verb not in rt.verbs:
            raise errors.method_not_supported(rt.group_resource, verb)
        if verb == 'watch':
            list_options = self._list_options(query)
            if info.name:
                # A watch on an object's URL watches that name (the deprecated form).
                by_name = f'metadata.name={info.name}'
                list_options.field_selector = ','.join(
                    s for s in (list_options.field_selector, by_name) if s
                )
            return await self._watches.serve(
                request, rt, namespace or None, list_options, {'Cache-Control': 'no-cache, private'}
            )
        if method == 'GET':
            if info.name:
                obj = self.api.get(rt, namespace, info.name)
                return self._render(rt, obj, accept)
            listing = await self.api.list_objects(rt, namespace or None, self._list_options(query))
            return self._render(rt, listing, accept)
        if method == 'POST':
            if info.name:
                raise errors.method_not_allowed()
            body = await self._read_body(request)
            options = self._write_options(request, 'CreateOptions')
            if rt.plural == 'tokenreviews' and rt.group == 'authentication.k8s.io':
                return self._outcome(self.tokens.token_review(body), accept)
            return self._outcome(self.api.create(rt, namespace, body, options), accept)
        if method == 'PUT':
            body = await self._read_body(request)
            options = self._write_options(request, 'UpdateOptions')
            outcome = self.api.update(
                rt, namespace, info.name, body, options, subresource=info.subresource
            )
            return self._outcome(outcome, accept)
        if method == 'PATCH':
            content_type = _media_type(request.headers.get('Content-Type', ''))
            accepted = patch_types(rt)
            if content_type == APPLY_PATCH:
                raise ApiError(
                    415,
                    'UnsupportedMediaType',
                    'server-side apply (application/apply-patch+yaml) is not implemented by the '
                    'Tenure kubeapi emulator; use a merge, JSON or strategic merge patch, or PUT',
                )
            if content_type not in accepted:
                raise errors.unsupported_media_type(accepted, content_type)
            raw = await request.read()
            try:
                body = json.loads(raw or b'null')
            except ValueError as exc:
                raise errors.bad_request(f'error decoding patch: {exc}') from None
            options = self._write_options(request, 'PatchOptions')
            outcome = self.api.patch(
                rt, namespace, info.name, content_type, body, options, subresource=info.subresource
            )
            return self._outcome(outcome, accept)
        if method == 'DELETE':
            body = await self._read_body(request, optional=True) or {}
            if not isinstance(body, dict):
                raise errors.bad_request(
                    'the body of the request could not be decoded into DeleteOptions'
                )
            body = self._delete_options(query, body)
            options = self._write_options(request, 'DeleteOptions', extra=body.get('dryRun'))
            if info.name:
                return self._outcome(
                    self.api.delete(rt, namespace, info.name, body, options), accept
                )
            outcome = self.api.delete_collection(
                rt, namespace or None, self._list_options(query), body, options
            )
            return self._outcome(outcome, accept)
        raise errors.method_not_allowed()

    def _outcome(self, outcome: Outcome, accept: str) -> web.Response:
        response = _json_response(outcome.body, outcome.code, yaml_out=accept == 'yaml')
        for warning in outcome.warnings:
            response.headers.add('Warning', '299 - ' + json.dumps(warning))
        return response

    def _render(self, rt: ResourceType, body: dict[str, Any], accept: str) -> web.Response:
        if accept == 'table':
            return _json_response(tables.to_table(rt, body, self.api.clock()))
        return _json_response(body, yaml_out=accept == 'yaml')

    async def _read_body(self, request: web.Request, *, optional: bool = False) -> Any:
        raw = await request.read()
        if not raw:
            if optional:
                return None
            raise errors.bad_request('the body of the request was empty')
        media = _media_type(request.headers.get('Content-Type', '')) or 'application/json'
        if media in ('application/json', '*/*'):
            try:
                return json.loads(raw)
            except ValueError as exc:
                raise errors.bad_request(
                    f"couldn't get version/kind; json parse error: {exc}"
                ) from None
        if media in ('application/yaml', 'text/yaml', 'application/x-yaml'):
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise errors.bad_request(f'error converting YAML to JSON: {exc}') from None
        raise errors.unsupported_media_type(BODY_TYPES, media)

    @staticmethod
    def _write_options(request: web.Request, kind: str, *, extra: Any = None) -> WriteOptions:
        dry_run = request.query.getall('dryRun', [])
        if isinstance(extra, list):
            dry_run = [*dry_run, *extra]
        for value in dry_run:
            if value != 'All':
                from . import meta

                raise errors.invalid(
                    'meta.k8s.io', kind, '', [meta.not_supported('dryRun', dry_run, ['All'])]
                )
        validation = request.query.get('fieldValidation', '') or 'Warn'
        if validation not in ('Ignore', 'Warn', 'Strict'):
            raise errors.bad_request(
                f'fieldValidation: Unsupported value: "{validation}": supported values: '
                '"Ignore", "Strict", "Warn"'
            )
        return WriteOptions(dry_run=bool(dry_run), field_validation=validation)

    @staticmethod
    def _delete_options(query: Any, body: dict[str, Any]) -> dict[str, Any]:
        merged = dict(body)
        if 'propagationPolicy' in query:
            merged.setdefault('propagationPolicy', query['propagationPolicy'])
        if 'orphanDependents' in query:
            merged.setdefault('orphanDependents', _truthy(query['orphanDependents']))
        return merged

    @staticmethod
    def _list_options(query: Any) -> ListOptions:
        def integer(name: str) -> int | None:
            value = query.get(name)
            if value in (None, ''):
                return None
            try:
                return int(value)
            except ValueError:
                raise errors.bad_request(f'invalid {name}: {value!r}') from None

        send_initial = query.get('sendInitialEvents')
        return ListOptions(
            label_selector=query.get('labelSelector', ''),
            field_selector=query.get('fieldSelector', ''),
            limit=max(integer('limit') or 0, 0),
            continue_token=query.get('continue', ''),
            resource_version=query.get('resourceVersion'),
            resource_version_match=query.get('resourceVersionMatch', ''),
            allow_bookmarks=_truthy(query.get('allowWatchBookmarks')),
            timeout_seconds=integer('timeoutSeconds'),
            send_initial_events=None if send_initial is None else _truthy(send_initial),
        )


@contextlib.contextmanager
def running_emulator(crd_paths: Sequence[Path] = (), **kwargs: Any) -> Iterator[KubeApiEmulator]:
    """Run an emulator on its own event loop in a background thread; stop it on exit."""
    emulator = KubeApiEmulator(crd_paths, **kwargs)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(emulator.start())
        except BaseException as exc:
            failure.append(exc)
            started.set()
            loop.close()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(emulator.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name='kubeapi-emulator', daemon=True)
    thread.start()
    started.wait(60)
    if failure:
        thread.join(5)
        raise RuntimeError('the kubeapi emulator failed to start') from failure[0]
    try:
        yield emulator
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)

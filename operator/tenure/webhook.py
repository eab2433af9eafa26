"""The guardrails admission webhook, served by every replica, leader or standby (issue #8).

The API server calls the webhook through the Service `tenure-webhook`, which routes to every Ready
pod; the decision (`admission.review`) needs no leadership, only the policy in force and namespace
labels, so each replica answers on its own. This is what lets a standby be Ready, and so a rolling
update, a PodDisruptionBudget and `kubectl rollout status` work as they do for any Deployment.

Three pieces, each in this process's own asyncio loop on a thread of its own:

- the HTTP(S) listener (aiohttp): `POST WEBHOOK_PATH` takes an `admission.k8s.io/v1` AdmissionReview
  and answers with an AdmissionReview of the same version whose `response` echoes `request.uid`
  (https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#response);
  any other path is a 404 (a misconfigured path must fail closed, not come back allowed), a review
  Tenure cannot answer a 400 that says why (`admission.request_problem`);
- `PolicyFollower`: the `default` IdentityPolicy, re-read every `POLICY_REFRESH` seconds on every
  replica, adopted when its resourceVersion moves: a policy change reaches the answers of the
  leader and the standby alike within seconds, with no kopf engine on the standby;
- `ServingCertificate`: the TLS certificate and key, re-read when their files change (cert-manager
  renews them in the mounted Secret); new handshakes get the new certificate while the listener
  and the connections already open stay up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import aiohttp.web
from pydantic import ValidationError

from tenure.admission import (
    WEBHOOK_PATH,
    AdmissionRequest,
    LabelLookup,
    request_problem,
    review,
)
from tenure.api.v1alpha1 import DEFAULT_POLICY_NAME
from tenure.config import WebhookConfig
from tenure.domain.guardrails import Policy, policy_of
from tenure.errors import TenureError

log = logging.getLogger(__name__)

POLICY_REFRESH: Final = 2.0
"""Seconds between two reads of the IdentityPolicy: one small GET per replica, and a policy change
applies to admission on every replica within this delay."""
CERTIFICATE_CHECK: Final = 10.0
"""Seconds between two looks at the certificate files (kopf looked every 60 s)."""
START_TIMEOUT: Final = 30.0

PolicyReader = Callable[[str], Mapping[str, Any] | None]
"""Read the cluster-scoped IdentityPolicy by name; None when there is none. Raises TenureError."""


class PolicyFollower:
    """The `default` IdentityPolicy as this replica's webhook applies it.

    Adopted when its resourceVersion moves; an object that does not validate is reported once and
    the policy in force is kept (the operator does the same, `Runtime.set_policy`). A deleted
    policy means the built-in defaults, as for the operator.
    """

    def __init__(self, read: PolicyReader) -> None:
        self._read = read
        self._policy = Policy()
        self._version: str | None = None
        self.known = False
        """True once the policy has been read at least once: until then, not Ready."""

    @property
    def policy(self) -> Policy:
        return self._policy

    def refresh(self) -> None:
        """One read; adopt the policy if it changed. Raises TenureError when it cannot be read."""
        body = self._read(DEFAULT_POLICY_NAME)
        version = None if body is None else str(body.get('metadata', {}).get('resourceVersion'))
        if self.known and version == self._version:
            return
        self._version = version
        self.known = True
        try:
            policy = policy_of(body)
        except ValidationError as e:
            log.error(
                'IdentityPolicy %s is invalid, admission keeps the one in force: %s',
                DEFAULT_POLICY_NAME,
                e,
            )
            return
        if policy != self._policy:
            self._policy = policy
            log.info('admission now applies the guardrail policy %s', policy)

    async def follow(self) -> None:
        """Refresh every POLICY_REFRESH seconds, until cancelled; read errors are retried."""
        while True:
            await asyncio.sleep(POLICY_REFRESH)
            await self.refresh_or_warn()

    async def refresh_or_warn(self) -> None:
        try:
            await asyncio.to_thread(self.refresh)
        except TenureError as e:
            log.warning('admission could not read IdentityPolicy %s: %s', DEFAULT_POLICY_NAME, e)


class ServingCertificate:
    """The webhook's TLS certificate, swapped into new handshakes when its files change.

    The listener keeps one `context` for its life; at each handshake its SNI callback (OpenSSL calls
    it for every ClientHello, with or without a server name) hands the connection the context of the
    files as last loaded. A rotation half-written (a certificate that does not match the key yet) is
    not adopted: the previous certificate keeps serving until the pair loads.
    """

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self._digest = self._files_digest()
        self._current = self._load()
        # The listening context carries the certificate too: it is what a handshake would get if
        # the callback did not run. Each handshake gets `_current` from the callback.
        self.context = self._load()
        self.context.sni_callback = self._select

    def _files_digest(self) -> str:
        # A hash, not the bytes: the private key is not kept in memory longer than loading needs.
        hasher = hashlib.sha256()
        for path in (self.cert_file, self.key_file):
            hasher.update(path.read_bytes())
        return hasher.hexdigest()

    def _load(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def _select(self, connection: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: Any) -> None:
        connection.context = self._current

    def reload_if_changed(self) -> bool:
        """Load the files again if their content changed. True when a new certificate serves."""
        try:
            digest = self._files_digest()
            if digest == self._digest:
                return False
            current = self._load()
        except (OSError, ssl.SSLError) as e:
            log.warning('webhook certificate not reloaded, the previous one serves: %s', e)
            return False
        self._current, self._digest = current, digest
        log.info('webhook certificate reloaded from %s', self.cert_file)
        return True

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(CERTIFICATE_CHECK)
            await asyncio.to_thread(self.reload_if_changed)


def _review_response(api_version: str, uid: str, allowed: bool, **fields: Any) -> dict[str, Any]:
    response: dict[str, Any] = {'uid': uid, 'allowed': allowed}
    response.update({key: value for key, value in fields.items() if value})
    return {'apiVersion': api_version, 'kind': 'AdmissionReview', 'response': response}


class AdmissionWebhook:
    """`tenure run --webhook-port`: the admission webhook on all interfaces (the API server calls
    the pod's address), over TLS from the mounted files or plain HTTP if insecure."""

    def __init__(
        self,
        config: WebhookConfig,
        *,
        policy: PolicyFollower,
        namespace_labels: LabelLookup,
        kv_mount: str,
        clock: Callable[[], datetime],
        host: str = '0.0.0.0',  # noqa: S104 (the API server calls the pod's address)
    ) -> None:
        self.config = config
        self.policy = policy
        self.namespace_labels = namespace_labels
        self.kv_mount = kv_mount
        self.clock = clock
        self.host = host
        self.certificate: ServingCertificate | None = None
        if not config.insecure:
            # parse_run_config refuses a port without both files unless --webhook-insecure.
            assert config.cert_file is not None
            assert config.key_file is not None
            self.certificate = ServingCertificate(config.cert_file, config.key_file)
        self.listening = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    # -- the answer ------------------------------------------------------------------------

    def answer(self, body: Any) -> dict[str, Any]:
        """The AdmissionReview answering `body`, which `admission.request_problem` accepted."""
        request = body['request']
        named = (request.get('object') or request.get('oldObject') or {}).get('metadata') or {}
        what = f'{request.get("namespace")}/{request.get("name") or named.get("name")}'
        decision = review(
            AdmissionRequest(
                operation=request['operation'],
                object=request.get('object'),
                old_object=request.get('oldObject'),
                namespace=request.get('namespace'),
            ),
            policy=self.policy.policy,
            now=self.clock(),
            kv_mount=self.kv_mount,
            namespace_labels=self.namespace_labels,
        )
        if decision.allowed:
            log.debug('admission allowed %s %s', request['operation'], what)
            status = None
        else:
            # A refusal is the webhook doing its job on someone's manifest, not an operator fault.
            log.info('admission refused for %s: %s', what, decision.message)
            status = {'code': decision.code, 'message': decision.message}
        return _review_response(
            body['apiVersion'],
            request['uid'],
            decision.allowed,
            status=status,
            warnings=list(decision.warnings),
        )

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        if request.path != WEBHOOK_PATH:
            raise aiohttp.web.HTTPNotFound(
                text=f'no webhook at {request.path}; Tenure serves {WEBHOOK_PATH}\n'
            )
        if request.method != 'POST':
            raise aiohttp.web.HTTPMethodNotAllowed(request.method, ['POST'])
        try:
            body = json.loads(await request.read())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise aiohttp.web.HTTPBadRequest(text=f'the body is not JSON: {e}\n') from None
        problem = request_problem(body)
        if problem is not None:
            raise aiohttp.web.HTTPBadRequest(text=f'{problem}\n')
        if not self.policy.known:
            # Answering under the built-in defaults could admit what the policy refuses: let the
            # API server apply the webhook's failurePolicy instead (not Ready meanwhile, so the
            # Service sends nothing here unless every replica is in this state).
            raise aiohttp.web.HTTPServiceUnavailable(
                text=f'the IdentityPolicy {DEFAULT_POLICY_NAME} has not been read yet\n'
            )
        # The review may read namespace labels from the API: off the loop, so reviews overlap.
        return aiohttp.web.json_response(await asyncio.to_thread(self.answer, body))

    # -- serving ---------------------------------------------------------------------------

    def ready(self) -> str | None:
        """Why this replica cannot answer reviews yet, or None when it can."""
        if not self.listening.is_set():
            return 'the admission webhook is not listening yet'
        if not self.policy.known:
            return f'the IdentityPolicy {DEFAULT_POLICY_NAME} has not been read yet'
        return None

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set."""
        app = aiohttp.web.Application()
        app.router.add_route('*', '/{tail:.*}', self._handle)
        runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        await self.policy.refresh_or_warn()  # so that the first answer is under the real policy
        tasks = [asyncio.create_task(self.policy.follow(), name='tenure-admission-policy')]
        try:
            context = self.certificate.context if self.certificate is not None else None
            site = aiohttp.web.TCPSite(runner, self.host, self.config.port, ssl_context=context)
            await site.start()
            if self.certificate is not None:
                tasks.append(asyncio.create_task(self.certificate.watch(), name='tenure-tls'))
            scheme = 'http' if context is None else 'https'
            log.info('admission webhook at %s://*:%d%s', scheme, self.config.port, WEBHOOK_PATH)
            self.listening.set()
            await stop.wait()
        finally:
            self.listening.clear()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await runner.cleanup()

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Serve from a thread of its own; return once listening (raise if it could not)."""

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await self.serve(self._stop)

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException as e:  # reported to start(), or logged once running
                self._failure = e
                if self.listening.is_set():
                    log.exception('the admission webhook stopped')
            finally:
                self.listening.clear()

        self._thread = threading.Thread(target=run, name='admission-webhook', daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.listening.wait(0.05):
            if not self._thread.is_alive():
                raise TenureError(f'the admission webhook could not start: {self._failure}')
            if time.monotonic() > deadline:
                self.close()
                raise TenureError(f'the admission webhook did not start within {timeout}s')

    def close(self) -> None:
        """Stop serving and wait for the thread (the listener is closed when this returns)."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            thread.join(START_TIMEOUT)

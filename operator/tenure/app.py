"""`tenure run`: start the operator, after checking that Kubernetes and Vault are ready."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any, Final, TextIO

import kopf
from prometheus_client import start_http_server

from tenure.adapters.kubernetes import KubeObjects
from tenure.api.v1alpha1 import DEFAULT_POLICY_NAME
from tenure.config import OperatorConfig
from tenure.domain.inventory import Finding
from tenure.drift import BindingIndex, DriftWatch
from tenure.errors import PermanentError, TenureError
from tenure.health import Health
from tenure.inventory_scan import inventory_loop, scan
from tenure.leader import LeaderElector
from tenure.metrics import Metrics
from tenure.reconcile import Reconciler, Settings
from tenure.runtime import Runtime, build_registry, operator_settings, utc_now
from tenure.ticketing import WEBHOOK_PREFIX, TicketPoller, webhook_route
from tenure.webhook import AdmissionWebhook, PolicyFollower

log = logging.getLogger(__name__)


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        format='%(asctime)s %(levelname)s %(name)s: %(message)s',
        stream=sys.stderr,
    )


def build_runtime(config: OperatorConfig) -> Runtime:
    """Connect to Kubernetes and Vault (failing fast with a clear error) and build the runtime."""
    from tenure.adapters.clients import connect, connection_of, in_cluster

    metrics = Metrics()

    def observe_vault(op: str, result: str) -> None:
        metrics.vault_requests.labels(op, result).inc()

    kube, vault, login = connect(config, utc_now, observe_vault)

    def kopf_login() -> kopf.ConnectionInfo:
        found = connection_of(kube.api)
        return kopf.ConnectionInfo(
            server=found.server,
            ca_path=found.ca_path,
            insecure=found.insecure,
            certificate_path=found.certificate_path,
            private_key_path=found.private_key_path,
            token=found.token,
        )

    reconciler = Reconciler(
        kube,
        vault,
        clock=utc_now,
        settings=Settings(
            kv_mount=config.kv_mount,
            auth_mount=config.auth_mount,
            max_token_ttl=config.max_token_ttl,
            expiry_warning=config.expiry_warning,
            remove_unexpected_bindings=config.remove_unexpected_bindings,
        ),
        threads=config.max_workers,
    )
    runtime = Runtime(
        kube,
        reconciler,
        clock=utc_now,
        before_reconcile=login.ensure_fresh,
        # In a pod, kopf's own ServiceAccount login follows the rotation of the projected token.
        connection=None if in_cluster(config.kubeconfig) else kopf_login,
        max_in_flight=config.max_workers,
        metrics=metrics,
    )
    reconciler.policy = runtime.policy
    tickets = TicketPoller(kube, reconcile=runtime.reconcile_now, clock=utc_now)
    runtime.tickets = tickets
    bindings = BindingIndex()
    reconciler.unexpected_bindings = bindings.unexpected
    runtime.drift = DriftWatch(
        request_reconcile=runtime.request,
        own_write=kube.own_write,
        expected=reconciler.vault_expected,
        vault=vault,
        vault_interval=config.vault_resync,
        bindings=bindings,
        list_bindings=kube.list_bindings,
        is_identity=runtime.knows,
    )
    reconciler.ticket_sources = tickets.source_view
    # Known before the first reconcile, so no identity is judged on its manifest alone first.
    for source in kube.list_ticket_sources():
        tickets.set_source(source['metadata']['name'], source)
    # Read before the first reconcile, so no identity is judged against the defaults first.
    if not runtime.set_policy(kube.read_policy(DEFAULT_POLICY_NAME)):
        raise PermanentError(f'the IdentityPolicy {DEFAULT_POLICY_NAME!r} does not validate')
    return runtime


async def serve(
    runtime: Runtime,
    config: OperatorConfig,
    *,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
) -> None:
    """Run the kopf operator with Tenure's handlers until stopped (SIGINT/SIGTERM or stop_flag)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    if stop_flag is not None:
        # kopf would wait for a threading.Event in the loop's default executor, and asyncio.run
        # waits for that executor at exit: a stop by signal would then hang. Bridge it from a
        # daemon thread of our own instead.
        def bridge() -> None:
            stop_flag.wait()
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=bridge, name='stop-bridge', daemon=True).start()
    registry, settings = build_registry(runtime), operator_settings(config.max_workers)
    if runtime.drift is not None:
        runtime.drift.register(registry, settings)
    if config.inventory_interval is not None:
        register_inventory(runtime, config, registry)
    await kopf.operator(
        registry=registry,
        settings=settings,
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        standalone=True,
        stop_flag=stop,
        ready_flag=ready_flag,
    )


def register_inventory(
    runtime: Runtime, config: OperatorConfig, registry: kopf.OperatorRegistry
) -> None:
    """The periodic inventory scan behind tenure_inventory_identities, while the operator runs."""
    kube = runtime.kube
    assert isinstance(kube, KubeObjects)
    interval = config.inventory_interval
    assert interval is not None
    tasks: list[asyncio.Task[None]] = []

    def run_scan() -> list[Finding]:
        return scan(
            kube,
            utc_now(),
            config.namespaces,
            kv_mount=config.kv_mount,
            auth_mount=config.auth_mount,
        )

    @kopf.on.startup(registry=registry)
    async def start_inventory(**_: Any) -> None:
        loop = inventory_loop(run_scan, runtime.metrics, interval)
        tasks.append(asyncio.create_task(loop, name='tenure-inventory'))

    @kopf.on.cleanup(registry=registry)
    async def stop_inventory(**_: Any) -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


LEASE_NAME: Final = 'tenure-operator'
WAIT_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


def _identities(runtime: Runtime, config: OperatorConfig) -> list[dict[str, Any]]:
    kube = runtime.kube
    assert isinstance(kube, KubeObjects)
    if not config.namespaces:
        return kube.list_identities()
    return [body for ns in config.namespaces for body in kube.list_identities(ns)]


def run(config: OperatorConfig, err: TextIO = sys.stderr) -> int:
    """The `tenure run` command. Returns the exit code."""
    configure_logging(getattr(logging, config.log_level))
    try:
        runtime = build_runtime(config)
    except TenureError as e:
        err.write(f'tenure: cannot start: {e}\n')
        return 1
    # Served from here on by every replica, leader or standby: probes, metrics and the admission
    # webhook (a standby is Ready and answers reviews; only the leader acts, issue #8).
    health = Health()
    if runtime.tickets is not None:
        health.route_post(WEBHOOK_PREFIX, webhook_route(runtime.tickets, health.leading.is_set))
    webhook: AdmissionWebhook | None = None
    if config.webhook is not None:
        kube = runtime.kube
        assert isinstance(kube, KubeObjects)
        webhook = AdmissionWebhook(
            config.webhook,
            policy=PolicyFollower(kube.read_policy),
            namespace_labels=kube.namespace_labels,
            kv_mount=config.kv_mount,
            clock=utc_now,
        )
        try:
            webhook.start()
        except TenureError as e:
            err.write(f'tenure: cannot start: {e}\n')
            return 1
        health.require(webhook.ready)
    try:
        return _run(runtime, config, health, err)
    finally:
        if webhook is not None:
            webhook.close()


def _run(runtime: Runtime, config: OperatorConfig, health: Health, err: TextIO) -> int:
    """Wait for the Lease (with --leader-election), then act until stopped."""
    if config.health_port:
        health.serve(config.health_port)
    if config.metrics_port:
        start_http_server(config.metrics_port, registry=runtime.metrics.registry)
    stop = threading.Event()
    lost = threading.Event()
    renewing = threading.Event()
    elector: LeaderElector | None = None
    if config.leader_election:
        # Until kopf takes the signals over, SIGTERM/SIGINT end the wait for leadership.
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in WAIT_SIGNALS}
        assert isinstance(runtime.kube, KubeObjects)
        elector = LeaderElector(
            runtime.kube,
            namespace=config.leader_election_namespace,
            name=LEASE_NAME,
            identity=f'{socket.gethostname()}-{os.getpid()}',
            duration=config.lease_duration,
            clock=utc_now,
        )
        log.info('standing by for Lease %s/%s', config.leader_election_namespace, LEASE_NAME)
        leading = elector.acquire(stop)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not leading:
            health.close()
            return 0

        def on_lost() -> None:
            lost.set()
            stop.set()

        threading.Thread(
            target=elector.hold, args=(renewing, on_lost), name='lease', daemon=True
        ).start()
    runtime.metrics.leader.set(1)
    health.leading.set()
    scope = ', '.join(config.namespaces) if config.namespaces else 'all namespaces'
    log.info('Tenure operator starting: watching %s, Vault at %s', scope, config.vault.addr)
    try:
        runtime.catch_up(_identities(runtime, config))
    except TenureError as e:
        log.warning('catch-up could not list identities: %s', e)
    try:
        asyncio.run(serve(runtime, config, stop_flag=stop))
    finally:
        renewing.set()
        runtime.metrics.leader.set(0)
        health.leading.clear()
        if elector is not None and not lost.is_set():
            elector.release()
        health.close()
    if lost.is_set():
        err.write('tenure: leadership lost; exiting so that a fresh standby takes over\n')
        return 1
    return 0

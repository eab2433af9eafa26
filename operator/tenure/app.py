"""`tenure run`: start the operator, after checking that Kubernetes and Vault are ready."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from typing import TextIO

import kopf
from prometheus_client import start_http_server

from tenure.admission import webhook_server
from tenure.api.v1alpha1 import DEFAULT_POLICY_NAME
from tenure.config import OperatorConfig
from tenure.errors import PermanentError, TenureError
from tenure.reconcile import Reconciler, Settings
from tenure.runtime import Runtime, build_registry, operator_settings, utc_now

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

    kube, vault, login = connect(config, utc_now)

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
        ),
    )
    runtime = Runtime(
        kube,
        reconciler,
        clock=utc_now,
        before_reconcile=login.ensure_fresh,
        # In a pod, kopf's own ServiceAccount login follows the rotation of the projected token.
        connection=None if in_cluster(config.kubeconfig) else kopf_login,
    )
    reconciler.policy = runtime.policy
    # Read before the first reconcile, so no identity is judged against the defaults first.
    if not runtime.set_policy(kube.read_policy(DEFAULT_POLICY_NAME)):
        raise PermanentError(f'the IdentityPolicy {DEFAULT_POLICY_NAME!r} does not validate')
    return runtime


async def serve(
    runtime: Runtime,
    config: OperatorConfig,
    *,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    """Run the kopf operator with Tenure's handlers until stopped (SIGINT/SIGTERM or stop_flag)."""
    liveness = f'http://0.0.0.0:{config.health_port}/healthz' if config.health_port else None
    settings = operator_settings()
    if config.webhook is not None:
        settings.admission.server = webhook_server(config.webhook)
    await kopf.operator(
        registry=build_registry(runtime, admission=config.webhook is not None),
        settings=settings,
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        standalone=True,
        liveness_endpoint=liveness,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def run(config: OperatorConfig, err: TextIO = sys.stderr) -> int:
    """The `tenure run` command. Returns the exit code."""
    configure_logging()
    try:
        runtime = build_runtime(config)
    except TenureError as e:
        err.write(f'tenure: cannot start: {e}\n')
        return 1
    if config.metrics_port:
        start_http_server(config.metrics_port, registry=runtime.metrics.registry)
    scope = ', '.join(config.namespaces) if config.namespaces else 'all namespaces'
    log.info('Tenure operator starting: watching %s, Vault at %s', scope, config.vault.addr)
    asyncio.run(serve(runtime, config))
    return 0

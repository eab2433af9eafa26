"""The naive baseline the benchmark compares Tenure with. For the benchmark only: never deploy it.

What ServiceIdentity automation built on kopf usually looks like: provision in an `on.create`
handler, and give every object a `@kopf.timer(interval=60)` that checks whether it has expired and
revokes it if so. Expiry is then noticed at the next tick, up to a minute late, and every
identity wakes up once a minute whether anything is due or not.

To compare that scheduling and nothing else, the work itself is Tenure's: both handlers call
Tenure's `Reconciler`, so the same Kubernetes objects and the same Vault calls are made, and the
same status (with `revocation.requestedAt`, `completedAt` and the proof) is written. What differs
is what the usual operator does not have: no deadline scheduler, no re-read of the object before
acting (the timer acts on kopf's cached body), no rate limits or in-flight bound (kopf's default
settings), no resume handler. The timer's expiry check reads kopf's cached object only: it makes
no request itself, the most favourable choice for the baseline's request counts.

Run by tests/bench/run.py as `python tests/bench/baseline_operator.py --liveness-port PORT`, with
KUBECONFIG, VAULT_ADDR and VAULT_TOKEN in the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
from datetime import UTC, datetime
from typing import Any

import hvac
import kopf

from tenure.adapters.clients import kubernetes_api
from tenure.adapters.kubernetes import KubeObjects
from tenure.adapters.vault import VaultMaterial
from tenure.api.v1alpha1 import GROUP, PLURAL, VERSION
from tenure.errors import TransientError
from tenure.reconcile import ReconcileFailed, Reconciler

log = logging.getLogger('baseline')


def utc_now() -> datetime:
    return datetime.now(UTC)


def build_registry(reconciler: Reconciler) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    def reconcile(body: kopf.Body) -> None:
        try:
            reconciler.reconcile(dict(body))
        except ReconcileFailed as failure:
            if isinstance(failure.cause, TransientError):
                raise kopf.TemporaryError(str(failure.cause), delay=1) from None
            raise kopf.PermanentError(str(failure.cause)) from None

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        info: kopf.ConnectionInfo | None = kopf.login_via_client(**kwargs)
        return info

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    def provision(body: kopf.Body, **_: Any) -> None:
        reconcile(body)

    @kopf.timer(GROUP, VERSION, PLURAL, interval=60, registry=registry)
    def check_expiry(body: kopf.Body, **_: Any) -> None:
        status = body.get('status') or {}
        expires_at = status.get('expiresAt')
        if status.get('phase') != 'Active' or not expires_at:
            return
        if datetime.fromisoformat(expires_at.replace('Z', '+00:00')) <= utc_now():
            reconcile(body)

    return registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--liveness-port', type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s'
    )
    kube = KubeObjects(kubernetes_api(os.environ['KUBECONFIG']), clock=utc_now)
    vault = VaultMaterial(
        hvac.Client(url=os.environ['VAULT_ADDR'], token=os.environ['VAULT_TOKEN'], timeout=30),
        clock=utc_now,
    )
    reconciler = Reconciler(kube, vault, clock=utc_now)
    kopf.run(
        registry=build_registry(reconciler),
        standalone=True,
        clusterwide=True,
        liveness_endpoint=f'http://127.0.0.1:{args.liveness_port}/healthz',
    )


if __name__ == '__main__':
    main()

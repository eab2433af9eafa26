"""Leader election over a coordination.k8s.io/v1 Lease (see tenure.domain.leadership for why).

A replica waits until it holds the Lease, then renews it every third of its duration. If it cannot
renew for a whole duration, or another replica took the Lease, it has lost: it stops acting at once
and the process exits non-zero (Kubernetes restarts it as a standby). On a graceful stop it releases
the Lease, so the standby takes over without waiting for the Lease to expire.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from tenure.domain.leadership import LeaseState, Take, lease_decision
from tenure.errors import TenureError

log = logging.getLogger(__name__)


class LeaseStore(Protocol):
    def read_lease(self, namespace: str, name: str) -> tuple[LeaseState, str] | None: ...

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
    ) -> bool: ...


class LeaderElector:
    def __init__(
        self,
        store: LeaseStore,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration = duration
        self.clock = clock
        self.renew_every = duration.total_seconds() / 3
        self._until: datetime | None = None

    def attempt(self) -> bool:
        """One round: read the Lease, decide, write it if ours to take. True when we lead."""
        found = self.store.read_lease(self.namespace, self.name)
        state, version = found if found is not None else (None, None)
        decision = lease_decision(state, self.identity, self.clock())
        if not isinstance(decision, Take):
            self._until = decision.until
            return False
        return self.store.write_lease(
            self.namespace,
            self.name,
            holder=self.identity,
            duration=self.duration,
            transitions=decision.transitions,
            acquired=state is None or state.holder != self.identity,
            resource_version=version,
        )

    def acquire(self, stop: threading.Event) -> bool:
        """Block until this replica leads (True) or `stop` is set (False)."""
        while not stop.is_set():
            try:
                if self.attempt():
                    log.info(
                        'leading: holding Lease %s/%s as %s',
                        self.namespace,
                        self.name,
                        self.identity,
                    )
                    return True
            except TenureError as e:
                log.warning('could not take the Lease %s/%s: %s', self.namespace, self.name, e)
            wait = self.renew_every
            if self._until is not None:
                wait = min(wait, max(0.1, (self._until - self.clock()).total_seconds()))
            stop.wait(wait)
        return False

    def hold(self, stop: threading.Event, lost: Callable[[], None]) -> None:
        """Renew until `stop`; call `lost()` (once) when leadership is gone."""
        renewed = time.monotonic()
        while not stop.wait(self.renew_every):
            try:
                if self.attempt():
                    renewed = time.monotonic()
                    continue
                log.error(
                    'leadership lost: another replica holds Lease %s/%s', self.namespace, self.name
                )
                lost()
                return
            except TenureError as e:
                log.warning('could not renew the Lease %s/%s: %s', self.namespace, self.name, e)
            if time.monotonic() - renewed >= self.duration.total_seconds():
                log.error(
                    'leadership lost: Lease %s/%s not renewed for %ss',
                    self.namespace,
                    self.name,
                    self.duration.total_seconds(),
                )
                lost()
                return

    def release(self) -> None:
        """Give the Lease up (graceful stop), so a standby takes over at once."""
        try:
            found = self.store.read_lease(self.namespace, self.name)
            if found is None or found[0].holder != self.identity:
                return
            self.store.write_lease(
                self.namespace,
                self.name,
                holder='',
                duration=self.duration,
                transitions=found[0].transitions,
                acquired=False,
                resource_version=found[1],
            )
            log.info('released Lease %s/%s', self.namespace, self.name)
        except TenureError as e:
            log.warning('could not release the Lease %s/%s: %s', self.namespace, self.name, e)

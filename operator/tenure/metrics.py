"""Prometheus metrics. Label values are bounded: phases, results and reasons are enums."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tenure import __version__
from tenure.api.v1alpha1 import Phase
from tenure.domain.drift import DriftKind
from tenure.domain.inventory import Class as InventoryClass
from tenure.domain.inventory import Kind as InventoryKind

Key = tuple[str, str]


class _PhaseCollector(Collector):
    """`tenure_identities{phase}`: how many ServiceIdentities are in each phase right now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[Key, Phase] = {}

    def set(self, key: Key, phase: Phase | None) -> None:
        with self._lock:
            if phase is None:
                self._phases.pop(key, None)
            else:
                self._phases[key] = phase

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            'tenure_identities', 'ServiceIdentities by lifecycle phase', labels=['phase']
        )
        with self._lock:
            counts = {phase: 0 for phase in Phase}
            for phase in self._phases.values():
                counts[phase] += 1
        for phase, count in counts.items():
            family.add_metric([phase.value], count)
        yield family


class _ViolationCollector(Collector):
    """`tenure_policy_violations{rule}`: identities violating each guardrail right now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[Key, frozenset[str]] = {}

    def set(self, key: Key, rules: set[str]) -> None:
        with self._lock:
            if rules:
                self._rules[key] = frozenset(rules)
            else:
                self._rules.pop(key, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            'tenure_policy_violations',
            'ServiceIdentities violating each guardrail (Denied, held, or reported in Audit)',
            labels=['rule'],
        )
        with self._lock:
            counts: dict[str, int] = {}
            for rules in self._rules.values():
                for rule in rules:
                    counts[rule] = counts.get(rule, 0) + 1
        for rule, count in sorted(counts.items()):
            family.add_metric([rule], count)
        yield family


class _InventoryCollector(Collector):
    """`tenure_inventory_identities{class,kind}`: what the last periodic inventory scan found.

    A family of its own rather than a `class` label on `tenure_identities{phase}`: that one
    counts ServiceIdentities, this one counts the objects `tenure report` classifies
    (ServiceAccounts, token Secrets, bindings, Vault roles and policies), and one family with
    both would make every `sum(tenure_identities)` add two different things.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] | None = None

    def set(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Replace the counts with one scan's, keyed by (class, kind)."""
        with self._lock:
            self._counts = dict(counts)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            'tenure_inventory_identities',
            'Non-human identities found by the last inventory scan, by class and kind',
            labels=['class', 'kind'],
        )
        with self._lock:
            counts = self._counts
        if counts is not None:  # nothing before the first scan: absent, not zero
            for class_ in InventoryClass:
                for kind in InventoryKind:
                    family.add_metric([class_.value, kind.value], counts.get((class_, kind), 0))
        yield family


class Metrics:
    """The operator's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.phases = _PhaseCollector()
        self.registry.register(self.phases)
        self.violations = _ViolationCollector()
        self.registry.register(self.violations)
        self.reconciles = Counter(
            'tenure_reconcile_total',
            'Reconciles of ServiceIdentities by result',
            ['result'],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            'tenure_reconcile_duration_seconds',
            'Time one reconcile takes, Kubernetes and Vault calls included',
            registry=self.registry,
        )
        self.revocations = Counter(
            'tenure_revocations_total',
            'Revocations completed and verified, by reason',
            ['reason'],
            registry=self.registry,
        )
        self.revocation_failures = Counter(
            'tenure_revocation_failures_total',
            'Revocation attempts that failed or could not be verified (retried)',
            registry=self.registry,
        )
        self.revocation_latency = Histogram(
            'tenure_revocation_latency_seconds',
            'How long after expiresAt an expired identity was revoked and verified',
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=self.registry,
        )
        self.expiry = Gauge(
            'tenure_identity_expiry_timestamp_seconds',
            'The expiry in force of each Active identity (unix time), for expiry alerts',
            ['namespace', 'name'],
            registry=self.registry,
        )
        self.vault_requests = Counter(
            'tenure_vault_requests_total',
            'Requests to Vault by operation and result',
            ['op', 'result'],
            registry=self.registry,
        )
        self.drift_repairs = Counter(
            'tenure_drift_repairs_total',
            'Managed objects found changed or deleted outside Tenure and put back, by kind',
            ['kind'],
            registry=self.registry,
        )
        for kind in DriftKind:
            self.drift_repairs.labels(kind.value)  # every kind shows, at 0, from the start
        self.inventory = _InventoryCollector()
        self.registry.register(self.inventory)
        self.leader = Gauge(
            'tenure_leader',
            '1 while this replica leads (holds the Lease) and acts',
            registry=self.registry,
        )
        Info('tenure_build', 'Tenure build information', registry=self.registry).info(
            {'version': __version__}
        )

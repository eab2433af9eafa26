"""deploy/monitoring/: the alerts and the dashboard speak of metrics the operator exports.

A metric (or a label of it) that the operator does not export yet must be listed in the file's
`pending-metrics:` line, and leaves that line once the operator exports it: an alert never waits
silently on a name nobody will ever send.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from tenure.metrics import Metrics

from .conftest import DEPLOY, Obj, find

RULES_FILE = DEPLOY / 'monitoring' / 'prometheusrule.yaml'
DASHBOARD_FILE = DEPLOY / 'monitoring' / 'grafana-dashboard.json'
# A Tenure series in PromQL, with its label matchers if any: tenure_x{a="b", c=~"d|e"}.
SERIES = re.compile(r'\b(tenure_[a-z_]+)\b(\{[^}]*\})?')
MATCHER_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)')
HISTOGRAM_SUFFIXES = ('_bucket', '_sum', '_count', '_created')
PENDING = re.compile(r'pending-metrics:\s*([^\n"]+)')


SERIES_SUFFIXES = {
    'counter': ('_total', '_created'),
    'histogram': ('_bucket', '_sum', '_count', '_created'),
    'summary': ('_sum', '_count', '_created'),
}


def exported() -> dict[str, set[str]]:
    """Every series name the operator's metrics expose, with its label names."""
    metrics = Metrics()
    found: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
        if family.type == 'gauge':
            # A custom collector's gauge (tenure_identities) is one series per label set, and
            # declares its label names even while it has no sample.
            found.setdefault(family.name, set()).update(getattr(family, '_labelnames', ()))
    # A labelled metric shows no sample until a first label value is used: take its series
    # names and label names from the metric itself.
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            labels = set(metric._labelnames)
            for suffix in SERIES_SUFFIXES.get(metric._type, ('',)):
                found.setdefault(metric._name + suffix, set()).update(labels)
    return found


def pending(text: str) -> set[str]:
    """The `pending-metrics:` entries of a file: `name` or `name{label}`."""
    match = PENDING.search(text)
    if match is None:
        return set()
    entries = re.findall(r'tenure_[a-z_]+(?:\{[a-z_]+\})?', match.group(1))
    return set(entries)


def used(expressions: list[str]) -> Iterator[tuple[str, set[str]]]:
    for expr in expressions:
        for name, matchers in SERIES.findall(expr):
            yield name, set(MATCHER_LABEL.findall(matchers or ''))


def _base(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def unexported(expressions: list[str]) -> set[str]:
    """What the expressions use that the operator does not export, as `name` or `name{label}`."""
    series = exported()
    missing: set[str] = set()
    for name, labels in used(expressions):
        if name not in series:
            missing.add(_base(name))
            continue
        missing.update(f'{name}{{{label}}}' for label in labels - series[name])
    return missing


def _rules() -> list[dict[str, Any]]:
    rule = yaml.safe_load(RULES_FILE.read_text(encoding='utf-8'))
    return [r for group in rule['spec']['groups'] for r in group['rules']]


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding='utf-8'))
    return loaded


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard['panels']:
        yield panel
        yield from panel.get('panels', [])


def _dashboard_expressions() -> list[str]:
    return [t['expr'] for p in _panels(_dashboard()) for t in p.get('targets', [])]


def test_the_alerts_issue_8_asks_for_are_there() -> None:
    """Revocation failing, identities expiring within 7 days, unmanaged or leaked identities,
    reconcile errors, the operator down."""
    alerts = {r['alert'] for r in _rules()}
    assert {
        'TenureRevocationFailing',
        'TenureIdentityExpiringSoon',
        'TenureLeakedIdentities',
        'TenureUnmanagedIdentities',
        'TenureReconcileErrors',
        'TenureOperatorDown',
    } <= alerts
    for rule in _rules():
        assert rule['labels']['severity'] in {'info', 'warning', 'critical'}
        assert rule['annotations']['summary']


@pytest.mark.parametrize(
    ('source', 'expressions'),
    [
        pytest.param(RULES_FILE, lambda: [r['expr'] for r in _rules()], id='prometheus-rules'),
        pytest.param(DASHBOARD_FILE, _dashboard_expressions, id='grafana-dashboard'),
    ],
)
def test_every_metric_used_is_exported_or_listed_as_pending(source: Any, expressions: Any) -> None:
    listed = pending(source.read_text(encoding='utf-8'))
    missing = unexported(expressions())
    assert missing == listed, (
        f'{source.name}: the pending-metrics line must list exactly what the operator does not '
        f'export yet; it lists {sorted(listed)}, the expressions need {sorted(missing)}'
    )


def test_the_pending_check_recognises_exported_metrics() -> None:
    """The check is not vacuous: an exported name with a known label passes, an unknown name or
    label is reported."""
    assert unexported(['sum by (phase) (tenure_identities{phase="Active"})']) == set()
    assert unexported(['rate(tenure_reconcile_duration_seconds_bucket[5m])']) == set()
    assert unexported(['tenure_nonexistent_total', 'tenure_identities{class="Leaked"}']) == {
        'tenure_nonexistent_total',
        'tenure_identities{class}',
    }


def test_operator_down_watches_the_job_the_service_monitor_scrapes(monitoring: list[Obj]) -> None:
    """The Prometheus Operator names a ServiceMonitor's job after the Service (no jobLabel set),
    here tenure-metrics: the `up` series the alert reads."""
    monitor = find(monitoring, 'ServiceMonitor', 'tenure')
    assert 'jobLabel' not in monitor['spec']
    assert monitor['spec']['selector']['matchLabels']['app.kubernetes.io/component'] == 'metrics'
    [endpoint] = monitor['spec']['endpoints']
    assert endpoint['port'] == 'metrics'
    [down] = [r for r in _rules() if r['alert'] == 'TenureOperatorDown']
    assert 'up{job="tenure-metrics"}' in down['expr']


def test_the_metrics_service_is_what_the_service_monitor_selects(
    install: list[Obj], monitoring: list[Obj]
) -> None:
    service = find(install, 'Service', 'tenure-metrics')
    selector = find(monitoring, 'ServiceMonitor', 'tenure')['spec']['selector']['matchLabels']
    assert selector.items() <= service['metadata']['labels'].items()
    assert [p['name'] for p in service['spec']['ports']] == ['metrics']


def test_the_dashboard_is_importable(monitoring: list[Obj]) -> None:
    """A Grafana dashboard model (https://grafana.com/docs/grafana/latest/dashboards/build-dashboards/view-dashboard-json-model/):
    unique panel ids, a grid position each, Prometheus queries through the datasource variable;
    shipped as a ConfigMap for Grafana's dashboard sidecar."""
    dashboard = _dashboard()
    assert dashboard['uid'] == 'tenure'
    panels = list(_panels(dashboard))
    ids = [p['id'] for p in panels]
    assert len(ids) == len(set(ids))
    [variable] = dashboard['templating']['list']
    assert (variable['name'], variable['type'], variable['query']) == (
        'datasource',
        'datasource',
        'prometheus',
    )
    for panel in panels:
        assert set(panel['gridPos']) == {'x', 'y', 'w', 'h'}
        assert panel['gridPos']['x'] + panel['gridPos']['w'] <= 24
        for target in panel.get('targets', []):
            assert target['datasource'] == {'type': 'prometheus', 'uid': '${datasource}'}
            assert target['expr'].count('(') == target['expr'].count(')')
    configmap = find(monitoring, 'ConfigMap', 'tenure-grafana-dashboard')
    assert configmap['metadata']['labels']['grafana_dashboard'] == '1'
    assert json.loads(configmap['data']['grafana-dashboard.json']) == dashboard


def test_alert_expressions_are_balanced() -> None:
    """A cheap syntax guard (no PromQL parser is available offline): brackets balance."""
    for rule in _rules():
        expr = rule['expr']
        for opening, closing in ('()', '[]', '{}'):
            assert expr.count(opening) == expr.count(closing), rule['alert']

"""What the benchmark writes: `.tenure/bench/results.json` and the table in docs/benchmarks.md.

results.json is a list of {metric, value, unit, n, baseline_value}: `value` is Tenure's,
`baseline_value` the naive baseline operator's on the same work (null where there is none), `n`
the number of identities the metric was measured with. docs/benchmarks.md is generated from the
same numbers, with the machine they were measured on and how to read each metric.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from tenure_devtools.openbao import find_bao_binary


@dataclasses.dataclass(frozen=True)
class Definition:
    title: str
    """What was measured; `{n}` is replaced by the number of identities."""
    unit: str
    how_to_read: str
    """One or two sentences; empty for the other percentiles of a distribution."""


# The order of this table is the order of the report. Lower is better for every metric but the
# emulator's throughput.
METRICS: Final[Mapping[str, Definition]] = {
    'converge_first_seconds': Definition(
        'Time to converge {n} new identities (empty cluster)',
        's',
        'From the first create to the last identity seen Active (ServiceAccount, Role, '
        'RoleBinding, Vault policy, role and secret all written, status Active).',
    ),
    'converge_more_seconds': Definition(
        'Time to converge {n} new identities (with the others Active)',
        's',
        'The same for a second, smaller burst, while the first batch stays Active.',
    ),
    'converge_busy_after_seconds': Definition(
        'Busy after the last identity was Active',
        's',
        'How long the operator kept making requests once all the first batch was Active: the '
        "tail of provisioning (Events, kopf's annotations, handlers still queued).",
    ),
    'provision_reconciles_per_identity': Definition(
        'Reconciles per identity provisioned',
        'reconciles',
        "From Tenure's `tenure_reconcile_total`, over the same span: 1 when each new identity "
        'is reconciled once. The baseline has no such metric.',
    ),
    'provision_kube_requests_per_identity': Definition(
        'Kubernetes requests per identity provisioned',
        'requests',
        'Every request the operator made to the API server while the first batch converged '
        '(until it fell quiet), divided by the identities provisioned; watches included.',
    ),
    'provision_kube_writes_per_identity': Definition(
        'Kubernetes writes per identity provisioned',
        'requests',
        'The creates, updates, patches and deletes among them (objects, status, Events, kopf '
        'finalizers and annotations).',
    ),
    'provision_vault_requests_per_identity': Definition(
        'Vault requests per identity provisioned',
        'requests',
        'Every request OpenBao recorded in its audit log, per identity.',
    ),
    'provision_vault_writes_per_identity': Definition(
        'Vault writes per identity provisioned',
        'requests',
        'The requests among them whose audited operation is create, update, patch or delete '
        "(the policy, the role, the secret and its metadata). Vault's lookups are POSTs, "
        'audited as updates, and count here.',
    ),
    'steady_kube_requests_per_minute': Definition(
        'Kubernetes requests per steady-state minute ({n} Active)',
        'requests/min',
        'Requests while nothing changes and nothing is due, over one minute right after the '
        'first batch converged. It should not grow with the number of identities. Work an '
        'operator schedules further apart than a minute (an hourly re-check, say) is not in it.',
    ),
    'steady_vault_requests_per_minute': Definition(
        'Vault requests per steady-state minute ({n} Active)',
        'requests/min',
        'The same for Vault.',
    ),
    'steady_cpu_seconds_per_minute': Definition(
        'Operator CPU per steady-state minute ({n} Active)',
        'CPU s/min',
        'CPU time (user + system) the operator process used per minute with nothing to do: the '
        'cost of waking identities that are not due.',
    ),
    'rss_mib': Definition(
        'Operator memory at {n} identities (VmRSS)',
        'MiB',
        'Resident memory of the operator process after the first batch converged.',
    ),
    'rss_peak_mib': Definition(
        'Operator peak memory while converging {n} identities (VmHWM)',
        'MiB',
        'The highest resident memory the process reached up to then.',
    ),
    'resync_seconds': Definition(
        'Restart with {n} unchanged identities: time until quiet',
        's',
        'From the restart until the operator made its last request (none for 5 s after).',
    ),
    'resync_kube_requests_per_identity': Definition(
        'Restart: Kubernetes requests per identity',
        'requests',
        'Requests of a restart with nothing changed, divided by the identities: reads of the '
        'objects it re-checks.',
    ),
    'resync_vault_requests_per_identity': Definition(
        'Restart: Vault requests per identity',
        'requests',
        'The same for Vault.',
    ),
    'resync_kube_writes': Definition(
        'Restart: Kubernetes writes (target 0)',
        'requests',
        'Writes during a restart with nothing changed, in total. Anything but 0 is a resume storm.',
    ),
    'resync_vault_writes': Definition(
        'Restart: Vault writes (target 0)',
        'requests',
        'The same for Vault.',
    ),
    'rss_after_restart_mib': Definition(
        'Operator memory after a restart at {n} identities (VmRSS)',
        'MiB',
        'A fresh process holding the same identities.',
    ),
    'revocation_requested_after_expiry_p50_ms': Definition(
        'Revocation start after expiry, p50 ({n} expiring within the window)',
        'ms',
        '`status.revocation.requestedAt - expiresAt`: how late the operator noticed the expiry.',
    ),
    'revocation_requested_after_expiry_p90_ms': Definition(
        'Revocation start after expiry, p90', 'ms', ''
    ),
    'revocation_requested_after_expiry_p99_ms': Definition(
        'Revocation start after expiry, p99', 'ms', ''
    ),
    'revocation_requested_after_expiry_max_ms': Definition(
        'Revocation start after expiry, max', 'ms', ''
    ),
    'revocation_completed_after_expiry_p50_ms': Definition(
        'Revocation complete after expiry, p50 ({n} expiring within the window)',
        'ms',
        '`status.revocation.completedAt - expiresAt`: when every Vault and Kubernetes object '
        'was deleted and verified gone. Issue #5 asks for p99 within 250 ms, never over 1 s.',
    ),
    'revocation_completed_after_expiry_p90_ms': Definition(
        'Revocation complete after expiry, p90', 'ms', ''
    ),
    'revocation_completed_after_expiry_p99_ms': Definition(
        'Revocation complete after expiry, p99', 'ms', ''
    ),
    'revocation_completed_after_expiry_max_ms': Definition(
        'Revocation complete after expiry, max', 'ms', ''
    ),
    'revocations_completed_over_1s_late': Definition(
        'Revocations completed more than 1 s after expiry',
        'identities',
        'How many of the expiring identities kept some access for more than a second.',
    ),
    'revocation_kube_requests_per_identity': Definition(
        'Kubernetes requests per expiring identity, around its expiry',
        'requests',
        'From the batch being Active to the last revocation, per expiring identity: the '
        'revocation, its proof, and whatever else the operator does as expiry approaches.',
    ),
    'revocation_vault_requests_per_identity': Definition(
        'Vault requests per expiring identity, around its expiry', 'requests', 'The same for Vault.'
    ),
    'emulator_requests_per_second': Definition(
        'Emulator alone: requests per second ({n} objects)',
        'requests/s',
        'tests/bench/bench_emulator.py: a mix of get, list, patch and watch from 8 clients. '
        'Higher is better; a ceiling for everything above, which shares the emulator.',
    ),
    'emulator_late_early_p50_ratio': Definition(
        'Emulator alone: late/early p50 latency ratio',
        'ratio',
        'Median request latency in the last tenth of the run over the first tenth: about 1 when '
        'the cost of a request does not grow with the history.',
    ),
}


@dataclasses.dataclass(frozen=True)
class Result:
    metric: str
    value: float | None
    unit: str
    n: int
    baseline_value: float | None


def combine(
    tenure: Mapping[str, tuple[float | None, int]],
    baseline: Mapping[str, tuple[float | None, int]],
) -> list[Result]:
    """One row per metric measured, in the report's order."""
    rows = []
    for metric, definition in METRICS.items():
        if metric not in tenure and metric not in baseline:
            continue
        value, n = tenure.get(metric, (None, 0))
        base, base_n = baseline.get(metric, (None, 0))
        rows.append(Result(metric, value, definition.unit, n or base_n, base))
    return rows


def write_results(path: Path, rows: Sequence[Result]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = [dataclasses.asdict(row) for row in rows]
    path.write_text(json.dumps(body, indent=2) + '\n')


# ---- the machine -----------------------------------------------------------------------------


def _first(path: str, prefix: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(':', 1)[1].strip()
    except OSError:
        return None
    return None


def _command(argv: list[str]) -> str | None:
    try:
        answer = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return answer.stdout.strip() or None


def machine() -> dict[str, str]:
    memory = _first('/proc/meminfo', 'MemTotal')
    ram = f'{int(memory.split()[0]) / 1024 / 1024:.1f} GiB' if memory else 'unknown'
    usable = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    commit = _command(['git', 'rev-parse', '--short', 'HEAD']) or 'unknown'
    if _command(['git', 'status', '--porcelain', '--untracked-files=no']):
        commit += ' (with uncommitted changes)'
    bao = _command([str(find_bao_binary()), 'version']) or 'unknown'
    return {
        'CPU': _first('/proc/cpuinfo', 'model name') or platform.processor() or 'unknown',
        'Cores': f'{usable} usable ({os.cpu_count()} online)',
        'RAM': ram,
        'OS': platform.platform(),
        'Python': f'{platform.python_implementation()} {sys.version.split()[0]}',
        'OpenBao': bao,
        'Commit': commit,
        # Other work on the machine skews every number: the load says whether there was any.
        'Load average at the end': ' / '.join(f'{x:.2f}' for x in os.getloadavg())
        + ' (1, 5, 15 min)',
        'Date': datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC'),
    }


# ---- docs/benchmarks.md ----------------------------------------------------------------------


def number(value: float | None, unit: str) -> str:
    if value is None:
        return '—'
    if value == 0:
        return '0'
    if unit in ('requests', 'reconciles', 'ratio', 'CPU s/min') and abs(value) < 100:
        return f'{value:.2f}'.rstrip('0').rstrip('.') if value else '0'
    return f'{value:,.0f}' if abs(value) >= 10 else f'{value:.1f}'


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None:
        return '—'
    if base == 0:
        return 'both 0' if value == 0 else '—'
    ratio = value / base
    return f'{ratio:.2g}×' if ratio < 10 else f'{ratio:,.0f}×'


def _duration(seconds: float) -> str:
    return f'{seconds / 60:.0f} minutes' if seconds >= 90 else f'{seconds:.0f} seconds'


def markdown(
    rows: Sequence[Result],
    *,
    facts: Mapping[str, str],
    scale: str,
    settings: str,
    elapsed: float,
) -> str:
    lines = [
        '# Benchmarks',
        '',
        '<!-- Generated by `make bench` (tests/bench/run.py): do not edit by hand. -->',
        '',
        'Tenure against a naive baseline operator on the same work, on the local stack: the '
        'Kubernetes API emulator, a real OpenBao dev server, and the real operator as a child '
        'process. The baseline (tests/bench/baseline_operator.py) is the usual kopf design: '
        'provision on create, and a `@kopf.timer(interval=60)` per identity that checks its '
        "expiry and revokes; it does its work with Tenure's own reconciler, so both make the "
        'same objects and the same Vault calls. Requests are counted by the servers (the '
        "emulator's per-verb counters, OpenBao's audit log), memory and "
        "CPU read from /proc for the operator's process.",
        '',
        f'Scale: {scale}. {settings} The whole run took {_duration(elapsed)}.',
        '',
        '| machine | |',
        '|---|---|',
        *(f'| {key} | {value} |' for key, value in facts.items()),
        '',
        '## Results',
        '',
        'The ratio is Tenure ÷ baseline: below 1, Tenure needs less time, fewer requests or less '
        'memory than the baseline for the same work; above 1, more.',
        '',
        '| metric | n | Tenure | baseline | ratio | unit |',
        '|---|---:|---:|---:|---:|---|',
    ]
    for row in rows:
        title = METRICS[row.metric].title.format(n=f'{row.n:,}')
        lines.append(
            f'| {title} | {row.n:,} | {number(row.value, row.unit)} | '
            f'{number(row.baseline_value, row.unit)} | {_ratio(row.value, row.baseline_value)} '
            f'| {row.unit} |'
        )
    lines += ['', '## How to read each metric', '']
    for row in rows:
        definition = METRICS[row.metric]
        if not definition.how_to_read:
            continue  # a percentile of the metric just above
        lines.append(f'- **{definition.title.format(n=f"{row.n:,}")}**: {definition.how_to_read}')
    lines.append('')
    return '\n'.join(lines)

"""Tenure's benchmark suite: `make bench` (full scale) and `make bench-quick` (1/40, for CI).

    python tests/bench/run.py [--scale full|quick] [--only emulator|tenure|baseline]
                              [--tenure-arg=--vault-qps=200 ...]

Benchmarks (see scenario.py for the steps and docs/benchmarks.md for the last full results):

- emulator: the Kubernetes API emulator alone (bench_emulator.py);
- tenure: the real `tenure run` on the workload (converge, steady state, restart, expiry), on a
  fresh stack it starts itself: the emulator and a real OpenBao (its audit log counts requests);
- baseline: the naive kopf operator (baseline_operator.py) on the same workload, on its own fresh
  stack, so that the report shows Tenure's numbers next to the usual design's.

Results go to .tenure/bench/results.json (a list of {metric, value, unit, n, baseline_value}),
the operators' logs to .tenure/bench/<run>/, the table to docs/benchmarks.md after a full-scale run
of all three (the settings used are stated in it), else to .tenure/bench/benchmarks.md. Nothing
is asserted: the numbers are the output. Everything started is stopped when the run ends, also
on failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python tests/bench/run.py` puts tests/bench first on sys.path, not the repository: the suite's
# modules are imported as `tests.bench.*`, like every other test module.
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from types import FrameType  # noqa: E402
from typing import Final  # noqa: E402

from tests.bench import bench_emulator, report  # noqa: E402
from tests.bench.harness import Operator, baseline_operator, running_stack, tenure_operator  # noqa: E402
from tests.bench.scenario import SCALES, Run, Scale  # noqa: E402

BENCHMARKS: Final = ('emulator', 'tenure', 'baseline')
STATE: Final = REPO / '.tenure' / 'bench'
DOCS: Final = REPO / 'docs' / 'benchmarks.md'

Numbers = dict[str, tuple[float | None, int]]


class Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, message: str) -> None:
        minutes, seconds = divmod(int(self.elapsed), 60)
        print(f'[{minutes:3d}:{seconds:02d}] {message}', flush=True)


def run_operator(
    label: str, scale: Scale, workdir: Path, clock: Clock, tenure_args: list[str]
) -> Numbers:
    clock.say(f'== {label}: {scale.active} identities, then {scale.expiring} expiring ==')
    with running_stack(workdir / label) as stack:
        operator: Operator = (
            tenure_operator(stack, tenure_args) if label == 'tenure' else baseline_operator(stack)
        )
        try:
            measured = asyncio.run(Run(stack, operator, scale, clock.say).execute())
        except BaseException:
            clock.say(f'{label} failed; the last lines of its log:\n{operator.log_tail(40)}')
            raise
        finally:
            operator.close()
    return {metric: (m.value, m.n) for metric, m in measured.items()}


def run_emulator(scale: Scale, clock: Clock) -> Numbers:
    clock.say(
        f'== emulator: {scale.emulator_objects} objects, {scale.emulator_requests} requests =='
    )
    summary = bench_emulator.measure(scale.emulator_objects, scale.emulator_requests)
    return {
        'emulator_requests_per_second': (summary.requests_per_second, scale.emulator_objects),
        'emulator_late_early_p50_ratio': (summary.late_early_p50_ratio, scale.emulator_objects),
    }


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f'signal {signum}')


def stop_on_signals() -> None:
    """SIGTERM ends a run as Ctrl-C does, through every `finally` that stops what was started;
    so does SIGINT, which a non-interactive shell leaves ignored for a job it starts with `&`."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--scale', choices=sorted(SCALES), default='full')
    parser.add_argument(
        '--only',
        choices=BENCHMARKS,
        action='append',
        help='run only this benchmark (repeatable); docs/benchmarks.md is then left alone',
    )
    parser.add_argument(
        '--tenure-arg',
        dest='tenure_args',
        action='append',
        default=[],
        metavar='ARG',
        help='pass ARG to `tenure run` (repeatable), e.g. --tenure-arg=--vault-qps=200',
    )
    args = parser.parse_args(argv)
    stop_on_signals()
    scale = SCALES[args.scale]
    chosen = args.only or list(BENCHMARKS)
    clock = Clock()
    workdir = STATE / datetime.now(UTC).strftime('run-%Y%m%dT%H%M%SZ')
    clock.say(f'benchmark scale {scale.name}: {", ".join(chosen)}; logs in {workdir}')
    tenure: Numbers = {}
    baseline: Numbers = {}
    if 'emulator' in chosen:
        tenure.update(run_emulator(scale, clock))
    if 'tenure' in chosen:
        tenure.update(run_operator('tenure', scale, workdir, clock, args.tenure_args))
    if 'baseline' in chosen:
        baseline.update(run_operator('baseline', scale, workdir, clock, []))
    rows = report.combine(tenure, baseline)
    results = STATE / 'results.json'
    report.write_results(results, rows)
    clock.say(f'results: {results}')
    print(f'  {"metric":<44} {"n":>6} {"tenure":>12} {"baseline":>12}  unit')
    for row in rows:
        print(
            f'  {row.metric:<44} {row.n:>6} {report.number(row.value, row.unit):>12} '
            f'{report.number(row.baseline_value, row.unit):>12}  {row.unit}'
        )
    settings = (
        f"Tenure ran as `tenure run {' '.join(args.tenure_args)}`; the baseline with kopf's "
        'defaults, no rate limit.'
        if args.tenure_args
        else 'Both operators ran with their default settings (Tenure: 16 reconciles in flight, '
        "50 requests/s with bursts of 100 to Kubernetes and to Vault; the baseline: kopf's "
        'defaults, no rate limit).'
    )
    text = report.markdown(
        rows,
        facts=report.machine(),
        scale=f'{scale.name} ({scale.active:,} identities, {scale.expiring:,} expiring over '
        f'{scale.window:g} s)',
        settings=settings,
        elapsed=clock.elapsed,
    )
    # docs/benchmarks.md holds a full run of every benchmark (its settings stated in it); any
    # other run's table goes next to its results (and so is generated, and checked, in CI too).
    complete = set(chosen) == set(BENCHMARKS)
    target = DOCS if scale.name == 'full' and complete else STATE / 'benchmarks.md'
    target.write_text(text)
    clock.say(f'wrote {target.relative_to(REPO)}')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print('interrupted: everything the run started has been stopped', file=sys.stderr)
        sys.exit(130)

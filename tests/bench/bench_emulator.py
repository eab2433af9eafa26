"""Benchmark of the Kubernetes API emulator: does a request cost the same late in a long run?

Run: `python tests/bench/bench_emulator.py` (about a minute on 2 cores; `--help` for sizes).
`make bench` runs it as part of the suite (tests/bench/run.py, which calls `measure`).

The emulator runs as `python -m tenure_devtools.kubeapi` in its own process (its own core); this
process loads OBJECTS ConfigMaps spread over namespaces, then issues REQUESTS requests from a few
concurrent clients, mixed like an operator's traffic:

- get (40 %): one object by name;
- list (20 %): one namespace's objects by label selector;
- patch (35 %): a merge patch of one object (each adds to the watch history);
- watch (5 %): a watch from a recent resourceVersion of one namespace, until its first event
  (replayed from the event log).

Every patch grows the history, so if any request scanned history its latency would climb
through the run. The report compares throughput and p50/p99 latency per request kind between
the first and the last tenth of the run, and prints the late/early ratio of the overall p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass

import aiohttp

KINDS = (('get', 40), ('list', 20), ('patch', 35), ('watch', 5))


@dataclass
class Sample:
    index: int
    kind: str
    seconds: float
    finished: float


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Load:
    def __init__(
        self, url: str, session: aiohttp.ClientSession, namespaces: int, objects: int
    ) -> None:
        self.url = url
        self.session = session
        self.namespaces = [f'bench-{n:03d}' for n in range(namespaces)]
        self.per_namespace = objects // namespaces
        # The latest resourceVersion seen per namespace: watches start just before it.
        self.recent: dict[str, int] = {}

    def _object(self, rng: random.Random) -> tuple[str, str]:
        namespace = rng.choice(self.namespaces)
        return namespace, f'cm-{rng.randrange(self.per_namespace):05d}'

    async def setup(self, concurrency: int) -> None:
        for namespace in self.namespaces:
            async with self.session.post(
                f'{self.url}/api/v1/namespaces', json={'metadata': {'name': namespace}}
            ) as r:
                assert r.status == 201, await r.text()
        jobs = [(ns, i) for ns in self.namespaces for i in range(self.per_namespace)]

        async def create(chunk: list[tuple[str, int]]) -> None:
            for namespace, index in chunk:
                body = {
                    'metadata': {'name': f'cm-{index:05d}', 'labels': {'app': f'app-{index % 10}'}},
                    'data': {'value': str(index)},
                }
                url = f'{self.url}/api/v1/namespaces/{namespace}/configmaps'
                async with self.session.post(url, json=body) as response:
                    assert response.status == 201, await response.text()
                    self.recent[namespace] = int(
                        (await response.json())['metadata']['resourceVersion']
                    )

        await asyncio.gather(*(create(jobs[i::concurrency]) for i in range(concurrency)))

    async def request(self, kind: str, rng: random.Random) -> None:
        namespace, name = self._object(rng)
        base = f'{self.url}/api/v1/namespaces/{namespace}/configmaps'
        if kind == 'get':
            async with self.session.get(f'{base}/{name}') as response:
                assert response.status == 200
                await response.read()
        elif kind == 'list':
            params = {'labelSelector': f'app=app-{rng.randrange(10)}'}
            async with self.session.get(base, params=params) as response:
                assert response.status == 200
                await response.read()
        elif kind == 'patch':
            patch = {'data': {'value': str(rng.random())}}
            headers = {'Content-Type': 'application/merge-patch+json'}
            async with self.session.patch(
                f'{base}/{name}', data=json.dumps(patch), headers=headers
            ) as response:
                assert response.status == 200
                self.recent[namespace] = int((await response.json())['metadata']['resourceVersion'])
        else:
            since = self.recent[namespace] - 1
            params = {'watch': 'true', 'resourceVersion': str(since), 'timeoutSeconds': '10'}
            async with self.session.get(base, params=params) as response:
                assert response.status == 200
                line = await response.content.readline()
                event = json.loads(line)
                assert event['type'] in ('ADDED', 'MODIFIED'), event


@dataclass(frozen=True)
class Summary:
    """What the suite keeps of a run."""

    requests_per_second: float
    late_early_p50_ratio: float


async def run(args: argparse.Namespace, url: str) -> list[Sample]:
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        load = Load(url, session, args.namespaces, args.objects)
        started = time.perf_counter()
        await load.setup(args.concurrency)
        took = time.perf_counter() - started
        print(f'loaded {args.objects} objects in {args.namespaces} namespaces in {took:.1f} s')
        samples: list[Sample] = []
        kinds = [k for k, _ in KINDS]
        weights = [w for _, w in KINDS]
        counter = iter(range(args.requests))

        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            for index in counter:
                kind = rng.choices(kinds, weights)[0]
                begin = time.perf_counter()
                await load.request(kind, rng)
                end = time.perf_counter()
                samples.append(Sample(index, kind, end - begin, end))

        started = time.perf_counter()
        await asyncio.gather(*(worker(seed) for seed in range(args.concurrency)))
        elapsed = time.perf_counter() - started
        rate = args.requests / elapsed
        print(f'{args.requests} requests in {elapsed:.1f} s: {rate:.0f} requests/s overall')
        return samples


def _late_early_ratio(samples: list[Sample], total: int) -> float:
    tenth = total // 10
    early = [s.seconds for s in samples if s.index < tenth]
    late = [s.seconds for s in samples if s.index >= total - tenth]
    return statistics.median(late) / statistics.median(early)


def report(samples: list[Sample], total: int) -> None:
    tenth = total // 10
    print(f'\n{"tenth":<6} {"req/s":>7} {"p50 ms":>8} {"p99 ms":>8}')
    deciles = [[s for s in samples if d * tenth <= s.index < (d + 1) * tenth] for d in range(10)]
    for number, chosen in enumerate(deciles, 1):
        span = max(s.finished for s in chosen) - min(s.finished - s.seconds for s in chosen)
        values = [s.seconds * 1000 for s in chosen]
        print(
            f'{number:<6} {len(chosen) / span:>7.0f} '
            f'{_percentile(values, 0.5):>8.2f} {_percentile(values, 0.99):>8.2f}'
        )
    phases = {'early': deciles[0], 'late': deciles[-1]}
    print(f'\n{"phase":<6} {"kind":<6} {"count":>6} {"p50 ms":>8} {"p99 ms":>8}')
    for phase, chosen in phases.items():
        by_kind: dict[str, list[float]] = defaultdict(list)
        for sample in chosen:
            by_kind[sample.kind].append(sample.seconds * 1000)
            by_kind['all'].append(sample.seconds * 1000)
        for kind in (*(k for k, _ in KINDS), 'all'):
            values = by_kind[kind]
            print(
                f'{phase:<6} {kind:<6} {len(values):>6} '
                f'{_percentile(values, 0.5):>8.2f} {_percentile(values, 0.99):>8.2f}'
            )
    ratio = _late_early_ratio(samples, total)
    print(
        f'\nlate/early p50 ratio: {ratio:.2f} '
        '(about 1 when the cost per request does not grow with history)'
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--objects', type=int, default=10_000)
    parser.add_argument('--namespaces', type=int, default=100)
    parser.add_argument('--requests', type=int, default=100_000)
    parser.add_argument('--concurrency', type=int, default=8)
    return parser


def measure(objects: int, requests: int) -> Summary:
    """Run the benchmark at this size (namespaces: one per 100 objects); print its report."""
    namespaces = max(1, objects // 100)
    args = _parser().parse_args(
        ['--objects', str(objects), '--requests', str(requests), '--namespaces', str(namespaces)]
    )
    samples = _samples(args)
    report(samples, args.requests)
    elapsed = max(s.finished for s in samples) - min(s.finished - s.seconds for s in samples)
    return Summary(
        requests_per_second=len(samples) / elapsed,
        late_early_p50_ratio=_late_early_ratio(samples, args.requests),
    )


def _samples(args: argparse.Namespace) -> list[Sample]:
    # The emulator gets its own process (and core), as a cluster's apiserver would.
    process = subprocess.Popen(
        [sys.executable, '-m', 'tenure_devtools.kubeapi', '--port', '0'],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().rsplit(' ', 1)[1]
        samples = asyncio.run(run(args, url))
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
    return samples


def main() -> None:
    args = _parser().parse_args()
    report(_samples(args), args.requests)


if __name__ == '__main__':
    main()

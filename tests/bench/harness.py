"""The stack a benchmark runs against, the operators under test, and what is read from them.

`running_stack()` starts what `make dev` starts, on free loopback ports, and stops it all when the
block ends however it ends: the Kubernetes API emulator (in this process, on its own thread) and
a real OpenBao dev server (a child process) with Kubernetes auth reviewing tokens against the
emulator and a file audit device.

Requests are counted at the servers, not in the operator, so both operators are measured the same
way: Kubernetes requests by the emulator's fault injector (one counting `PassThrough` rule per
verb; the benchmark's own client sends `EXEMPT_HEADER` and is not counted), Vault requests in
OpenBao's audit log (`AuditLogCounter`). Nothing sits between an operator and OpenBao: a counting
proxy in this process (an earlier design) shared the emulator's interpreter and added a hop to
every Vault request, which doubled the revocation latency measured at full scale.

Memory and CPU are read from /proc for the operator's own process (Linux only).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Protocol, Self

from tenure_devtools.kubeapi import KubeApiEmulator, running_emulator
from tenure_devtools.kubeapi.faults import FaultInjector, FaultRule, PassThrough
from tenure_devtools.openbao import AuditLogCounter, OpenBaoDevServer, running_openbao
from tenure_devtools.operator_process import OperatorProcess
from tenure_devtools.ports import free_port

REPO: Final = Path(__file__).resolve().parents[2]
BASELINE_SCRIPT: Final = Path(__file__).resolve().parent / 'baseline_operator.py'

KUBE_VERBS: Final = (
    'get',
    'list',
    'watch',
    'create',
    'update',
    'patch',
    'delete',
    'deletecollection',
)
KUBE_WRITES: Final = frozenset({'create', 'update', 'patch', 'delete', 'deletecollection'})
OTHER: Final = 'other'
"""Requests outside the resource API (discovery, /version) or with another verb."""


# ---- request counts ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Requests:
    """Requests the operator made, as the servers counted them (a snapshot, or a difference)."""

    kube: Mapping[str, int]
    """Kubernetes requests by verb (a watch is one request, however long it streams)."""
    vault: int
    vault_writes: int

    @property
    def kube_total(self) -> int:
        return sum(self.kube.values())

    @property
    def kube_writes(self) -> int:
        return sum(n for verb, n in self.kube.items() if verb in KUBE_WRITES)

    @property
    def total(self) -> int:
        return self.kube_total + self.vault

    def __sub__(self, earlier: Requests) -> Requests:
        return Requests(
            kube={verb: n - earlier.kube.get(verb, 0) for verb, n in self.kube.items()},
            vault=self.vault - earlier.vault,
            vault_writes=self.vault_writes - earlier.vault_writes,
        )

    def describe(self) -> str:
        verbs = ', '.join(f'{verb} {n}' for verb, n in self.kube.items() if n)
        return (
            f'Kubernetes {self.kube_total} ({verbs or "none"}), '
            f'Vault {self.vault} ({self.vault_writes} writes)'
        )


class RequestCounter:
    """Counts what reaches the emulator (by verb) and what OpenBao's audit log records."""

    def __init__(self, faults: FaultInjector, vault: AuditLogCounter) -> None:
        self._faults = faults
        self._vault = vault
        # Rules are tried in order and the first that fires decides: one rule per verb counts
        # each request once, and the last, matching everything, counts the rest.
        self._rules = {
            verb: faults.add(FaultRule(effect=PassThrough(), verbs={verb}, times=None))
            for verb in KUBE_VERBS
        }
        self._rules[OTHER] = faults.add(FaultRule(effect=PassThrough(), times=None))

    def snapshot(self) -> Requests:
        counts = self._vault.counts()
        return Requests(
            kube={verb: self._faults.stats(rule).matched for verb, rule in self._rules.items()},
            vault=counts.requests,
            vault_writes=counts.writes,
        )


# ---- the stack -----------------------------------------------------------------------------


@dataclasses.dataclass
class Stack:
    emulator: KubeApiEmulator
    bao: OpenBaoDevServer
    kubeconfig: Path
    requests: RequestCounter
    workdir: Path


@contextlib.contextmanager
def running_stack(workdir: Path) -> Iterator[Stack]:
    """The emulator with Tenure's CRDs, OpenBao with Kubernetes auth and its audit log."""
    workdir.mkdir(parents=True, exist_ok=True)
    # The emulator replays at most `watch_window` events to a watch that resumes; the default
    # (10,000) is less than one status write per identity at full scale, and a watcher that
    # resumes after a 300 s server timeout must not get 410 Gone for that reason alone.
    with (
        running_emulator(crd_paths=[REPO / 'crds'], watch_window=200_000) as emulator,
        running_openbao(audit_log=True) as bao,
    ):
        bao.configure_kubernetes_auth(kubernetes_host=emulator.url)
        assert bao.audit_log_path is not None
        yield Stack(
            emulator=emulator,
            bao=bao,
            kubeconfig=emulator.write_kubeconfig(workdir / 'kubeconfig'),
            requests=RequestCounter(emulator.faults, AuditLogCounter(bao.audit_log_path)),
            workdir=workdir,
        )


# ---- the operators under test --------------------------------------------------------------


class Operator(Protocol):
    """What the benchmark does with an operator: start, stop, restart, look at its process."""

    label: str

    @property
    def pid(self) -> int | None: ...

    def start(self, timeout: float = 60) -> None: ...

    def stop(self, timeout: float = 20) -> int | None: ...

    def restart(self, timeout: float = 60) -> None: ...

    def log_tail(self, lines: int = 60) -> str: ...

    def close(self) -> None: ...

    def reconciles(self) -> int | None:
        """Reconciles done so far, if the operator says (None: it has no such metric)."""


class TenureOperator(OperatorProcess):
    """The real `tenure run` with its default settings (logging at INFO, as the baseline's kopf
    does)."""

    label = 'tenure'

    def reconciles(self) -> int | None:
        """`tenure_reconcile_total`, all results together, from the metrics endpoint."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith('tenure_reconcile_total{'):
                total += float(line.rsplit(' ', 1)[1])
        return int(total)


class BaselineOperator:
    """The naive kopf operator of `baseline_operator.py`, as a child process."""

    label = 'baseline'

    def __init__(self, *, kubeconfig: Path, vault_addr: str, vault_token: str, log_dir: Path):
        self.kubeconfig = kubeconfig
        self.vault_addr = vault_addr
        self._vault_token = vault_token
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self.liveness_port = 0
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60) -> None:
        self.starts += 1
        self.log_path = self.log_dir / f'baseline-{self.starts}.log'
        self.liveness_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(('VAULT_', 'BAO_'))}
        env.update(
            VAULT_ADDR=self.vault_addr,
            VAULT_TOKEN=self._vault_token,
            KUBECONFIG=str(self.kubeconfig),
            PYTHONUNBUFFERED='1',
        )
        env.pop('KUBERNETES_SERVICE_HOST', None)
        argv = [sys.executable, str(BASELINE_SCRIPT), '--liveness-port', str(self.liveness_port)]
        with self.log_path.open('wb') as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            self._wait_alive(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_alive(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f'http://127.0.0.1:{self.liveness_port}/healthz'
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f'the baseline operator exited:\n{self.log_tail()}')
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f'the baseline operator was not alive in {timeout}s:\n{self.log_tail()}')

    def stop(self, timeout: float = 20) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        return process.returncode

    def restart(self, timeout: float = 60) -> None:
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = 60) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ''
        text = self.log_path.read_text(errors='replace').replace(self._vault_token, '<redacted>')
        return '\n'.join(text.splitlines()[-lines:])

    def close(self) -> None:
        self.stop()

    def reconciles(self) -> int | None:
        return None  # the baseline exports no metrics

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def tenure_operator(stack: Stack, args: Sequence[str] = ()) -> TenureOperator:
    return TenureOperator(
        kubeconfig=stack.kubeconfig,
        vault_addr=stack.bao.addr,
        vault_token=stack.bao.root_token,
        args=list(args),
        log_dir=stack.workdir,
    )


def baseline_operator(stack: Stack) -> BaselineOperator:
    return BaselineOperator(
        kubeconfig=stack.kubeconfig,
        vault_addr=stack.bao.addr,
        vault_token=stack.bao.root_token,
        log_dir=stack.workdir,
    )


# ---- the operator's process ----------------------------------------------------------------


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith(f'{field}:'):
            return int(line.split()[1])
    raise LookupError(f'{field} not in /proc/{pid}/status')


def rss_bytes(pid: int) -> int:
    """Resident memory now (VmRSS)."""
    return _status_kib(pid, 'VmRSS') * 1024


def peak_rss_bytes(pid: int) -> int:
    """The highest resident memory the process has had (VmHWM)."""
    return _status_kib(pid, 'VmHWM') * 1024


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process (all its threads) has used so far."""
    stat = Path(f'/proc/{pid}/stat').read_text()
    # Field 2 (the command) may hold spaces and parentheses: split after its closing one.
    fields = stat[stat.rindex(')') + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf('SC_CLK_TCK')

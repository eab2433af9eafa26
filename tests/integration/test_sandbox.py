"""`tenure dev`, the README's first command, as a user runs it: a child process that prints what to
run next, the real `kubectl` and `bao` CLIs against what it started, and SIGTERM stopping it all.

The sandbox runs in a temporary working directory with its own `--state-dir`; its stdout is read
until the ready line (no sleeps). Child processes are found in /proc while the sandbox runs, so
the tests can check afterwards that none of them outlived it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tenure_devtools.ports import free_port
from tenure_devtools.sandbox import READY_LINE, SandboxOptions
from tenure_devtools.sandbox import run as sandbox_run

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not Path('/proc/self/stat').exists(),
        reason='these tests find the processes the sandbox started in /proc (Linux only)',
    ),
]

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0

needs_kubectl = pytest.mark.skipif(
    shutil.which('kubectl') is None,
    reason='kubectl is not installed: the sandbox tests drive the real kubectl binary',
)


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid` (children, grandchildren...) with its command line, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            # The command name in field 2 may hold spaces and parentheses: split after the last ')'.
            fields = (entry / 'stat').read_text().rsplit(')', 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = command_line(child)
                frontier.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        return (Path('/proc') / str(pid) / 'cmdline').read_bytes().replace(b'\0', b' ').decode()
    except OSError:
        return ''


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a zombie has exited; only its entry is left)."""
    try:
        stat = (Path('/proc') / str(pid) / 'stat').read_text()
    except OSError:
        return False
    return stat.rsplit(')', 1)[1].split()[0] != 'Z'


def port_is_free(port: int) -> bool:
    """Whether a server could listen on `port` again (SO_REUSEADDR, as servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(('127.0.0.1', port))
        except OSError:
            return False
        return True


class Sandbox:
    """One `tenure dev` child process, its stdout read as it comes."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.workdir = workdir
        self.state_dir = workdir / 'state'
        self.stderr_path = workdir / 'sandbox.stderr'
        self.stdout = ''
        self.children: dict[int, str] = {}
        argv = [
            sys.executable,
            '-m',
            'tenure',
            'dev',
            '--state-dir',
            str(self.state_dir),
            '--crds',
            str(REPO / 'crds'),
            *args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(('VAULT_', 'BAO_'))}
        with self.stderr_path.open('wb') as stderr:
            self.process = subprocess.Popen(
                argv, cwd=workdir, stdout=subprocess.PIPE, stderr=stderr, env=env
            )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors='replace')

    def read_until(self, marker: str, timeout: float = START_TIMEOUT) -> str:
        """Read stdout until `marker` appears; fail with stderr if the sandbox exits first."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        while marker not in self.stdout:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f'no {marker!r} within {timeout}s; stderr:\n{self.stderr}')
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    code = self.process.wait(STOP_TIMEOUT)
                    pytest.fail(f'tenure dev exited with {code} first; stderr:\n{self.stderr}')
                self.stdout += chunk.decode()
        return self.stdout

    def wait_ready(self) -> None:
        self.read_until(READY_LINE)
        self.children = descendants(self.process.pid)

    def printed(self, pattern: str) -> str:
        """The first group of `pattern` in what the sandbox printed."""
        match = re.search(pattern, self.stdout)
        assert match is not None, f'{pattern!r} not in:\n{self.stdout}'
        return match[1]

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(STOP_TIMEOUT)

    def close(self) -> None:
        """Stop the sandbox whatever state it is in, and anything it left behind."""
        left = {**self.children, **descendants(self.process.pid)}
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in left:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextlib.contextmanager
def sandbox_process(workdir: Path, *args: str) -> Iterator[Sandbox]:
    sandbox = Sandbox(workdir, *args)
    try:
        yield sandbox
    finally:
        sandbox.close()


@pytest.fixture(scope='module')
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """`tenure dev` with the repository's examples, ready, shared by the kubectl tests."""
    with sandbox_process(
        tmp_path_factory.mktemp('sandbox'), '--examples', str(REPO / 'examples')
    ) as running:
        running.wait_ready()
        yield running


def kubectl(sandbox: Sandbox, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ['kubectl', '--kubeconfig', str(sandbox.state_dir / 'kubeconfig'), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=sandbox.workdir,
    )
    assert result.returncode == 0, f'kubectl {" ".join(args)}: {result.stderr}'
    return result.stdout


def table(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


@needs_kubectl
def test_examples_reach_their_phases_and_kubectl_shows_the_printer_columns(
    sandbox: Sandbox,
) -> None:
    rows = table(kubectl(sandbox, 'get', 'serviceidentities', '-A'))
    assert rows[0] == ['NAMESPACE', 'NAME', 'OWNER', 'TICKET', 'PHASE', 'EXPIRES', 'AGE']
    assert {tuple(row[:5]) for row in rows[1:]} == {
        ('analytics', 'report-builder', 'analytics', 'RITM0042001', 'Pending'),
        ('payments', 'ledger-sync', 'ledger', 'OPS-1234', 'Active'),
        ('payments', 'settlement-exporter', 'payments-platform', 'CHG0031337', 'Active'),
    }
    short = table(kubectl(sandbox, 'get', 'sid', '-n', 'payments'))
    assert [row[0] for row in short[1:]] == ['ledger-sync', 'settlement-exporter']
    # The sandbox printed the phases it waited for, too.
    assert re.search(r'ServiceIdentity analytics/report-builder\s+Pending', sandbox.stdout)


@needs_kubectl
def test_kubectl_describes_an_identity_and_lists_what_it_provisioned(sandbox: Sandbox) -> None:
    described = kubectl(sandbox, 'describe', 'sid', '-n', 'payments', 'settlement-exporter')
    assert re.search(r'^\s+Phase:\s+Active$', described, re.MULTILINE)
    assert re.search(r'^\s+Policy:\s+tenure-payments-settlement-exporter$', described, re.M)
    listed = kubectl(sandbox, 'get', 'serviceaccounts,roles,rolebindings', '-n', 'payments')
    for name in (
        'serviceaccount/settlement-exporter',
        'serviceaccount/ledger-sync',
        'role.rbac.authorization.k8s.io/tenure-settlement-exporter',
        'rolebinding.rbac.authorization.k8s.io/tenure-settlement-exporter',
    ):
        assert re.search(rf'^{re.escape(name)}\s', listed, re.MULTILINE), listed


NEW_IDENTITY = """\
apiVersion: tenure.dev/v1alpha1
kind: ServiceIdentity
metadata:
  name: invoice-mailer
  namespace: payments
spec:
  ticket:
    id: CHG0031400
    system: servicenow
    state: Approved
    requester: alice@example.com
    approver: bob@example.com
    approvedAt: "{approved}"
    justification: Mails invoices to customers.
  owner:
    team: payments-platform
    contact: payments-oncall@example.com
  service: invoice-mailer
  expiresAt: "{expires}"
  kubernetes:
    rules:
      - apiGroups: [""]
        resources: ["configmaps"]
        resourceNames: ["invoice-mailer-config"]
        verbs: ["get"]
"""


@needs_kubectl
def test_kubectl_apply_provisions_and_kubectl_delete_revokes(sandbox: Sandbox) -> None:
    now = time.time()
    manifest = NEW_IDENTITY.format(
        approved=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now - 60)),
        expires=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now + 7 * 86400)),
    )
    # No --validate=false: the emulator serves OpenAPI v3, so kubectl validates through it.
    applied = kubectl(sandbox, 'apply', '-f', '-', stdin=manifest)
    assert applied.strip() == 'serviceidentity.tenure.dev/invoice-mailer created'
    kubectl(
        sandbox,
        'wait',
        '-n',
        'payments',
        'sid/invoice-mailer',
        '--for=jsonpath={.status.phase}=Active',
        '--timeout=60s',
    )
    accounts = kubectl(sandbox, 'get', 'sa', '-n', 'payments', '-o', 'name')
    assert 'serviceaccount/invoice-mailer' in accounts.split()
    # kubectl delete waits until the object is gone: the finalizer holds it until revocation.
    deleted = kubectl(sandbox, 'delete', 'sid', '-n', 'payments', 'invoice-mailer')
    assert deleted.strip() == 'serviceidentity.tenure.dev "invoice-mailer" deleted'
    names = kubectl(sandbox, 'get', 'sa,role,rolebinding', '-n', 'payments', '-o', 'name')
    assert 'invoice-mailer' not in names
    assert 'settlement-exporter' in names  # the neighbours are untouched


def printed_block(sandbox: Sandbox, title: str) -> list[str]:
    """The command lines of one block of the summary (after its title, up to a blank line)."""
    block = sandbox.stdout.split(f'\n{title}')[1].split('\n\n')[0]
    return [line.strip() for line in block.splitlines()[1:]]


@needs_kubectl
def test_the_printed_commands_work_as_printed(sandbox: Sandbox) -> None:
    """Pasted into a shell in the directory `tenure dev` ran in, the commands work."""
    kube = [line for line in printed_block(sandbox, 'Kubernetes') if 'my-identity' not in line]
    vault = printed_block(sandbox, 'Vault')
    assert vault[1] == 'export VAULT_TOKEN=$(cat state/vault-token)'
    env = {k: v for k, v in os.environ.items() if not k.startswith(('VAULT_', 'BAO_', 'KUBE'))}
    result = subprocess.run(
        ['bash', '-c', '\n'.join(['set -euo pipefail', *kube, *vault])],
        env=env,
        cwd=sandbox.workdir,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert 'serviceaccount/settlement-exporter' in result.stdout  # kubectl get
    assert 'tenure-payments-ledger-sync' in result.stdout  # bao policy list
    assert 'secret/data/payments/' in result.stdout  # bao policy read


def test_the_root_token_is_only_in_a_private_file(sandbox: Sandbox) -> None:
    token_file = sandbox.state_dir / 'vault-token'
    assert token_file.stat().st_mode & 0o777 == 0o600
    # The dev server logs its root token itself: its directory is private too.
    assert (sandbox.state_dir / 'openbao').stat().st_mode & 0o777 == 0o700
    token = token_file.read_text().strip()
    assert token not in sandbox.stdout
    assert token not in sandbox.stderr
    assert token not in (sandbox.state_dir / 'operator-1.log').read_text()


def test_a_second_sandbox_on_the_same_state_dir_is_refused(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    second = subprocess.run(
        [sys.executable, '-m', 'tenure', 'dev', '--state-dir', str(sandbox.state_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 1
    assert f'another tenure dev (pid {sandbox.process.pid}) is using' in second.stderr
    assert (sandbox.state_dir / 'vault-token').exists()  # the first one's files are untouched


def test_sigterm_stops_everything_the_sandbox_started(tmp_path: Path) -> None:
    port = free_port()
    with sandbox_process(tmp_path, '--no-examples', '--port', str(port)) as running:
        running.wait_ready()
        kubeconfig = yaml.safe_load((running.state_dir / 'kubeconfig').read_text())
        assert kubeconfig['clusters'][0]['cluster']['server'] == f'http://127.0.0.1:{port}'
        commands = ' | '.join(running.children.values())
        assert 'bao server -dev' in commands
        assert '-m tenure run' in commands
        vault_port = int(running.printed(r'export VAULT_ADDR=http://127\.0\.0\.1:(\d+)'))
        metrics_port = int(running.printed(r'metrics http://127\.0\.0\.1:(\d+)/metrics'))
        ports = [port, vault_port, vault_port + 1, metrics_port]
        assert not any(port_is_free(p) for p in ports)

        assert running.terminate() == 0

        assert [pid for pid in running.children if alive(pid)] == []
        assert [p for p in ports if not port_is_free(p)] == []
        assert not (running.state_dir / 'vault-token').exists()
        assert 'tenure dev: stopped' in running.stderr


def test_a_child_that_dies_ends_the_sandbox_and_stops_the_rest(tmp_path: Path) -> None:
    with sandbox_process(tmp_path, '--no-examples') as running:
        running.wait_ready()
        operator = next(pid for pid, cmd in running.children.items() if '-m tenure run' in cmd)
        os.kill(operator, signal.SIGKILL)
        assert running.process.wait(STOP_TIMEOUT) == 1
        assert 'the operator exited (code -9)' in running.stderr
        assert [pid for pid in running.children if alive(pid)] == []
        vault_port = int(running.printed(r'export VAULT_ADDR=http://127\.0\.0\.1:(\d+)'))
        assert port_is_free(vault_port)


class _StopWhen(logging.Handler):
    """Sets `stop` when the sandbox logs `message`: a Ctrl-C at that very point of start-up."""

    def __init__(self, message: str, stop: threading.Event) -> None:
        super().__init__()
        self.message = message
        self.stop = stop

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.message):
            self.stop.set()


def test_a_stop_during_start_up_stops_what_had_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`run()` as a function: `stop` set while the operator starts; nothing is left behind."""
    caplog.set_level(logging.INFO, logger='tenure_devtools.sandbox')
    stop = threading.Event()
    trigger = _StopWhen('starting the operator', stop)
    logger = logging.getLogger('tenure_devtools.sandbox')
    logger.addHandler(trigger)
    out = io.StringIO()
    options = SandboxOptions(state_dir=tmp_path / 'state', crds=REPO / 'crds', examples=None)
    try:
        assert sandbox_run(options, stop=stop, out=out) == 0
    finally:
        logger.removeHandler(trigger)
    assert out.getvalue() == ''  # never claimed to be ready
    log = caplog.text
    assert 'stopped during start-up' in log
    pids = [int(p) for p in re.findall(r', pid (\d+)', log)]
    assert len(pids) == 2  # OpenBao and the operator had started
    assert [pid for pid in pids if alive(pid)] == []
    ports = {int(p) for p in re.findall(r' at http://127\.0\.0\.1:(\d+)', log)}
    assert len(ports) == 2
    assert [p for p in ports if not port_is_free(p)] == []
    assert not (tmp_path / 'state' / 'vault-token').exists()


def self_approved_example(directory: Path) -> Path:
    """An example the API server refuses (a CEL rule of the CRD): found only once all is running."""
    directory.mkdir()
    manifest = NEW_IDENTITY.format(approved='2026-01-01T00:00:00Z', expires='2099-01-01T00:00:00Z')
    (directory / 'self-approved.yaml').write_text(
        manifest.replace('approver: bob@example.com', 'approver: alice@example.com')
    )
    return directory


@pytest.mark.parametrize(
    ('case', 'message', 'started'),
    [
        pytest.param(
            'refused-example',
            'requester and approver must be different people',
            {'OpenBao', 'operator'},
            id='example-refused-by-the-api-after-everything-started',
        ),
        pytest.param('port-in-use', 'is already in use', set(), id='emulator-port-taken'),
        pytest.param(
            'missing-examples', 'no example manifests at', set(), id='examples-dir-missing'
        ),
    ],
)
def test_a_failed_start_stops_what_was_already_started(
    case: str, message: str, started: set[str], tmp_path: Path
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        if case == 'refused-example':
            args = ['--examples', str(self_approved_example(tmp_path / 'examples'))]
        elif case == 'port-in-use':
            listener.bind(('127.0.0.1', 0))
            listener.listen()
            args = ['--no-examples', '--port', str(listener.getsockname()[1])]
        else:
            args = ['--examples', str(tmp_path / 'nowhere')]
        with sandbox_process(tmp_path, *args) as running:
            assert running.process.wait(START_TIMEOUT) == 1
            stderr = running.stderr
    assert message in stderr
    assert 'everything it had started was stopped' in stderr
    # The log names each child it started, with its pid and address: all gone, all ports free.
    children = dict(re.findall(r'(OpenBao|operator)\b[^\n]*?, pid (\d+)', stderr))
    assert set(children) == started
    assert [name for name, pid in children.items() if alive(int(pid))] == []
    ports = {int(p) for p in re.findall(r' at http://127\.0\.0\.1:(\d+)', stderr)}
    if 'OpenBao' in started:
        vault_port = int(re.findall(r'OpenBao dev server at http://127\.0\.0\.1:(\d+)', stderr)[0])
        ports.add(vault_port + 1)  # its cluster listener
    assert [p for p in ports if not port_is_free(p)] == []
    assert not (tmp_path / 'state' / 'vault-token').exists()

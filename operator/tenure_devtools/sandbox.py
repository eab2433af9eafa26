"""`tenure dev`: the local sandbox. Development tooling, never the operator's runtime.

It starts, on 127.0.0.1 and on ports chosen at run time:

1. the Kubernetes API emulator (in this process, its event loop on a thread of its own), with the
   CRDs loaded;
2. a real OpenBao dev server (a child process) whose Kubernetes auth method reviews tokens
   against the emulator;
3. the real operator, `tenure run` (a child process);

then creates the namespaces the example manifests need, applies the manifests (the way
`kubectl create -f` does: discovery, then POST), waits until the operator has given each
ServiceIdentity a phase, and prints what to run next. It runs until `stop` is set (`main()` sets it
on SIGINT, SIGTERM or SIGHUP) or something it started dies, and then stops everything it started,
newest first; a start-up that fails half-way stops what was already running the same way.

Files in the state directory (`.tenure/dev` by default, git-ignored): `kubeconfig` (no
credentials: the emulator does not authenticate), `vault-token` (the OpenBao root token, mode
0600, removed at exit: the token never goes to stdout or to our logs), `operator-1.log`,
`openbao/openbao.log` (in a 0700 directory because the dev server itself prints its root token
there) and `lock` (one sandbox per state directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import shlex
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Final, TextIO

import yaml

from tenure_devtools.kubeapi import KubeApiEmulator
from tenure_devtools.kubeapi.errors import ApiError
from tenure_devtools.openbao import OpenBaoDevServer, OpenBaoError, find_bao_binary
from tenure_devtools.operator_process import OperatorProcess, OperatorProcessError

log = logging.getLogger(__name__)

HOST: Final = '127.0.0.1'
DEFAULT_STATE_DIR: Final = Path('.tenure/dev')
#: The last line of the summary: everything is up and the examples have their phases.
READY_LINE: Final = 'Tenure sandbox ready.'
MANIFEST_SUFFIXES: Final = ('.yaml', '.yml', '.json')
IDENTITY_API_VERSION: Final = 'tenure.dev/v1alpha1'
IDENTITY_KIND: Final = 'ServiceIdentity'
_POLL_INTERVAL: Final = 0.2
_SUPERVISE_INTERVAL: Final = 1.0
_HTTP_TIMEOUT: Final = 10.0
# Loopback plain HTTP: a developer's HTTP(S)_PROXY must not capture it.
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))

Obj = dict[str, Any]


class SandboxError(RuntimeError):
    """The sandbox could not start; the message says why and what to do about it."""


class _Stopped(Exception):
    """`stop` was set while the sandbox was still starting."""


@dataclasses.dataclass(frozen=True)
class SandboxOptions:
    """What `tenure dev` starts and where it keeps its files."""

    state_dir: Path = DEFAULT_STATE_DIR
    crds: Path = Path('crds')
    """A CRD file or a directory of them, loaded when the emulator starts."""
    examples: Path | None = Path('examples')
    """A manifest file or a directory searched recursively; None applies nothing."""
    port: int = 0
    """The emulator's port; 0 picks a free one (a fixed port keeps the kubeconfig stable)."""
    phase_timeout: float = 60.0
    """How long to wait for the operator to give each example ServiceIdentity a phase."""


@dataclasses.dataclass(frozen=True)
class AppliedObject:
    """One object created from the example manifests."""

    api_version: str
    kind: str
    namespace: str | None
    name: str
    path: str
    """Its URL path on the API server."""
    phase: str | None = None
    """`status.phase` once the operator set it (ServiceIdentities only)."""

    @property
    def is_identity(self) -> bool:
        return self.api_version == IDENTITY_API_VERSION and self.kind == IDENTITY_KIND

    @property
    def ref(self) -> str:
        return self.name if self.namespace is None else f'{self.namespace}/{self.name}'


@dataclasses.dataclass(frozen=True)
class SandboxInfo:
    """What is running, for the summary. No secrets: the token is only in its 0600 file."""

    state_dir: Path
    kube_url: str
    kubeconfig: Path
    vault_addr: str
    vault_token_file: Path
    bao_binary: Path
    openbao_log: Path
    operator_pid: int
    operator_log: Path
    metrics_url: str
    applied: tuple[AppliedObject, ...]


@dataclasses.dataclass(frozen=True)
class _Running:
    info: SandboxInfo
    emulator_thread: threading.Thread
    bao: OpenBaoDevServer
    operator: OperatorProcess


def main(options: SandboxOptions, out: TextIO) -> int:
    """The `tenure dev` command: run the sandbox in the foreground until SIGINT, SIGTERM or
    SIGHUP (a closed terminal), logging progress to stderr. Returns the exit code."""
    logging.basicConfig(level=logging.INFO, format='tenure dev: %(message)s')
    # The emulator announces its address itself; this module says it once, with the kubeconfig.
    logging.getLogger('tenure_devtools.kubeapi').setLevel(logging.WARNING)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only set the event: the main thread unwinds at a safe point and stops every child. A
        # second signal must not cut that shutdown short, or children would be left running.
        name = signal.Signals(signum).name
        if stop.is_set():
            log.info('%s: already stopping', name)
        else:
            log.info('%s: stopping the sandbox', name)
            stop.set()

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, on_signal) for sig in handled}
    try:
        return run(options, stop=stop, out=out)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(options: SandboxOptions, *, stop: threading.Event, out: TextIO) -> int:
    """Start the sandbox, print the summary to `out`, serve until `stop` is set, stop it all.

    Returns 0 after a requested stop (also one that came during start-up); 1 when start-up
    failed or a component died, with the reason logged. Whatever was started is stopped before
    this returns.
    """
    try:
        with contextlib.ExitStack() as stack:
            running = _start(options, stop, stack)
            _print_summary(running.info, out)
            code = _supervise(running, stop)
            log.info('stopping everything the sandbox started')
        log.info('stopped')
        return code
    except _Stopped:
        log.info('stopped during start-up; everything started so far was stopped')
        return 0
    except (SandboxError, OpenBaoError, OperatorProcessError) as e:
        log.error('the sandbox could not start: %s', e)
        log.error('everything it had started was stopped')
        return 1


def _start(options: SandboxOptions, stop: threading.Event, stack: contextlib.ExitStack) -> _Running:
    def checkpoint() -> None:
        if stop.is_set():
            raise _Stopped

    # What can be checked without starting anything is checked first: a typo fails in a second.
    if not options.crds.exists():
        raise SandboxError(
            f'no CRDs at {options.crds} (run from the repository root, or pass --crds)'
        )
    manifests = [] if options.examples is None else read_manifests(options.examples)
    bao_binary = find_bao_binary()
    state_dir = options.state_dir
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    stack.enter_context(_state_dir_lock(state_dir))
    checkpoint()

    log.info('starting the Kubernetes API emulator')
    emulator, emulator_thread = stack.enter_context(_serving_emulator(options.crds, options.port))
    kubeconfig = emulator.write_kubeconfig(state_dir / 'kubeconfig')
    log.info('Kubernetes API emulator at %s, kubeconfig %s', emulator.url, kubeconfig)
    checkpoint()

    log.info('starting the OpenBao dev server')
    bao_dir = state_dir / 'openbao'
    bao_dir.mkdir(exist_ok=True)
    # The dev server prints its root token into its log: only this user may read that directory.
    bao_dir.chmod(0o700)
    bao = OpenBaoDevServer(bao_dir, bao_binary=bao_binary)
    stack.callback(_step, 'stopping OpenBao', bao.stop)
    bao.start()
    bao.configure_kubernetes_auth(kubernetes_host=emulator.url)
    token_file = state_dir / 'vault-token'
    stack.callback(token_file.unlink, missing_ok=True)
    _write_private(token_file, bao.root_token + '\n')
    log.info(
        'OpenBao dev server at %s, pid %s, Kubernetes auth at auth/kubernetes/', bao.addr, bao.pid
    )
    checkpoint()

    log.info('starting the operator (tenure run)')
    operator = OperatorProcess(
        kubeconfig=kubeconfig, vault_addr=bao.addr, vault_token=bao.root_token, log_dir=state_dir
    )
    stack.callback(_step, 'stopping the operator', operator.close)
    operator.start()
    if operator.pid is None or operator.log_path is None:
        raise SandboxError('the operator process has no pid or log after starting')
    log.info('operator running, pid %d, log %s', operator.pid, operator.log_path)
    checkpoint()

    applied: list[AppliedObject] = []
    if manifests:
        log.info('applying %d manifest(s) from %s', len(manifests), options.examples)
        applied = apply_manifests(emulator.url, manifests)
        applied = _wait_for_phases(emulator.url, applied, stop, options.phase_timeout)

    info = SandboxInfo(
        state_dir=state_dir,
        kube_url=emulator.url,
        kubeconfig=kubeconfig,
        vault_addr=bao.addr,
        vault_token_file=token_file,
        bao_binary=bao_binary,
        openbao_log=bao.log_path,
        operator_pid=operator.pid,
        operator_log=operator.log_path,
        metrics_url=f'http://{HOST}:{operator.metrics_port}/metrics',
        applied=tuple(applied),
    )
    return _Running(info, emulator_thread, bao, operator)


def _supervise(running: _Running, stop: threading.Event) -> int:
    """Wait for `stop`; a component that dies on its own ends the sandbox with exit code 1."""
    while not stop.wait(_SUPERVISE_INTERVAL):
        if not running.operator.running:
            process = running.operator.process
            log.error(
                'the operator exited (code %s); end of its log:\n%s',
                None if process is None else process.returncode,
                running.operator.log_tail(),
            )
            return 1
        if not running.bao.running:
            log.error('OpenBao exited; end of its log:\n%s', running.bao.log_tail())
            return 1
        if not running.emulator_thread.is_alive():
            log.error('the Kubernetes API emulator stopped')
            return 1
    return 0


def _step(message: str, action: Callable[[], object]) -> None:
    log.info('%s', message)
    action()


# -- the emulator ------------------------------------------------------------------------


@contextlib.contextmanager
def _serving_emulator(crds: Path, port: int) -> Iterator[tuple[KubeApiEmulator, threading.Thread]]:
    """The emulator on `HOST:port`, its event loop running on a daemon thread.

    Started on this thread first so that a taken port or a bad CRD fails right here, with the
    error; `running_emulator()` does the same on a thread but always picks the port itself.
    """
    emulator = KubeApiEmulator([crds])
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name='kubeapi-emulator', daemon=True)
    try:
        try:
            loop.run_until_complete(emulator.start(HOST, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise SandboxError(
                    f'port {port} on {HOST} is already in use: choose another --port, or leave '
                    'it out to get a free one'
                ) from e
            raise
        except (ApiError, yaml.YAMLError) as e:
            raise SandboxError(f'the emulator could not load the CRDs from {crds}: {e}') from e
        thread.start()
        yield emulator, thread
    finally:
        log.info('stopping the Kubernetes API emulator')
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
        if thread.is_alive():
            log.warning('the emulator thread did not stop within 30s')
        else:
            loop.run_until_complete(emulator.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


# -- manifests ---------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1 timestamps: `2027-01-31T00:00:00Z` stays a string, as in the
    JSON that kubectl sends (a datetime would not even serialise)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != 'tag:yaml.org,2002:timestamp']
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclasses.dataclass(frozen=True)
class Manifest:
    """One object to create, and the file it came from."""

    source: str
    body: Obj

    @property
    def api_version(self) -> str:
        return str(self.body['apiVersion'])

    @property
    def kind(self) -> str:
        return str(self.body['kind'])

    @property
    def name(self) -> str:
        return str(self.body['metadata']['name'])


def read_manifests(path: Path) -> list[Manifest]:
    """Every object in a manifest file, or in the `.yaml`/`.yml`/`.json` files under a directory
    (sorted, recursively); `kind: List` is unwrapped. Raises SandboxError, naming the file."""
    if not path.exists():
        raise SandboxError(
            f'no example manifests at {path} (pass --examples PATH or --no-examples)'
        )
    files = (
        sorted(p for p in path.rglob('*') if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
        if path.is_dir()
        else [path]
    )
    found: list[Manifest] = []
    for file in files:
        try:
            documents = list(yaml.load_all(file.read_text(encoding='utf-8'), Loader=_Loader))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise SandboxError(f'cannot read {file}: {e}') from e
        for document in documents:
            if document is None:
                continue
            items = document.get('items') if isinstance(document, dict) else None
            if isinstance(document, dict) and document.get('kind') == 'List' and items:
                found.extend(_manifest(file, item) for item in items)
            else:
                found.append(_manifest(file, document))
    if not found:
        raise SandboxError(f'no manifests found in {path}')
    return found


def _manifest(file: Path, document: Any) -> Manifest:
    metadata = document.get('metadata') if isinstance(document, dict) else None
    if not (
        isinstance(document, dict)
        and isinstance(document.get('apiVersion'), str)
        and isinstance(document.get('kind'), str)
        and isinstance(metadata, dict)
        and isinstance(metadata.get('name'), str)
    ):
        raise SandboxError(f'{file}: a document without apiVersion, kind and metadata.name')
    return Manifest(str(file), document)


class _Discovery:
    """Kind → resource, as kubectl's RESTMapper finds it: from the group-version's resources."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._kinds: dict[str, dict[str, tuple[str, bool]]] = {}

    def resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(resource plural, namespaced) of `kind` in `api_version`; SandboxError if unserved."""
        kinds = self._kinds.get(api_version)
        if kinds is None:
            prefix = '/api' if '/' not in api_version else '/apis'
            try:
                answer = _request('GET', f'{self.url}{prefix}/{api_version}')
            except _ApiFailure as e:
                raise SandboxError(f'the API serves no {api_version}: {e}') from e
            kinds = {
                r['kind']: (r['name'], bool(r['namespaced']))
                for r in answer.get('resources', [])
                if '/' not in r['name']  # subresources such as serviceaccounts/token
            }
            self._kinds[api_version] = kinds
        if kind not in kinds:
            raise SandboxError(f'the API has no kind {kind} in {api_version}')
        return kinds[kind]

    def collection(self, api_version: str, kind: str, namespace: str | None) -> str:
        resource, namespaced = self.resource(api_version, kind)
        prefix = '/api' if '/' not in api_version else '/apis'
        scope = f'/namespaces/{namespace}' if namespaced and namespace else ''
        return f'{prefix}/{api_version}{scope}/{resource}'


def apply_manifests(url: str, manifests: list[Manifest]) -> list[AppliedObject]:
    """Create the objects on the API server at `url`, and first the namespaces they live in.

    Namespace documents go first; namespaced objects without one land in `default`, as with
    `kubectl create -f` and the emulator's kubeconfig context. Raises SandboxError on the first
    object the server refuses, with its message.
    """
    discovery = _Discovery(url)
    namespaces = [m for m in manifests if (m.api_version, m.kind) == ('v1', 'Namespace')]
    others = [m for m in manifests if m not in namespaces]
    applied = [_create(url, discovery, m, None) for m in namespaces]
    placed: list[tuple[Manifest, str | None]] = []
    for m in others:
        _, namespaced = discovery.resource(m.api_version, m.kind)
        placed.append(
            (m, (m.body['metadata'].get('namespace') or 'default') if namespaced else None)
        )
    needed = sorted({ns for _, ns in placed if ns is not None} - {a.name for a in applied})
    for namespace in needed:
        _ensure_namespace(url, namespace)
    applied.extend(_create(url, discovery, m, ns) for m, ns in placed)
    return applied


def _ensure_namespace(url: str, name: str) -> None:
    try:
        _request('POST', f'{url}/api/v1/namespaces', {'metadata': {'name': name}})
        log.info('created namespace %s', name)
    except _ApiFailure as e:
        if e.code != 409:  # AlreadyExists: `default`, or one made earlier
            raise SandboxError(f'cannot create namespace {name}: {e}') from e


def _create(
    url: str, discovery: _Discovery, manifest: Manifest, namespace: str | None
) -> AppliedObject:
    body = json.loads(json.dumps(manifest.body))
    if namespace is not None:
        body['metadata']['namespace'] = namespace
    collection = discovery.collection(manifest.api_version, manifest.kind, namespace)
    try:
        created = _request('POST', f'{url}{collection}', body)
    except _ApiFailure as e:
        where = manifest.name if namespace is None else f'{namespace}/{manifest.name}'
        raise SandboxError(f'{manifest.source}: {manifest.kind} {where}: {e}') from e
    name = created['metadata']['name']
    applied = AppliedObject(
        manifest.api_version, manifest.kind, namespace, name, f'{collection}/{name}'
    )
    log.info('created %s %s', manifest.kind, applied.ref)
    return applied


def _wait_for_phases(
    url: str, applied: list[AppliedObject], stop: threading.Event, timeout: float
) -> list[AppliedObject]:
    """Poll each ServiceIdentity until the operator has set `status.phase`, or `timeout`.

    A missing phase is only a warning: a sandbox with a misbehaving operator is exactly where a
    developer wants to look at it.
    """
    deadline = time.monotonic() + timeout
    result = []
    for obj in applied:
        phase = None
        while obj.is_identity:
            try:
                phase = _request('GET', f'{url}{obj.path}').get('status', {}).get('phase')
            except _ApiFailure as e:
                raise SandboxError(f'cannot read {obj.kind} {obj.ref}: {e}') from e
            if phase is not None:
                break
            if time.monotonic() >= deadline:
                log.warning('%s has no phase after %gs: see the operator log', obj.ref, timeout)
                break
            if stop.wait(_POLL_INTERVAL):
                raise _Stopped
        result.append(dataclasses.replace(obj, phase=phase))
    return result


class _ApiFailure(Exception):
    """A non-2xx answer; the message is the `Status` message when the server sent one."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _request(method: str, url: str, body: Obj | None = None) -> Obj:
    # `url` is always the emulator's http:// address: no file: or custom schemes reach here.
    request = urllib.request.Request(  # noqa: S310
        url,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={'Content-Type': 'application/json', 'Accept': 'application/json'},
    )
    try:
        with _OPENER.open(request, timeout=_HTTP_TIMEOUT) as answer:
            result: Obj = json.load(answer)
            return result
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors='replace')
        try:
            message = str(json.loads(text).get('message') or text)
        except (ValueError, AttributeError):
            message = text
        raise _ApiFailure(e.code, message or f'HTTP {e.code}') from None
    except (urllib.error.URLError, OSError) as e:
        raise SandboxError(f'{method} {url} failed: {e}') from e


# -- files -------------------------------------------------------------------------------


@contextlib.contextmanager
def _state_dir_lock(state_dir: Path) -> Iterator[None]:
    """Hold `state_dir/lock` while running: two sandboxes would overwrite each other's files.

    An advisory lock, released by the kernel however this process ends: a crash leaves no stale
    lock behind. The file keeps the holder's pid for the message.
    """
    fd = os.open(state_dir / 'lock', os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors='replace').strip() or '?'
            raise SandboxError(
                f'another tenure dev (pid {holder}) is using {state_dir}; stop it, or pass '
                'another --state-dir'
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
        yield
    finally:
        os.close(fd)


def _write_private(path: Path, text: str) -> None:
    """Write a file only this user can read, never through a symlink or an older file's mode."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, 'w') as file:
        file.write(text)


# -- the summary -------------------------------------------------------------------------


def _shown(path: Path) -> str:
    """A path as the user can paste it from the directory `tenure dev` was started in."""
    try:
        return shlex.quote(str(path.resolve().relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(path.resolve()))


def _print_summary(info: SandboxInfo, out: TextIO) -> None:
    identities = [a for a in info.applied if a.is_identity]
    sample = next((a for a in identities if a.phase == 'Active'), None) or next(
        iter(identities), None
    )
    bao = _shown(info.bao_binary)
    lines = [
        '',
        f'Tenure sandbox (files in {_shown(info.state_dir)}):',
        f'  Kubernetes API  {info.kube_url}  (emulator, in memory)',
        f'  OpenBao         {info.vault_addr}  (dev server, in memory; '
        f'log {_shown(info.openbao_log)})',
        f'  operator        pid {info.operator_pid}, log {_shown(info.operator_log)}, '
        f'metrics {info.metrics_url}',
    ]
    if info.applied:
        lines += ['', 'Applied:']
        width = max(len(f'{a.kind} {a.ref}') for a in info.applied)
        for a in info.applied:
            phase = '' if not a.is_identity else (a.phase or '(no phase yet)')
            lines.append(f'  {f"{a.kind} {a.ref}":<{width}}  {phase}'.rstrip())
    lines += [
        '',
        'Kubernetes (kubectl):',
        # Absolute: the variable stays right after a `cd`, unlike the one-off paths below.
        f'  export KUBECONFIG={shlex.quote(str(info.kubeconfig.resolve()))}',
        '  kubectl get serviceidentities -A',
    ]
    if sample is not None:
        ns = sample.namespace or 'default'
        lines += [
            f'  kubectl describe sid -n {ns} {sample.name}',
            f'  kubectl get serviceaccounts,roles,rolebindings -n {ns}',
        ]
    lines += [
        '  kubectl apply -f my-identity.yaml   # one of your own; examples/ shows the format',
        '',
        'Vault (OpenBao CLI; the vault CLI reads the same variables):',
        f'  export VAULT_ADDR={info.vault_addr}',
        f'  export VAULT_TOKEN=$(cat {_shown(info.vault_token_file)})',
        f'  {bao} policy list',
    ]
    if sample is not None:
        lines.append(f'  {bao} policy read tenure-{sample.namespace or "default"}-{sample.name}')
    lines += ['', f'{READY_LINE} Ctrl-C stops everything it started.']
    out.write('\n'.join(lines) + '\n')
    out.flush()

"""Run the real `tenure run` as a child process: for integration tests and the `tenure dev` sandbox.

The child gets free ports chosen at run time, its own log file, and is stopped by whoever started
it (SIGTERM, then SIGKILL after a timeout), also when the caller fails. Restarting and killing
(SIGKILL) mid-flight are first-class: the restart and crash tests need them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from tenure_devtools.ports import free_port


class OperatorProcessError(RuntimeError):
    """The operator did not start, or did not stop."""


class OperatorProcess:
    """One `tenure run` child process."""

    def __init__(
        self,
        *,
        kubeconfig: Path,
        vault_addr: str,
        vault_token: str | None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.vault_addr = vault_addr
        self._vault_token = vault_token
        self.args = list(args)
        self.extra_env = dict(env or {})
        self._log_dir = log_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0
        self.health_port = 0
        self.log_path: Path | None = None
        self.starts = 0

    def __repr__(self) -> str:
        return f'OperatorProcess(pid={self.pid}, health_port={self.health_port})'

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60) -> None:
        """Start the operator and wait until its liveness endpoint answers."""
        if self.running:
            raise OperatorProcessError('the operator is already running')
        if self._log_dir is None and self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix='tenure-operator-')
        log_dir = self._log_dir or Path(self._tmp.name if self._tmp else '.')
        self.starts += 1
        self.log_path = log_dir / f'operator-{self.starts}.log'
        self.metrics_port, self.health_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(('VAULT_', 'BAO_'))}
        env.update(VAULT_ADDR=self.vault_addr, PYTHONUNBUFFERED='1', **self.extra_env)
        if self._vault_token is not None:
            env['VAULT_TOKEN'] = self._vault_token
        env.pop('KUBERNETES_SERVICE_HOST', None)
        argv = [
            sys.executable,
            '-m',
            'tenure',
            'run',
            '--kubeconfig',
            str(self.kubeconfig),
            '--metrics-port',
            str(self.metrics_port),
            '--health-port',
            str(self.health_port),
            *self.args,
        ]
        with self.log_path.open('wb') as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f'http://127.0.0.1:{self.health_port}/healthz'
        while time.monotonic() < deadline:
            if not self.running:
                raise OperatorProcessError(
                    f'the operator exited with {self.process.returncode if self.process else "?"}'
                    f':\n{self.log_tail()}'
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise OperatorProcessError(
            f'the operator was not healthy within {timeout}s:\n{self.log_tail()}'
        )

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL the operator (a crash, for the recovery tests)."""
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def restart(self, timeout: float = 60) -> None:
        self.stop()
        self.start(timeout)

    def metrics(self) -> str:
        url = f'http://127.0.0.1:{self.metrics_port}/metrics'
        with urllib.request.urlopen(url, timeout=5) as answer:
            text: str = answer.read().decode()
            return text

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ''
        text = self.log_path.read_text(errors='replace')
        return text.replace(self._vault_token, '<redacted>') if self._vault_token else text

    def log_tail(self, lines: int = 60) -> str:
        return '\n'.join(self.log_text().splitlines()[-lines:])

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

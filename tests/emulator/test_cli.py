"""`python -m tenure_devtools.kubeapi`: the emulator as a foreground process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from .conftest import WIDGET_CRD


@pytest.mark.parametrize(
    'stop', [pytest.param(signal.SIGTERM, id='sigterm'), pytest.param(signal.SIGINT, id='sigint')]
)
def test_the_command_serves_crds_from_files_and_stops_on_signals(
    tmp_path: Path, stop: signal.Signals
) -> None:
    """One line announces the URL; CRDs from --crds are served at once; a signal ends it cleanly."""
    crds = tmp_path / 'crds'
    crds.mkdir()
    (crds / 'widgets.yaml').write_text(yaml.safe_dump(WIDGET_CRD))
    kubeconfig = tmp_path / 'kubeconfig'
    process = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'tenure_devtools.kubeapi',
            '--host',
            '127.0.0.1',
            '--port',
            '0',
            '--crds',
            str(crds),
            '--kubeconfig',
            str(kubeconfig),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith('kubeapi listening on http://127.0.0.1:')
        url = line.rsplit(' ', 1)[1]
        assert yaml.safe_load(kubeconfig.read_text())['clusters'][0]['cluster']['server'] == url
        with urllib.request.urlopen(f'{url}/apis/example.com/v1', timeout=10) as response:
            resources = json.loads(response.read())['resources']
        assert 'widgets' in [r['name'] for r in resources]
        process.send_signal(stop)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

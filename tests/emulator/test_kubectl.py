"""The real kubectl against the emulator: apply, get (tables), wait, delete.

kubectl is not a Python dependency: these tests run where it is installed and are skipped
elsewhere. Known gap: imperative `kubectl create <builtin kind>` commands send protobuf bodies,
which the emulator refuses with 415 (it speaks JSON and YAML); `kubectl apply -f` sends JSON.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which('kubectl') is None, reason='kubectl is not installed')


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ['kubectl', '--kubeconfig', str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_kubectl_applies_gets_and_deletes(
    tmp_kubeconfig: Path, namespace: str, widgets: str
) -> None:
    """`kubectl apply` validates through the server (OpenAPI v3 `fieldValidation`, see
    https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation), re-applies
    with a three-way patch, and `kubectl get` prints server-side tables."""
    secret = (
        f'apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: {namespace}\n'
        'stringData:\n  a: one\n'
    )
    assert kubectl(tmp_kubeconfig, 'apply', '-f', '-', stdin=secret).strip() == 'secret/s created'
    relabelled = secret.replace('  name: s\n', '  name: s\n  labels:\n    tier: gold\n')
    assert (
        kubectl(tmp_kubeconfig, 'apply', '-f', '-', stdin=relabelled).strip()
        == 'secret/s configured'
    )
    assert (
        kubectl(
            tmp_kubeconfig,
            '-n',
            namespace,
            'get',
            'secret',
            's',
            '-o',
            'jsonpath={.metadata.labels.tier}',
        )
        == 'gold'
    )
    manifest = (
        'apiVersion: example.com/v1\nkind: Widget\n'
        f'metadata:\n  name: w\n  namespace: {namespace}\n'
        'spec:\n  size: 3\n  color: blue\n'
    )
    assert (
        kubectl(tmp_kubeconfig, 'apply', '-f', '-', stdin=manifest).strip()
        == 'widget.example.com/w created'
    )
    resized = manifest.replace('size: 3', 'size: 4')
    assert (
        kubectl(tmp_kubeconfig, 'apply', '-f', '-', stdin=resized).strip()
        == 'widget.example.com/w configured'
    )
    table = kubectl(tmp_kubeconfig, '-n', namespace, 'get', 'wd').splitlines()
    assert table[0].split() == ['NAME', 'COLOR', 'PHASE', 'AGE']
    assert table[1].split()[:2] == ['w', 'blue']
    generation = kubectl(
        tmp_kubeconfig,
        '-n',
        namespace,
        'get',
        'widget',
        'w',
        '-o',
        'jsonpath={.metadata.generation}',
    )
    assert generation == '2'
    kubectl(
        tmp_kubeconfig, 'wait', '--for=condition=Established', f'crd/{widgets}', '--timeout=10s'
    )
    assert (
        kubectl(tmp_kubeconfig, '-n', namespace, 'delete', 'widget', 'w').strip()
        == 'widget.example.com "w" deleted'
    )


def test_kubectl_refuses_an_invalid_manifest_with_the_server_message(
    tmp_kubeconfig: Path, namespace: str, widgets: str
) -> None:
    manifest = (
        'apiVersion: example.com/v1\nkind: Widget\n'
        f'metadata:\n  name: w\n  namespace: {namespace}\n'
        'spec:\n  size: 3\n  color: pink\n  bogus: 1\n'
    )
    result = subprocess.run(
        ['kubectl', '--kubeconfig', str(tmp_kubeconfig), 'apply', '-f', '-'],
        input=manifest,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    # kubectl sends fieldValidation=Strict: the unknown field is refused before the enum is.
    assert 'unknown field "spec.bogus"' in result.stderr

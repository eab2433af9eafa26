"""`tenure plan -f FILE` against the emulator and OpenBao (issue #6): what applying a manifest
would create, change or delete, with the guardrail verdicts and the lifecycle decision, and proof
that planning changes nothing (the API server's resourceVersion and Vault stay as they were).

The operator provisions one identity, then stops, so that the only client left is the plan.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from tenure.cli import main
from tenure_devtools.openbao import OpenBaoDevServer
from tenure_devtools.operator_process import OperatorProcess
from tenure_devtools.ports import free_port
from tests.integration.stack import Obj, Stack, identity

pytestmark = pytest.mark.integration


@dataclasses.dataclass(frozen=True)
class Provisioned:
    ns: str
    applied: Obj
    """The manifest the Active identity was created from."""
    kubeconfig: Path
    bao: OpenBaoDevServer
    api: kubernetes.client.ApiClient


@pytest.fixture(scope='module')
def provisioned(
    kubeconfig: Path,
    vault_for_identities: OpenBaoDevServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Provisioned]:
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=config)
    with kubernetes.client.ApiClient(config) as api:
        stack = Stack(api, vault_for_identities)
        ns = stack.namespace(f'plan-{uuid.uuid4().hex[:8]}')
        applied = identity('exporter', ns)
        with OperatorProcess(
            kubeconfig=kubeconfig,
            vault_addr=vault_for_identities.addr,
            vault_token=vault_for_identities.root_token,
            log_dir=tmp_path_factory.mktemp('operator'),
        ) as operator:
            operator.start()
            stack.create(copy.deepcopy(applied))
            stack.wait_phase(ns, 'exporter', 'Active')
            operator.stop()
        # Someone else's ServiceAccount, under a name a manifest below asks for.
        stack.core.create_namespaced_service_account(
            ns, {'metadata': {'name': 'taken', 'labels': {'team': 'other'}}}
        )
        yield Provisioned(ns, applied, kubeconfig, vault_for_identities, api)


def vault_state(bao: OpenBaoDevServer, ns: str) -> dict[str, Any]:
    """Everything of the identity's Vault material a write would change."""
    root = bao.client()
    name = f'tenure-{ns}-exporter'
    return {
        'policies': {
            p: root.sys.read_acl_policy(p)['data']['policy']
            for p in root.sys.list_acl_policies()['data']['keys']
        },
        'role': root.auth.kubernetes.read_role(name),
        'secret': root.secrets.kv.v2.read_secret_metadata(path=f'tenure/{ns}/exporter')['data'],
    }


def cluster_version(api: kubernetes.client.ApiClient) -> str:
    """The API server's current resourceVersion: it moves with every write, anywhere."""
    return str(kubernetes.client.CoreV1Api(api).list_namespace().metadata.resource_version)


def write(tmp_path: Path, *manifests: Obj) -> Path:
    path = tmp_path / f'{uuid.uuid4().hex[:6]}.yaml'
    path.write_text(yaml.safe_dump_all(manifests, sort_keys=False), encoding='utf-8')
    return path


def run_plan(
    provisioned: Provisioned, monkeypatch: pytest.MonkeyPatch, *argv: str
) -> tuple[int, dict[str, Any]]:
    monkeypatch.setenv('KUBECONFIG', str(provisioned.kubeconfig))
    monkeypatch.setenv('VAULT_ADDR', provisioned.bao.addr)
    monkeypatch.setenv('VAULT_TOKEN', provisioned.bao.root_token)
    out = io.StringIO()
    code = main(['plan', *argv, '-o', 'json'], out=out)
    doc: dict[str, Any] = json.loads(out.getvalue())
    return code, doc


def changes(plan: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c['action'], c['kind'], c['name']) for c in plan['changes']]


def edit(manifest: Obj, **spec: Any) -> Obj:
    changed = copy.deepcopy(manifest)
    changed['spec'].update(spec)
    return changed


def test_planning_every_kind_of_change_writes_nothing_anywhere(
    provisioned: Provisioned, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ns, applied = provisioned.ns, provisioned.applied
    wider = edit(
        applied,
        vault={**applied['spec']['vault'], 'policy': [
            {'path': f'secret/data/{ns}/shared/*', 'capabilities': ['read', 'list']}
        ]},
    )  # fmt: skip
    held = edit(applied, kubernetes={**applied['spec']['kubernetes'], 'clusterRoles': ['view']})
    owner = edit(applied, owner={'team': 'ledger', 'contact': 'ledger@example.com'})
    cancelled = edit(applied, ticket={**applied['spec']['ticket'], 'state': 'Cancelled'})
    fresh = identity('newcomer', ns)
    forbidden = identity('admin', ns)
    forbidden['spec']['kubernetes']['rules'][0]['verbs'] = ['get', 'impersonate']
    conflict = identity('taken', ns)
    before = (cluster_version(provisioned.api), vault_state(provisioned.bao, ns))

    code, doc = run_plan(
        provisioned,
        monkeypatch,
        '-f',
        str(write(tmp_path, applied, fresh, forbidden, conflict)),
        '-f',
        str(write(tmp_path, wider, held)),
        '-f',
        str(write(tmp_path, owner)),
        '-f',
        str(write(tmp_path, cancelled)),
    )

    assert cluster_version(provisioned.api) == before[0], 'the plan wrote to the API server'
    assert vault_state(provisioned.bao, ns) == before[1], 'the plan wrote to Vault'
    assert (doc['kubernetes'], doc['vault']) == ('live', f'live at {provisioned.bao.addr}')
    assert code == 1, 'some of these manifests would not take effect as written'
    same, new, denied, taken, widened, outside, moved, revoked = doc['plans']

    assert (same['reason'], same['asWritten']) == ('SpecValid', True)
    assert {c['action'] for c in same['changes']} == {'unchanged'}

    assert (new['phase'], new['reason']) == ('Active', 'SpecValid')
    assert changes(new) == [
        ('create', 'ServiceIdentity', 'newcomer'),
        ('create', 'ServiceAccount', 'newcomer'),
        ('create', 'Role', 'tenure-newcomer'),
        ('create', 'RoleBinding', 'tenure-newcomer'),
        ('create', 'VaultPolicy', f'tenure-{ns}-newcomer'),
        ('create', 'VaultRole', f'tenure-{ns}-newcomer'),
        ('create', 'VaultSecret', f'secret/tenure/{ns}/newcomer'),
    ]

    assert (denied['phase'], denied['reason'], denied['asWritten']) == (
        'Denied',
        'ForbiddenVerb',
        False,
    )
    assert denied['violations'][0]['field'] == 'spec.kubernetes.rules[0].verbs'
    assert changes(denied) == [('create', 'ServiceIdentity', 'admin')]

    assert (taken['phase'], taken['reason']) == ('Denied', 'NameConflict')
    assert f'ServiceAccount {ns}/taken already exists' in taken['message']

    assert (widened['phase'], widened['reason'], widened['asWritten']) == (
        'Active',
        'ScopeChangeNotApproved',
        False,
    )
    assert 'more access than was approved' in widened['message']
    assert all(c['action'] == 'unchanged' for c in widened['changes'][1:]), 'scope stays'

    # A ClusterRole outside the policy's catalog: an Active identity is held, not revoked.
    assert (outside['phase'], outside['reason']) == ('Active', 'ClusterRoleNotAllowed')
    assert outside['message'].startswith('held: what is in force stays')
    assert changes(outside) == [('update', 'ServiceIdentity', 'exporter')]

    moved_changes = {(c['action'], c['kind']): c for c in moved['changes']}
    assert 'owner-team' in moved_changes[('update', 'ServiceAccount')]['detail']
    assert moved_changes[('update', 'VaultSecret')]['detail'] == (
        'rotated to version 2 (owner change)'
    )
    assert ('delete', 'VaultTokens') in moved_changes

    assert (revoked['phase'], revoked['reason']) == ('Revoked', 'TicketCancelled')
    assert [c[0] for c in changes(revoked)[1:]] == ['delete'] * (len(revoked['changes']) - 1)
    assert [c[1] for c in changes(revoked)[1:]] == [
        'VaultRole',
        'VaultTokens',
        'VaultPolicy',
        'VaultSecret',
        'RoleBinding',
        'Role',
        'ServiceAccount',
    ]


def test_an_unreachable_cluster_is_planned_offline_and_says_so(
    provisioned: Provisioned, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dead = tmp_path / 'kubeconfig'
    dead.write_text(
        yaml.safe_dump(
            {
                'apiVersion': 'v1',
                'kind': 'Config',
                'clusters': [
                    {'name': 'gone', 'cluster': {'server': f'http://127.0.0.1:{free_port()}'}}
                ],
                'users': [{'name': 'u', 'user': {'token': 'x'}}],
                'contexts': [{'name': 'c', 'context': {'cluster': 'gone', 'user': 'u'}}],
                'current-context': 'c',
            }
        ),
        encoding='utf-8',
    )
    manifest = write(tmp_path, identity('exporter', provisioned.ns))
    monkeypatch.setenv('KUBECONFIG', str(dead))
    monkeypatch.delenv('VAULT_ADDR', raising=False)
    out = io.StringIO()
    assert main(['plan', '-f', str(manifest), '-o', 'json'], out=out) == 0
    doc = json.loads(out.getvalue())
    assert doc['kubernetes'].startswith('offline: could not read Kubernetes')
    assert doc['vault'] == 'offline: no VAULT_ADDR'
    assert {c['action'] for c in doc['plans'][0]['changes']} == {'apply'}


def test_the_command_prints_a_readable_plan(provisioned: Provisioned, tmp_path: Path) -> None:
    manifest = write(
        tmp_path, identity('exporter', provisioned.ns), identity('other', provisioned.ns)
    )
    env = {
        'PATH': '/usr/bin:/bin',
        'KUBECONFIG': str(provisioned.kubeconfig),
        'VAULT_ADDR': provisioned.bao.addr,
        'VAULT_TOKEN': provisioned.bao.root_token,
    }
    done = subprocess.run(
        [sys.executable, '-m', 'tenure', 'plan', '-f', str(manifest)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ['Kubernetes: live', f'Vault: live at {provisioned.bao.addr}']
    assert any(
        line.split()[:4] == ['+', 'create', 'Kubernetes', 'ServiceAccount'] for line in lines
    )
    assert lines[-1].startswith('Plan: 7 to create, ')
    assert lines[-1].endswith('Nothing was changed.')

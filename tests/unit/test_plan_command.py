"""`tenure plan` offline, as GitOps CI runs it: exit codes, documents it skips or refuses, and
the arguments it rejects (the live comparisons are in tests/integration/test_plan.py)."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenure.cli import main
from tests.unit.conftest import VALID
from tests.unit.test_reconcile import T0

REPO = Path(__file__).resolve().parents[2]


def plan(*argv: str) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    code = main(['plan', '--offline', '-o', 'json', *argv], out=out, clock=lambda: T0)
    doc: dict[str, Any] = json.loads(out.getvalue())
    return code, doc


def test_the_examples_plan_cleanly_and_other_kinds_are_skipped() -> None:
    code, doc = plan('-f', str(REPO / 'examples'))
    assert code == 0
    assert (doc['kubernetes'], doc['vault'], doc['changed']) == (
        'offline (--offline)',
        'offline (--offline)',
        False,
    )
    assert [s['kind'] for s in doc['skipped']] == [
        'IdentityPolicy (tenure.dev/v1alpha1)',
        'TicketSource (tenure.dev/v1alpha1)',
    ]
    assert {p['name']: p['phase'] for p in doc['plans']} == {
        'ledger-sync': 'Active',
        'report-builder': 'Pending',
        'settlement-exporter': 'Active',
    }


def test_a_manifest_the_api_server_would_refuse_fails_the_plan(tmp_path: Path) -> None:
    bad = copy.deepcopy(VALID)
    bad['spec']['ticket']['approver'] = 'not-an-email'
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump(bad), encoding='utf-8')
    code, doc = plan('-f', str(path))
    assert code == 1
    (refused,) = doc['plans']
    assert (refused['reason'], refused['name'], refused['asWritten']) == (
        'InvalidSpec',
        'settlement-exporter',
        False,
    )
    assert 'spec.ticket.approver' in refused['message']


def test_a_missing_file_fails_the_plan() -> None:
    code, doc = plan('-f', '/nonexistent/identity.yaml')
    assert code == 1
    assert doc['plans'][0]['reason'] == 'NotFound'


def test_a_policy_file_tightens_the_plan(tmp_path: Path) -> None:
    policy = tmp_path / 'policy.yaml'
    policy.write_text(
        yaml.safe_dump(
            {
                'apiVersion': 'tenure.dev/v1alpha1',
                'kind': 'IdentityPolicy',
                'metadata': {'name': 'default'},
                'spec': {'allowedTicketSystems': ['jira']},
            }
        ),
        encoding='utf-8',
    )
    manifest = tmp_path / 'identity.yaml'
    manifest.write_text(yaml.safe_dump(VALID), encoding='utf-8')
    code, doc = plan('-f', str(manifest), '--policy', str(policy))
    assert code == 1
    assert (doc['plans'][0]['phase'], doc['plans'][0]['reason']) == (
        'Denied',
        'TicketSystemNotAllowed',
    )


def test_plan_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(['plan'])
    assert exited.value.code == 2
    assert '-f/--filename' in capsys.readouterr().err

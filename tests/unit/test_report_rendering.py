"""What `tenure report` prints: every JSON key present (null when empty), CSV with the same
columns, a table people can read, the evidence of one identity; and the arguments it refuses."""

from __future__ import annotations

import copy
import csv
import io
import json
from datetime import UTC, datetime

import pytest

from tenure.audit import Evidence
from tenure.cli import main
from tenure.domain.inventory import (
    Class,
    Finding,
    Governance,
    IdentityRecord,
    Kind,
    Risk,
)
from tenure.render import FINDING_FIELDS, render_evidence, render_findings
from tests.unit.conftest import VALID

NOW = datetime(2026, 12, 10, tzinfo=UTC)
MANAGED = Finding(
    class_=Class.MANAGED,
    kind=Kind.SERVICE_ACCOUNT,
    namespace='payments',
    name='exporter',
    risk=None,
    detail='approved under CHG0031337 until 2027-02-15T00:00:00Z',
    governance=Governance(
        identity='payments/exporter',
        owner='payments-platform',
        owner_contact='payments-oncall@example.com',
        ticket='CHG0031337',
        ticket_system='servicenow',
        approved_at=datetime(2026, 11, 28, 10, tzinfo=UTC),
        expires_at=datetime(2027, 2, 15, tzinfo=UTC),
    ),
    owner='payments-platform',
    ticket='CHG0031337',
    expires_at=datetime(2027, 2, 15, tzinfo=UTC),
)
UNMANAGED = Finding(
    class_=Class.UNMANAGED,
    kind=Kind.VAULT_POLICY,
    namespace=None,
    name='ops',
    risk=Risk.NHI5,
    detail='1 path(s) granted with no approval behind them',
)


def rendered(output: str, *findings: Finding) -> str:
    out = io.StringIO()
    render_findings(list(findings), output, NOW, out)
    return out.getvalue()


def test_json_has_every_field_with_nulls_where_empty() -> None:
    managed, unmanaged = json.loads(rendered('json', MANAGED, UNMANAGED))
    assert tuple(managed) == FINDING_FIELDS
    assert managed['class'] == 'Managed'
    assert managed['expiresAt'] == '2027-02-15T00:00:00Z'
    assert managed['daysLeft'] == 67
    assert managed['approvedAt'] == '2026-11-28T10:00:00Z'
    assert unmanaged == {
        **dict.fromkeys(FINDING_FIELDS),
        'class': 'Unmanaged',
        'kind': 'VaultPolicy',
        'name': 'ops',
        'risk': 'NHI5',
        'detail': '1 path(s) granted with no approval behind them',
    }


def test_csv_has_the_same_columns_and_empty_cells_for_nulls() -> None:
    rows = list(csv.DictReader(io.StringIO(rendered('csv', MANAGED, UNMANAGED))))
    assert tuple(rows[0]) == FINDING_FIELDS
    assert rows[1]['namespace'] == ''
    assert rows[0]['ticket'] == 'CHG0031337'


def test_the_table_lines_up_and_counts_classes_and_risks() -> None:
    lines = rendered('table', MANAGED, UNMANAGED).splitlines()
    assert lines[0].split() == [
        'CLASS', 'KIND', 'NAMESPACE', 'NAME', 'OWNER', 'TICKET', 'EXPIRES', 'RISK', 'DETAIL'
    ]  # fmt: skip
    assert lines[0].index('KIND') == lines[1].index('ServiceAccount')
    assert lines[2].split()[2:4] == ['-', 'ops'], 'empty cells show as -'
    assert '2 identities: 1 Managed, 0 Leaked, 1 Unmanaged' in lines
    assert '  NHI5 Overprivileged NHI: 1' in lines


def evidence() -> Evidence:
    body = copy.deepcopy(VALID)
    body['metadata'] = {'namespace': 'payments', 'name': 'exporter', 'uid': 'u1'}
    body['status'] = {
        'phase': 'Revoked',
        'owner': {'team': 'ledger', 'contact': 'ledger@example.com'},
        'ownerHistory': [
            {
                'team': 'payments-platform',
                'contact': 'payments-oncall@example.com',
                'until': '2026-12-02T00:00:00Z',
            }
        ],
        'history': [
            {'at': '2026-12-01T00:00:00Z', 'phase': 'Active', 'reason': 'Active', 'message': 'x'},
            {'at': '2026-12-02T00:00:00Z', 'reason': 'SecretRotated', 'message': 'version 2'},
        ],
        'revocation': {
            'reason': 'Expired',
            'requestedAt': '2026-12-03T00:00:00Z',
            'verified': True,
            'proof': [
                {
                    'object': 'vault:sys/policies/acl/tenure-payments-exporter',
                    'check': 'GET returned 404',
                    'result': 'Gone',
                    'at': '2026-12-03T00:00:01Z',
                }
            ],
        },
    }
    return Evidence(IdentityRecord.from_body(body), body, (), vault_read=True)


def test_evidence_as_json_keeps_the_record_and_picks_out_rotations() -> None:
    out = io.StringIO()
    render_evidence(evidence(), 'json', NOW, out)
    doc = json.loads(out.getvalue())
    assert doc['identity'] == 'payments/exporter'
    assert doc['ownerHistory'][0]['team'] == 'payments-platform'
    assert [r['message'] for r in doc['rotations']] == ['version 2']
    assert doc['revocation']['proof'][0]['result'] == 'Gone'
    assert doc['objects'] == []
    assert doc['daysLeft'] is None, 'a revoked identity has no days left'


def test_evidence_as_text_reads_top_to_bottom() -> None:
    out = io.StringIO()
    render_evidence(evidence(), 'table', NOW, out)
    text = out.getvalue()
    order = ['Approval', 'Owner', 'Lifetime', 'History', 'Revocation', 'What exists now']
    positions = [text.index(f'\n{title}\n') for title in order]
    assert positions == sorted(positions)
    assert 'before:  payments-platform <payments-oncall@example.com> until 2026-12-02' in text
    assert 'nothing in Kubernetes or Vault' in text


@pytest.mark.parametrize(
    ('argv', 'message'),
    [
        pytest.param(
            ['--evidence', 'exporter'], 'is not NAMESPACE/NAME', id='evidence-no-namespace'
        ),
        pytest.param(['--evidence', 'a/b', '-o', 'csv'], 'not csv', id='evidence-has-no-csv'),
        pytest.param([], 'no Vault address', id='vault-needed-unless-skipped'),
        pytest.param(['-n', 'a', '-A'], 'not allowed with', id='one-namespace-or-all'),
    ],
)
def test_report_refuses_unusable_arguments(
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv('VAULT_ADDR', raising=False)
    with pytest.raises(SystemExit) as exited:
        main(['report', *argv])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_an_unreachable_cluster_is_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv('KUBECONFIG', '/nonexistent/kubeconfig')
    monkeypatch.delenv('KUBERNETES_SERVICE_HOST', raising=False)
    assert main(['report', '--skip-vault'], out=io.StringIO()) == 1
    assert 'tenure report: cannot load Kubernetes configuration' in capsys.readouterr().err

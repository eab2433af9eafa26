"""`tenure check` tells a GitOps pipeline exactly what is wrong, and never crashes on bad input."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tenure.cli import main

REPO = Path(__file__).resolve().parents[2]

VALID = """\
apiVersion: tenure.dev/v1alpha1
kind: ServiceIdentity
metadata:
  name: exporter
  namespace: payments
spec:
  ticket:
    id: CHG0031337
    system: servicenow
    state: Approved
    requester: alice@example.com
    approver: bob@example.com
    approvedAt: 2026-11-28T10:00:00Z
    justification: Nightly export of settlement totals.
  owner: {team: payments, contact: payments@example.com}
  service: exporter
  expiresAt: 2027-01-15T00:00:00Z
"""


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
"""The time rules' "now": fixed, so that the examples' expiry dates do not age these tests."""


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out, clock=lambda: NOW)
    return code, out.getvalue()


def test_the_shipped_examples_are_valid() -> None:
    code, out = run('check', str(REPO / 'examples'))
    assert code == 0, out
    assert 'valid' in out


def test_unquoted_yaml_timestamps_are_read_as_the_api_server_reads_them(tmp_path: Path) -> None:
    (tmp_path / 'si.yaml').write_text(VALID)
    assert run('check', '-f', str(tmp_path / 'si.yaml'))[0] == 0


def test_a_broken_manifest_fails_with_file_line_object_field_and_reason(tmp_path: Path) -> None:
    path = tmp_path / 'si.yaml'
    path.write_text(VALID.replace('approver: bob@example.com', 'approver: Alice@Example.com'))
    code, out = run('check', str(path))
    assert code == 1
    assert out.splitlines() == [
        f'{path}:12: ServiceIdentity payments/exporter: spec.ticket.approver: requester and '
        'approver must be different people (separation of duties) [RequesterIsApprover]'
    ]


def test_one_line_per_problem_across_documents(tmp_path: Path) -> None:
    second = VALID.replace('name: exporter', 'name: other').replace(
        'state: Approved', 'state: Finished'
    )
    (tmp_path / 'a.yaml').write_text(VALID.replace('id: CHG0031337', 'id: "CHG 1"'))
    (tmp_path / 'b.yml').write_text(VALID + '---\n' + second)
    code, out = run('check', str(tmp_path))
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 2
    assert 'a.yaml:8: ServiceIdentity payments/exporter: spec.ticket.id:' in lines[0]
    assert 'b.yml:28: ServiceIdentity payments/other: spec.ticket.state:' in lines[1]


def test_json_output_is_machine_readable(tmp_path: Path) -> None:
    path = tmp_path / 'si.yaml'
    path.write_text(VALID.replace('  service: exporter\n', ''))
    code, out = run('check', '-o', 'json', str(path))
    report = json.loads(out)
    assert code == 1
    assert report['valid'] is False
    (problem,) = report['problems']
    assert problem['field'] == 'spec.service'
    assert problem['message'] == 'required field is missing'
    assert problem['name'] == 'exporter'
    assert problem['rule'] == 'InvalidSpec'


@pytest.mark.parametrize(
    ('content', 'message'),
    [
        pytest.param('spec: [unclosed\n', 'invalid YAML', id='unparsable-yaml'),
        pytest.param('- just\n- a list\n', 'not a Kubernetes object', id='not-an-object'),
        pytest.param(
            'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n',
            'ConfigMap (v1) is not a tenure.dev/v1alpha1 ServiceIdentity',
            id='wrong-kind',
        ),
        pytest.param(
            VALID.replace('tenure.dev/v1alpha1', 'tenure.dev/v1'),
            'ServiceIdentity (tenure.dev/v1) is not a tenure.dev/v1alpha1 ServiceIdentity',
            id='wrong-version',
        ),
    ],
)
def test_bad_input_is_a_problem_report_not_a_crash(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / 'x.yaml'
    path.write_text(content)
    code, out = run('check', str(path))
    assert code == 1
    assert message in out


def test_other_kinds_can_be_skipped_in_mixed_gitops_repositories(tmp_path: Path) -> None:
    (tmp_path / 'all.yaml').write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n' + VALID
    )
    assert run('check', str(tmp_path))[0] == 1
    assert run('check', '--ignore-other-kinds', str(tmp_path))[0] == 0


def test_items_of_a_kubectl_list_are_each_checked(tmp_path: Path) -> None:
    import yaml

    item = yaml.safe_load(VALID)
    item['spec']['ticket']['approvedAt'] = '2026-11-28T10:00:00Z'  # safe_load made it a datetime
    item['spec']['expiresAt'] = '2026-01-01T00:00:00Z'
    (tmp_path / 'list.yaml').write_text(
        yaml.safe_dump({'apiVersion': 'v1', 'kind': 'List', 'items': [item]})
    )
    code, out = run('check', str(tmp_path))
    assert code == 1
    assert 'spec.expiresAt: expiresAt must be after ticket.approvedAt' in out


def test_a_missing_path_is_reported(tmp_path: Path) -> None:
    code, out = run('check', str(tmp_path / 'nope'))
    assert code == 1
    assert 'no such file or directory' in out


def test_a_directory_without_manifests_is_not_silently_valid(tmp_path: Path) -> None:
    code, out = run('check', str(tmp_path))
    assert code == 1
    assert 'no YAML or JSON manifests found' in out


def test_no_path_at_all_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as excinfo:
        run('check')
    assert excinfo.value.code == 2

"""`tenure report` against a seeded cluster and Vault (issue #6): every non-human identity is
classified Managed, Leaked or Unmanaged, with its OWASP NHI risk, and `--evidence` prints the
record of a revoked identity with its proof and history.

The managed and revoked identities are made by the real operator; the leaked and unmanaged
objects are made by hand, as people and backup restores make them. The operator is stopped
before they are planted, so that nothing repairs or deletes them behind the report's back.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from tenure.cli import main
from tenure_devtools.openbao import OpenBaoDevServer
from tenure_devtools.operator_process import OperatorProcess
from tests.integration.stack import Stack, identity

pytestmark = pytest.mark.integration

TENURE_LABELS = {'app.kubernetes.io/managed-by': 'tenure'}


@dataclasses.dataclass(frozen=True)
class Seeded:
    ns: str
    other_ns: str
    suffix: str
    kubeconfig: Path
    bao: OpenBaoDevServer


def _binding(name: str, role: str, subjects: list[tuple[str, str]], **meta: Any) -> Any:
    return {
        'metadata': {'name': name, **meta},
        'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': 'ClusterRole', 'name': role},
        'subjects': [{'kind': 'ServiceAccount', 'namespace': ns, 'name': n} for ns, n in subjects],
    }


def _token_secret(name: str, account: str) -> Any:
    return {
        'metadata': {'name': name, 'annotations': {'kubernetes.io/service-account.name': account}},
        'type': 'kubernetes.io/service-account-token',
    }


def _tenure_policy(ns: str, name: str) -> str:
    """What Tenure writes (tenure.domain.desired.vault_policy), as a restore would bring back."""
    return (
        f'# Managed by Tenure for {ns}/{name} (ticket CHG0000001, owner payments). Changes are '
        f'reverted.\n\npath "secret/data/{ns}/shared/*" {{\n  capabilities = ["read"]\n}}\n'
    )


def plant_tenure_leftovers(stack: Stack, ns: str, name: str) -> None:
    """What a backup restore brings back of an identity: its ServiceAccount, binding and Vault
    material, with Tenure's labels and names."""
    labels = {**TENURE_LABELS, 'tenure.dev/identity': name}
    notes = {'tenure.dev/ticket': 'CHG0000001', 'tenure.dev/owner-team': 'payments'}
    stack.core.create_namespaced_service_account(
        ns, {'metadata': {'name': name, 'labels': labels, 'annotations': notes}}
    )
    stack.core.create_namespaced_secret(ns, _token_secret(f'{name}-token', name))
    stack.rbac.create_namespaced_role_binding(
        ns, _binding(f'tenure-{name}', 'view', [(ns, name)], labels=labels, annotations=notes)
    )
    root = stack.bao.client()
    root.sys.create_or_update_acl_policy(f'tenure-{ns}-{name}', _tenure_policy(ns, name))
    root.auth.kubernetes.create_role(
        f'tenure-{ns}-{name}',
        bound_service_account_names=[name],
        bound_service_account_namespaces=[ns],
        policies=[f'tenure-{ns}-{name}'],
    )


@pytest.fixture(scope='module')
def seeded(
    kubeconfig: Path,
    vault_for_identities: OpenBaoDevServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Seeded]:
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=config)
    suffix = uuid.uuid4().hex[:8]
    with kubernetes.client.ApiClient(config) as api:
        stack = Stack(api, vault_for_identities)
        ns, other = stack.namespace(f'rep-{suffix}'), stack.namespace(f'rep-other-{suffix}')
        with OperatorProcess(
            kubeconfig=kubeconfig,
            vault_addr=vault_for_identities.addr,
            vault_token=vault_for_identities.root_token,
            log_dir=tmp_path_factory.mktemp('operator'),
        ) as operator:
            operator.start()
            # Managed: an Active identity. Revoked: provisioned, then the emergency brake.
            stack.create(identity('exporter', ns, ticket='CHG0031337'))
            stack.create(identity('retired', ns, ticket='CHG0000001'))
            stack.wait_phase(ns, 'exporter', 'Active')
            stack.wait_phase(ns, 'retired', 'Active')
            stack.patch(
                ns, 'retired', {'metadata': {'annotations': {'tenure.dev/revoke': 'INC0042'}}}
            )
            stack.wait_phase(ns, 'retired', 'Revoked')
            operator.stop()

        # A hand-made long-lived token for the managed identity, and a grant outside its scope.
        stack.core.create_namespaced_secret(ns, _token_secret('exporter-token', 'exporter'))
        stack.rbac.create_namespaced_role_binding(
            ns, _binding('exporter-extra', 'view', [(ns, 'exporter')])
        )
        # Leaked: the revoked identity and one whose ServiceIdentity is gone, restored by hand.
        plant_tenure_leftovers(stack, ns, 'retired')
        plant_tenure_leftovers(stack, ns, 'ghost')
        # Unmanaged: a legacy ServiceAccount with a token, its grants, and its Vault login.
        stack.core.create_namespaced_service_account(ns, {'metadata': {'name': 'legacy-batch'}})
        stack.core.create_namespaced_secret(ns, _token_secret('legacy-batch-token', 'legacy-batch'))
        stack.rbac.create_namespaced_role_binding(
            ns, _binding('legacy-edit', 'edit', [(ns, 'legacy-batch')])
        )
        stack.rbac.create_namespaced_role_binding(
            ns, _binding('default-view', 'view', [(ns, 'default')])
        )
        stack.rbac.create_namespaced_role_binding(
            ns, _binding('peek-from-other', 'view', [(other, 'reader')])
        )
        stack.rbac.create_cluster_role_binding(
            _binding(f'legacy-admin-{suffix}', 'cluster-admin', [(ns, 'legacy-batch')])
        )
        root = vault_for_identities.client()
        root.sys.create_or_update_acl_policy(
            f'legacy-{suffix}', 'path "secret/data/legacy/*" {\n  capabilities = ["read"]\n}\n'
        )
        root.auth.kubernetes.create_role(
            f'legacy-{suffix}',
            bound_service_account_names=['legacy-batch'],
            bound_service_account_namespaces=[ns],
            policies=[f'legacy-{suffix}'],
        )
        root.auth.kubernetes.create_role(
            f'shared-{suffix}',
            bound_service_account_names=['*'],
            bound_service_account_namespaces=[ns],
            policies=['default'],
        )
        try:
            yield Seeded(ns, other, suffix, kubeconfig, vault_for_identities)
        finally:
            stack.rbac.delete_cluster_role_binding(f'legacy-admin-{suffix}')
            for name in (f'legacy-{suffix}', f'shared-{suffix}', f'tenure-{ns}-ghost'):
                root.auth.kubernetes.delete_role(name)
            for name in (f'legacy-{suffix}', f'tenure-{ns}-ghost', f'tenure-{ns}-retired'):
                root.sys.delete_acl_policy(name)
            root.auth.kubernetes.delete_role(f'tenure-{ns}-retired')


def tenure(seeded: Seeded, monkeypatch: pytest.MonkeyPatch, *argv: str) -> str:
    """Run the `tenure` command in this process; return what it printed."""
    monkeypatch.setenv('VAULT_ADDR', seeded.bao.addr)
    monkeypatch.setenv('VAULT_TOKEN', seeded.bao.root_token)
    monkeypatch.setenv('KUBECONFIG', str(seeded.kubeconfig))
    out = io.StringIO()
    assert main(list(argv), out=out) == 0
    return out.getvalue()


def findings(seeded: Seeded, monkeypatch: pytest.MonkeyPatch, *argv: str) -> list[dict[str, Any]]:
    doc: list[dict[str, Any]] = json.loads(
        tenure(seeded, monkeypatch, 'report', '--output', 'json', *argv)
    )
    return doc


def test_every_identity_in_the_namespace_is_classified_with_its_risk(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns, suffix = seeded.ns, seeded.suffix
    found = {
        (f['class'], f['kind'], f['name'], f['risk'])
        for f in findings(seeded, monkeypatch, '--namespace', ns)
    }
    assert found == {
        # The Active identity and everything Tenure made for it.
        ('Managed', 'ServiceIdentity', 'exporter', None),
        ('Managed', 'ServiceAccount', 'exporter', None),
        ('Managed', 'RoleBinding', 'tenure-exporter', None),
        ('Managed', 'VaultRole', f'tenure-{ns}-exporter', None),
        ('Managed', 'VaultPolicy', f'tenure-{ns}-exporter', None),
        ('Managed', 'Secret', 'exporter-token', 'NHI7'),
        ('Unmanaged', 'RoleBinding', 'exporter-extra', 'NHI5'),
        # Restored leftovers of the revoked identity and of one that no longer exists.
        ('Leaked', 'ServiceAccount', 'retired', 'NHI1'),
        ('Leaked', 'Secret', 'retired-token', 'NHI1'),
        ('Leaked', 'RoleBinding', 'tenure-retired', 'NHI1'),
        ('Leaked', 'VaultRole', f'tenure-{ns}-retired', 'NHI1'),
        ('Leaked', 'VaultPolicy', f'tenure-{ns}-retired', 'NHI1'),
        ('Leaked', 'ServiceAccount', 'ghost', 'NHI1'),
        ('Leaked', 'Secret', 'ghost-token', 'NHI1'),
        ('Leaked', 'RoleBinding', 'tenure-ghost', 'NHI1'),
        ('Leaked', 'VaultRole', f'tenure-{ns}-ghost', 'NHI1'),
        ('Leaked', 'VaultPolicy', f'tenure-{ns}-ghost', 'NHI1'),
        # No ServiceIdentity behind them.
        ('Unmanaged', 'ServiceAccount', 'legacy-batch', 'NHI1'),
        ('Unmanaged', 'Secret', 'legacy-batch-token', 'NHI7'),
        ('Unmanaged', 'RoleBinding', 'legacy-edit', 'NHI5'),
        ('Unmanaged', 'RoleBinding', 'default-view', 'NHI9'),
        ('Unmanaged', 'RoleBinding', 'peek-from-other', 'NHI8'),
        ('Unmanaged', 'ClusterRoleBinding', f'legacy-admin-{suffix}', 'NHI5'),
        ('Unmanaged', 'VaultRole', f'legacy-{suffix}', 'NHI1'),
        ('Unmanaged', 'VaultRole', f'shared-{suffix}', 'NHI9'),
    }


def test_a_managed_finding_says_who_owns_it_what_justified_it_and_when_it_dies(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = findings(seeded, monkeypatch, '--namespace', seeded.ns)
    sa = next(f for f in report if (f['kind'], f['name']) == ('ServiceAccount', 'exporter'))
    assert sa['owner'] == 'payments'
    assert sa['ownerContact'] == 'payments@example.com'
    assert sa['ticket'] == 'CHG0031337'
    assert (sa['ticketSystem'], sa['requester'], sa['approver']) == (
        'servicenow',
        'alice@example.com',
        'bob@example.com',
    )
    assert sa['justification'] == 'Integration test of the Tenure lifecycle.'
    assert sa['identity'] == f'{seeded.ns}/exporter'
    assert sa['daysLeft'] in (29, 30)
    assert sa['lastRotatedAt'] is not None
    leaked = next(f for f in report if (f['kind'], f['name']) == ('ServiceAccount', 'ghost'))
    assert leaked['ticket'] == 'CHG0000001', 'a leftover still says which ticket made it'
    unmanaged = next(f for f in report if f['name'] == 'legacy-batch')
    assert all(unmanaged[k] is None for k in ('owner', 'ticket', 'expiresAt', 'identity'))


def test_all_namespaces_adds_what_names_no_namespace_and_system_identities_on_request(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = findings(seeded, monkeypatch, '--all-namespaces')
    names = {(f['class'], f['kind'], f['name']) for f in everything}
    assert ('Unmanaged', 'VaultPolicy', f'legacy-{seeded.suffix}') in names
    assert ('Managed', 'ServiceAccount', 'exporter') in names
    assert not any(f['name'] in ('default', 'root') for f in everything)
    with_system = findings(seeded, monkeypatch, '--all-namespaces', '--include-system')
    assert ('Unmanaged', 'ServiceAccount', 'default') in {
        (f['class'], f['kind'], f['name']) for f in with_system if f['namespace'] == seeded.ns
    }
    assert ('Unmanaged', 'VaultPolicy', 'root') in {
        (f['class'], f['kind'], f['name']) for f in with_system
    }


def test_the_table_and_csv_carry_the_same_findings(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    as_json = findings(seeded, monkeypatch, '-n', seeded.ns)
    table = tenure(seeded, monkeypatch, 'report', '-n', seeded.ns).splitlines()
    assert table[0].split()[:4] == ['CLASS', 'KIND', 'NAMESPACE', 'NAME']
    assert len(
        [line for line in table if line.startswith(('Managed', 'Leaked', 'Unmanaged'))]
    ) == len(as_json)
    assert f'{len(as_json)} identities: 6 Managed, 10 Leaked, 9 Unmanaged' in table
    csv_lines = tenure(seeded, monkeypatch, 'report', '-n', seeded.ns, '-o', 'csv').splitlines()
    assert csv_lines[0].startswith('class,kind,namespace,name,owner,ticket,expiresAt,risk,detail')
    assert len(csv_lines) == len(as_json) + 1


def test_evidence_of_a_revoked_identity_shows_its_proof_history_and_leftovers(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = json.loads(
        tenure(seeded, monkeypatch, 'report', '--evidence', f'{seeded.ns}/retired', '-o', 'json')
    )
    assert doc['phase'] == 'Revoked'
    assert doc['ticket']['id'] == 'CHG0000001'
    assert doc['approval']['approver'] == 'bob@example.com'
    revocation = doc['revocation']
    assert (revocation['reason'], revocation['verified']) == ('Emergency', True)
    assert revocation['proof']
    assert all(check['result'] == 'Gone' for check in revocation['proof'])
    assert [(h['phase'], h['reason']) for h in doc['history']] == [
        ('Active', 'Active'),
        ('Active', 'Revoking'),
        ('Revoked', 'Revoked'),
    ]
    # What a restore brought back after the proof was taken is there too, as Leaked.
    assert {(o['class'], o['kind'], o['name']) for o in doc['objects']} == {
        ('Leaked', 'ServiceAccount', 'retired'),
        ('Leaked', 'Secret', 'retired-token'),
        ('Leaked', 'RoleBinding', 'tenure-retired'),
        ('Leaked', 'VaultRole', f'tenure-{seeded.ns}-retired'),
        ('Leaked', 'VaultPolicy', f'tenure-{seeded.ns}-retired'),
    }
    text = tenure(seeded, monkeypatch, 'report', '--evidence', f'{seeded.ns}/retired')
    assert f'ServiceIdentity {seeded.ns}/retired: Revoked' in text
    assert re.search(r'^  verified: +yes$', text, re.MULTILINE)
    assert 'Revoking' in text

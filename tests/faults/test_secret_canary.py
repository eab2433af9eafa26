"""No secret value ever leaves Vault through the operator (issue #5, the canary).

The operator runs at DEBUG level (tests/faults/conftest.py). Identities get generated secrets
with several keys; the secrets are rotated (owner change, closure with onClose: Rotate, the
tenure.dev/rotate annotation) and finally revoked. The test reads every generated value from
Vault as root before Vault drops it (KV keeps two versions), and collects other secrets the
operator handles or could: a legacy ServiceAccount token Secret planted for the identity (the
operator lists those and deletes them on revocation), the tokens the identity itself obtains,
and the operator's own Vault token. None of them may appear, as is or base64-encoded, in the
operator's log (every line of every start of it), the namespace's Events, the ServiceIdentity
objects (status, annotations, kopf's bookkeeping), the managed Kubernetes objects, the secrets'
Vault metadata, or the operator's /metrics.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tenure.api.v1alpha1 import GROUP, PLURAL, VERSION
from tenure_devtools.openbao import OpenBaoDevServer
from tenure_devtools.operator_process import OperatorProcess
from tests.faults.invariants import Expect, World
from tests.integration.stack import identity

pytestmark = pytest.mark.integration

KEYS = ['api-key', 'password', 'signing-key']


class Canaries:
    """Secret values, and every text that must not contain any of them."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.texts: dict[str, str] = {}

    def add(self, label: str, value: str) -> None:
        assert len(value) >= 16, f'{label}: too short to be a meaningful canary'
        self.values[label] = value

    def read_generated(self, bao: OpenBaoDevServer, ns: str, name: str) -> int:
        """Every value of every version Vault still keeps of the identity's secret; returns the
        current version."""
        root = bao.client()
        path = f'tenure/{ns}/{name}'
        metadata = root.secrets.kv.v2.read_secret_metadata(path=path)['data']
        for version, entry in metadata['versions'].items():
            if entry['destroyed'] or entry['deletion_time']:
                continue
            data = root.secrets.kv.v2.read_secret_version(
                path=path, version=int(version), raise_on_deleted_version=True
            )['data']['data']
            for key, value in data.items():
                self.add(f'{ns}/{name} v{version} {key}', value)
        self.keep(f'Vault metadata of {path}', metadata)
        return int(metadata['current_version'])

    def keep(self, label: str, thing: Any) -> None:
        """A text (or a JSON-able object) the operator produced, to search at the end."""
        text = thing if isinstance(thing, str) else json.dumps(thing, default=str, sort_keys=True)
        self.texts[label] = self.texts.get(label, '') + '\n' + text

    def leaks(self) -> list[str]:
        found = []
        for label, value in self.values.items():
            forms = {
                'as is': value,
                'base64': base64.b64encode(value.encode()).decode().rstrip('='),
                'base64url': base64.urlsafe_b64encode(value.encode()).decode().rstrip('='),
            }
            for where, text in self.texts.items():
                for form, needle in forms.items():
                    if needle in text:
                        found.append(f'{label} ({form}) found in {where}')
        return found


def snapshot(world: World, ns: str, canaries: Canaries, stage: str) -> None:
    """Everything Kubernetes holds about the namespace's identities right now."""
    identities = world.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
    canaries.keep(f'ServiceIdentities ({stage})', identities)
    for kind, listed in (
        ('ServiceAccounts', world.core.list_namespaced_service_account(ns)),
        ('Roles', world.rbac.list_namespaced_role(ns)),
        ('RoleBindings', world.rbac.list_namespaced_role_binding(ns)),
        ('Events', world.core.list_namespaced_event(ns)),
    ):
        canaries.keep(f'{kind} ({stage})', world.api.sanitize_for_serialization(listed))


def test_generated_and_planted_secrets_never_leave_vault(
    operator: OperatorProcess, world: World, bao: OpenBaoDevServer, ns: str
) -> None:
    canaries = Canaries()
    canaries.add("the operator's own Vault token", bao.root_token)
    mover, closer = (ns, 'canary-mover'), (ns, 'canary-closer')
    for (_, name), on_close in ((mover, 'Revoke'), (closer, 'Rotate')):
        manifest = identity(name, ns, on_close=on_close)
        manifest['spec']['vault']['secret']['keys'] = KEYS
        world.create(manifest)
    world.check({mover: Expect.ACTIVE, closer: Expect.ACTIVE})
    for key in (mover, closer):
        assert canaries.read_generated(world.bao, *key) == 1
        world.login(*key)
        for sa_token, vault_token in world.issued[key]:
            canaries.add(f'{key[1]} ServiceAccount token', sa_token)
            canaries.add(f'{key[1]} Vault token', vault_token)
    # A legacy token Secret of the identity's ServiceAccount: the operator lists these and
    # deletes them on revocation, so it holds the token in memory at some point.
    planted = world.core.create_namespaced_secret(
        ns,
        {
            'metadata': {
                'name': 'canary-mover-token',
                'annotations': {'kubernetes.io/service-account.name': 'canary-mover'},
            },
            'type': 'kubernetes.io/service-account-token',
            'stringData': {'token': 'planted-canary-token-0123456789abcdef'},
        },
    )
    stored = world.core.read_namespaced_secret(planted.metadata.name, ns).data or {}
    for field, encoded in stored.items():
        canaries.add(f'planted token Secret {field}', base64.b64decode(encoded).decode())
    snapshot(world, ns, canaries, 'provisioned')

    # Rotations: an owner change, a closure with onClose: Rotate, then an on-demand rotation.
    world.patch(ns, 'canary-mover', {'spec': {'owner': {'team': 'ledger'}}})
    world.patch(ns, 'canary-closer', {'spec': {'ticket': {'state': 'Closed'}}})
    for key in (mover, closer):
        world.wait(*key, lambda o: (o['status'].get('vault') or {}).get('secretVersion') == 2)
        assert canaries.read_generated(world.bao, *key) == 2
    world.patch(ns, 'canary-mover', {'metadata': {'annotations': {'tenure.dev/rotate': 'r1'}}})
    world.wait(*mover, lambda o: (o['status'].get('vault') or {}).get('secretVersion') == 3)
    assert canaries.read_generated(world.bao, *mover) == 3
    world.check({mover: Expect.ACTIVE, closer: Expect.ACTIVE}, secret_versions={mover: [3]})
    snapshot(world, ns, canaries, 'rotated')
    canaries.keep('/metrics (rotated)', operator.metrics())

    # Revocation: everything goes, with proof, and still nothing is said about the values.
    world.patch(ns, 'canary-mover', {'spec': {'ticket': {'state': 'Cancelled'}}})
    world.delete(ns, 'canary-closer')
    world.check({mover: Expect.REVOKED, closer: Expect.GONE})
    with pytest.raises(ApiException) as gone:
        world.core.read_namespaced_secret(planted.metadata.name, ns)
    assert gone.value.status == 404, 'the operator handled (and deleted) the planted token'
    snapshot(world, ns, canaries, 'revoked')
    canaries.keep('/metrics (revoked)', operator.metrics())
    assert operator.log_path is not None
    for log in sorted(operator.log_path.parent.glob('operator-*.log')):
        # The raw file: log_text() would hide the operator's token, which is one of the canaries.
        canaries.keep(f'operator log {log.name}', log.read_text(errors='replace'))

    read = {
        f'{ns}/{name} v{version} {key}'
        for name, versions in (('canary-mover', 3), ('canary-closer', 2))
        for version in range(1, versions + 1)
        for key in KEYS
    }
    assert read <= set(canaries.values), 'every generated value was read before it was dropped'
    assert 'DEBUG' in canaries.texts[f'operator log {operator.log_path.name}']
    leaks = canaries.leaks()
    assert not leaks, 'secret values leaked:\n' + '\n'.join(leaks)


@pytest.mark.parametrize(
    'encode',
    [
        pytest.param(lambda v: f'msg="{v}"', id='as-is'),
        pytest.param(lambda v: base64.b64encode(v.encode()).decode(), id='base64'),
        pytest.param(lambda v: base64.urlsafe_b64encode(v.encode()).decode(), id='base64url'),
    ],
)
def test_the_canary_finds_a_value_in_any_of_its_forms(encode: Any) -> None:
    """The detector itself: a planted value is found wherever it hides, in each encoding."""
    canaries = Canaries()
    canaries.add('a value', 'Zm9vYmFyLWNhbmFyeS12YWx1ZS0~?>')
    canaries.keep('a log', 'nothing here')
    assert canaries.leaks() == []
    canaries.keep('a log', f'DEBUG something {encode("Zm9vYmFyLWNhbmFyeS12YWx1ZS0~?>")} else')
    assert canaries.leaks()

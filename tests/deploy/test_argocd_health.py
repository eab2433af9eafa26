"""The Argo CD health check (Lua) reads a ServiceIdentity's status the way Tenure means it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

lupa = pytest.importorskip('lupa', reason='lupa (Lua in Python) runs the health check')

SCRIPT = Path(__file__).resolve().parents[2] / 'deploy' / 'argocd' / 'health-serviceidentity.lua'


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)

    def table(value: Any) -> Any:
        if isinstance(value, dict):
            return lua.table_from({k: table(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([table(v) for v in value])
        return value

    lua.globals().obj = table(obj)
    result = lua.execute(SCRIPT.read_text(encoding='utf-8'))
    return str(result['status']), str(result['message'])


def si(
    phase: str | None,
    *conditions: tuple[str, str, str, str],
    generation: int = 1,
    observed: int = 1,
    **status: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {'metadata': {'name': 'x', 'generation': generation}}
    if phase is not None:
        body['status'] = {
            'phase': phase,
            'observedGeneration': observed,
            'conditions': [
                {'type': t, 'status': s, 'reason': r, 'message': m} for t, s, r, m in conditions
            ],
            **status,
        }
    return body


READY = ('Ready', 'True', 'Active', 'provisioned until 2027-02-15T00:00:00Z')


@pytest.mark.parametrize(
    ('obj', 'status', 'message'),
    [
        pytest.param(si(None), 'Progressing', 'waiting for the Tenure operator', id='not-seen-yet'),
        pytest.param(si('Active', READY), 'Healthy', 'provisioned until', id='active'),
        pytest.param(
            si('Active', READY, ('ExpiringSoon', 'True', 'ExpiringSoon', 'access expires at X')),
            'Healthy',
            'access expires at X',
            id='active-expiring-soon',
        ),
        pytest.param(
            si('Active', READY, ('Valid', 'False', 'ScopeChangeNotApproved', 'wider scope')),
            'Healthy',
            'ScopeChangeNotApproved',
            id='active-with-refused-edit',
        ),
        pytest.param(
            si('Active', ('Ready', 'False', 'ProvisioningFailed', 'Vault is sealed')),
            'Degraded',
            'ProvisioningFailed: Vault is sealed',
            id='active-failing',
        ),
        pytest.param(
            si('Active', READY, generation=3, observed=2),
            'Progressing',
            'generation 3',
            id='new-generation-not-judged-yet',
        ),
        pytest.param(si('Pending'), 'Suspended', 'awaits approval', id='awaiting-approval'),
        pytest.param(
            si('Denied', ('Valid', 'False', 'WildcardNotAllowed', 'WildcardNotAllowed: ...')),
            'Degraded',
            'WildcardNotAllowed',
            id='denied',
        ),
        pytest.param(
            si('Revoked', generation=5, observed=4, revocation={'reason': 'Expired'}),
            'Degraded',
            'access revoked (Expired)',
            id='revoked-tombstone-even-after-edits',
        ),
    ],
)
def test_argo_cd_health_of_a_service_identity(
    obj: dict[str, Any], status: str, message: str
) -> None:
    found_status, found_message = health(obj)
    assert found_status == status
    assert message in found_message

"""Rendering `tenure report` and `tenure plan` for people (table) and machines (json, csv).

JSON field names are the API's (camelCase); empty fields are null, never missing, so a consumer
can rely on every key (issue #6: `{class, kind, namespace, name, owner, ticket, expiresAt, risk,
detail}` at least).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, TextIO

from tenure.api.base import format_timestamp
from tenure.audit import Evidence
from tenure.domain.inventory import RISK_TITLES, Class, Finding
from tenure.domain.planning import Action
from tenure.plan import Planned, Refused, Skipped, Sources

FINDING_FIELDS: Final = (
    'class',
    'kind',
    'namespace',
    'name',
    'owner',
    'ticket',
    'expiresAt',
    'risk',
    'detail',
    'identity',
    'ownerContact',
    'ticketSystem',
    'ticketUrl',
    'requester',
    'approver',
    'approvedAt',
    'justification',
    'daysLeft',
    'lastRotatedAt',
)
"""Every key of a finding in JSON and CSV, in this order."""

TABLE_COLUMNS: Final = (
    ('CLASS', 'class'),
    ('KIND', 'kind'),
    ('NAMESPACE', 'namespace'),
    ('NAME', 'name'),
    ('OWNER', 'owner'),
    ('TICKET', 'ticket'),
    ('EXPIRES', 'expiresAt'),
    ('RISK', 'risk'),
    ('DETAIL', 'detail'),
)


def _time(value: datetime | None) -> str | None:
    return format_timestamp(value) if value is not None else None


def finding_record(finding: Finding, now: datetime) -> dict[str, Any]:
    """A finding as JSON: every key of FINDING_FIELDS, null where empty."""
    g = finding.governance
    return {
        'class': finding.class_.value,
        'kind': finding.kind.value,
        'namespace': finding.namespace,
        'name': finding.name,
        'owner': finding.owner,
        'ticket': finding.ticket,
        'expiresAt': _time(finding.expires_at),
        'risk': finding.risk.value if finding.risk else None,
        'detail': finding.detail,
        'identity': g.identity if g else None,
        'ownerContact': g.owner_contact if g else None,
        'ticketSystem': g.ticket_system if g else None,
        'ticketUrl': g.ticket_url if g else None,
        'requester': g.requester if g else None,
        'approver': g.approver if g else None,
        'approvedAt': _time(g.approved_at) if g else None,
        'justification': g.justification if g else None,
        'daysLeft': finding.days_left(now),
        'lastRotatedAt': _time(g.last_rotated_at) if g else None,
    }


def table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Columns padded like `kubectl get`; the last column is never padded or cut."""
    if not rows:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.write('   '.join([*cells, row[-1]]).rstrip() + '\n')


def _cell(value: Any) -> str:
    return '-' if value is None or value == '' else str(value)


def render_findings(findings: Sequence[Finding], output: str, now: datetime, out: TextIO) -> None:
    records = [finding_record(f, now) for f in findings]
    if output == 'json':
        out.write(json.dumps(records, indent=2) + '\n')
        return
    if output == 'csv':
        writer = csv.DictWriter(out, fieldnames=FINDING_FIELDS, lineterminator='\n')
        writer.writeheader()
        writer.writerows({k: '' if v is None else v for k, v in r.items()} for r in records)
        return
    rows = [[title for title, _ in TABLE_COLUMNS]]
    rows += [[_cell(r[key]) for _, key in TABLE_COLUMNS] for r in records]
    table(rows, out)
    counts = Counter(f.class_ for f in findings)
    summary = ', '.join(
        f'{counts[c]} {c.value}' for c in (Class.MANAGED, Class.LEAKED, Class.UNMANAGED)
    )
    risks = Counter(f.risk for f in findings if f.risk is not None)
    out.write(f'\n{len(findings)} identities: {summary}\n')
    for risk, count in sorted(risks.items()):
        out.write(f'  {risk.value} {RISK_TITLES[risk]}: {count}\n')


# -- evidence ---------------------------------------------------------------------------------


def evidence_record(evidence: Evidence, now: datetime) -> dict[str, Any]:
    """The full record of one identity as JSON."""
    record = evidence.record
    status: Mapping[str, Any] = evidence.body.get('status') or {}
    spec: Mapping[str, Any] = evidence.body.get('spec') or {}
    expires = status.get('expiresAt') or spec.get('expiresAt')
    days_left = None
    if record.status.expires_at is not None:
        days_left = (record.status.expires_at - now).days
    history = list(status.get('history') or [])
    return {
        'identity': f'{record.namespace}/{record.name}',
        'uid': record.uid or None,
        'phase': status.get('phase'),
        'service': spec.get('service'),
        'environment': spec.get('environment'),
        'ticket': spec.get('ticket'),
        'approval': status.get('approval'),
        'owner': status.get('owner') or spec.get('owner'),
        'ownerHistory': list(status.get('ownerHistory') or []),
        'expiresAt': expires,
        'daysLeft': days_left if status.get('phase') == 'Active' else None,
        'appliedScope': status.get('appliedScope'),
        'vault': status.get('vault'),
        'rotations': [h for h in history if h.get('reason') == 'SecretRotated'],
        'history': history,
        'revocation': status.get('revocation'),
        'conditions': list(status.get('conditions') or []),
        'objects': [finding_record(f, now) for f in evidence.objects],
        'vaultRead': evidence.vault_read,
    }


def _section(out: TextIO, title: str, pairs: Sequence[tuple[str, Any]]) -> None:
    out.write(f'\n{title}\n')
    width = max((len(k) for k, v in pairs if v not in (None, '', [])), default=0)
    for key, value in pairs:
        if value not in (None, '', []):
            out.write(f'  {(key + ":").ljust(width + 1)} {value}\n')


def render_evidence(evidence: Evidence, output: str, now: datetime, out: TextIO) -> None:
    doc = evidence_record(evidence, now)
    if output == 'json':
        out.write(json.dumps(doc, indent=2) + '\n')
        return
    ticket = doc['ticket'] or {}
    approval = doc['approval'] or {}
    owner = doc['owner'] or {}
    out.write(f'ServiceIdentity {doc["identity"]}: {doc["phase"] or "not reconciled yet"}\n')
    _section(
        out,
        'Approval',
        [
            ('ticket', ' '.join(str(p) for p in (ticket.get('id'), ticket.get('system')) if p)),
            ('url', ticket.get('url')),
            ('state', ticket.get('state')),
            ('requester', ticket.get('requester')),
            ('approver', ticket.get('approver')),
            ('approved at', ticket.get('approvedAt')),
            ('justification', ticket.get('justification')),
            (
                'provisioned under',
                f'{approval.get("ticketId")} approved by {approval.get("approver")} at '
                f'{approval.get("approvedAt")}'
                if approval
                else None,
            ),
        ],
    )
    _section(
        out,
        'Owner',
        [('team', owner.get('team')), ('contact', owner.get('contact'))]
        + [
            ('before', f'{o["team"]} <{o["contact"]}> until {o["until"]}')
            for o in doc['ownerHistory']
        ],
    )
    days = f' ({doc["daysLeft"]} days left)' if doc['daysLeft'] is not None else ''
    vault = doc['vault'] or {}
    _section(
        out,
        'Lifetime',
        [
            ('expires at', f'{doc["expiresAt"]}{days}' if doc['expiresAt'] else None),
            ('Vault policy', vault.get('policy')),
            ('Vault role', vault.get('role')),
            ('secret', vault.get('secretPath')),
            ('secret version', vault.get('secretVersion')),
            ('last rotated', vault.get('lastRotatedAt')),
            ('rotations', len(doc['rotations']) or None),
        ],
    )
    out.write('\nHistory\n')
    rows = [['AT', 'PHASE', 'REASON', 'MESSAGE']]
    rows += [
        [h['at'], _cell(h.get('phase')), h['reason'], h.get('message') or '']
        for h in doc['history']
    ]
    if len(rows) > 1:
        table([['  ' + r[0], *r[1:]] for r in rows], out)
    else:
        out.write('  (no transitions recorded)\n')
    revocation = doc['revocation']
    if revocation:
        _section(
            out,
            'Revocation',
            [
                ('reason', revocation.get('reason')),
                ('requested at', revocation.get('requestedAt')),
                ('completed at', revocation.get('completedAt')),
                ('verified', 'yes' if revocation.get('verified') else 'NO'),
            ],
        )
        proof = [['  RESULT', 'AT', 'OBJECT', 'CHECK']]
        proof += [
            ['  ' + p['result'], p['at'], p['object'], p['check']]
            for p in revocation.get('proof') or []
        ]
        if len(proof) > 1:
            table(proof, out)
    out.write('\nWhat exists now\n')
    if evidence.objects:
        rows = [['  CLASS', 'KIND', 'NAME', 'RISK', 'DETAIL']]
        rows += [
            ['  ' + o['class'], o['kind'], o['name'], _cell(o['risk']), o['detail']]
            for o in doc['objects']
        ]
        table(rows, out)
    else:
        where = 'Kubernetes or Vault' if evidence.vault_read else 'Kubernetes (Vault not read)'
        out.write(f'  nothing in {where}\n')


# -- plan -------------------------------------------------------------------------------------

_SYMBOLS: Final = {
    Action.CREATE: '+',
    Action.UPDATE: '~',
    Action.DELETE: '-',
    Action.UNCHANGED: '=',
    Action.APPLY: '?',
}


def plan_record(result: Planned | Refused) -> dict[str, Any]:
    if isinstance(result, Refused):
        return {
            'file': result.file,
            'line': result.line,
            'namespace': result.namespace,
            'name': result.name,
            'phase': None,
            'reason': result.reason,
            'message': result.message,
            'asWritten': False,
            'violations': [],
            'changes': [],
        }
    plan = result.plan
    return {
        'file': result.file,
        'line': result.line,
        'namespace': plan.namespace,
        'name': plan.name,
        'phase': plan.phase,
        'reason': plan.reason,
        'message': plan.message,
        'asWritten': plan.as_written,
        'violations': [
            {'rule': v.rule.value, 'field': v.field, 'message': v.message} for v in plan.violations
        ],
        'changes': [
            {
                'system': c.system,
                'action': c.action.value,
                'kind': c.kind,
                'name': c.name,
                'detail': c.detail or None,
            }
            for c in plan.changes
        ],
    }


def render_plans(
    results: Sequence[Planned | Refused | Skipped], sources: Sources, output: str, out: TextIO
) -> None:
    records = [plan_record(r) for r in results if not isinstance(r, Skipped)]
    skipped = [r for r in results if isinstance(r, Skipped)]
    if output == 'json':
        doc = {
            'kubernetes': sources.kube_note,
            'vault': sources.vault_note,
            'changed': False,
            'plans': records,
            'skipped': [{'file': r.file, 'line': r.line, 'kind': r.kind} for r in skipped],
        }
        out.write(json.dumps(doc, indent=2) + '\n')
        return
    out.write(f'Kubernetes: {sources.kube_note}\nVault: {sources.vault_note}\n')
    for r in skipped:
        out.write(f'{r.file}:{r.line}: {r.kind} is not a ServiceIdentity: not planned\n')
    totals: Counter[str] = Counter()
    for record in records:
        where = f'{record["file"]}:{record["line"]}' if record['line'] else record['file']
        obj = '/'.join(p for p in (record['namespace'], record['name']) if p) or '<unnamed>'
        phase = f'{record["phase"]}, ' if record['phase'] else ''
        out.write(f'\nServiceIdentity {obj} ({where}): {phase}{record["reason"]}\n')
        out.write(f'  {record["message"]}\n')
        for violation in record['violations']:
            out.write(
                f'  guardrail {violation["rule"]}: {violation["field"]}: {violation["message"]}\n'
            )
        rows = [
            [
                f'  {_SYMBOLS[Action(c["action"])]} {c["action"]}',
                c['system'],
                c['kind'],
                c['name'],
                c['detail'] or '',
            ]
            for c in record['changes']
        ]
        table(rows, out)
        totals.update(c['action'] for c in record['changes'])
    counts = ', '.join(
        f'{totals[a.value]} to {a.value}' for a in (Action.CREATE, Action.UPDATE, Action.DELETE)
    )
    unknown = (
        f', {totals[Action.APPLY.value]} to apply (not compared)'
        if totals[Action.APPLY.value]
        else ''
    )
    out.write(
        f'\nPlan: {counts}, {totals[Action.UNCHANGED.value]} unchanged{unknown}. '
        'Nothing was changed.\n'
    )

"""The guardrails corpus and the callers it runs through (issue #4, "Tests").

Each file in `corpus/` is one realistic ServiceIdentity with a header of comments:

    # expect: <RuleId> | InvalidSpec | valid      (the first line)
    # static: yes | no        yes: the CRD itself refuses it (CEL_RULES and the schema)
    # also: <RuleId>, ...     further violations every caller must report (optional)
    # policy: <file>          an IdentityPolicy in policies/ (optional; built-in defaults otherwise)
    # namespace-labels: k=v,...   the labels of the identity's namespace (optional)
    # <why the case exists>

The callers are helpers here so that the corpus test, the property tests and the edge cases drive
the rules exactly the same way: `tenure check` (the CLI), the CRD as the API server enforces it
(the emulator's schema module on the shipped CRD), and the operator (`Reconciler` with in-memory
Kubernetes and Vault).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from tenure.cli import main as tenure_main
from tenure.domain.guardrails import CEL_RULES, Policy, Rule
from tenure.manifests import INVALID_SPEC, load_policy
from tenure.reconcile import ReconcileFailed, Reconciler
from tenure_devtools.kubeapi import schema as apiserver_schema
from tests.unit.fakes import Calls, FakeKube, FakeVault

HERE: Final = Path(__file__).parent
REPO: Final = HERE.parents[1]
CORPUS: Final = HERE / 'corpus'
POLICIES: Final = HERE / 'policies'
CRD_FILE: Final = REPO / 'crds' / 'serviceidentities.tenure.dev.yaml'

NOW: Final = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
"""The rules' "now" for every caller: the corpus dates are written against it."""

VALID: Final = 'valid'
STATIC_RULES: Final = frozenset(
    rule['message'].split(':', 1)[0] for rules in CEL_RULES.values() for rule in rules
)
"""The guardrails the CRD enforces itself (their CEL messages start with the rule id)."""

Obj = dict[str, Any]


class CorpusError(ValueError):
    """A corpus file whose header does not say what to expect."""


@dataclasses.dataclass(frozen=True)
class Case:
    """One corpus manifest and what every caller must make of it."""

    path: Path
    expect: str
    """A guardrails Rule id, InvalidSpec (the schema), or `valid`."""
    static: bool
    """The CRD itself refuses it (a CEL rule or the schema)."""
    also: tuple[str, ...] = ()
    policy_file: Path | None = None
    namespace_labels: Mapping[str, str] | None = None

    @property
    def id(self) -> str:
        return self.path.stem

    @property
    def valid(self) -> bool:
        return self.expect == VALID

    @property
    def rules(self) -> frozenset[str]:
        """Every rule id the callers must report (none for a valid case)."""
        return frozenset() if self.valid else frozenset({self.expect, *self.also})

    def manifest(self) -> Obj:
        doc = yaml.safe_load(self.path.read_text(encoding='utf-8'))
        # Timestamps are quoted in the corpus, so that safe_load reads what the API server reads
        # (JSON strings); a datetime here would make json.dumps fail loudly.
        decoded: Obj = json.loads(json.dumps(doc))
        return decoded

    def policy(self) -> Policy:
        return load_policy(self.policy_file) if self.policy_file else Policy()


def _labels(text: str) -> dict[str, str]:
    labels = {}
    for pair in text.split(','):
        key, sep, value = pair.strip().partition('=')
        if not sep or not key:
            raise CorpusError(f'namespace-labels: expected key=value pairs, got {text!r}')
        labels[key] = value
    return labels


def load_case(path: Path) -> Case:
    """Read a corpus file's header; CorpusError when it is missing or malformed."""
    header: dict[str, str] = {}
    lines = path.read_text(encoding='utf-8').splitlines()
    if not lines or not lines[0].startswith('# expect:'):
        raise CorpusError(f'{path.name}: the first line must be "# expect: <RuleId>"')
    for line in lines:
        if not line.startswith('#'):
            break
        key, sep, value = line.removeprefix('#').strip().partition(':')
        if sep and key in {'expect', 'static', 'also', 'policy', 'namespace-labels'}:
            if key in header:
                raise CorpusError(f'{path.name}: "{key}" is given twice')
            header[key] = value.strip()
    if header.get('static') not in {'yes', 'no'}:
        raise CorpusError(f'{path.name}: "# static: yes|no" is required')
    policy = header.get('policy')
    if policy is not None and not (POLICIES / policy).is_file():
        raise CorpusError(f'{path.name}: no policy {policy!r} in {POLICIES}')
    labels = header.get('namespace-labels')
    return Case(
        path=path,
        expect=header['expect'],
        static=header['static'] == 'yes',
        also=tuple(a.strip() for a in header.get('also', '').split(',') if a.strip()),
        policy_file=POLICIES / policy if policy else None,
        namespace_labels=_labels(labels) if labels is not None else None,
    )


CASES: Final = tuple(load_case(p) for p in sorted(CORPUS.glob('*.yaml')))


def case_params(*, valid: bool | None = None) -> list[Any]:
    """The corpus as pytest params named after the files (`valid` filters)."""
    return [
        pytest.param(case, id=case.id) for case in CASES if valid is None or case.valid is valid
    ]


# -- caller: tenure check -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CheckResult:
    exit_code: int
    problems: list[Obj]

    @property
    def rules(self) -> set[str]:
        return {p['rule'] for p in self.problems}


def run_check(
    paths: list[Path], *, policy_file: Path | None = None, now: datetime = NOW
) -> CheckResult:
    """`tenure check -o json -f PATH... [--policy FILE]`, through the CLI's entry point."""
    argv = ['check', '--output', 'json']
    for path in paths:
        argv += ['-f', str(path)]
    if policy_file is not None:
        argv += ['--policy', str(policy_file)]
    out = io.StringIO()
    code = tenure_main(argv, out=out, clock=lambda: now)
    return CheckResult(code, json.loads(out.getvalue())['problems'])


def check_document(
    tmp_dir: Path, doc: Obj, *, policy_file: Path | None = None, now: datetime = NOW
) -> CheckResult:
    """`tenure check` on one object, written to a file the way a GitOps repository holds it."""
    path = tmp_dir / 'identity.yaml'
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding='utf-8')
    return run_check([path], policy_file=policy_file, now=now)


# -- caller: the CRD, as the API server enforces it -----------------------------------------------


@functools.cache
def _crd_schema_json() -> str:
    crd = yaml.safe_load(CRD_FILE.read_text(encoding='utf-8'))
    (version,) = crd['spec']['versions']
    return json.dumps(version['schema']['openAPIV3Schema'])


def crd_errors(doc: Obj) -> list[apiserver_schema.FieldError]:
    """What the API server answers to a create of `doc` with the shipped CRD: prune, default, then
    OpenAPI and CEL validation. Empty when it would be stored."""
    schema = json.loads(_crd_schema_json())
    stored = apiserver_schema.apply_defaults(schema, apiserver_schema.prune(schema, doc))
    return apiserver_schema.validate(schema, stored)


# -- caller: the operator -------------------------------------------------------------------------


@dataclasses.dataclass
class Operated:
    """One reconcile of a new ServiceIdentity against in-memory Kubernetes and Vault."""

    status: Obj
    calls: Calls
    kube: FakeKube
    vault: FakeVault

    @property
    def phase(self) -> str | None:
        phase: str | None = self.status.get('phase')
        return phase

    def condition(self, type_: str) -> Obj:
        found: Obj = next(c for c in self.status.get('conditions', []) if c['type'] == type_)
        return found

    @property
    def events(self) -> list[tuple[bool, str, str]]:
        return self.kube.events

    @property
    def nothing_written(self) -> bool:
        """No Kubernetes object and no Vault write, in the call log or in the fakes' state."""
        vault = self.vault
        return (
            not self.calls
            and not self.kube.objects
            and not (vault.policies or vault.roles or vault.secrets or vault.secret_metadata)
        )


def _merge(target: Obj, patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def operate(
    doc: Obj,
    *,
    policy: Policy | None = None,
    namespace_labels: Mapping[str, str] | None = None,
    now: datetime = NOW,
    calls: Calls | None = None,
    kube: FakeKube | None = None,
    vault: FakeVault | None = None,
) -> Operated:
    """Reconcile `doc` once as a newly created object; the fakes may be shared between calls."""
    calls = calls if calls is not None else Calls()
    kube = kube if kube is not None else FakeKube(calls)
    vault = vault if vault is not None else FakeVault(calls)
    body = copy.deepcopy(doc)
    body['metadata'].update(uid=f'uid-{body["metadata"]["name"]}', generation=1)
    if namespace_labels is not None:
        kube.namespaces[body['metadata']['namespace']] = dict(namespace_labels)
    in_force = policy or Policy()
    reconciler = Reconciler(kube, vault, clock=lambda: now, policy=lambda: in_force)
    before = len(kube.status_patches)
    with contextlib.suppress(ReconcileFailed):
        # A failure (e.g. a NameConflict) is written to status first, then raised for kopf.
        reconciler.reconcile(body)
    status: Obj = {}
    for patch in kube.status_patches[before:]:
        _merge(status, patch)
    return Operated(status, calls, kube, vault)


def is_rule_id(value: str) -> bool:
    """A guardrails Rule id or InvalidSpec (the id schema problems carry)."""
    return value == INVALID_SPEC or value in {r.value for r in Rule}

"""Read manifests and validate them offline against the API and the guardrails (`tenure check`).

Reading is done like `kubectl` does it: YAML with several documents, `kind: List` unwrapped, and
no YAML-only types (an unquoted `2026-12-31T00:00:00Z` stays a string, as in the JSON the API
server receives). A key given twice in one mapping is an error (the API server's strict field
validation refuses it; YAML loaders silently keep the last one). Every problem names the file, the
line, the object, the field path and the rule.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError

from tenure.api.base import PATTERN_HINTS
from tenure.api.v1alpha1 import (
    API_VERSION,
    CROSS_FIELD_PATHS,
    KIND,
    POLICY_KIND,
    SOURCE_KIND,
    IdentityPolicy,
    ServiceIdentity,
    TicketSource,
)
from tenure.domain.guardrails import Policy, Target, evaluate, policy_from

MANIFEST_SUFFIXES: Final = ('.yaml', '.yml', '.json')
INVALID_SPEC: Final = 'InvalidSpec'
"""The rule id of a schema violation (what the CRD itself refuses)."""

Loc = list[str | int]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One reason a manifest is not an acceptable ServiceIdentity."""

    file: str
    line: int | None
    document: int | None
    kind: str | None
    namespace: str | None
    name: str | None
    field: str
    message: str
    rule: str

    def describe(self) -> str:
        """One line for people: `file:line: Kind ns/name: field: message [rule]`."""
        where = self.file if self.line is None else f'{self.file}:{self.line}'
        obj = '/'.join(p for p in (self.namespace, self.name) if p) or '<unnamed>'
        field = f'{self.field}: ' if self.field else ''
        return f'{where}: {self.kind or "object"} {obj}: {field}{self.message} [{self.rule}]'


def _file_problem(file: str, message: str, rule: str, line: int | None = None) -> Problem:
    return Problem(file, line, None, None, None, None, '', message, rule)


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """What `tenure check` found."""

    objects: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems and self.objects > 0


class _Loader(yaml.SafeLoader):
    """SafeLoader without the YAML 1.1 timestamp type, refusing duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f'duplicate key {key!r}', key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != 'tag:yaml.org,2002:timestamp']
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclasses.dataclass(frozen=True)
class _Document:
    file: str
    index: int
    node: yaml.Node
    data: Any


def _line_of(node: yaml.Node, path: Sequence[str | int]) -> int:
    """The 1-based line of the deepest node that `path` reaches in a composed YAML tree."""
    for step in path:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, 'value', None) == step), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            match = node.value[step] if 0 <= step < len(node.value) else None
        else:
            match = None
        if match is None:
            break
        node = match
    return node.start_mark.line + 1


def _manifest_files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from sorted(p for p in path.rglob('*') if p.suffix in MANIFEST_SUFFIXES)
    else:
        yield path


def format_loc(loc: Sequence[str | int]) -> str:
    text = ''
    for step in loc:
        text += f'[{step}]' if isinstance(step, int) else (f'.{step}' if text else str(step))
    return text


def parse_loc(field: str) -> Loc:
    """`spec.rules[0].verbs` -> ['spec', 'rules', 0, 'verbs']."""
    loc: Loc = []
    for part in field.split('.'):
        name, *indices = re.split(r'\[(\d+)\]', part)
        if name:
            loc.append(name)
        loc.extend(int(i) for i in indices if i)
    return loc


def _message(error: Any) -> str:
    kind = error['type']
    if kind == 'missing':
        return 'required field is missing'
    if kind == 'extra_forbidden':
        return 'unknown field (not part of tenure.dev/v1alpha1)'
    message: str = error['msg']
    if kind == 'string_pattern_mismatch':
        message = PATTERN_HINTS.get(error.get('ctx', {}).get('pattern', ''), message)
    message = message.removeprefix('Value error, ')
    value = error.get('input')
    if (
        isinstance(value, str | int | float)
        and not isinstance(value, bool)
        and len(str(value)) <= 80
    ):
        message = f'{message} (got {value!r})'
    return message


def validation_problems(
    error: ValidationError, prefix: Sequence[str | int] = ()
) -> list[tuple[Loc, str, str]]:
    """(field path, message, rule) for each error of a pydantic ValidationError."""
    problems = []
    for item in error.errors():
        loc: Loc = [*prefix, *item['loc']]
        # Every schema error is InvalidSpec, whoever reports it (the CRD, the webhook, the
        # operator, the check); the cross-field ones still point at their field.
        rule = INVALID_SPEC
        if item['type'] in CROSS_FIELD_PATHS:
            loc.append(CROSS_FIELD_PATHS[item['type']])
        problems.append((loc, _message(item), rule))
    return problems


def describe_spec_error(error: ValidationError) -> str:
    """One line for a status condition: `spec.a.b: message; spec.c: message`."""
    return '; '.join(
        f'{format_loc(loc)}: {message}' for loc, message, _ in validation_problems(error, ['spec'])
    )


def validate_object(
    obj: Any, *, policy: Policy, now: datetime, kv_mount: str = 'secret'
) -> list[tuple[Loc, str, str]]:
    """Validate one decoded object: the schema first, then the guardrails."""
    if not isinstance(obj, dict):
        return [
            (
                [],
                'not a Kubernetes object (expected a mapping with apiVersion and kind)',
                'NotAnObject',
            )
        ]
    other_models: dict[str, type[IdentityPolicy | TicketSource]] = {
        POLICY_KIND: IdentityPolicy,
        SOURCE_KIND: TicketSource,
    }
    model = other_models.get(obj.get('kind', '')) if obj.get('apiVersion') == API_VERSION else None
    if model is not None:
        try:
            model.model_validate(obj)
        except ValidationError as e:
            return validation_problems(e)
        return []
    if obj.get('apiVersion') != API_VERSION or obj.get('kind') != KIND:
        found = f'{obj.get("kind", "<no kind>")} ({obj.get("apiVersion", "<no apiVersion>")})'
        return [([], f'{found} is not a {API_VERSION} {KIND}', 'WrongKind')]
    try:
        identity = ServiceIdentity.model_validate(obj)
    except ValidationError as e:
        return validation_problems(e)
    target = Target(
        namespace=identity.metadata.namespace or 'default',
        name=identity.metadata.name,
        kv_mount=kv_mount,
    )
    return [
        (parse_loc(v.field), v.message, v.rule.value)
        for v in evaluate(identity.spec, policy, target, now)
    ]


def _documents(path: Path, file_label: str) -> Iterator[_Document | Problem]:
    try:
        text = path.read_text(encoding='utf-8')
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except (OSError, UnicodeDecodeError) as e:
        yield _file_problem(file_label, f'cannot read: {e}', 'Unreadable')
        return
    except yaml.YAMLError as e:
        yield _yaml_problem(file_label, e)
        return
    for index, node in enumerate(n for n in nodes if n is not None):
        try:
            data = _Loader(text).construct_document(node)
        except yaml.YAMLError as e:
            yield _yaml_problem(file_label, e)
            continue
        if (
            isinstance(data, dict)
            and data.get('kind') == 'List'
            and isinstance(data.get('items'), list)
        ):
            items_node = dict((k.value, v) for k, v in node.value).get('items')
            for position, item in enumerate(data['items']):
                item_node = items_node.value[position] if items_node is not None else node
                yield _Document(file_label, index, item_node, item)
        else:
            yield _Document(file_label, index, node, data)


def _yaml_problem(file_label: str, error: yaml.YAMLError) -> Problem:
    mark = getattr(error, 'problem_mark', None)
    line = mark.line + 1 if mark is not None else None
    reason = getattr(error, 'problem', None) or str(error)
    return _file_problem(file_label, f'invalid YAML: {reason}', 'InvalidYAML', line)


def load_policy(path: Path) -> Policy:
    """An IdentityPolicy manifest as a Policy; ValueError with a specific message otherwise."""
    try:
        data = yaml.load(path.read_text(encoding='utf-8'), Loader=_Loader)  # noqa: S506 (safe)
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f'cannot read policy {path}: {e}') from None
    if not isinstance(data, dict) or data.get('kind') != POLICY_KIND:
        raise ValueError(f'{path} is not a {API_VERSION} {POLICY_KIND}')
    try:
        policy = IdentityPolicy.model_validate(data)
    except ValidationError as e:
        details = '; '.join(f'{format_loc(loc)}: {msg}' for loc, msg, _ in validation_problems(e))
        raise ValueError(f'invalid policy {path}: {details}') from None
    return policy_from(policy.spec)


def check_paths(
    paths: Iterable[Path],
    *,
    now: datetime,
    policy: Policy | None = None,
    kv_mount: str = 'secret',
    ignore_other_kinds: bool = False,
) -> CheckReport:
    """Validate every ServiceIdentity found under `paths` (files or directories)."""
    policy = policy or Policy()
    problems: list[Problem] = []
    objects = 0
    for root in paths:
        if not root.exists():
            problems.append(_file_problem(str(root), 'no such file or directory', 'NotFound'))
            continue
        files = list(_manifest_files(root))
        if not files:
            problems.append(
                _file_problem(str(root), 'no YAML or JSON manifests found', 'NoManifests')
            )
        for file in files:
            for item in _documents(file, str(file)):
                if isinstance(item, Problem):
                    problems.append(item)
                    continue
                if ignore_other_kinds and not _is_tenure_kind(item.data):
                    continue
                problems.extend(_check_document(item, policy, now, kv_mount))
                if _is_service_identity(item.data):
                    objects += 1
    return CheckReport(objects=objects, problems=tuple(problems))


def _is_tenure_kind(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and data.get('apiVersion') == API_VERSION
        and data.get('kind') in (KIND, POLICY_KIND, SOURCE_KIND)
    )


def _is_service_identity(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and data.get('apiVersion') == API_VERSION
        and data.get('kind') == KIND
    )


def _check_document(doc: _Document, policy: Policy, now: datetime, kv_mount: str) -> list[Problem]:
    data = doc.data
    metadata = data.get('metadata') if isinstance(data, dict) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    kind = data.get('kind') if isinstance(data, dict) else None

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    return [
        Problem(
            file=doc.file,
            line=_line_of(doc.node, loc),
            document=doc.index,
            kind=text(kind),
            namespace=text(metadata.get('namespace')),
            name=text(metadata.get('name')),
            field=format_loc(loc),
            message=message,
            rule=rule,
        )
        for loc, message, rule in validate_object(data, policy=policy, now=now, kv_mount=kv_mount)
    ]


@dataclasses.dataclass(frozen=True)
class Document:
    """One decoded manifest document and where it was read (for `tenure plan`)."""

    file: str
    line: int
    data: Any


def read_documents(paths: Iterable[Path]) -> Iterator[Document | Problem]:
    """Every document under `paths` (files or directories, read as `tenure check` reads them);
    what cannot be read or parsed comes as a Problem."""
    for root in paths:
        if not root.exists():
            yield _file_problem(str(root), 'no such file or directory', 'NotFound')
            continue
        for file in _manifest_files(root):
            for item in _documents(file, str(file)):
                if isinstance(item, Problem):
                    yield item
                else:
                    yield Document(item.file, item.node.start_mark.line + 1, item.data)

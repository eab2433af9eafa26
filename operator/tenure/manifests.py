"""Read manifests and validate them offline against the API models (`tenure check`).

Reading is done like `kubectl` does it: YAML with several documents, `kind: List` unwrapped, and
no YAML-only types (an unquoted `2026-12-31T00:00:00Z` stays a string, as in the JSON the API
server receives). Every problem names the file, the line, the object and the field path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError

from tenure.api.base import PATTERN_HINTS
from tenure.api.v1alpha1 import API_VERSION, CROSS_FIELD_PATHS, KIND, ServiceIdentity

MANIFEST_SUFFIXES: Final = ('.yaml', '.yml', '.json')


@dataclasses.dataclass(frozen=True)
class Problem:
    """One reason a manifest is not a valid ServiceIdentity."""

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
        """One line for people: `file:line: Kind ns/name: field: message`."""
        where = self.file if self.line is None else f'{self.file}:{self.line}'
        obj = '/'.join(p for p in (self.namespace, self.name) if p) or '<unnamed>'
        what = f'{self.kind or "object"} {obj}'
        field = f'{self.field}: ' if self.field else ''
        return f'{where}: {what}: {field}{self.message}'


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """What `tenure check` found."""

    objects: int
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems and self.objects > 0


class _Loader(yaml.SafeLoader):
    """SafeLoader without the YAML 1.1 timestamp type: dates stay strings, as in JSON."""


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


def _format_loc(loc: Sequence[str | int]) -> str:
    text = ''
    for step in loc:
        text += f'[{step}]' if isinstance(step, int) else (f'.{step}' if text else str(step))
    return text


def _message(error: Any) -> str:
    kind = error['type']
    if kind == 'missing':
        return 'required field is missing'
    if kind == 'extra_forbidden':
        return 'unknown field (not part of tenure.dev/v1alpha1 ServiceIdentity)'
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
) -> list[tuple[list[str | int], str, str]]:
    """(field path, message, rule) for each error of a pydantic ValidationError."""
    problems = []
    for item in error.errors():
        loc = [*prefix, *item['loc']]
        rule = item['type']
        if rule in CROSS_FIELD_PATHS:
            loc.append(CROSS_FIELD_PATHS[rule])
        problems.append((loc, _message(item), rule))
    return problems


def describe_spec_error(error: ValidationError) -> str:
    """One line for a status condition: `spec.a.b: message; spec.c: message`."""
    return '; '.join(
        f'{_format_loc(loc)}: {message}' for loc, message, _ in validation_problems(error, ['spec'])
    )


def validate_object(obj: Any) -> list[tuple[list[str | int], str, str]]:
    """Validate one decoded object; return (field path, message, rule) for each problem."""
    if not isinstance(obj, dict):
        return [
            (
                [],
                'not a Kubernetes object (expected a mapping with apiVersion and kind)',
                'NotAnObject',
            )
        ]
    if obj.get('apiVersion') != API_VERSION or obj.get('kind') != KIND:
        found = f'{obj.get("kind", "<no kind>")} ({obj.get("apiVersion", "<no apiVersion>")})'
        return [([], f'{found} is not a {API_VERSION} {KIND}', 'WrongKind')]
    try:
        ServiceIdentity.model_validate(obj)
    except ValidationError as e:
        return validation_problems(e)
    return []


def _documents(path: Path, file_label: str) -> Iterator[_Document | Problem]:
    try:
        text = path.read_text(encoding='utf-8')
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except (OSError, UnicodeDecodeError) as e:
        yield Problem(
            file_label, None, None, None, None, None, '', f'cannot read: {e}', 'Unreadable'
        )
        return
    except yaml.YAMLError as e:
        mark = getattr(e, 'problem_mark', None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(e, 'problem', None) or str(e)
        yield Problem(
            file_label, line, None, None, None, None, '', f'invalid YAML: {reason}', 'InvalidYAML'
        )
        return
    for index, node in enumerate(n for n in nodes if n is not None):
        data = _Loader(text).construct_document(node)
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


def check_paths(paths: Iterable[Path], *, ignore_other_kinds: bool = False) -> CheckReport:
    """Validate every ServiceIdentity found under `paths` (files or directories)."""
    problems: list[Problem] = []
    objects = 0
    for root in paths:
        if not root.exists():
            problems.append(
                Problem(
                    str(root),
                    None,
                    None,
                    None,
                    None,
                    None,
                    '',
                    'no such file or directory',
                    'NotFound',
                )
            )
            continue
        files = list(_manifest_files(root))
        if not files:
            problems.append(
                Problem(
                    str(root),
                    None,
                    None,
                    None,
                    None,
                    None,
                    '',
                    'no YAML or JSON manifests found',
                    'NoManifests',
                )
            )
        for file in files:
            for item in _documents(file, str(file)):
                if isinstance(item, Problem):
                    problems.append(item)
                    continue
                problems.extend(_check_document(item, ignore_other_kinds))
                if _is_service_identity(item.data):
                    objects += 1
    return CheckReport(objects=objects, problems=tuple(problems))


def _is_service_identity(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and data.get('apiVersion') == API_VERSION
        and data.get('kind') == KIND
    )


def _check_document(doc: _Document, ignore_other_kinds: bool) -> list[Problem]:
    data = doc.data
    if ignore_other_kinds and isinstance(data, dict) and not _is_service_identity(data):
        return []
    metadata = data.get('metadata') if isinstance(data, dict) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    kind = data.get('kind') if isinstance(data, dict) else None
    return [
        Problem(
            file=doc.file,
            line=_line_of(doc.node, loc),
            document=doc.index,
            kind=kind if isinstance(kind, str) else None,
            namespace=metadata.get('namespace')
            if isinstance(metadata.get('namespace'), str)
            else None,
            name=metadata.get('name') if isinstance(metadata.get('name'), str) else None,
            field=_format_loc(loc),
            message=message,
            rule=rule,
        )
        for loc, message, rule in validate_object(data)
    ]

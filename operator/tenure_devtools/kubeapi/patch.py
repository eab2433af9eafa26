"""PATCH bodies applied the way the Kubernetes API server applies them.

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

The three patch types of `PATCH` requests (https://kubernetes.io/docs/reference/using-api/api-concepts/#patch-and-apply):

- `application/merge-patch+json` (RFC 7386) -> `apply_merge_patch`;
- `application/json-patch+json` (RFC 6902) -> `apply_json_patch`;
- `application/strategic-merge-patch+json` -> `apply_strategic_merge_patch`.

The API server does not implement the RFCs itself: it calls evanphx/json-patch v4 (merge and JSON
patch) and k8s.io/apimachinery/pkg/util/strategicpatch, and maps their errors to HTTP codes in
k8s.io/apiserver/pkg/endpoints/handlers/patch.go. Where those libraries differ from the RFCs, this
module follows the libraries, because that is what a client of a real cluster observes; each such
place has a comment citing the behaviour. Every function returns a new object and never mutates
its arguments.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, TypeVar

JsonObj = dict[str, Any]
_J = TypeVar('_J')

# patch.go `maxJSONPatchOperations`: larger JSON patches are refused with 413 before being applied.
MAX_JSON_PATCH_OPERATIONS: Final = 10000

# errors.NewGenericServerResponse(422, ...) keeps a fixed message and drops the library's text, so a
# failed JSON patch `test` answers exactly this (kubectl shows "The request is invalid: ...").
_UNPROCESSABLE_MESSAGE: Final = 'the server rejected our request due to an error in our request'


class PatchError(Exception):
    """A patch the API server refuses.

    `status` is the HTTP code the real server answers, `reason` the `Status.reason` that goes with
    it, and `message` the `Status.message` it sends. `detail` keeps the library's own explanation
    (the real server discards it for 422 answers) so that the emulator can log it.
    """

    def __init__(self, status: int, message: str, *, reason: str = '', detail: str = '') -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.detail = detail or message


def _bad_request(message: str) -> PatchError:
    return PatchError(400, message, reason='BadRequest')


def _unprocessable(detail: str) -> PatchError:
    return PatchError(422, _UNPROCESSABLE_MESSAGE, reason='Invalid', detail=detail)


def _unclassified(message: str) -> PatchError:
    # A plain Go error that the patch handler does not translate becomes a 500 with an empty
    # reason (apimachinery ErrorToAPIStatus), e.g. "does not contain declared merge key".
    return PatchError(500, message, reason='')


def _clone(value: Any) -> Any:
    """A deep copy of decoded JSON (faster than copy.deepcopy, and enough for JSON)."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _clone_object(value: JsonObj) -> JsonObj:
    return {k: _clone(v) for k, v in value.items()}


def _json_type(value: Any) -> str:
    """The JSON type name Go's encoding/json uses in its unmarshal errors."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'bool'
    if isinstance(value, int | float):
        return 'number'
    if isinstance(value, str):
        return 'string'
    if isinstance(value, list):
        return 'array'
    return 'object'


def _go_equal(a: Any, b: Any) -> bool:
    """Go interface equality on decoded JSON: 1 (int64) is not 1.0 (float64), true is not 1."""
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------------------------------------
# JSON merge patch (RFC 7386), as evanphx/json-patch v4 MergePatch does it.


def apply_merge_patch(target: JsonObj, patch: Any) -> JsonObj:
    """Apply a JSON merge patch: `null` deletes, objects merge recursively, anything else replaces.

    `patch` is the decoded request body. Like the API server: a body that is not a JSON object
    (null, a string, a number) is a 400 "Invalid JSON Patch" (evanphx ErrBadJSONPatch); an array
    replaces the whole document, which then cannot decode into an object: 422.
    """
    if isinstance(patch, list):
        # MergePatch returns the array itself; decoding it into the typed object fails and
        # patch.go answers errors.NewInvalid (422) naming the `patch` field.
        raise PatchError(
            422,
            'patch: Invalid value: a JSON array: the patched document must be a JSON object',
            reason='Invalid',
        )
    if not isinstance(patch, dict):
        raise _bad_request('Invalid JSON Patch')
    result = _clone_object(target)
    _merge_docs(result, patch)
    return result


def _merge_docs(doc: JsonObj, patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            doc.pop(key, None)
        elif doc.get(key) is None:
            # A missing member and an explicit null are the same to evanphx `mergeDocs`.
            doc[key] = _prune_nulls(_clone(value))
        else:
            doc[key] = _merge_value(doc[key], value)


def _merge_value(current: Any, patch: Any) -> Any:
    if not isinstance(current, dict):
        return _prune_nulls(_clone(patch))
    if not isinstance(patch, dict):
        # evanphx returns a non-object patch value verbatim here, without pruning nulls.
        return _clone(patch)
    _merge_docs(current, patch)
    return current


def _prune_nulls(value: Any) -> Any:
    """Drop null members of objects at any depth (evanphx pruneNulls); nulls in arrays stay."""
    if isinstance(value, dict):
        for key in [k for k, v in value.items() if v is None]:
            del value[key]
        for v in value.values():
            _prune_nulls(v)
    elif isinstance(value, list):
        for v in value:
            _prune_nulls(v)
    return value


# ---------------------------------------------------------------------------------------------
# JSON patch (RFC 6902), as evanphx/json-patch v4 Patch.Apply does it.


class _OpFailed(Exception):
    """An operation that does not apply; patch.go answers 422 for every one of them."""


_GO_ATOI: Final = re.compile(r'[+-]?[0-9]+')


def apply_json_patch(target: JsonObj, ops: Any) -> JsonObj:
    """Apply a JSON patch (a list of operations), all or nothing.

    Status codes as the API server's patch handler: a body that does not decode as a list of
    objects is 400; more than 10000 operations is 413; any operation that does not apply (a
    failed `test`, a missing path, an unknown `op`, a bad array index) is 422 with the generic
    message, the library's explanation being kept in `PatchError.detail`.

    Faithful to evanphx/json-patch v4 where it departs from RFC 6902: `replace` of a missing
    object member adds it (evanphx/json-patch#119, #204); `copy` from a missing member copies
    null; a missing `value` means null; negative array indexes count from the end for `add` and
    `remove`; and `test` compares an object member by member from the document's side only.
    """
    if ops is None:
        # `null` decodes into an empty Patch: nothing to do.
        return _clone_object(target)
    if not isinstance(ops, list):
        raise _bad_request(
            f'json: cannot unmarshal {_json_type(ops)} into Go value of type jsonpatch.Patch'
        )
    for op in ops:
        if op is not None and not isinstance(op, dict):
            raise _bad_request(
                f'json: cannot unmarshal {_json_type(op)} into Go value of type jsonpatch.Operation'
            )
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise PatchError(
            413,
            'Request entity too large: The allowed maximum operations in a JSON patch is '
            f'{MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}',
            reason='RequestEntityTooLarge',
        )
    doc = _clone_object(target)
    for op in ops:
        try:
            _apply_operation(doc, op or {})
        except _OpFailed as e:
            raise _unprocessable(str(e)) from None
    return doc


def _apply_operation(doc: JsonObj, op: Mapping[str, Any]) -> None:
    kind = op.get('op')
    if not isinstance(kind, str):
        kind = 'unknown'
    if kind == 'add':
        path = _path(op, 'path', 'add operation failed to decode path')
        container, key = _find(
            doc, path, f'add operation does not apply: doc is missing path: "{path}"'
        )
        _add(container, key, _clone(op.get('value')), f"error in add for path: '{path}'")
    elif kind == 'remove':
        path = _path(op, 'path', 'remove operation failed to decode path')
        container, key = _find(
            doc, path, f'remove operation does not apply: doc is missing path: "{path}"'
        )
        _remove(container, key, f"error in remove for path: '{path}'")
    elif kind == 'replace':
        path = _path(op, 'path', 'replace operation failed to decode path')
        container, key = _find(
            doc, path, f'replace operation does not apply: doc is missing path: {path}'
        )
        _get(container, key, f'replace operation does not apply: doc is missing key: {path}')
        _set(container, key, _clone(op.get('value')))
    elif kind == 'move':
        source = _path(op, 'from', 'move operation failed to decode from')
        container, key = _find(
            doc, source, f'move operation does not apply: doc is missing from path: {source}'
        )
        value = _get(container, key, f"error in move for path: '{key}'")
        _remove(container, key, f"error in move for path: '{key}'")
        path = _path(op, 'path', 'move operation failed to decode path')
        # The source is already gone, so moving a value into itself finds no destination: 422.
        container, key = _find(
            doc, path, f'move operation does not apply: doc is missing destination path: {path}'
        )
        _add(container, key, value, f"error in move for path: '{path}'")
    elif kind == 'copy':
        source = _path(op, 'from', 'copy operation failed to decode from')
        container, key = _find(
            doc, source, f'copy operation does not apply: doc is missing from path: {source}'
        )
        value = _get(container, key, f"error in copy for from: '{source}'")
        path = _path(op, 'path', 'copy operation failed to decode path')
        container, key = _find(
            doc, path, f'copy operation does not apply: doc is missing destination path: {path}'
        )
        _add(container, key, _clone(value), 'error while adding value during copy')
    elif kind == 'test':
        path = _path(op, 'path', 'test operation failed to decode path')
        container, key = _find(doc, path, f'test operation does not apply: is missing path: {path}')
        actual = _get(container, key, f"error in test for path: '{path}'")
        if not _test_equal(actual, op):
            raise _OpFailed(f'testing value {path} failed: test failed')
    else:
        raise _OpFailed(f'Unexpected kind: {kind}')


def _path(op: Mapping[str, Any], field: str, failure: str) -> str:
    value = op.get(field)
    if not isinstance(value, str):
        raise _OpFailed(f'{failure}: missing value')
    return value


def _unescape(token: str) -> str:
    # RFC 6901 section 4: `~1` first, then `~0`, so that `~01` means `~1` and not `/`.
    return token.replace('~1', '/').replace('~0', '~')


def _find(doc: JsonObj, path: str, failure: str) -> tuple[dict[str, Any] | list[Any], str]:
    """The container holding the last token of `path`, and that token (evanphx findObject).

    The whole document (path "") cannot be a target: evanphx has no parent to hold it, so the
    real server answers 422. A path without its leading "/" is refused too (RFC 6901 syntax).
    """
    if not path.startswith('/'):
        raise _OpFailed(failure)
    *parents, last = path.split('/')[1:]
    container: dict[str, Any] | list[Any] = doc
    for token in parents:
        try:
            child = _get(container, _unescape(token), failure)
        except _OpFailed:
            raise _OpFailed(failure) from None
        if not isinstance(child, dict | list):
            raise _OpFailed(failure)
        container = child
    return container, _unescape(last)


def _index(token: str, failure: str) -> int:
    # evanphx parses indexes with Go's strconv.Atoi: a sign and leading zeros are accepted.
    if not _GO_ATOI.fullmatch(token):
        raise _OpFailed(f'{failure}: strconv.Atoi: parsing "{token}": invalid syntax')
    return int(token)


def _get(container: dict[str, Any] | list[Any], key: str, failure: str) -> Any:
    """The value at `key`; a missing object member reads as null (evanphx partialDoc.get)."""
    if isinstance(container, dict):
        return container.get(key)
    index = _index(key, failure)
    if index < 0 or index >= len(container):
        raise _OpFailed(
            f'{failure}: Unable to access invalid index: {index}: invalid index referenced'
        )
    return container[index]


def _set(container: dict[str, Any] | list[Any], key: str, value: Any) -> None:
    if isinstance(container, dict):
        container[key] = value
    else:
        container[int(key)] = value  # _get validated the index just before


def _add(container: dict[str, Any] | list[Any], key: str, value: Any, failure: str) -> None:
    if isinstance(container, dict):
        container[key] = value
        return
    if key == '-':
        container.append(value)
        return
    index = _index(key, f"{failure}: value was not a proper array index: '{key}'")
    size = len(container) + 1
    if index >= size or index < -size:
        raise _OpFailed(
            f'{failure}: Unable to access invalid index: {index}: invalid index referenced'
        )
    container.insert(index + size if index < 0 else index, value)


def _remove(container: dict[str, Any] | list[Any], key: str, failure: str) -> None:
    if isinstance(container, dict):
        if key not in container:
            raise _OpFailed(f'{failure}: Unable to remove nonexistent key: {key}: missing value')
        del container[key]
        return
    index = _index(key, failure)
    size = len(container)
    if index >= size or index < -size:
        raise _OpFailed(
            f'{failure}: Unable to access invalid index: {index}: invalid index referenced'
        )
    del container[index]


def _test_equal(actual: Any, op: Mapping[str, Any]) -> bool:
    if actual is None:
        # A missing member and null both pass a test against null (evanphx Patch.test).
        return 'value' in op and op['value'] is None
    if 'value' not in op:
        return False
    return _lazy_equal(actual, op['value'])


def _lazy_equal(actual: Any, expected: Any) -> bool:
    """evanphx lazyNode.equal, with the document's value on the left.

    Objects are compared only over the document's members (extra members in the patch value are
    ignored); scalars compare by their JSON text, so 1 and 1.0 differ.
    """
    if isinstance(actual, dict):
        if not isinstance(expected, dict):
            return False
        for key, value in actual.items():
            if key not in expected:
                return False
            other = expected[key]
            if value is None or other is None:
                if value is not other:
                    return False
                continue
            if not _lazy_equal(value, other):
                return False
        return True
    if isinstance(actual, list):
        if not isinstance(expected, list) or len(actual) != len(expected):
            return False
        return all(_lazy_equal(a, e) for a, e in zip(actual, expected, strict=True))
    return _go_equal(actual, expected)


# ---------------------------------------------------------------------------------------------
# Strategic merge patch, as k8s.io/apimachinery/pkg/util/strategicpatch StrategicMergeMapPatch
# does it on the server (MergeParallelList and IgnoreUnmatchedNulls both on).
#
# https://github.com/kubernetes/community/blob/master/contributors/devel/sig-api-machinery/strategic-merge-patch.md

_DIRECTIVE: Final = '$patch'
_RETAIN_KEYS: Final = '$retainKeys'
_DELETE_FROM_PRIMITIVE_LIST: Final = '$deleteFromPrimitiveList'
_SET_ELEMENT_ORDER: Final = '$setElementOrder'

# mergepatch errors that patch.go `interpretStrategicMergePatchError` answers with 400 or 422.
_BAD_PRIMITIVE_LIST: Final = 'invalid patch format of primitive list'
_BAD_RETAIN_KEYS: Final = 'invalid patch format of retainKeys'
_BAD_SET_ELEMENT_ORDER: Final = 'invalid patch format of setElementOrder list'
_NO_LIST_OF_LISTS: Final = 'lists of lists are not supported'

_OBJECT_META_MERGE_KEYS: Final[Mapping[str, str]] = {
    # ObjectMeta: `finalizers` patchStrategy=merge (a set of strings), `ownerReferences`
    # patchStrategy=merge patchMergeKey=uid (k8s.io/apimachinery/pkg/apis/meta/v1/types.go).
    'metadata.finalizers': '',
    'metadata.ownerReferences': 'uid',
}


def _pod_merge_keys() -> dict[str, str]:
    # k8s.io/api/core/v1/types.go struct tags of PodSpec, Container, EphemeralContainerCommon
    # and PodStatus; fields without a patchStrategy (tolerations, readinessGates...) replace.
    keys = {
        'spec.volumes': 'name',
        'spec.imagePullSecrets': 'name',
        'spec.hostAliases': 'ip',
        'spec.topologySpreadConstraints': 'topologyKey',
        'spec.resourceClaims': 'name',
        'spec.schedulingGates': 'name',
        'status.conditions': 'type',
        'status.podIPs': 'ip',
        'status.hostIPs': 'ip',
        'status.resourceClaimStatuses': 'name',
    }
    for containers in ('spec.containers', 'spec.initContainers', 'spec.ephemeralContainers'):
        keys[containers] = 'name'
        keys[f'{containers}.ports'] = 'containerPort'
        keys[f'{containers}.env'] = 'name'
        keys[f'{containers}.volumeMounts'] = 'mountPath'
        keys[f'{containers}.volumeDevices'] = 'devicePath'
    return keys


def _with_object_meta(extra: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType({**_OBJECT_META_MERGE_KEYS, **(extra or {})})


REPLACE_MAP: Final = '$replace'
"""In merge keys, marks an object field with `patchStrategy: replace` (e.g. the selector of a
policy/v1 PodDisruptionBudget): a patch replaces it whole instead of merging into it."""

BUILTIN_MERGE_KEYS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        # ServiceAccount.secrets: patchStrategy=merge patchMergeKey=name; imagePullSecrets has no
        # strategy on ServiceAccount (unlike PodSpec), so it replaces.
        'ServiceAccount': _with_object_meta({'secrets': 'name'}),
        'Secret': _with_object_meta(),
        'ConfigMap': _with_object_meta(),
        # rbac/v1: rules and subjects are +listType=atomic without a patch strategy: they replace.
        'Role': _with_object_meta(),
        'ClusterRole': _with_object_meta(),
        'RoleBinding': _with_object_meta(),
        'ClusterRoleBinding': _with_object_meta(),
        # NamespaceStatus.conditions merge by type; spec.finalizers is atomic.
        'Namespace': _with_object_meta({'status.conditions': 'type'}),
        'Event': _with_object_meta(),
        'Lease': _with_object_meta(),
        'Pod': _with_object_meta(_pod_merge_keys()),
    }
)
"""Merge keys of the built-in kinds the emulator serves, from their Go struct tags.

Each maps a dotted list-field path (list indexes are not part of the path) to its
`patchMergeKey`; an empty string marks a list of primitives with `patchStrategy: merge` (a set,
like `metadata.finalizers`). Lists not named here have the default strategy: replace.
"""


def apply_strategic_merge_patch(
    target: JsonObj, patch: Any, merge_keys: Mapping[str, str]
) -> JsonObj:
    """Apply a strategic merge patch to `target`.

    `merge_keys` maps dotted list-field paths to their patchMergeKey (see BUILTIN_MERGE_KEYS):
    lists named there merge (by key for lists of objects, as a set for primitives when the key
    is ''), other lists are replaced, objects merge recursively and null deletes. Directives:
    `$patch: replace|delete` on objects and list items, `$deleteFromPrimitiveList/<field>`,
    `$retainKeys` and `$setElementOrder/<field>`. Item order follows the server: items of the
    patch come in the patch's order, after server-only items that preceded them in the live list
    (so an item the server did not have comes first, as the kubectl patch task page shows).

    Values taken verbatim from the patch are stored without their null members, which is what
    decoding into the typed object does on the real server. Errors carry the server's code: 400
    for malformed directives, 422 for lists of lists, 500 (empty reason) for the errors the server
    does not classify, such as a list item without its merge key.
    """
    if patch is None:
        # `null` decodes into an empty map on the server: nothing to do.
        return _clone_object(target)
    if not isinstance(patch, dict):
        raise _bad_request(
            f'json: cannot unmarshal {_json_type(patch)} into Go value of type '
            'map[string]interface {}'
        )
    return _merge_map(_clone(target), _clone(patch), '', merge_keys)


def _child(path: str, key: str) -> str:
    return f'{path}.{key}' if path else key


def _discard_nulls(value: _J) -> _J:
    """strategicpatch discardNullValuesFromPatch: null members of objects go, at any depth."""
    if isinstance(value, dict):
        for key in [k for k, v in value.items() if v is None]:
            del value[key]
        for v in value.values():
            _discard_nulls(v)
    elif isinstance(value, list):
        for v in value:
            _discard_nulls(v)
    return value


def _remove_directives(value: Any) -> tuple[Any, bool]:
    """strategicpatch removeDirectives: objects carrying `$patch` are dropped; (value, keep)."""
    if isinstance(value, dict):
        if _DIRECTIVE in value:
            return None, False
        for key in list(value):
            value[key], keep = _remove_directives(value[key])
            if not keep:
                del value[key]
        return value, True
    if isinstance(value, list):
        kept = []
        for item in value:
            item, keep = _remove_directives(item)
            if keep:
                kept.append(item)
        return kept, True
    return value, True


def _take_from_patch(original: JsonObj, key: str, value: Any) -> None:
    """Store a patch value that has nothing to merge with (new key, or a change of type)."""
    cleaned, keep = _remove_directives(_discard_nulls(value))
    if keep:
        original[key] = cleaned
    else:
        original.pop(key, None)


def _merge_map(
    original: JsonObj | None, patch: JsonObj, path: str, merge_keys: Mapping[str, str]
) -> JsonObj:
    if _DIRECTIVE in patch:
        directive = patch.pop(_DIRECTIVE)
        if directive == 'replace':
            return _discard_nulls(patch)
        if directive == 'delete':
            return {}
        raise _unclassified(f'unknown patch type: {directive} in map at {path or "the root"}')
    if original is None:
        original = {}
    _apply_retain_keys(original, patch)
    _apply_set_element_order(original, patch, path, merge_keys)

    for key, value in list(patch.items()):
        is_delete_list = key.startswith(_DELETE_FROM_PRIMITIVE_LIST)
        if is_delete_list:
            key = _directive_field(key, _DELETE_FROM_PRIMITIVE_LIST, _BAD_PRIMITIVE_LIST)
        if value is None:
            original.pop(key, None)
            continue
        if key not in original:
            # A deletion list for a field the object lacks is a no-op (kubernetes#105146).
            if not is_delete_list:
                _take_from_patch(original, key, value)
            continue
        current = original[key]
        if type(current) is not type(value):
            if not is_delete_list:
                _take_from_patch(original, key, value)
            continue
        field = _child(path, key)
        if isinstance(current, dict) and merge_keys.get(field) == REPLACE_MAP:
            original[key] = _merge_map(None, value, field, merge_keys)
        elif isinstance(current, dict):
            original[key] = _merge_map(current, value, field, merge_keys)
        elif isinstance(current, list):
            original[key] = _merge_list_field(current, value, field, merge_keys, is_delete_list)
        else:
            original[key] = value
    return original


def _directive_field(key: str, prefix: str, error: str) -> str:
    head, sep, field = key.partition('/')
    if not sep or head != prefix:
        raise _bad_request(error)
    return field


def _apply_retain_keys(original: JsonObj, patch: JsonObj) -> None:
    if _RETAIN_KEYS not in patch:
        return
    retain = patch.pop(_RETAIN_KEYS)
    if not isinstance(retain, list):
        raise _bad_request(_BAD_RETAIN_KEYS)
    kept = {k for k in retain if isinstance(k, str)}
    for key, value in patch.items():
        if value is None or key.startswith((_DELETE_FROM_PRIMITIVE_LIST, _SET_ELEMENT_ORDER)):
            continue
        if key not in kept:
            raise _bad_request(_BAD_RETAIN_KEYS)
    for key in [k for k in original if k not in kept]:
        del original[key]


def _strategy(path: str, merge_keys: Mapping[str, str]) -> tuple[bool, str]:
    """(merges, merge key) of the list field at `path`; unknown lists replace."""
    if path in merge_keys:
        return True, merge_keys[path]
    return False, ''


def _expect_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise _unclassified(f'expected a []interface {{}}, but received a {_json_type(value)}')
    return value


def _apply_set_element_order(
    original: JsonObj, patch: JsonObj, path: str, merge_keys: Mapping[str, str]
) -> None:
    """strategicpatch mergePatchIntoOriginal: merge the lists named by `$setElementOrder/<f>`
    and order them by that list (design: preserve-order-in-strategic-merge-patch.md)."""
    for directive in [k for k in patch if k.startswith(_SET_ELEMENT_ORDER)]:
        order = _expect_list(patch.pop(directive))
        key = _directive_field(directive, _SET_ELEMENT_ORDER, _BAD_SET_ELEMENT_ORDER)
        found_original, found_patch = key in original, key in patch
        original_list = _expect_list(original[key]) if found_original else []
        patch_list = _expect_list(patch[key]) if found_patch else []
        field = _child(path, key)
        _, merge_key = _strategy(field, merge_keys)
        _check_order(patch_list, order, merge_key)
        if found_original and found_patch:
            merged = _merge_list_field(original_list, patch_list, field, merge_keys, False)
        elif found_original:
            merged = original_list
        elif found_patch:
            merged, _ = _remove_directives(patch_list)
        else:
            continue
        if merge_key:
            patch_items, server_only = _partition_maps(merged, order, merge_key)
        else:
            patch_items, server_only = _partition_primitives(merged, order)
        kind = _element_kind(original_list, patch_list)
        original[key] = _normalize_order(
            patch_items, server_only, order, original_list, merge_key, kind
        )
        patch.pop(key, None)


def _check_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    """The patch list must follow the `$setElementOrder` list (deletions aside)."""
    if not order or not patch_list:
        return
    items = _split_deletions(patch_list)[0] if merge_key else patch_list
    i = j = 0
    while i < len(items) and j < len(order):
        if isinstance(items[i], dict) and _DIRECTIVE in items[i]:
            i += 1
            continue
        if _merge_key_equal(items[i], order[j], merge_key):
            i += 1
        j += 1
    if i < len(items) and j >= len(order):
        raise _unclassified(f'the order in the patch list does not match {_SET_ELEMENT_ORDER} list')


def _merge_key_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _go_equal(left, right)
    return _go_equal(_key_of(left, merge_key), _key_of(right, merge_key))


def _key_of(item: Any, merge_key: str) -> Any:
    if not isinstance(item, dict):
        raise _unclassified(
            f'expected a map[string]interface {{}}, but received a {_json_type(item)}'
        )
    if merge_key not in item:
        raise _unclassified(f'map does not contain declared merge key: {merge_key}')
    return item[merge_key]


def _element_kind(*lists: list[Any]) -> str:
    """strategicpatch sliceElementType: all items share one JSON type, which is not a list."""
    kind = ''
    for items in lists:
        for item in items:
            if item is None:
                raise _unclassified('list element types are not identical: null')
            this = 'object' if isinstance(item, dict) else type(item).__name__
            if not kind:
                if isinstance(item, list):
                    raise _unprocessable(_NO_LIST_OF_LISTS)
                kind = this
            elif this != kind:
                raise _unclassified('list element types are not identical')
    if not kind:
        raise _unclassified('no elements in any of the given slices')
    return kind


def _merge_list_field(
    original: list[Any],
    patch: list[Any],
    path: str,
    merge_keys: Mapping[str, str],
    is_delete_list: bool,
) -> list[Any]:
    merges, merge_key = _strategy(path, merge_keys)
    # A deletion list deletes whatever the field's strategy is (kubernetes#110472).
    if merges or is_delete_list:
        return _merge_list(original, patch, path, merge_key, merge_keys, is_delete_list)
    return _discard_nulls(patch)


def _merge_list(
    original: list[Any],
    patch: list[Any],
    path: str,
    merge_key: str,
    merge_keys: Mapping[str, str],
    is_delete_list: bool,
) -> list[Any]:
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    verbatim: set[int] = set()
    if kind != 'object':
        if is_delete_list:
            removed = {(type(v), v) for v in patch}
            return [v for v in original if (type(v), v) not in removed]
        merged = _dedupe([*original, *patch])
    else:
        if not merge_key:
            raise _unclassified(f'cannot merge lists without merge key for {path}')
        # `live` is the caller's list, edited in place the way Go edits the shared backing
        # array; the `$setElementOrder` pass reads it afterwards (see _apply_list_directives).
        live = original
        original, patch, replaced = _apply_list_directives(live, patch, merge_key)
        if replaced:
            verbatim = {id(item) for item in original}
        merged = list(original)
        spare = len(live) - len(merged)  # slots freed by deletions, still in the backing array
        for item in patch:
            value = _key_of(item, merge_key)
            at = _find_by_key(merged, merge_key, value)
            if at is None:
                if spare > 0 and not replaced:
                    # Go's append writes into the freed slot of the array `live` still shows.
                    live[len(live) - spare] = item
                    spare -= 1
                else:
                    spare = 0  # append reallocated: later appends no longer reach `live`
                merged.append(item)
                verbatim.add(id(item))
            else:
                merged[at] = _merge_map(merged[at], item, path, merge_keys)
    if merge_key:
        patch_items, server_only = _partition_maps(merged, patch, merge_key)
    else:
        patch_items, server_only = _partition_primitives(merged, patch)
    ordered = _normalize_order(patch_items, server_only, patch, original, merge_key, kind)
    # Items copied from the patch keep their directives in Go; decoding into the typed object
    # drops their null members, which is what the emulator stores.
    return [_discard_nulls(item) if id(item) in verbatim else item for item in ordered]


def _dedupe(items: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for item in items:
        if not any(_go_equal(item, s) for s in seen):
            seen.append(item)
    return seen


def _split_deletions(items: list[Any]) -> tuple[list[Any], list[Any]]:
    keep: list[Any] = []
    delete: list[Any] = []
    for item in items:
        if not isinstance(item, dict):
            raise _unclassified(
                f'expected a map[string]interface {{}}, but received a {_json_type(item)}'
            )
        (delete if item.get(_DIRECTIVE) == 'delete' else keep).append(item)
    return keep, delete


def _apply_list_directives(
    live: list[Any], patch: list[Any], merge_key: str
) -> tuple[list[Any], list[Any], bool]:
    """mergeSliceWithSpecialElements: `$patch: delete` items remove by key, `replace` wins.

    Returns (list to merge into, patch items without directives, replaced). Go deletes with
    `append(s[:i], s[i+1:]...)`, which shifts the caller's backing array left in place and
    leaves its last slot stale; `live` is edited the same way because the caller's
    `$setElementOrder` pass orders the result by that array (it decides, for instance, that
    a server-only item stays first in the kubernetes patch_test case "add map and delete map
    from merging list with conflict").
    """
    plain: list[Any] = []
    replace = False
    size = len(live)
    for item in patch:
        if _DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[_DIRECTIVE]
        if directive == 'delete':
            if merge_key not in item:
                raise _unclassified(f'map does not contain declared merge key: {merge_key}')
            value = item[merge_key]
            while (at := _find_by_key(live[:size], merge_key, value)) is not None:
                live[at : size - 1] = live[at + 1 : size]
                size -= 1
        elif directive == 'replace':
            replace = True
        elif directive == 'merge':
            raise _unclassified('merging lists cannot yet be specified in the patch')
        else:
            raise _unclassified(f'unknown patch type: {directive} in a list item')
    if replace:
        return plain, [], True
    return live[:size], plain, False


def _find_by_key(items: list[Any], merge_key: str, value: Any) -> int | None:
    for at, item in enumerate(items):
        if not isinstance(item, dict):
            raise _unclassified(f'value for key {at} is not a map')
        if merge_key in item and _go_equal(item[merge_key], value):
            return at
    return None


def _partition_primitives(items: list[Any], by: list[Any]) -> tuple[list[Any], list[Any]]:
    wanted = [(type(v), v) for v in by if not isinstance(v, dict | list)]
    in_patch = [v for v in items if (type(v), v) in wanted]
    server_only = [v for v in items if (type(v), v) not in wanted]
    return in_patch, server_only


def _partition_maps(items: list[Any], by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    in_patch: list[Any] = []
    server_only: list[Any] = []
    for item in items:
        value = _key_of(item, merge_key)
        (in_patch if _find_by_key(by, merge_key, value) is not None else server_only).append(item)
    return in_patch, server_only


def _position(order: list[Any], item: Any, merge_key: str, kind: str) -> int:
    """strategicpatch index(): where `item` is in `order` (by merge key for objects), or -1."""
    for at, other in enumerate(order):
        if kind == 'object':
            mine = item.get(merge_key) if isinstance(item, dict) else None
            theirs = other.get(merge_key) if isinstance(other, dict) else None
        else:
            mine, theirs = item, other
        if _go_equal(mine, theirs):
            return at
    return -1


def _sort_by(items: list[Any], order: list[Any], merge_key: str, kind: str) -> list[Any]:
    """normalizeSliceOrder: sort `items` by their position in `order` (stable)."""
    deletions: list[Any] = []
    if kind == 'object':
        for item in [*items, *order]:
            _key_of(item, merge_key)
        items, deletions = _split_deletions(items)

    def rank(item: Any) -> int:
        # Every caller sorts items that are in `order`; an absent one would go last.
        at = _position(order, item, merge_key, kind)
        return at if at >= 0 else len(order)

    return sorted(items, key=rank) + deletions


def _normalize_order(
    patch_items: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    merge_key: str,
    kind: str,
) -> list[Any]:
    """normalizeElementOrder + mergeSortedSlice: interleave server-only items and patch items.

    A server-only item goes before a patch item only when both are in the live list and it was
    before it there; otherwise the patch item goes first.
    """
    right = _sort_by(patch_items, patch_order, merge_key, kind)
    left = _sort_by(server_only, server_order, merge_key, kind)
    result: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if j >= len(right):
            result.append(left[i])
            i += 1
        elif i >= len(left):
            result.append(right[j])
            j += 1
        else:
            li = _position(server_order, left[i], merge_key, kind)
            ri = _position(server_order, right[j], merge_key, kind)
            if li >= 0 and ri >= 0 and li < ri:
                result.append(left[i])
                i += 1
            else:
                result.append(right[j])
                j += 1
    return result

"""PATCH bodies change objects exactly as on a real API server, and fail with its status codes.

Contract: https://kubernetes.io/docs/reference/using-api/api-concepts/#patch-and-apply ; the
server applies merge and JSON patches with evanphx/json-patch v4 and strategic merge patches with
k8s.io/apimachinery/pkg/util/strategicpatch, and maps their errors to HTTP codes in
k8s.io/apiserver/pkg/endpoints/handlers/patch.go. Each test names the document it pins.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenure_devtools.kubeapi.patch import (
    BUILTIN_MERGE_KEYS,
    MAX_JSON_PATCH_OPERATIONS,
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)

GENERIC_422 = 'the server rejected our request due to an error in our request'

# JSON documents with few distinct keys, so that generated patches hit existing members.
keys = st.sampled_from(['a', 'b', 'c', 'labels', 'spec'])
scalars = st.one_of(st.booleans(), st.integers(-5, 5), st.text(max_size=3))
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(keys, json_values, max_size=4)
# Patches also carry nulls, which delete. Not inside lists: see the null-in-list cases below.
patch_values = st.recursive(
    scalars | st.none(),
    lambda inner: st.lists(json_values, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)
json_patches = st.dictionaries(keys, patch_values, max_size=4)
# Nested maps and scalars only: where strategic and JSON merge patches must agree.
map_objects = st.dictionaries(
    keys,
    st.recursive(scalars, lambda inner: st.dictionaries(keys, inner, max_size=3), max_leaves=8),
    max_size=4,
)
map_patches = st.dictionaries(
    keys,
    st.recursive(
        scalars | st.none(), lambda inner: st.dictionaries(keys, inner, max_size=3), max_leaves=8
    ),
    max_size=4,
)


# --- JSON merge patch --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('target', 'patch', 'result'),
    [
        pytest.param({'a': 'b'}, {'a': 'c'}, {'a': 'c'}, id='member-replaced'),
        pytest.param({'a': 'b'}, {'b': 'c'}, {'a': 'b', 'b': 'c'}, id='member-added'),
        pytest.param({'a': 'b'}, {'a': None}, {}, id='null-deletes'),
        pytest.param({'a': 'b', 'b': 'c'}, {'a': None}, {'b': 'c'}, id='null-deletes-only-it'),
        pytest.param({'a': ['b']}, {'a': 'c'}, {'a': 'c'}, id='list-replaced-by-scalar'),
        pytest.param({'a': 'c'}, {'a': ['b']}, {'a': ['b']}, id='scalar-replaced-by-list'),
        pytest.param(
            {'a': {'b': 'c'}}, {'a': {'b': 'd', 'c': None}}, {'a': {'b': 'd'}}, id='objects-merge'
        ),
        pytest.param({'a': [{'b': 'c'}]}, {'a': [1]}, {'a': [1]}, id='lists-are-replaced'),
        pytest.param({'e': None}, {'a': 1}, {'e': None, 'a': 1}, id='target-nulls-kept'),
        pytest.param({}, {'a': {'bb': {'ccc': None}}}, {'a': {'bb': {}}}, id='new-object-pruned'),
        pytest.param(
            {'a': {'b': 1}},
            {'a': [{'c': None}]},
            {'a': [{'c': None}]},
            id='list-over-object-verbatim',
        ),
        pytest.param({}, {'a': [{'c': None}]}, {'a': [{}]}, id='new-list-items-pruned'),
        pytest.param(
            {'metadata': {'finalizers': ['a', 'b'], 'labels': {'x': '1'}}},
            {'metadata': {'finalizers': ['c'], 'labels': {'y': '2'}}},
            {'metadata': {'finalizers': ['c'], 'labels': {'x': '1', 'y': '2'}}},
            id='finalizers-replaced-labels-merged',
        ),
    ],
)
def test_merge_patch_follows_rfc_7386(target: Any, patch: Any, result: Any) -> None:
    """RFC 7386 section 3 and the examples of its appendix A (object documents only). Nulls in
    the items of a list are pruned when the list lands on a missing or non-object member, and
    kept when it replaces an object: evanphx/json-patch v4 merge.go `merge` returns a non-object
    patch value verbatim, and the server uses that library."""
    assert apply_merge_patch(target, patch) == result


@pytest.mark.parametrize(
    ('patch', 'status'),
    [
        pytest.param(None, 400, id='null-body'),
        pytest.param('text', 400, id='string-body'),
        pytest.param(3, 400, id='number-body'),
        pytest.param([{'a': 1}], 422, id='array-body-cannot-become-an-object'),
    ],
)
def test_merge_patch_that_is_not_an_object_is_refused(patch: Any, status: int) -> None:
    """patch.go: evanphx ErrBadJSONPatch is a 400; an array replaces the document, which then
    fails to decode into the object: 422 Invalid."""
    with pytest.raises(PatchError) as raised:
        apply_merge_patch({'a': 1}, patch)
    assert raised.value.status == status
    assert raised.value.reason == ('BadRequest' if status == 400 else 'Invalid')


@given(json_objects)
def test_empty_merge_patch_changes_nothing(target: dict[str, Any]) -> None:
    """RFC 7386: a patch with no members leaves the target as it is."""
    assert apply_merge_patch(target, {}) == target


@given(json_objects, json_patches)
def test_merge_patch_is_idempotent_and_leaves_its_inputs_alone(
    target: dict[str, Any], patch: dict[str, Any]
) -> None:
    """RFC 7386 section 1: applying a merge patch twice gives the result of applying it once
    (for patches without nulls inside lists, which the server's library prunes unevenly)."""
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    once = apply_merge_patch(target, patch)
    assert apply_merge_patch(once, patch) == once
    assert (target, patch) == (target_before, patch_before)


# --- JSON patch --------------------------------------------------------------------------------

DOC = {'metadata': {'labels': {'a/b': 'x', 'm~n': 'y'}}, 'list': [1, 2, 3], 'n': 1}


@pytest.mark.parametrize(
    ('ops', 'expected'),
    [
        pytest.param(
            [{'op': 'add', 'path': '/metadata/labels/new', 'value': 'v'}],
            {**DOC, 'metadata': {'labels': {'a/b': 'x', 'm~n': 'y', 'new': 'v'}}},
            id='add-member',
        ),
        pytest.param(
            [{'op': 'add', 'path': '/list/1', 'value': 9}],
            {**DOC, 'list': [1, 9, 2, 3]},
            id='add-inserts-at-index',
        ),
        pytest.param(
            [{'op': 'add', 'path': '/list/-', 'value': 9}],
            {**DOC, 'list': [1, 2, 3, 9]},
            id='dash-appends',
        ),
        pytest.param(
            [{'op': 'remove', 'path': '/metadata/labels/a~1b'}],
            {**DOC, 'metadata': {'labels': {'m~n': 'y'}}},
            id='tilde-1-is-a-slash',
        ),
        pytest.param(
            [{'op': 'replace', 'path': '/metadata/labels/m~0n', 'value': 'z'}],
            {**DOC, 'metadata': {'labels': {'a/b': 'x', 'm~n': 'z'}}},
            id='tilde-0-is-a-tilde',
        ),
        pytest.param(
            [{'op': 'remove', 'path': '/list/0'}], {**DOC, 'list': [2, 3]}, id='remove-item'
        ),
        pytest.param(
            [{'op': 'move', 'from': '/n', 'path': '/m'}],
            {'metadata': DOC['metadata'], 'list': [1, 2, 3], 'm': 1},
            id='move',
        ),
        pytest.param(
            [{'op': 'copy', 'from': '/list', 'path': '/copy'}],
            {**DOC, 'copy': [1, 2, 3]},
            id='copy',
        ),
        pytest.param(
            [{'op': 'test', 'path': '/n', 'value': 1}, {'op': 'replace', 'path': '/n', 'value': 2}],
            {**DOC, 'n': 2},
            id='test-guards-a-replace',
        ),
        pytest.param(None, DOC, id='null-body-is-empty'),
    ],
)
def test_json_patch_operations(ops: Any, expected: dict[str, Any]) -> None:
    """RFC 6902 section 4 (operations) and RFC 6901 section 4 (`~1`, `~0` and `-`)."""
    before = copy.deepcopy(DOC)
    assert apply_json_patch(DOC, ops) == expected
    assert before == DOC


@pytest.mark.parametrize(
    ('ops', 'expected'),
    [
        pytest.param(
            [{'op': 'replace', 'path': '/absent', 'value': 1}],
            {'n': 1, 'absent': 1},
            id='replace-of-missing-member-adds-it',
        ),
        pytest.param(
            [{'op': 'add', 'path': '/x'}], {'n': 1, 'x': None}, id='missing-value-is-null'
        ),
        pytest.param(
            [{'op': 'copy', 'from': '/absent', 'path': '/x'}],
            {'n': 1, 'x': None},
            id='copy-of-missing-member-copies-null',
        ),
        pytest.param(
            [{'op': 'test', 'path': '/absent', 'value': None}], {'n': 1}, id='missing-tests-as-null'
        ),
        pytest.param(
            [{'op': 'test', 'path': '', 'value': {'n': 1, 'extra': 2}}],
            None,
            id='root-is-not-addressable',
        ),
    ],
)
def test_json_patch_quirks_of_the_api_server_library(ops: Any, expected: Any) -> None:
    """evanphx/json-patch v4, which patch.go uses, departs from RFC 6902 here: replace of a missing
    member adds it (evanphx/json-patch#119, #204, fixed only in v5), a missing value is null, and
    the whole document (path "") has no parent: 422."""
    if expected is None:
        with pytest.raises(PatchError) as raised:
            apply_json_patch({'n': 1}, ops)
        assert raised.value.status == 422
    else:
        assert apply_json_patch({'n': 1}, ops) == expected


@pytest.mark.parametrize(
    ('document', 'value', 'passes'),
    [
        pytest.param({'x': 1}, 1, True, id='equal-numbers'),
        pytest.param({'x': 1}, 1.0, False, id='1-and-1.0-differ-as-json-text'),
        pytest.param({'x': True}, 1, False, id='true-is-not-1'),
        pytest.param({'x': {'a': 1}}, {'a': 1, 'b': 2}, True, id='object-compared-by-doc-members'),
        pytest.param({'x': {'a': 1, 'b': 2}}, {'a': 1}, False, id='object-missing-a-doc-member'),
        pytest.param({'x': [1, 2]}, [1, 2], True, id='equal-arrays'),
        pytest.param({'x': [1, 2]}, [2, 1], False, id='array-order-matters'),
    ],
)
def test_json_patch_test_operation_compares_like_the_server(
    document: dict[str, Any], value: Any, passes: bool
) -> None:
    """evanphx/json-patch v4 lazyNode.equal: scalars by JSON text, objects over the document's
    members only (RFC 6902 section 4.6 would also fail extra members)."""
    ops = [{'op': 'test', 'path': '/x', 'value': value}]
    if passes:
        assert apply_json_patch(document, ops) == document
    else:
        with pytest.raises(PatchError) as raised:
            apply_json_patch(document, ops)
        assert (raised.value.status, raised.value.message) == (422, GENERIC_422)


@pytest.mark.parametrize(
    ('ops', 'detail'),
    [
        pytest.param([{'op': 'test', 'path': '/n', 'value': 2}], 'test failed', id='failed-test'),
        pytest.param([{'op': 'remove', 'path': '/absent'}], 'nonexistent key', id='remove-missing'),
        pytest.param(
            [{'op': 'add', 'path': '/no/such/parent', 'value': 1}],
            'missing path',
            id='add-under-missing-parent',
        ),
        pytest.param(
            [{'op': 'add', 'path': '/list/9', 'value': 1}], 'invalid index', id='index-past-end'
        ),
        pytest.param([{'op': 'add', 'path': '/list/x', 'value': 1}], 'array index', id='bad-index'),
        pytest.param(
            [{'op': 'frobnicate', 'path': '/n'}], 'Unexpected kind: frobnicate', id='unknown-op'
        ),
        pytest.param([{'path': '/n'}], 'Unexpected kind: unknown', id='missing-op'),
        pytest.param([None], 'Unexpected kind: unknown', id='null-operation'),
        pytest.param([{'op': 'remove'}], 'missing value', id='missing-path'),
        pytest.param(
            [{'op': 'move', 'from': '/list', 'path': '/list/0'}],
            'destination',
            id='move-into-itself',
        ),
        pytest.param(
            [{'op': 'add', 'path': 'n', 'value': 1}], 'missing path', id='path-without-slash'
        ),
    ],
)
def test_json_patch_that_does_not_apply_is_422(ops: list[Any], detail: str) -> None:
    """patch.go answers any Apply error with NewGenericServerResponse(422): reason Invalid and a
    fixed message; the library's reason is kept for the emulator's logs."""
    target = {'n': 1, 'list': [1, 2]}
    with pytest.raises(PatchError) as raised:
        apply_json_patch(target, ops)
    error = raised.value
    assert (error.status, error.reason, error.message) == (422, 'Invalid', GENERIC_422)
    assert detail in error.detail
    assert target == {'n': 1, 'list': [1, 2]}


def test_failing_operation_discards_the_earlier_ones() -> None:
    """RFC 6902 section 5: a patch is applied atomically; the server stores nothing."""
    target = {'n': 1}
    with pytest.raises(PatchError):
        apply_json_patch(
            target,
            [{'op': 'add', 'path': '/x', 'value': 1}, {'op': 'test', 'path': '/n', 'value': 2}],
        )
    assert target == {'n': 1}


def test_negative_indexes_count_from_the_end() -> None:
    """evanphx/json-patch v4 SupportNegativeIndices (on by default): add and remove accept -1."""
    assert apply_json_patch({'l': [1, 2, 3]}, [{'op': 'remove', 'path': '/l/-1'}]) == {'l': [1, 2]}
    assert apply_json_patch({'l': [1, 2]}, [{'op': 'add', 'path': '/l/-1', 'value': 9}]) == {
        'l': [1, 2, 9]
    }


@pytest.mark.parametrize(
    ('body', 'status'),
    [
        pytest.param({'op': 'add'}, 400, id='object-instead-of-list'),
        pytest.param('add', 400, id='string-instead-of-list'),
        pytest.param([1], 400, id='operation-that-is-not-an-object'),
        pytest.param(
            [{'op': 'test', 'path': '/n', 'value': 1}] * (MAX_JSON_PATCH_OPERATIONS + 1),
            413,
            id='more-than-10000-operations',
        ),
    ],
)
def test_malformed_json_patch_is_refused_before_applying(body: Any, status: int) -> None:
    """patch.go: jsonpatch.DecodePatch errors are 400 BadRequest; more than
    maxJSONPatchOperations (10000) is 413 RequestEntityTooLarge."""
    with pytest.raises(PatchError) as raised:
        apply_json_patch({'n': 1}, body)
    assert raised.value.status == status


@given(json_objects, json_values)
def test_adding_then_removing_a_member_round_trips(target: dict[str, Any], value: Any) -> None:
    """RFC 6902 sections 4.1 and 4.2: remove undoes add of a new member."""
    ops = [
        {'op': 'add', 'path': '/fresh~1key', 'value': value},
        {'op': 'remove', 'path': '/fresh~1key'},
    ]
    assert apply_json_patch(target, ops) == target


@given(json_objects)
def test_json_patch_test_of_each_member_passes(target: dict[str, Any]) -> None:
    """RFC 6902 section 4.6: a document tests equal to its own members."""
    ops = [{'op': 'test', 'path': f'/{k}', 'value': v} for k, v in target.items()]
    assert apply_json_patch(target, ops) == target


# --- Strategic merge patch ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ('kind', 'target', 'patch', 'result'),
    [
        pytest.param(
            'ServiceAccount',
            {'secrets': [{'name': 'a'}], 'imagePullSecrets': [{'name': 'p'}]},
            {'secrets': [{'name': 'b'}], 'imagePullSecrets': [{'name': 'q'}]},
            {'secrets': [{'name': 'b'}, {'name': 'a'}], 'imagePullSecrets': [{'name': 'q'}]},
            id='serviceaccount-secrets-merge-by-name-pull-secrets-replace',
        ),
        pytest.param(
            'RoleBinding',
            {'subjects': [{'kind': 'User', 'name': 'alice'}]},
            {'subjects': [{'kind': 'User', 'name': 'bob'}]},
            {'subjects': [{'kind': 'User', 'name': 'bob'}]},
            id='rolebinding-subjects-are-atomic',
        ),
        pytest.param(
            'Role',
            {'rules': [{'verbs': ['get']}]},
            {'rules': [{'verbs': ['list']}]},
            {'rules': [{'verbs': ['list']}]},
            id='role-rules-are-atomic',
        ),
        pytest.param(
            'Secret',
            {'metadata': {'finalizers': ['a', 'b']}},
            {'metadata': {'finalizers': ['b', 'c']}},
            {'metadata': {'finalizers': ['a', 'b', 'c']}},
            id='finalizers-are-a-set',
        ),
        pytest.param(
            'ConfigMap',
            {'metadata': {'finalizers': ['a', 'b']}},
            {'metadata': {'finalizers': ['c']}},
            {'metadata': {'finalizers': ['c', 'a', 'b']}},
            id='new-finalizer-goes-first',
        ),
        pytest.param(
            'ConfigMap',
            {'metadata': {'finalizers': ['a', 'b', 'c']}},
            {'metadata': {'$deleteFromPrimitiveList/finalizers': ['b']}},
            {'metadata': {'finalizers': ['a', 'c']}},
            id='delete-from-primitive-list',
        ),
        pytest.param(
            'ConfigMap',
            {'metadata': {'name': 'x'}},
            {'metadata': {'$deleteFromPrimitiveList/finalizers': ['b']}},
            {'metadata': {'name': 'x'}},
            id='delete-from-absent-list-is-a-no-op',
        ),
        pytest.param(
            'Namespace',
            {'spec': {'finalizers': ['kubernetes', 'example.com/x']}},
            {'spec': {'$deleteFromPrimitiveList/finalizers': ['example.com/x']}},
            {'spec': {'finalizers': ['kubernetes']}},
            id='delete-list-applies-to-an-atomic-list-too',
        ),
        pytest.param(
            'Secret',
            {
                'metadata': {
                    'ownerReferences': [{'uid': '1', 'name': 'a'}, {'uid': '2', 'name': 'b'}]
                }
            },
            {'metadata': {'ownerReferences': [{'uid': '2', 'name': 'renamed'}]}},
            {
                'metadata': {
                    'ownerReferences': [{'uid': '1', 'name': 'a'}, {'uid': '2', 'name': 'renamed'}]
                }
            },
            id='owner-references-merge-by-uid',
        ),
        pytest.param(
            'Secret',
            {'metadata': {'labels': {'a': '1', 'b': '2'}}, 'data': {'k': 'dg=='}},
            {'metadata': {'labels': {'a': None, 'c': '3'}}},
            {'metadata': {'labels': {'b': '2', 'c': '3'}}, 'data': {'k': 'dg=='}},
            id='maps-merge-and-null-deletes',
        ),
        pytest.param(
            'Pod',
            {'spec': {'containers': [{'name': 'patch-demo-ctr', 'image': 'nginx'}]}},
            {'spec': {'containers': [{'name': 'patch-demo-ctr-2', 'image': 'redis'}]}},
            {
                'spec': {
                    'containers': [
                        {'name': 'patch-demo-ctr-2', 'image': 'redis'},
                        {'name': 'patch-demo-ctr', 'image': 'nginx'},
                    ]
                }
            },
            id='kubectl-patch-task-page-adds-container-first',
        ),
        pytest.param(
            'Pod',
            {'spec': {'containers': [{'name': 'c', 'env': [{'name': 'A', 'value': '1'}]}]}},
            {'spec': {'containers': [{'name': 'c', 'env': [{'name': 'A', 'value': '2'}]}]}},
            {'spec': {'containers': [{'name': 'c', 'env': [{'name': 'A', 'value': '2'}]}]}},
            id='nested-list-merges-by-its-own-key',
        ),
        pytest.param(
            'Pod',
            {'spec': {'tolerations': [{'key': 'a'}]}},
            {'spec': {'tolerations': [{'key': 'b'}]}},
            {'spec': {'tolerations': [{'key': 'b'}]}},
            id='tolerations-replace',
        ),
    ],
)
def test_strategic_merge_patch_of_builtin_kinds(
    kind: str, target: dict[str, Any], patch: dict[str, Any], result: dict[str, Any]
) -> None:
    """Strategic merge patch doc (sig-api-machinery/strategic-merge-patch.md), the patch strategies
    of the k8s.io/api and apimachinery struct tags, kubernetes#105146 (deletion list on an absent
    field) and #110472 (deletion list on a replace field), and the kubectl patch task page
    (https://kubernetes.io/docs/tasks/manage-kubernetes-objects/update-api-object-kubectl-patch/),
    whose patched Deployment lists the added container before the existing one."""
    assert apply_strategic_merge_patch(target, patch, BUILTIN_MERGE_KEYS[kind]) == result


KEYED = {'items': 'name', 'items.items': 'name', 'tags': ''}


@pytest.mark.parametrize(
    ('target', 'patch', 'result'),
    [
        pytest.param(
            {'items': [{'name': 'a'}, {'name': 'b'}]},
            {'items': [{'name': 'a', '$patch': 'delete'}]},
            {'items': [{'name': 'b'}]},
            id='delete-item-by-key',
        ),
        pytest.param(
            {'items': [{'name': 'a'}, {'name': 'b'}]},
            {'items': [{'name': 'c'}, {'$patch': 'replace'}]},
            {'items': [{'name': 'c'}]},
            id='replace-whole-list',
        ),
        pytest.param(
            {'spec': {'a': 1, 'b': 2}},
            {'spec': {'$patch': 'replace', 'c': 3}},
            {'spec': {'c': 3}},
            id='replace-whole-map',
        ),
        pytest.param(
            {'spec': {'a': 1}},
            {'spec': {'$patch': 'delete'}},
            {'spec': {}},
            id='delete-map-content',
        ),
        pytest.param(
            {'spec': {'a': 1, 'b': 2, 'c': 3}},
            {'spec': {'$retainKeys': ['a', 'b'], 'b': 20}},
            {'spec': {'a': 1, 'b': 20}},
            id='retain-keys-clears-the-others',
        ),
        pytest.param(
            {'items': [{'name': 'b'}, {'name': 'c'}, {'name': 'a'}]},
            {'items': [{'name': 'a', 'v': 1}, {'name': 'b', 'v': 1}, {'name': 'd'}]},
            {'items': [{'name': 'c'}, {'name': 'a', 'v': 1}, {'name': 'b', 'v': 1}, {'name': 'd'}]},
            id='patch-order-respected-server-only-first',
        ),
        pytest.param(
            {'tags': ['x', 'y', 'z']},
            {'$setElementOrder/tags': ['x', 'y', 'w'], 'tags': ['w']},
            {'tags': ['x', 'y', 'w', 'z']},
            id='set-element-order-of-primitives',
        ),
        pytest.param(
            {'items': [{'name': 'a', 'o': 1}, {'name': 'd', 'o': 4}]},
            {
                '$setElementOrder/items': [{'name': 'b'}, {'name': 'c'}],
                'items': [{'name': 'b'}, {'name': 'c'}, {'name': 'a', '$patch': 'delete'}],
            },
            {'items': [{'name': 'd', 'o': 4}, {'name': 'b'}, {'name': 'c'}]},
            id='set-element-order-with-deletion',
        ),
        pytest.param(
            {'items': [{'name': 'a', 'items': [{'name': 'x', 'v': 1}]}]},
            {'items': [{'name': 'a', 'items': [{'name': 'x', 'v': None}]}]},
            {'items': [{'name': 'a', 'items': [{'name': 'x'}]}]},
            id='null-deletes-inside-keyed-item',
        ),
        pytest.param(
            {},
            {
                'spec': {
                    'a': None,
                    'b': {'c': None, 'd': 1},
                    'e': [{'$patch': 'delete', 'name': 'z'}],
                }
            },
            {'spec': {'b': {'d': 1}, 'e': []}},
            id='new-value-loses-nulls-and-directives',
        ),
    ],
)
def test_strategic_merge_patch_directives(
    target: dict[str, Any], patch: dict[str, Any], result: dict[str, Any]
) -> None:
    """Directives of the strategic merge patch doc ($patch, $retainKeys, $setElementOrder) and the
    ordering of the preserve-order design (design-proposals-archive/cli/
    preserve-order-in-strategic-merge-patch.md), as strategicpatch implements them: the
    set-element-order cases behave like the upstream patch_test.go cases "retainKeys map adds an
    item in nested merging int list" and "add map and delete map from merging list with
    conflict"."""
    assert apply_strategic_merge_patch(target, patch, KEYED) == result


@pytest.mark.parametrize(
    ('target', 'patch', 'status'),
    [
        pytest.param(
            {'items': [{'name': 'a'}]}, {'items': [{'value': 1}]}, 500, id='item-without-merge-key'
        ),
        pytest.param(
            {'items': [{'name': 'a'}]},
            {'items': [{'$patch': 'delete'}]},
            500,
            id='delete-without-key',
        ),
        pytest.param(
            {'items': [{'name': 'a'}]},
            {'items': [{'$patch': 'merge'}]},
            500,
            id='merge-directive-in-list',
        ),
        pytest.param(
            {'spec': {}}, {'spec': {'$patch': 'explode'}}, 500, id='unknown-map-directive'
        ),
        pytest.param({'tags': [['a']]}, {'tags': [['b']]}, 422, id='list-of-lists'),
        pytest.param(
            {'spec': {'a': 1}}, {'spec': {'$retainKeys': 'a'}}, 400, id='retain-keys-not-a-list'
        ),
        pytest.param(
            {'spec': {'a': 1}},
            {'spec': {'$retainKeys': ['a'], 'b': 2}},
            400,
            id='patched-key-not-retained',
        ),
        pytest.param(
            {'tags': ['a']},
            {'$deleteFromPrimitiveList': ['a']},
            400,
            id='delete-list-without-field',
        ),
        pytest.param(
            {'tags': ['a']}, {'$setElementOrderX': ['a']}, 400, id='order-list-without-field'
        ),
        pytest.param({}, ['not', 'an', 'object'], 400, id='body-not-an-object'),
    ],
)
def test_strategic_merge_patch_errors_carry_the_server_status(
    target: dict[str, Any], patch: Any, status: int
) -> None:
    """patch.go interpretStrategicMergePatchError: mergepatch format errors are 400, lists of lists
    422; other errors (a missing merge key...) reach the client as 500 with an empty reason."""
    with pytest.raises(PatchError) as raised:
        apply_strategic_merge_patch(target, patch, KEYED)
    assert raised.value.status == status
    if status == 500:
        assert raised.value.reason == ''


def test_null_strategic_merge_patch_changes_nothing() -> None:
    """patch.go decodes the body into a map: `null` leaves it empty, so nothing changes."""
    assert apply_strategic_merge_patch({'a': 1}, None, {}) == {'a': 1}


@pytest.mark.parametrize(
    'kind',
    [
        'ServiceAccount',
        'Secret',
        'ConfigMap',
        'Role',
        'RoleBinding',
        'ClusterRole',
        'ClusterRoleBinding',
        'Namespace',
        'Event',
        'Lease',
        'Pod',
    ],
)
def test_every_builtin_kind_merges_its_metadata_lists(kind: str) -> None:
    """ObjectMeta struct tags (apimachinery metav1 types.go): finalizers patchStrategy=merge,
    ownerReferences patchStrategy=merge patchMergeKey=uid."""
    merge_keys = BUILTIN_MERGE_KEYS[kind]
    assert merge_keys['metadata.finalizers'] == ''
    assert merge_keys['metadata.ownerReferences'] == 'uid'


@given(json_objects)
def test_empty_strategic_merge_patch_changes_nothing(target: dict[str, Any]) -> None:
    """A patch without members merges nothing (strategicpatch mergeMap)."""
    assert apply_strategic_merge_patch(target, {}, KEYED) == target


@given(map_objects, map_patches)
def test_strategic_merge_patch_of_maps_is_a_json_merge_patch(
    target: dict[str, Any], patch: dict[str, Any]
) -> None:
    """Without lists or directives, a strategic merge patch behaves as RFC 7386 (strategic merge
    patch doc: "maps are merged, null deletes"); neither input is modified."""
    target_before, patch_before = copy.deepcopy(target), copy.deepcopy(patch)
    assert apply_strategic_merge_patch(target, patch, {}) == apply_merge_patch(target, patch)
    assert (target, patch) == (target_before, patch_before)

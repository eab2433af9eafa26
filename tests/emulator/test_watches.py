"""Watches: replay from a resourceVersion, live events, selectors, bookmarks, 410, timeouts."""

from __future__ import annotations

import time

from kubernetes import client, watch

from tenure_devtools.kubeapi import running_emulator

from .conftest import WIDGET_PATH, http, stream, take, widget


def _config_maps(namespace: str) -> str:
    return f'/api/v1/namespaces/{namespace}/configmaps'


def test_a_watch_from_a_resource_version_replays_every_later_event(emulator, namespace) -> None:  # type: ignore[no-untyped-def]
    """https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes:
    a watch from resourceVersion X gets every change after X, in order, then live ones."""
    path = _config_maps(namespace)
    start = http(emulator, 'POST', path, {'metadata': {'name': 'a'}}).body['metadata'][
        'resourceVersion'
    ]
    http(emulator, 'POST', path, {'metadata': {'name': 'b'}})
    http(
        emulator,
        'PATCH',
        path + '/a',
        {'data': {'k': 'v'}},
        content_type='application/merge-patch+json',
    )
    http(emulator, 'DELETE', path + '/b')
    with stream(emulator, f'{path}?watch=true&resourceVersion={start}&timeoutSeconds=5') as events:
        replayed = take(events, 3)
        http(emulator, 'POST', path, {'metadata': {'name': 'c'}})
        live = next(events)
    assert [(e['type'], e['object']['metadata']['name']) for e in replayed] == [
        ('ADDED', 'b'),
        ('MODIFIED', 'a'),
        ('DELETED', 'b'),
    ]
    versions = [int(e['object']['metadata']['resourceVersion']) for e in [*replayed, live]]
    assert versions == sorted(versions)
    assert versions[0] > int(start)
    assert (live['type'], live['object']['metadata']['name']) == ('ADDED', 'c')
    assert live['object']['kind'] == 'ConfigMap'


def test_a_watch_without_resource_version_starts_with_the_current_state(
    emulator, namespace
) -> None:  # type: ignore[no-untyped-def]
    """resourceVersion unset: "Get State and Start at Most Recent" (synthetic ADDED events)."""
    path = _config_maps(namespace)
    for name in ('a', 'b'):
        http(emulator, 'POST', path, {'metadata': {'name': name}})
    with stream(emulator, f'{path}?watch=1&timeoutSeconds=5') as events:
        initial = take(events, 2)
    assert sorted((e['type'], e['object']['metadata']['name']) for e in initial) == [
        ('ADDED', 'a'),
        ('ADDED', 'b'),
    ]


def test_a_too_old_resource_version_is_an_error_event_410(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The watch cache keeps a window of events; older versions get a 410 Expired Status as an
    ERROR event on the watch (https://kubernetes.io/docs/reference/using-api/api-concepts/#410-gone-responses)."""
    with running_emulator(watch_window=3) as small:
        path = _config_maps('default')
        first = http(small, 'POST', path, {'metadata': {'name': 'c0'}}).body['metadata'][
            'resourceVersion'
        ]
        for index in range(1, 6):
            http(small, 'POST', path, {'metadata': {'name': f'c{index}'}})
        with stream(small, f'{path}?watch=true&resourceVersion={first}') as events:
            error = next(events)
            assert next(events, None) is None  # the stream ends after the error
    assert error['type'] == 'ERROR'
    status = error['object']
    assert (status['kind'], status['code'], status['reason']) == ('Status', 410, 'Expired')
    assert status['message'].startswith(f'too old resource version: {first} (')


def test_bookmarks_carry_the_current_resource_version(emulator, namespace) -> None:  # type: ignore[no-untyped-def]
    """allowWatchBookmarks=true: BOOKMARK events with only kind, apiVersion and the
    resourceVersion (https://kubernetes.io/docs/reference/using-api/api-concepts/#watch-bookmarks)."""
    path = _config_maps(namespace)
    rv = http(emulator, 'POST', path, {'metadata': {'name': 'a'}}).body['metadata'][
        'resourceVersion'
    ]
    with stream(
        emulator,
        f'{path}?watch=true&allowWatchBookmarks=true&resourceVersion={rv}&timeoutSeconds=5',
    ) as events:
        bookmark = next(events)
    assert bookmark['type'] == 'BOOKMARK'
    assert bookmark['object']['kind'] == 'ConfigMap'
    assert bookmark['object']['apiVersion'] == 'v1'
    assert int(bookmark['object']['metadata']['resourceVersion']) >= int(rv)
    assert set(bookmark['object']) == {'kind', 'apiVersion', 'metadata'}


def test_timeout_seconds_ends_the_stream(emulator, namespace) -> None:  # type: ignore[no-untyped-def]
    """timeoutSeconds bounds the watch; the server closes the stream cleanly."""
    started = time.monotonic()
    with stream(
        emulator, f'{_config_maps(namespace)}?watch=true&resourceVersion=1&timeoutSeconds=1'
    ) as events:
        assert list(events) == []
    assert 0.9 < time.monotonic() - started < 5


def test_label_selector_watch_sees_objects_enter_and_leave(emulator, namespace) -> None:  # type: ignore[no-untyped-def]
    """A watch with a selector reports an object that starts matching as ADDED and one that stops
    matching as DELETED (watch cache `convertToWatchEvent`)."""
    path = _config_maps(namespace)
    rv = http(emulator, 'POST', path, {'metadata': {'name': 'a'}}).body['metadata'][
        'resourceVersion'
    ]
    merge = 'application/merge-patch+json'
    http(
        emulator,
        'PATCH',
        path + '/a',
        {'metadata': {'labels': {'tier': 'gold'}}},
        content_type=merge,
    )
    http(emulator, 'PATCH', path + '/a', {'data': {'k': 'v'}}, content_type=merge)
    http(
        emulator,
        'PATCH',
        path + '/a',
        {'metadata': {'labels': {'tier': 'tin'}}},
        content_type=merge,
    )
    with stream(
        emulator,
        f'{path}?watch=true&labelSelector=tier%3Dgold&resourceVersion={rv}&timeoutSeconds=5',
    ) as events:
        seen = take(events, 3)
    assert [e['type'] for e in seen] == ['ADDED', 'MODIFIED', 'DELETED']
    left = seen[2]['object']
    assert left['metadata']['labels'] == {'tier': 'gold'}  # the last state that matched...
    assert int(left['metadata']['resourceVersion']) > int(
        seen[1]['object']['metadata']['resourceVersion']
    )


def test_field_selector_watch_follows_one_object(emulator, namespace) -> None:  # type: ignore[no-untyped-def]
    path = _config_maps(namespace)
    rv = http(emulator, 'POST', path, {'metadata': {'name': 'a'}}).body['metadata'][
        'resourceVersion'
    ]
    http(emulator, 'POST', path, {'metadata': {'name': 'b'}})
    http(emulator, 'DELETE', path + '/a')
    with stream(
        emulator,
        f'{path}?watch=true&fieldSelector=metadata.name%3Db&resourceVersion={int(rv) - 1}'
        '&timeoutSeconds=5',
    ) as events:
        assert [(e['type'], e['object']['metadata']['name']) for e in take(events, 1)] == [
            ('ADDED', 'b')
        ]


def test_no_op_writes_produce_no_watch_event(emulator, namespace) -> None:  # type: ignore[no-untyped-def]
    """An update that changes nothing is not committed: watchers see nothing."""
    path = _config_maps(namespace)
    created = http(emulator, 'POST', path, {'metadata': {'name': 'a'}, 'data': {'k': 'v'}}).body
    rv = created['metadata']['resourceVersion']
    http(emulator, 'PUT', path + '/a', created)
    http(
        emulator,
        'PATCH',
        path + '/a',
        {'data': {'k': 'v'}},
        content_type='application/merge-patch+json',
    )
    http(
        emulator,
        'PATCH',
        path + '/a',
        {'data': {'k': 'w'}},
        content_type='application/merge-patch+json',
    )
    with stream(emulator, f'{path}?watch=true&resourceVersion={rv}&timeoutSeconds=5') as events:
        only = next(events)
    assert only['type'] == 'MODIFIED'
    assert only['object']['data'] == {'k': 'w'}


def test_initial_events_stream_ends_with_an_annotated_bookmark(emulator, namespace) -> None:  # type: ignore[no-untyped-def]
    """sendInitialEvents=true (streaming lists, https://kubernetes.io/docs/reference/using-api/api-concepts/#streaming-lists):
    the current state as ADDED, then a BOOKMARK annotated k8s.io/initial-events-end."""
    path = _config_maps(namespace)
    http(emulator, 'POST', path, {'metadata': {'name': 'a'}})
    query = (
        'watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan'
        '&allowWatchBookmarks=true&timeoutSeconds=5'
    )
    with stream(emulator, f'{path}?{query}') as events:
        added, bookmark = take(events, 2)
    assert (added['type'], added['object']['metadata']['name']) == ('ADDED', 'a')
    assert bookmark['type'] == 'BOOKMARK'
    assert bookmark['object']['metadata']['annotations'] == {'k8s.io/initial-events-end': 'true'}
    refused = http(emulator, 'GET', f'{path}?watch=true&sendInitialEvents=true')
    assert refused.status == 422


def test_custom_resources_watch_like_kopf_does(emulator, namespace, widgets) -> None:  # type: ignore[no-untyped-def]
    """kopf lists, then watches with watch=true&allowWatchBookmarks=true&resourceVersion=<list>
    &timeoutSeconds=... (kopf/_cogs/clients/watching.py)."""
    path = WIDGET_PATH.format(ns=namespace)
    listed = http(emulator, 'GET', path).body
    rv = listed['metadata']['resourceVersion']
    query = f'watch=true&allowWatchBookmarks=true&resourceVersion={rv}&timeoutSeconds=5'
    with stream(emulator, f'{path}?{query}') as events:
        http(emulator, 'POST', path, widget('w'))
        event = next(events)
        while event['type'] == 'BOOKMARK':
            event = next(events)
        http(
            emulator,
            'PATCH',
            path + '/w/status',
            {'status': {'phase': 'Ready'}},
            content_type='application/merge-patch+json',
        )
        modified = next(events)
        while modified['type'] == 'BOOKMARK':
            modified = next(events)
    assert (event['type'], event['object']['kind']) == ('ADDED', 'Widget')
    assert modified['object']['status'] == {'phase': 'Ready'}


def test_the_python_client_watch_helper_works(core: client.CoreV1Api, namespace: str) -> None:
    """kubernetes.watch.Watch streams typed objects from the emulator."""
    core.create_namespaced_secret(namespace, {'metadata': {'name': 's', 'labels': {'app': 'x'}}})
    seen = []
    for event in watch.Watch().stream(
        core.list_namespaced_secret, namespace, label_selector='app=x', timeout_seconds=5
    ):
        seen.append((event['type'], event['object'].metadata.name))
        break
    assert seen == [('ADDED', 's')]


def test_watching_an_object_url_follows_that_object(emulator, namespace) -> None:  # type: ignore[no-untyped-def]
    """The deprecated forms `/api/v1/watch/...` and `?watch=true` on an object's URL watch that
    one name (https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes)."""
    path = _config_maps(namespace)
    rv = http(emulator, 'POST', path, {'metadata': {'name': 'a'}}).body['metadata'][
        'resourceVersion'
    ]
    http(emulator, 'POST', path, {'metadata': {'name': 'b'}})
    http(
        emulator,
        'PATCH',
        path + '/a',
        {'data': {'k': 'v'}},
        content_type='application/merge-patch+json',
    )
    legacy = (
        f'/api/v1/watch/namespaces/{namespace}/configmaps/a?resourceVersion={rv}&timeoutSeconds=5'
    )
    for url in (legacy, f'{path}/a?watch=true&resourceVersion={rv}&timeoutSeconds=5'):
        with stream(emulator, url) as events:
            (event,) = take(events, 1)
        assert (event['type'], event['object']['metadata']['name']) == ('MODIFIED', 'a')

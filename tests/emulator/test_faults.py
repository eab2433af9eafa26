"""Fault injection: each fault reaches the client as a real kube-apiserver would send it.

Rules are added in-process (`emu.faults`) or over the HTTP control API (`FaultControl`), and each
test checks what the official client or raw HTTP sees, and that the rule's counters say the fault
happened. The references are the API conventions' HTTP status codes
(https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#http-status-codes)
and the apiserver code named in `tenure_devtools/kubeapi/faults.py`. These tests run on an
emulator of their own: rules apply to the whole server.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.client import HTTPConnection, IncompleteRead, RemoteDisconnected
from pathlib import Path

import pydantic
import pytest
import urllib3
from kubernetes import client, config, watch

from tenure_devtools.kubeapi import KubeApiEmulator, running_emulator
from tenure_devtools.kubeapi.faults import (
    CONTROL_PATH,
    EXEMPT_HEADER,
    Conflict,
    Disconnect,
    FaultControl,
    FaultInjector,
    FaultRule,
    Latency,
    PassThrough,
    RequestMatch,
    ServerError,
    TooManyRequests,
    WatchExpired,
)

from .conftest import http, stream

CONFIG_MAPS = '/api/v1/namespaces/{ns}/configmaps'


@pytest.fixture(scope='module')
def emu() -> Iterator[KubeApiEmulator]:
    with running_emulator() as emulator:
        yield emulator


@pytest.fixture
def faults(emu: KubeApiEmulator) -> Iterator[FaultInjector]:
    """The emulator's rules, emptied after each test even when it fails."""
    try:
        yield emu.faults
    finally:
        emu.faults.clear()


def _client(emu: KubeApiEmulator, tmp_path: Path, *, exempt: bool) -> client.ApiClient:
    api = config.new_client_from_config(str(emu.write_kubeconfig(tmp_path / 'kubeconfig')))
    if exempt:
        api.set_default_header(EXEMPT_HEADER, '1')
    return api


@pytest.fixture
def core(emu: KubeApiEmulator, tmp_path: Path) -> Iterator[client.CoreV1Api]:
    """The official client, as the code under test would use it (faults apply)."""
    api = _client(emu, tmp_path, exempt=False)
    try:
        yield client.CoreV1Api(api)
    finally:
        api.close()


@pytest.fixture
def test_core(emu: KubeApiEmulator, tmp_path: Path) -> Iterator[client.CoreV1Api]:
    """The test's own official client: it sends EXEMPT_HEADER, so faults leave it alone."""
    api = _client(emu, tmp_path, exempt=True)
    try:
        yield client.CoreV1Api(api)
    finally:
        api.close()


@pytest.fixture
def namespace(emu: KubeApiEmulator) -> str:
    name = f'faults-{uuid.uuid4().hex[:8]}'
    assert http(emu, 'POST', '/api/v1/namespaces', {'metadata': {'name': name}}).status == 201
    return name


def _create_config_map(emu: KubeApiEmulator, namespace: str, name: str) -> int:
    path = CONFIG_MAPS.format(ns=namespace)
    return http(emu, 'POST', path, {'metadata': {'name': name}}).status


# ---- errors -------------------------------------------------------------------------------


def test_a_conflict_reaches_the_client_as_the_optimistic_lock_error_then_clears(
    faults: FaultInjector, core: client.CoreV1Api, namespace: str
) -> None:
    """api-conventions.md#concurrency-control-and-consistency: a write against a changed object
    is refused with 409 Conflict (apimachinery `NewConflict`); the retry goes through."""
    core.create_namespaced_config_map(namespace, {'metadata': {'name': 'settings'}})
    rule = faults.add(
        FaultRule(effect=Conflict(), verbs={'patch'}, resources={'configmaps'}, namespace=namespace)
    )
    with pytest.raises(client.ApiException) as refused:
        core.patch_namespaced_config_map('settings', namespace, {'data': {'k': 'v'}})
    assert refused.value.status == 409
    status = json.loads(refused.value.body)
    assert (status['kind'], status['reason'], status['code']) == ('Status', 'Conflict', 409)
    assert status['message'] == (
        'Operation cannot be fulfilled on configmaps "settings": the object has been modified; '
        'please apply your changes to the latest version and try again'
    )
    assert status['details'] == {'name': 'settings', 'kind': 'configmaps'}
    patched = core.patch_namespaced_config_map('settings', namespace, {'data': {'k': 'v'}})
    assert patched.data == {'k': 'v'}
    stats = faults.stats(rule)
    assert (stats.matched, stats.fired) == (2, 1)


def test_a_conflict_on_create_names_the_object_from_the_body(
    faults: FaultInjector, emu: KubeApiEmulator, namespace: str
) -> None:
    """A create has no name in its URL; the Status still names the object, as the server does."""
    faults.add(FaultRule(effect=Conflict(), verbs={'create'}, namespace=namespace))
    reply = http(emu, 'POST', CONFIG_MAPS.format(ns=namespace), {'metadata': {'name': 'new'}})
    assert reply.status == 409
    assert reply.body['details']['name'] == 'new'
    assert http(emu, 'GET', CONFIG_MAPS.format(ns=namespace) + '/new').status == 404


def test_throttling_answers_429_in_plain_text_with_retry_after(
    faults: FaultInjector, emu: KubeApiEmulator, core: client.CoreV1Api, namespace: str
) -> None:
    """https://kubernetes.io/docs/concepts/cluster-administration/flow-control/: a rejected
    request gets 429 Too Many Requests; the max-in-flight and APF filters send
    `Retry-After` and the plain-text body "Too many requests, please try again later."."""
    faults.add(FaultRule(effect=TooManyRequests(retry_after=3), times=2))
    reply = http(emu, 'GET', CONFIG_MAPS.format(ns=namespace))
    assert reply.status == 429
    assert reply.headers['Retry-After'] == '3'
    assert reply.headers['Content-Type'] == 'text/plain; charset=utf-8'
    assert reply.body == 'Too many requests, please try again later.\n'
    # A create is not retried by the client: the caller sees the 429 and its Retry-After.
    with pytest.raises(client.ApiException) as throttled:
        core.create_namespaced_config_map(namespace, {'metadata': {'name': 'throttled'}})
    assert throttled.value.status == 429
    assert throttled.value.headers['Retry-After'] == '3'


def test_the_official_client_waits_out_retry_after_on_reads(
    faults: FaultInjector, core: client.CoreV1Api, namespace: str
) -> None:
    """urllib3's default Retry honours Retry-After on 429 for idempotent methods: a GET of the
    official client waits and retries by itself, so code under test never sees that 429."""
    rule = faults.add(FaultRule(effect=TooManyRequests(retry_after=1), verbs={'list'}))
    started = time.monotonic()
    assert core.list_namespaced_config_map(namespace).items == []
    assert time.monotonic() - started >= 1
    assert faults.stats(rule).fired == 1


def test_throttling_can_answer_a_too_many_requests_status(
    faults: FaultInjector, emu: KubeApiEmulator, namespace: str
) -> None:
    """apimachinery `NewTooManyRequests`: reason TooManyRequests, `details.retryAfterSeconds`,
    and the `Retry-After` header that `ErrorNegotiated` derives from it."""
    faults.add(FaultRule(effect=TooManyRequests(retry_after=2, body='status')))
    reply = http(emu, 'GET', CONFIG_MAPS.format(ns=namespace))
    assert reply.status == 429
    assert reply.headers['Retry-After'] == '2'
    assert (reply.body['reason'], reply.body['code']) == ('TooManyRequests', 429)
    assert reply.body['details'] == {'retryAfterSeconds': 2}


@pytest.mark.parametrize(
    ('code', 'reason', 'message'),
    [
        pytest.param(500, 'InternalError', 'Internal error occurred: injected fault', id='500'),
        pytest.param(
            503,
            'ServiceUnavailable',
            'the server is currently unable to handle the request',
            id='503',
        ),
        pytest.param(
            504,
            'Timeout',
            'Timeout: request did not complete within requested timeout - context deadline '
            'exceeded',
            id='504-request-timeout',
        ),
    ],
)
def test_server_errors_reach_the_client_as_status_objects(
    faults: FaultInjector,
    core: client.CoreV1Api,
    namespace: str,
    code: int,
    reason: str,
    message: str,
) -> None:
    """api-conventions.md#http-status-codes: 500 InternalError, 503 ServiceUnavailable and 504
    Timeout (the request timeout filter's message) come as `Status` objects."""
    faults.add(FaultRule(effect=ServerError(code=code), resources={'configmaps'}))
    with pytest.raises(client.ApiException) as failed:
        core.list_namespaced_config_map(namespace)
    assert failed.value.status == code
    status = json.loads(failed.value.body)
    assert (status['kind'], status['status'], status['code']) == ('Status', 'Failure', code)
    assert (status['reason'], status['message']) == (reason, message)
    assert 'Retry-After' not in failed.value.headers


def test_a_server_error_with_retry_after_sends_the_header(
    faults: FaultInjector, emu: KubeApiEmulator, namespace: str
) -> None:
    """responsewriters.ErrorNegotiated: `details.retryAfterSeconds` > 0 sets `Retry-After`."""
    faults.add(FaultRule(effect=ServerError(code=503, retry_after=5)))
    reply = http(emu, 'GET', CONFIG_MAPS.format(ns=namespace))
    assert (reply.status, reply.headers['Retry-After']) == (503, '5')
    assert reply.body['details'] == {'retryAfterSeconds': 5}


def test_a_timeout_after_the_write_leaves_the_object_created(
    faults: FaultInjector, emu: KubeApiEmulator, test_core: client.CoreV1Api, namespace: str
) -> None:
    """A 504 Timeout does not mean the write failed: the apiserver's timeout filter answers while
    the storage write may still complete (k8s.io/apiserver endpoints/handlers/finisher)."""
    faults.add(FaultRule(effect=ServerError(code=504, applied=True), verbs={'create'}))
    assert _create_config_map(emu, namespace, 'landed') == 504
    assert test_core.read_namespaced_config_map('landed', namespace).metadata.name == 'landed'


def test_latency_delays_the_answer_but_not_its_content(
    faults: FaultInjector, core: client.CoreV1Api, namespace: str
) -> None:
    """An overloaded apiserver answers late; the answer is the same."""
    faults.add(FaultRule(effect=Latency(seconds=0.3), verbs={'create'}))
    started = time.monotonic()
    created = core.create_namespaced_config_map(namespace, {'metadata': {'name': 'slow'}})
    assert time.monotonic() - started >= 0.3
    assert created.metadata.name == 'slow'


# ---- broken connections -------------------------------------------------------------------


@pytest.mark.parametrize(
    ('reset', 'cause'),
    [
        pytest.param(False, RemoteDisconnected, id='closed'),
        pytest.param(True, ConnectionResetError, id='reset'),
    ],
)
def test_a_dropped_connection_gives_the_client_no_answer(
    faults: FaultInjector,
    emu: KubeApiEmulator,
    core: client.CoreV1Api,
    namespace: str,
    reset: bool,
    cause: type[Exception],
) -> None:
    """A connection that closes (or is reset) before the answer: the client sees a connection
    error, and urllib3 retries an idempotent GET (3 retries by default) before giving up."""
    rule = faults.add(FaultRule(effect=Disconnect(reset=reset), verbs={'get'}, times=None))
    with pytest.raises(urllib3.exceptions.MaxRetryError) as failed:
        core.read_namespaced_config_map('any', namespace)
    assert isinstance(failed.value.reason, urllib3.exceptions.ProtocolError)
    assert isinstance(failed.value.reason.args[1], cause)
    assert faults.stats(rule).fired == 4
    request = urllib.request.Request(emu.url + CONFIG_MAPS.format(ns=namespace) + '/any')
    with pytest.raises(cause):
        urllib.request.urlopen(request, timeout=10)


def test_a_write_whose_answer_is_lost_still_happened(
    faults: FaultInjector, emu: KubeApiEmulator, test_core: client.CoreV1Api, namespace: str
) -> None:
    """The connection breaks after the server made the change: retrying a create then meets
    409 AlreadyExists, which is how a client learns that its first attempt landed."""
    faults.add(FaultRule(effect=Disconnect(applied=True), verbs={'create'}))
    with pytest.raises(RemoteDisconnected):
        _create_config_map(emu, namespace, 'lost-answer')
    assert test_core.read_namespaced_config_map('lost-answer', namespace)
    assert _create_config_map(emu, namespace, 'lost-answer') == 409


def test_a_watch_stream_breaks_after_its_initial_events(
    faults: FaultInjector, core: client.CoreV1Api, namespace: str
) -> None:
    """https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes:
    a watch is one long chunked response; when the connection breaks mid-stream the client has
    the events so far and an incomplete body, never a clean end."""
    core.create_namespaced_config_map(namespace, {'metadata': {'name': 'before'}})
    rule = faults.add(FaultRule(effect=Disconnect(), verbs={'watch'}, namespace=namespace))
    events = watch.Watch().stream(core.list_namespaced_config_map, namespace)
    first = next(events)
    assert (first['type'], first['object'].metadata.name) == ('ADDED', 'before')
    with pytest.raises(urllib3.exceptions.ProtocolError, match='ended prematurely'):
        next(events)
    assert faults.stats(rule).fired == 1


def test_a_watch_that_ends_before_its_cut_leaves_the_connection_alone(
    faults: FaultInjector, emu: KubeApiEmulator, namespace: str
) -> None:
    """A watch that times out before `after` ends cleanly, and the keep-alive connection it
    leaves behind serves the next request even once the cut would have been due."""
    faults.add(FaultRule(effect=Disconnect(after=1.3), verbs={'watch'}, namespace=namespace))
    host, port = emu.url.removeprefix('http://').split(':')
    connection = HTTPConnection(host, int(port), timeout=10)
    try:
        started = time.monotonic()
        connection.request('GET', CONFIG_MAPS.format(ns=namespace) + '?watch=1&timeoutSeconds=1')
        watch_answer = connection.getresponse()
        assert (watch_answer.status, watch_answer.read()) == (200, b'')  # complete, not cut
        # Nothing to wait for: the test is that nothing happens when the cut would have come.
        time.sleep(max(0.0, started + 1.6 - time.monotonic()))
        connection.request('GET', '/version')
        assert connection.getresponse().status == 200
    finally:
        connection.close()


@pytest.mark.parametrize(
    ('reset', 'error'),
    [
        pytest.param(False, IncompleteRead, id='closed'),
        pytest.param(True, ConnectionResetError, id='reset'),
    ],
)
def test_open_watches_are_listed_and_can_be_dropped_at_once(
    faults: FaultInjector,
    emu: KubeApiEmulator,
    namespace: str,
    reset: bool,
    error: type[Exception],
) -> None:
    """Tests wait until the code under test has its watch open, then break it: the chunked
    body ends without its last chunk (closed) or the connection is reset."""
    path = CONFIG_MAPS.format(ns=namespace) + '?watch=true&timeoutSeconds=30'
    with urllib.request.urlopen(emu.url + path, timeout=10) as response:
        mine = RequestMatch(resources={'configmaps'}, namespace=namespace)
        [open_watch] = faults.wait_watches(mine)
        assert (open_watch.resource, open_watch.namespace) == ('configmaps', namespace)
        assert open_watch.user_agent.startswith('Python-urllib/')
        assert faults.drop_watches(RequestMatch(namespace='elsewhere')) == 0
        assert faults.drop_watches(mine, reset=reset) == 1
        with pytest.raises(error):
            response.read()
    assert faults.watches(mine) == []


def test_an_expired_watch_ends_with_an_error_event_410(
    faults: FaultInjector, emu: KubeApiEmulator, namespace: str
) -> None:
    """https://kubernetes.io/docs/reference/using-api/api-concepts/#410-gone-responses: once a
    watch has started the server reports a too old resourceVersion as an ERROR event holding a
    410 Expired `Status`, then ends the stream."""
    rule = faults.add(FaultRule(effect=WatchExpired(), namespace=namespace))
    assert _create_config_map(emu, namespace, 'listed') == 201  # a create: not a watch
    path = CONFIG_MAPS.format(ns=namespace) + '?watch=true&resourceVersion=5'
    with stream(emu, path) as events:
        [error] = list(events)
    assert error['type'] == 'ERROR'
    status = error['object']
    assert (status['kind'], status['code'], status['reason']) == ('Status', 410, 'Expired')
    assert status['message'].startswith('too old resource version: 5 (')
    stats = faults.stats(rule)
    assert (stats.matched, stats.fired) == (1, 1)


def test_the_official_client_rewatches_once_after_410_and_gives_up_on_the_second(
    faults: FaultInjector, core: client.CoreV1Api, namespace: str
) -> None:
    """kubernetes.watch.Watch.stream: "The method tries to resume automatically once from the
    last result, but if that last result is too old as well, an ApiException ... with code 410"
    (it can only resume from a resourceVersion it knows)."""
    listed = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, {'metadata': {'name': 'seen'}})
    once = faults.add(FaultRule(effect=WatchExpired(), namespace=namespace))
    events = watch.Watch().stream(
        core.list_namespaced_config_map, namespace, resource_version=listed
    )
    first = next(events)
    events.close()
    assert (first['type'], first['object'].metadata.name) == ('ADDED', 'seen')
    assert faults.stats(once).fired == 1
    always = faults.add(FaultRule(effect=WatchExpired(), namespace=namespace, times=None))
    with pytest.raises(client.ApiException) as gone:
        next(
            watch.Watch().stream(
                core.list_namespaced_config_map, namespace, resource_version=listed
            )
        )
    assert gone.value.status == 410
    assert faults.stats(always).fired == 2


# ---- which requests, how often ------------------------------------------------------------


def test_the_test_client_is_spared_by_its_exempt_header(
    faults: FaultInjector,
    core: client.CoreV1Api,
    test_core: client.CoreV1Api,
    namespace: str,
) -> None:
    """The client under test gets the fault; the test's own client (EXEMPT_HEADER) does not,
    unless the rule says `spare_exempt=False`."""
    rule = faults.add(FaultRule(effect=ServerError(code=503), times=None))
    assert test_core.list_namespaced_config_map(namespace).items == []
    with pytest.raises(client.ApiException, match='503'):
        core.list_namespaced_config_map(namespace)
    faults.add(FaultRule(effect=ServerError(code=500), spare_exempt=False))
    with pytest.raises(client.ApiException, match='500'):
        test_core.list_namespaced_config_map(namespace)
    assert faults.stats(rule).matched == 1


def test_a_rule_can_target_one_client_by_user_agent(
    faults: FaultInjector, emu: KubeApiEmulator, core: client.CoreV1Api, namespace: str
) -> None:
    """kopf sends `User-Agent: kopf/<version>`; a rule can fault kopf and nobody else."""
    rule = faults.add(FaultRule(effect=ServerError(code=500), user_agent=r'^kopf/', times=None))
    assert core.list_namespaced_config_map(namespace).items == []
    request = urllib.request.Request(
        emu.url + CONFIG_MAPS.format(ns=namespace), headers={'User-Agent': 'kopf/1.45.2'}
    )
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(request, timeout=10)
    failed.value.close()
    assert failed.value.code == 500
    assert faults.stats(rule).matched == 1


def test_rules_match_methods_paths_and_the_parsed_request(
    faults: FaultInjector, emu: KubeApiEmulator, namespace: str
) -> None:
    """Verbs and resources come from the URL as the apiserver's RequestInfo has them: a watch
    is the verb `watch`, `configmaps/status` would be a subresource, /version no resource."""
    by_path = faults.add(FaultRule(effect=PassThrough(), path=r'^/version', times=None))
    by_resource = faults.add(
        FaultRule(effect=PassThrough(), resources={'configmaps'}, namespace=namespace, times=None)
    )
    by_method = faults.add(FaultRule(effect=PassThrough(), methods={'delete'}, times=None))
    http(emu, 'GET', '/version')
    _create_config_map(emu, namespace, 'matched')
    http(emu, 'DELETE', CONFIG_MAPS.format(ns=namespace) + '/matched')
    assert [faults.stats(r).matched for r in (by_path, by_resource, by_method)] == [1, 2, 0]


def test_the_first_rule_that_fires_decides_so_a_pass_through_shields(
    faults: FaultInjector, emu: KubeApiEmulator, namespace: str
) -> None:
    """Rules are tried in order; a PassThrough placed first exempts what it matches."""
    shield = faults.add(FaultRule(effect=PassThrough(), name='kept', times=None))
    failing = faults.add(FaultRule(effect=ServerError(code=503), verbs={'get'}, times=None))
    _create_config_map(emu, namespace, 'kept')
    _create_config_map(emu, namespace, 'other')
    assert http(emu, 'GET', CONFIG_MAPS.format(ns=namespace) + '/kept').status == 200
    assert http(emu, 'GET', CONFIG_MAPS.format(ns=namespace) + '/other').status == 503
    assert faults.stats(shield).fired == 1
    assert (faults.stats(failing).matched, faults.stats(failing).fired) == (1, 1)


def test_skip_and_times_choose_which_matching_requests_fail(
    faults: FaultInjector, emu: KubeApiEmulator, namespace: str
) -> None:
    """`skip=2, times=2`: the third and fourth matching requests fail, the rest go through."""
    rule = faults.add(FaultRule(effect=ServerError(code=500), verbs={'list'}, skip=2, times=2))
    codes = [http(emu, 'GET', CONFIG_MAPS.format(ns=namespace)).status for _ in range(6)]
    assert codes == [200, 200, 500, 500, 200, 200]
    stats = faults.stats(rule)
    assert (stats.matched, stats.fired) == (6, 2)


def _pattern(emu: KubeApiEmulator, faults: FaultInjector, namespace: str, seed: int) -> list[bool]:
    rule = faults.add(
        FaultRule(
            effect=ServerError(code=503), verbs={'list'}, probability=0.3, seed=seed, times=None
        )
    )
    try:
        path = CONFIG_MAPS.format(ns=namespace)
        failed = [http(emu, 'GET', path).status == 503 for _ in range(40)]
        assert faults.stats(rule).fired == sum(failed)
        return failed
    finally:
        faults.remove(rule)


def test_a_probabilistic_rule_is_reproducible_from_its_seed(
    faults: FaultInjector, emu: KubeApiEmulator, namespace: str
) -> None:
    """The same seed and the same requests give the same faults: a failing chaos run replays."""
    first = _pattern(emu, faults, namespace, seed=7)
    assert _pattern(emu, faults, namespace, seed=7) == first
    assert _pattern(emu, faults, namespace, seed=8) != first
    draws = random.Random(7)
    assert first == [draws.random() < 0.3 for _ in range(40)]


def test_waiting_for_a_fault_that_never_comes_times_out_with_the_counts(
    faults: FaultInjector, emu: KubeApiEmulator, namespace: str
) -> None:
    rule = faults.add(FaultRule(effect=ServerError(code=500), verbs={'delete'}))
    http(emu, 'GET', CONFIG_MAPS.format(ns=namespace))
    with pytest.raises(TimeoutError, match='fired 0 of 1 times'):
        faults.wait_fired(rule, timeout=0.05)
    with pytest.raises(TimeoutError, match='0 of 1 watch streams'):
        faults.wait_watches(RequestMatch(namespace=namespace), timeout=0.05)


@pytest.mark.parametrize(
    'rule',
    [
        pytest.param({'effect': {'type': 'conflict'}, 'path': '('}, id='bad-regex'),
        pytest.param({'effect': {'type': 'explode'}}, id='unknown-effect'),
        pytest.param({'effect': {'type': 'server-error', 'code': 502}}, id='unsupported-code'),
        pytest.param({'effect': {'type': 'conflict'}, 'probability': 0}, id='never-fires'),
        pytest.param({'effect': {'type': 'conflict'}, 'verb': ['get']}, id='misspelt-field'),
    ],
)
def test_malformed_rules_are_refused(rule: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        FaultRule.model_validate(rule)


# ---- the HTTP control API -----------------------------------------------------------------


def test_the_control_api_drives_faults_over_http(
    faults: FaultInjector, emu: KubeApiEmulator, namespace: str
) -> None:
    """`FaultControl` has the in-process API's methods; its own requests are never faulted,
    even by a rule that matches every path."""
    control = FaultControl(emu.url)
    everything = control.add(
        FaultRule(effect=ServerError(code=503), path='.*', spare_exempt=False, times=None)
    )
    assert http(emu, 'GET', '/version').status == 503
    assert control.wait_fired(everything).fired == 1
    [listed] = control.rules()
    assert listed.id == everything
    assert listed.rule == faults.stats(everything).rule
    assert control.remove(everything) is True
    assert control.remove(everything) is False
    with pytest.raises(KeyError):
        control.stats(everything)
    assert http(emu, 'GET', '/version').status == 200
    control.add(FaultRule(effect=Conflict()))
    assert control.clear() == 1
    assert faults.rules() == []


def test_the_control_api_waits_for_faults_and_watches(
    faults: FaultInjector, emu: KubeApiEmulator, namespace: str
) -> None:
    control = FaultControl(emu.url)
    rule = control.add(FaultRule(effect=PassThrough(), verbs={'list'}))
    with pytest.raises(TimeoutError, match='fired 0 of 1'):
        control.wait_fired(rule, timeout=0.05)
    path = CONFIG_MAPS.format(ns=namespace) + '?watch=true&timeoutSeconds=30'
    with urllib.request.urlopen(emu.url + path, timeout=10) as response:
        mine = RequestMatch(namespace=namespace)
        [open_watch] = control.wait_watches(mine)
        assert open_watch.path == CONFIG_MAPS.format(ns=namespace)
        assert control.watches(mine) == [open_watch]
        assert control.drop_watches(mine) == 1
        with pytest.raises(IncompleteRead):
            response.read()
    http(emu, 'GET', CONFIG_MAPS.format(ns=namespace))
    assert control.wait_fired(rule).fired == 1


def test_a_rule_says_when_it_first_and_last_fired_in_process_and_over_http(
    faults: FaultInjector, emu: KubeApiEmulator, namespace: str
) -> None:
    """Two rules' times tell how far apart the requests were, however late the test looks."""
    control = FaultControl(emu.url)
    rule = control.add(FaultRule(effect=PassThrough(), namespace=namespace, times=None))
    assert control.stats(rule).first_fired_at is None
    before = time.time()
    http(emu, 'GET', CONFIG_MAPS.format(ns=namespace))
    between = time.time()
    http(emu, 'GET', CONFIG_MAPS.format(ns=namespace))
    after = time.time()
    stats = control.stats(rule)
    assert stats == faults.stats(rule), 'the same over HTTP as in process'
    assert stats.first_fired_at is not None
    assert stats.last_fired_at is not None
    assert before <= stats.first_fired_at <= between <= stats.last_fired_at <= after


def test_the_control_api_refuses_malformed_rules_and_unknown_paths(emu: KubeApiEmulator) -> None:
    reply = http(emu, 'POST', CONTROL_PATH, {'effect': {'type': 'explode'}})
    assert reply.status == 400
    assert 'explode' in reply.body['error']
    assert http(emu, 'GET', CONTROL_PATH + '/rule-0').status == 404
    assert http(emu, 'GET', CONTROL_PATH + '/no/such/thing').status == 404
    assert http(emu, 'PUT', CONTROL_PATH).status == 405


def test_another_process_can_inject_faults(
    faults: FaultInjector, emu: KubeApiEmulator, namespace: str
) -> None:
    """The operator runs as a child process; so may whatever drives the faults."""
    program = (
        'import sys\n'
        'from tenure_devtools.kubeapi.faults import FaultControl, FaultRule, TooManyRequests\n'
        'rule = FaultRule(effect=TooManyRequests(), verbs={"list"})\n'
        'sys.stdout.write(FaultControl(sys.argv[1]).add(rule))\n'
    )
    child = subprocess.run(
        [sys.executable, '-c', program, emu.url], capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr
    assert http(emu, 'GET', CONFIG_MAPS.format(ns=namespace)).status == 429
    assert faults.stats(child.stdout).fired == 1

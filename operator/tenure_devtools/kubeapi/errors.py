"""Kubernetes `Status` errors, shaped like k8s.io/apimachinery/pkg/api/errors.

Development/test tool: part of the local Kubernetes API emulator, never of the operator.

Every failed request answers with a `Status` body (kind Status, apiVersion v1, status Failure,
message, reason, details, code), the way the real apiserver does:
https://kubernetes.io/docs/reference/using-api/api-concepts/#status-object . The constructors
below reproduce the messages of apimachinery's `NewNotFound`, `NewConflict`, `NewInvalid`... so
that clients which match on them (kubectl, client libraries, kopf) behave as against a cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class Cause(Protocol):
    """A field-level problem: `schema.FieldError` and `meta` validators both fit."""

    @property
    def field(self) -> str: ...

    @property
    def reason(self) -> str: ...

    @property
    def message(self) -> str: ...


@dataclass(frozen=True)
class GroupResource:
    """`schema.GroupResource`: how messages name a resource (`widgets.example.com`)."""

    group: str
    resource: str

    def __str__(self) -> str:
        return f'{self.resource}.{self.group}' if self.group else self.resource


class ApiError(Exception):
    """An error answered as a Kubernetes `Status` with an HTTP code."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        list_meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.list_meta = list_meta or {}

    def status(self) -> dict[str, Any]:
        """The `Status` object for the response body or a watch ERROR event."""
        body: dict[str, Any] = {
            'kind': 'Status',
            'apiVersion': 'v1',
            'metadata': dict(self.list_meta),
            'status': 'Failure',
            'message': self.message,
            'reason': self.reason,
        }
        if self.details:
            body['details'] = self.details
        body['code'] = self.code
        return body


def _details(gr: GroupResource, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details['name'] = name
    if gr.group:
        details['group'] = gr.group
    details['kind'] = gr.resource  # apimachinery puts the resource here ("Yes we set Kind").
    return details


def not_found(gr: GroupResource, name: str) -> ApiError:
    message = f'{gr} {json.dumps(name)} not found' if name else f'{gr} not found'
    return ApiError(404, 'NotFound', message, _details(gr, name))


def not_found_path() -> ApiError:
    """An URL that names no served resource (unknown group, version or resource)."""
    return ApiError(404, 'NotFound', 'the server could not find the requested resource', {})


def already_exists(gr: GroupResource, name: str) -> ApiError:
    return ApiError(
        409, 'AlreadyExists', f'{gr} {json.dumps(name)} already exists', _details(gr, name)
    )


OPTIMISTIC_LOCK_MESSAGE = (
    'the object has been modified; please apply your changes to the latest version and try again'
)


def conflict(gr: GroupResource, name: str, why: str = OPTIMISTIC_LOCK_MESSAGE) -> ApiError:
    return ApiError(
        409,
        'Conflict',
        f'Operation cannot be fulfilled on {gr} {json.dumps(name)}: {why}',
        _details(gr, name),
    )


def _aggregate(messages: Sequence[str]) -> str:
    # field.ErrorList.ToAggregate() drops duplicates and brackets more than one message.
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else '[' + ', '.join(unique) + ']'


def invalid(group: str, kind: str, name: str, causes: Iterable[Cause]) -> ApiError:
    """422 Invalid: `Kind.group "name" is invalid: field: detail` with details.causes[]."""
    causes = list(causes)
    qualified = f'{kind}.{group}' if group else kind
    status_causes = []
    for cause in causes:
        # The cause message is the error body without its `field: ` prefix (apimachinery
        # `NewInvalid` uses `err.ErrorBody()` for causes and `err.Error()` for the message).
        body = cause.message
        prefix = f'{cause.field}: '
        if cause.field and body.startswith(prefix):
            body = body[len(prefix) :]
        status_causes.append({'reason': cause.reason, 'message': body, 'field': cause.field})
    details: dict[str, Any] = {}
    if name:
        details['name'] = name
    if group:
        details['group'] = group
    details['kind'] = kind
    details['causes'] = status_causes
    message = (
        f'{qualified} {json.dumps(name)} is invalid: {_aggregate([c.message for c in causes])}'
    )
    return ApiError(422, 'Invalid', message, details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, 'BadRequest', message)


def forbidden(
    gr: GroupResource, name: str, why: str, causes: list[dict[str, str]] | None = None
) -> ApiError:
    subject = f'{gr} {json.dumps(name)}' if name else str(gr)
    details = _details(gr, name)
    if causes:
        details['causes'] = causes
    return ApiError(403, 'Forbidden', f'{subject} is forbidden: {why}', details)


def method_not_supported(gr: GroupResource, action: str) -> ApiError:
    return ApiError(
        405,
        'MethodNotAllowed',
        f'{action} is not supported on resources of kind {json.dumps(str(gr))}',
        _details(gr, ''),
    )


def method_not_allowed() -> ApiError:
    return ApiError(
        405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource'
    )


def expired(message: str, list_meta: dict[str, Any] | None = None) -> ApiError:
    """410 with reason Expired: a too old resourceVersion or continue token."""
    return ApiError(410, 'Expired', message, list_meta=list_meta)


def unsupported_media_type(accepted: Sequence[str], content_type: str = '') -> ApiError:
    message = 'the body of the request was in an unknown format - accepted media types include: '
    message += ', '.join(accepted)
    if content_type.startswith('application/vnd.kubernetes.protobuf'):
        message += ' (this emulator speaks JSON and YAML only)'
    return ApiError(415, 'UnsupportedMediaType', message)


def not_acceptable(accepted: Sequence[str]) -> ApiError:
    message = 'only the following media types are accepted: ' + ', '.join(accepted)
    return ApiError(406, 'NotAcceptable', message)


def request_entity_too_large(limit: int) -> ApiError:
    return ApiError(413, 'RequestEntityTooLarge', f'Request entity too large: limit is {limit}')


def too_large_resource_version(requested: int, current: int) -> ApiError:
    """504 Timeout: a resourceVersion the server has not reached (the cacher waits 3 s)."""
    return ApiError(
        504,
        'Timeout',
        f'Too large resource version: {requested}, current: {current}',
        {
            'causes': [
                {'reason': 'ResourceVersionTooLarge', 'message': 'Too large resource version'}
            ],
            'retryAfterSeconds': 1,
        },
    )


def internal(message: str) -> ApiError:
    return ApiError(
        500,
        'InternalError',
        f'Internal error occurred: {message}',
        {'causes': [{'message': message}]},
    )

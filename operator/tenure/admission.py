"""The validating admission webhook: `kubectl apply` refuses what the operator would deny.

`review()` is the decision, pure: an admission request, the policy in force, the clock reading and a
lookup of the namespace's labels in; allowed or denied, a message and warnings out. It runs the same
guardrails (`domain.guardrails.evaluate`) and schema translation (`manifests.validation_problems`)
as the operator and `tenure check`, so a rule has one implementation whoever asks. The webhook is a
convenience at apply time, not the line of defence: the operator judges every spec again before it
provisions anything (issue #4), so the webhook may be absent or fail open without granting access.

What it decides, and why:

- CREATE and UPDATE are validated; DELETE and CONNECT are allowed without a look (deletion revokes,
  it never grants).
- Enforce: every violation is listed in the denial, each with its rule id (`describe()`), with code
  403 (422 when the object does not even match the schema). Audit: allowed, every violation comes
  back as an admission warning (`kubectl` prints them).
- A Requested ticket is not a violation: the identity waits (phase Pending); a warning says so.
- UPDATE with an unchanged spec is allowed without evaluation: the operator's own writes
  (finalizers, its bookkeeping annotations), `kubectl annotate tenure.dev/revoke=...` and label
  edits must pass even when a tightened policy now faults the spec.
- UPDATE of an identity whose access has ended or is ending (status.revocation set, phase Revoked,
  or deletion under way) is allowed with a warning: the operator ignores changes to a tombstone
  (Revoked is terminal), so refusing them would only break a GitOps sync for nothing.
- UPDATE refuses only violations the update introduces. One already there, at a value the update
  leaves unchanged, is reported as a warning instead: otherwise an identity that a policy change
  made non-compliant could not even have its ticket cancelled through its manifest, and cancelling
  is how access ends. Kubernetes validates CRDs the same way ("validation ratcheting",
  https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-ratcheting).
- `provisioned` (no AlreadyExpired for an identity already Active) comes from the old object's
  status on UPDATE (`status.appliedScope`), never from the new object: on CREATE a client could
  claim any status it likes.
- When the change is allowed, the lifecycle's own decision (`lifecycle.decide`) adds a warning when
  it will not take effect as written: an extension or a wider scope without a new approval, a
  ticket back to Requested, a revocation it triggers.

Messages carry rule ids, field paths and the short values the rules quote; never whole objects (and
a ServiceIdentity holds no secret values to begin with).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from pydantic import ValidationError

from tenure.api.v1alpha1 import GROUP, PLURAL, ServiceIdentity, ServiceIdentityStatus
from tenure.domain.guardrails import (
    Mode,
    Policy,
    Rule,
    Target,
    Violation,
    describe,
    evaluate,
)
from tenure.domain.lifecycle import Converge, Hold, Observed, Revoke, Wait, decide
from tenure.errors import TenureError
from tenure.manifests import Loc, format_loc, parse_loc, validation_problems

WEBHOOK_PATH: Final = '/validate-serviceidentities'
"""Where the ValidatingWebhookConfiguration must point (clientConfig.service.path)."""
OPERATIONS: Final = ('CREATE', 'UPDATE')
REVIEW_VERSIONS: Final = ('admission.k8s.io/v1', 'admission.k8s.io/v1beta1')
KNOWN_OPERATIONS: Final = ('CREATE', 'UPDATE', 'DELETE', 'CONNECT')

# The API server may cut a warning over 256 characters and drops every warning past 4096 in all
# (https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#response).
MAX_WARNING: Final = 256
MAX_WARNINGS_TOTAL: Final = 4096

DENIED: Final = 403
INVALID: Final = 422
BAD_REQUEST: Final = 400

LabelLookup = Callable[[str], Mapping[str, str] | None]
"""The labels of a namespace; None when unknown. May raise TenureError (reported, not fatal)."""


@dataclasses.dataclass(frozen=True)
class AdmissionRequest:
    """The parts of an AdmissionReview request the decision reads."""

    operation: str
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None = None
    namespace: str | None = None
    """request.namespace: used when the object does not name its namespace."""


@dataclasses.dataclass(frozen=True)
class Answer:
    """The webhook's answer: AdmissionResponse's allowed, status.message/code and warnings."""

    allowed: bool
    message: str = ''
    code: int = 200
    warnings: tuple[str, ...] = ()


def review(
    request: AdmissionRequest,
    *,
    policy: Policy,
    now: datetime,
    kv_mount: str,
    namespace_labels: LabelLookup,
) -> Answer:
    """Decide one admission request for a ServiceIdentity (see the module docstring)."""
    if request.operation not in OPERATIONS:
        return Answer(True)
    new = request.object
    if not isinstance(new, Mapping):
        return Answer(False, 'the request has no object to review', BAD_REQUEST)
    old = request.old_object if request.operation == 'UPDATE' else None
    if old is not None and old.get('spec') == new.get('spec'):
        return Answer(True)
    old_status = _mapping(old.get('status')) if old is not None else {}
    ending = _access_ending(old) if old is not None else None
    if ending is not None:
        return Answer(True, warnings=_bounded([ending]))

    parsed = _parse(new, request.namespace)
    if isinstance(parsed, str):
        return Answer(False, parsed, INVALID)
    identity = parsed
    namespace = identity.metadata.namespace or ''
    warnings: list[str] = []
    labels = None
    if identity.spec.environment is not None:
        try:
            labels = namespace_labels(namespace)
        except TenureError as e:
            warnings.append(
                f'{Rule.ENVIRONMENT_MISMATCH} not checked: cannot read namespace {namespace}: {e} '
                '(the operator checks it before provisioning)'
            )
    target = Target(
        namespace=namespace,
        name=identity.metadata.name,
        kv_mount=kv_mount,
        namespace_labels=labels,
        provisioned=old_status.get('appliedScope') is not None,
    )
    violations = evaluate(identity.spec, policy, target, now)
    if policy.mode is Mode.AUDIT:
        warnings.extend(f'Audit (not enforced): {v}' for v in violations)
        introduced: list[Violation] = []
    else:
        before = _violations_before(old, request.namespace, policy, target, now)
        kept = [v for v in violations if _unchanged(v, before, old, new)]
        introduced = [v for v in violations if v not in kept]
        warnings.extend(f'not changed by this update, so not refused: {v}' for v in kept)
    if introduced:
        return Answer(False, describe(introduced), DENIED, _bounded(warnings))
    warnings.extend(_lifecycle_warnings(identity, old_status, now, policy.mode))
    return Answer(True, warnings=_bounded(warnings))


# -- the pieces of the decision ------------------------------------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _access_ending(old: Mapping[str, Any]) -> str | None:
    """Why changes to this object no longer matter, or None while they do."""
    meta, status = _mapping(old.get('metadata')), _mapping(old.get('status'))
    what = f'{meta.get("namespace")}/{meta.get("name")}'
    if status.get('phase') == 'Revoked':
        return (
            f'{what} is Revoked: the operator ignores changes to it (Revoked is terminal; renewing '
            'access needs a new ServiceIdentity with a new approval)'
        )
    if status.get('revocation') is not None or meta.get('deletionTimestamp'):
        return f'{what} is being revoked: the change does not stop the revocation'
    return None


def _parse(obj: Mapping[str, Any], namespace: str | None) -> ServiceIdentity | str:
    """The object as a ServiceIdentity, or the schema problems in one message."""
    # The status is the operator's record, not part of what is being approved.
    body = {key: value for key, value in obj.items() if key != 'status'}
    meta = _mapping(body.get('metadata'))
    if not meta.get('namespace') and namespace:
        body['metadata'] = {**meta, 'namespace': namespace}
    try:
        identity = ServiceIdentity.model_validate(body)
    except ValidationError as e:
        return '; '.join(
            f'{rule}: {format_loc(loc)}: {message}' for loc, message, rule in validation_problems(e)
        )
    if not identity.metadata.namespace:
        return 'InvalidSpec: metadata.namespace: a ServiceIdentity lives in a namespace'
    return identity


def _violations_before(
    old: Mapping[str, Any] | None,
    namespace: str | None,
    policy: Policy,
    target: Target,
    now: datetime,
) -> set[tuple[Rule, str]]:
    """The (rule, field) pairs the old spec already violated under the same policy and target."""
    if old is None:
        return set()
    parsed = _parse(old, namespace)
    if isinstance(parsed, str):
        return set()
    return {(v.rule, v.field) for v in evaluate(parsed.spec, policy, target, now)}


_TIME: Final = ('spec.expiresAt', 'spec.ticket.approvedAt')
RULE_INPUTS: Final[Mapping[Rule, tuple[str, ...]]] = {
    # Rules that read more than the field they point at.
    Rule.REQUESTER_IS_APPROVER: ('spec.ticket.requester', 'spec.ticket.approver'),
    Rule.EXPIRY_BEFORE_APPROVAL: _TIME,
    Rule.LIFETIME_TOO_LONG: _TIME,
}
_LIST_ITEM = re.compile(r'^spec\.(kubernetes\.rules|vault\.policy)\[\d+\]')
_MISSING: Final = object()


def _inputs(violation: Violation) -> tuple[str, ...]:
    """The fields a violation depends on: a whole RBAC or Vault rule for the per-rule checks."""
    if violation.rule in RULE_INPUTS:
        return RULE_INPUTS[violation.rule]
    item = _LIST_ITEM.match(violation.field)
    return (item.group(0),) if item else (violation.field,)


def _value_at(obj: Any, loc: Loc) -> Any:
    for step in loc:
        in_list = isinstance(step, int) and isinstance(obj, list) and 0 <= step < len(obj)
        in_mapping = isinstance(step, str) and isinstance(obj, Mapping) and step in obj
        if not (in_list or in_mapping):
            return _MISSING
        obj = obj[step]
    return obj


def _unchanged(
    violation: Violation,
    before: set[tuple[Rule, str]],
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
) -> bool:
    """Already violated before, at values this update leaves as they were."""
    if old is None or (violation.rule, violation.field) not in before:
        return False
    return all(
        _value_at(old, parse_loc(field)) == _value_at(new, parse_loc(field))
        for field in _inputs(violation)
    )


def _lifecycle_warnings(
    identity: ServiceIdentity, old_status: Mapping[str, Any], now: datetime, mode: Mode
) -> list[str]:
    """What the operator will do with this spec when it does not simply apply it."""
    try:
        status = ServiceIdentityStatus.model_validate(dict(old_status))
    except ValidationError:
        return []  # the operator reports an unreadable status itself
    observed = Observed(
        spec=identity.spec,
        spec_error=None,
        status=status,
        annotations=identity.metadata.annotations,
        generation=0,
        deleting=False,
        mode=mode,
    )
    match decide(observed, now):
        case Wait(message=message):
            return [f'{Rule.NOT_APPROVED}: {message} (phase Pending)']
        case Hold(reason=reason, message=message):
            return [f'{reason}: {message}']
        case Revoke(reason=reason, message=message) if status.phase is not None:
            return [f'access ends ({reason}): {message}']
        case Converge(verdict=verdict) if not verdict.valid:
            return [f'{verdict.reason}: {verdict.message}']
    return []


def _bounded(warnings: Sequence[str]) -> tuple[str, ...]:
    """Warnings within the API server's limits, saying how many were left out."""
    texts = [w if len(w) <= MAX_WARNING else w[: MAX_WARNING - 1] + '…' for w in warnings]
    if sum(len(t) for t in texts) <= MAX_WARNINGS_TOTAL:
        return tuple(texts)
    budget = MAX_WARNINGS_TOTAL - len('... and 9999 more warnings')
    kept: list[str] = []
    for text in texts:
        if len(text) > budget:
            break
        kept.append(text)
        budget -= len(text)
    return (*kept, f'... and {len(texts) - len(kept)} more warnings')


# -- the request itself --------------------------------------------------------------------


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + '…'


def request_problem(review_body: Any) -> str | None:
    """Why this is not an AdmissionReview request Tenure can answer, or None.

    The API server never sends these; a hand-made or truncated request, or a webhook configuration
    that sends another resource here, gets a clear HTTP 400 instead of an answer about nothing.
    """
    if not isinstance(review_body, Mapping):
        return 'the body must be a JSON object: an admission.k8s.io/v1 AdmissionReview'
    kind, version = review_body.get('kind'), review_body.get('apiVersion')
    if kind != 'AdmissionReview' or version not in REVIEW_VERSIONS:
        return (
            f'expected an admission.k8s.io/v1 AdmissionReview, got kind {_short(kind)} '
            f'apiVersion {_short(version)}'
        )
    request = review_body.get('request')
    if not isinstance(request, Mapping):
        return 'request is missing: an AdmissionReview to answer carries a request'
    if not isinstance(request.get('uid'), str) or not request['uid']:
        return 'request.uid is missing (the response must echo it)'
    resource = request.get('resource')
    if not isinstance(resource, Mapping) or not all(
        isinstance(resource.get(key), str) for key in ('group', 'version', 'resource')
    ):
        return 'request.resource must name group, version and resource'
    if (resource['group'], resource['resource']) != (GROUP, PLURAL):
        return (
            f'Tenure reviews {PLURAL}.{GROUP}, not {_short(resource["resource"])} '
            f'of group {_short(resource["group"])}'
        )
    operation = request.get('operation')
    if operation not in KNOWN_OPERATIONS:
        allowed = ', '.join(KNOWN_OPERATIONS)
        return f'request.operation must be one of {allowed}, not {_short(operation)}'
    if not isinstance(request.get('userInfo'), Mapping):
        return 'request.userInfo is missing'
    needed = {
        'CREATE': ('object',),
        'UPDATE': ('object', 'oldObject'),
        'DELETE': ('oldObject',),
        'CONNECT': ('object',),
    }[operation]
    for key in needed:
        if not isinstance(request.get(key), Mapping):
            return f'request.{key} must be the object of a {operation} (a JSON object)'
    return None

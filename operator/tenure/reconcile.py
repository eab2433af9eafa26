"""One reconcile of one ServiceIdentity: gather -> decide -> apply -> status and events.

Knows nothing of kopf: the handlers and the deadline scheduler both call `Reconciler.reconcile`
with the object as the API returned it. Decisions come from `tenure.domain` (pure); the world is
reached through the ports (`tenure.ports`), implemented by `tenure.adapters`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import ValidationError

from tenure.api.v1alpha1 import (
    ConditionStatus,
    OwnerRecord,
    Phase,
    ProofCheck,
    RevocationStatus,
    ServiceIdentitySpec,
    ServiceIdentityStatus,
    VaultStatus,
)
from tenure.domain.conditions import find_condition, set_condition
from tenure.domain.desired import (
    DEFAULT_EXPIRY_WARNING,
    DEFAULT_MAX_TOKEN_TTL,
    Identity,
    kubernetes_objects,
    plan_token_ttl,
    policy_is_ours,
    role_is_ours,
    secret_metadata,
    vault_policy,
    vault_role,
)
from tenure.domain.drift import (
    BindingRef,
    DriftKind,
    Repair,
    VaultExpectation,
    approval_unchanged,
    drift_message,
    kubernetes_repairs,
    policy_claimed_by_other,
    role_claimed_by_other,
    role_ttl_drifted,
    unexpected_message,
)
from tenure.domain.guardrails import Policy, Target, Violation, evaluate
from tenure.domain.history import with_history
from tenure.domain.lifecycle import (
    Converge,
    Decision,
    Deny,
    Hold,
    Keep,
    Observed,
    Revoke,
    Wait,
    decide,
    effective_expiry,
    expiry_warning,
    rotation_due,
)
from tenure.domain.names import DEFAULT_AUTH_MOUNT, DEFAULT_KV_MOUNT, IdentityNames
from tenure.domain.reasons import ConditionType, Reason
from tenure.domain.tickets import SourceView, more_restrictive, observation_for
from tenure.domain.tickets import check as ticket_check
from tenure.errors import NameConflict, PermanentError, TransientError
from tenure.manifests import describe_spec_error
from tenure.ports import KubernetesPort, VaultPort

log = logging.getLogger(__name__)

OWNER_HISTORY_LIMIT = 32
GONE = 'Gone'
T = TypeVar('T')


@dataclasses.dataclass(frozen=True)
class Settings:
    kv_mount: str = DEFAULT_KV_MOUNT
    auth_mount: str = DEFAULT_AUTH_MOUNT
    max_token_ttl: timedelta = DEFAULT_MAX_TOKEN_TTL
    expiry_warning: timedelta = DEFAULT_EXPIRY_WARNING
    """How long before expiry the ExpiringSoon condition and its one Warning event come."""
    remove_unexpected_bindings: bool = False
    """Delete bindings outside Tenure that grant a managed ServiceAccount (issue #6)."""


@dataclasses.dataclass(frozen=True)
class Note:
    """An Event to record about the ServiceIdentity."""

    warning: bool
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class TokenRefresh:
    """The next shortening of an Active identity's Vault token TTL (see `plan_token_ttl`).

    Near the expiry the TTL halves at each refresh, so they come ever closer together: a full
    reconcile each time would load both APIs most just when the expiries are due. A refresh
    is one Vault role write, done from what the last reconcile found (`Reconciler.refresh`).
    """

    identity: Identity
    ttl_seconds: int
    """The token TTL the role was given last."""
    at: datetime


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: ServiceIdentityStatus
    decision: Decision
    events: tuple[Note, ...] = ()
    next_deadline: datetime | None = None
    """When to reconcile again even if nothing changes (expiry, warning, rotation)."""
    token_refresh: TokenRefresh | None = None
    """When to shorten the Vault token TTL next, without a reconcile (Active identities)."""
    violations: tuple[Violation, ...] = ()
    """The guardrail violations found (for metrics)."""
    repairs: tuple[Repair, ...] = ()
    """Managed objects found changed outside Tenure and put back (issue #6, for metrics)."""

    @property
    def finished(self) -> bool:
        """Nothing is left to do: revoked and verified (a deleted object may go)."""
        revocation = self.status.revocation
        return revocation is not None and revocation.verified


class ReconcileFailed(Exception):
    """The reconcile wrote its status and failed; `cause` says whether to retry."""

    def __init__(self, outcome: Outcome, cause: TransientError | PermanentError) -> None:
        super().__init__(str(cause))
        self.outcome = outcome
        self.cause = cause


@dataclasses.dataclass(frozen=True)
class _Object:
    names: IdentityNames
    uid: str
    generation: int
    observed: Observed
    status_json: dict[str, Any]


def merge_patch_between(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns `old` into `new` (empty when they are equal)."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        previous = old.get(key)
        if isinstance(value, Mapping) and isinstance(previous, Mapping):
            nested = merge_patch_between(previous, value)
            if nested:
                patch[key] = nested
        elif previous != value or key not in old:
            patch[key] = value
    return patch


def status_json(status: ServiceIdentityStatus) -> dict[str, Any]:
    return status.model_dump(mode='json', by_alias=True, exclude_none=True)


class Reconciler:
    """Turns a ServiceIdentity into Kubernetes and Vault state, or revokes it, with proof."""

    def __init__(
        self,
        kube: KubernetesPort,
        vault: VaultPort,
        *,
        clock: Callable[[], datetime],
        settings: Settings | None = None,
        policy: Callable[[], Policy] = Policy,
        ticket_sources: Callable[[str], SourceView | None] = lambda _system: None,
        threads: int = 16,
    ) -> None:
        self.kube = kube
        self.vault = vault
        self.clock = clock
        self.settings = settings or Settings()
        self.policy = policy
        """The guardrail policy in force (the `default` IdentityPolicy, or built-in defaults)."""
        self.ticket_sources = ticket_sources
        """The TicketSource named by a spec.ticket.system, if any (issue #7)."""
        self._parallel = ThreadPoolExecutor(threads, thread_name_prefix='tenure-vault')
        """Where a revocation runs its Vault part while its own thread does Kubernetes' (one
        thread each at most: size it to the reconciles in flight)."""
        self.unexpected_bindings: Callable[[tuple[str, str]], list[BindingRef] | None] = (
            lambda _key: None
        )
        """Bindings outside Tenure that grant the identity's ServiceAccount (None: unknown)."""
        self.vault_expected: dict[tuple[str, str], VaultExpectation] = {}
        """Per Active identity, what its last converge left in Vault (the periodic drift check
        compares against it). Kept in memory: after a restart the resume reconciles refill it."""

    # -- gather ----------------------------------------------------------------------------

    def _violations(
        self, names: IdentityNames, spec: ServiceIdentitySpec, status: ServiceIdentityStatus
    ) -> tuple[Policy, tuple[Violation, ...]]:
        policy = self.policy()
        # The namespace is read only when its label can matter (EnvironmentMismatch).
        labels = self.kube.namespace_labels(names.namespace) if spec.environment else None
        target = Target(
            namespace=names.namespace,
            name=names.name,
            kv_mount=self.settings.kv_mount,
            namespace_labels=labels,
            provisioned=status.applied_scope is not None,
        )
        return policy, tuple(evaluate(spec, policy, target, self.clock()))

    def _read(self, body: Mapping[str, Any]) -> _Object:
        meta = body.get('metadata') or {}
        names = IdentityNames(
            namespace=meta['namespace'],
            name=meta['name'],
            kv_mount=self.settings.kv_mount,
            auth_mount=self.settings.auth_mount,
        )
        raw_status = dict(body.get('status') or {})
        try:
            status = ServiceIdentityStatus.model_validate(raw_status)
        except ValidationError as e:
            # The status is Tenure's own record; if it cannot be read, acting on a guess could
            # forget a revocation in progress. Stop and say so.
            raise PermanentError(
                f'status of {names.namespace}/{names.name} is unreadable: {e}'
            ) from e
        spec: ServiceIdentitySpec | None
        try:
            spec = ServiceIdentitySpec.model_validate(body.get('spec') or {})
            spec_error = None
        except ValidationError as e:
            spec, spec_error = None, describe_spec_error(e)
        policy, violations = (
            self._violations(names, spec, status) if spec is not None else (self.policy(), ())
        )
        source = self.ticket_sources(spec.ticket.system) if spec is not None else None
        check = None
        if spec is not None and source is not None:
            # The ITSM is the source of truth: the more restrictive of the manifest's ticket
            # state and the one observed is in force; lifecycle.decide sees only that one.
            seen = observation_for(status.ticket, spec.ticket.id, source.name)
            state = more_restrictive(spec.ticket.state, seen.observed_state if seen else None)
            if state is not spec.ticket.state:
                ticket = spec.ticket.model_copy(update={'state': state})
                spec = spec.model_copy(update={'ticket': ticket})
            check = ticket_check(spec.ticket.id, spec.ticket.approver, seen, source)
        observed = Observed(
            spec=spec,
            spec_error=spec_error,
            status=status,
            annotations=dict(meta.get('annotations') or {}),
            generation=int(meta.get('generation') or 0),
            deleting=bool(meta.get('deletionTimestamp')),
            violations=violations,
            mode=policy.mode,
            ticket_check=check,
        )
        return _Object(names, meta.get('uid', ''), observed.generation, observed, raw_status)

    # -- the reconcile ---------------------------------------------------------------------

    def decision_for(self, body: Mapping[str, Any]) -> Decision:
        """What a reconcile would decide now, without acting (for start-up catch-up)."""
        return decide(self._read(body).observed, self.clock())

    def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        """Reconcile one ServiceIdentity. Raises ReconcileFailed after writing status on failure."""
        obj = self._read(body)
        now = self.clock()
        decision = decide(obj.observed, now)
        violations = obj.observed.violations
        try:
            with self.vault.memoised_reads():
                acted = self._act(obj, decision, now)
            outcome = dataclasses.replace(acted, violations=violations)
        except (TransientError, PermanentError) as e:
            outcome = dataclasses.replace(
                self._failed(obj, decision, now, e), violations=violations
            )
            outcome = self._recorded(obj, outcome, now)
            self._write(obj, outcome)
            raise ReconcileFailed(outcome, e) from e
        outcome = self._recorded(obj, outcome, now)
        self._write(obj, outcome)
        if not isinstance(decision, Converge):
            self.vault_expected.pop((obj.names.namespace, obj.names.name), None)
        return outcome

    def refresh(self, due: TokenRefresh) -> TokenRefresh | None:
        """Shorten the identity's Vault token TTL as planned; returns the next refresh (None
        once the expiry comes first). Called only for an identity that is still Active, with
        no reconcile of it running (see `Runtime.refresh_key`)."""
        identity = due.identity
        now = self.clock()
        if now >= identity.expires_at:
            return None  # the expiry's reconcile revokes it
        plan = plan_token_ttl(
            now, identity.expires_at, due.ttl_seconds, self.settings.max_token_ttl
        )
        if plan.write:
            # Written without a read first: the plan says the TTL in force differs (and the
            # write sets every field Tenure manages, as the converge left them).
            role = vault_role(identity, plan.ttl_seconds)
            self.vault.write_role(role)
            # The drift check compares the role with what Tenure last wrote: this is it now.
            key = (identity.names.namespace, identity.names.name)
            expected = self.vault_expected.get(key)
            if expected is not None:
                self.vault_expected[key] = dataclasses.replace(expected, role=role)
        if plan.next_refresh >= identity.expires_at:
            return None
        return TokenRefresh(identity, plan.ttl_seconds, plan.next_refresh)

    @staticmethod
    def _recorded(obj: _Object, outcome: Outcome, now: datetime) -> Outcome:
        """The outcome with this reconcile's transitions in status.history (none: unchanged)."""
        status = with_history(
            obj.observed.status, outcome.status, at=now, generation=obj.generation
        )
        return outcome if status is outcome.status else dataclasses.replace(outcome, status=status)

    def _act(self, obj: _Object, decision: Decision, now: datetime) -> Outcome:
        match decision:
            case Wait():
                return self._wait(obj, decision, now)
            case Deny():
                return self._deny(obj, decision, now)
            case Hold():
                return self._hold(obj, decision, now)
            case Converge():
                return self._converge(obj, decision, now)
            case Revoke():
                return self._revoke(obj, decision, now)
            case Keep():
                return self._keep(obj, decision, now)

    def _write(self, obj: _Object, outcome: Outcome) -> None:
        patch = merge_patch_between(obj.status_json, status_json(outcome.status))
        if patch:
            self.kube.patch_status(obj.names, patch)
        for note in outcome.events:
            self.kube.post_event(
                obj.names, obj.uid, warning=note.warning, reason=note.reason, message=note.message
            )

    # -- status helpers ----------------------------------------------------------------------

    def _conditions(
        self,
        obj: _Object,
        now: datetime,
        *updates: tuple[ConditionType, bool, str, str],
    ) -> list[Any]:
        conditions = list(obj.observed.status.conditions)
        for type_, ok, reason, message in updates:
            conditions = set_condition(
                conditions,
                type=type_,
                status=ConditionStatus.TRUE if ok else ConditionStatus.FALSE,
                reason=reason,
                message=message,
                generation=obj.generation,
                now=now,
            )
        return conditions

    @staticmethod
    def _phase_event(
        obj: _Object, phase: Phase, warning: bool, reason: str, message: str
    ) -> tuple[Note, ...]:
        """An event when the phase changes (events are sparse: transitions only)."""
        if obj.observed.status.phase is phase:
            return ()
        return (Note(warning, reason, message),)

    # -- Wait / Deny / Hold / Keep ------------------------------------------------------------

    def _wait(self, obj: _Object, decision: Wait, now: datetime) -> Outcome:
        conditions = self._conditions(
            obj,
            now,
            (ConditionType.VALID, True, Reason.SPEC_VALID, 'the spec is valid'),
            (ConditionType.PROVISIONED, False, decision.reason, decision.message),
        )
        # A ticket source that cannot say yet leaves readiness unknown, not refused (issue #7).
        conditions = set_condition(
            conditions,
            type=ConditionType.READY,
            status=ConditionStatus.FALSE
            if decision.reason == Reason.AWAITING_APPROVAL
            else ConditionStatus.UNKNOWN,
            reason=decision.reason,
            message=decision.message,
            generation=obj.generation,
            now=now,
        )
        status = obj.observed.status.model_copy(
            update={
                'phase': Phase.PENDING,
                'observed_generation': obj.generation,
                'conditions': conditions,
            }
        )
        spec = obj.observed.spec
        return Outcome(
            status,
            decision,
            self._phase_event(obj, Phase.PENDING, False, decision.reason, decision.message),
            next_deadline=spec.expires_at if spec else None,
        )

    def _deny(self, obj: _Object, decision: Deny, now: datetime) -> Outcome:
        status = obj.observed.status.model_copy(
            update={
                'phase': Phase.DENIED,
                'observed_generation': obj.generation,
                'conditions': self._conditions(
                    obj,
                    now,
                    (ConditionType.VALID, False, decision.reason, decision.message),
                    (ConditionType.PROVISIONED, False, Reason.DENIED, 'nothing is provisioned'),
                    (ConditionType.READY, False, Reason.DENIED, decision.message),
                ),
            }
        )
        events = self._phase_event(obj, Phase.DENIED, True, decision.reason, decision.message)
        return Outcome(status, decision, events)

    def _hold(self, obj: _Object, decision: Hold, now: datetime) -> Outcome:
        status = obj.observed.status.model_copy(
            update={
                'observed_generation': obj.generation,
                'conditions': self._conditions(
                    obj, now, (ConditionType.VALID, False, decision.reason, decision.message)
                ),
            }
        )
        events = self._valid_event(obj, decision.reason, decision.message)
        return Outcome(status, decision, events, next_deadline=obj.observed.status.expires_at)

    def _keep(self, obj: _Object, decision: Keep, now: datetime) -> Outcome:
        status = obj.observed.status
        if status.observed_generation != obj.generation:
            status = status.model_copy(
                update={
                    'observed_generation': obj.generation,
                    'conditions': self._conditions(
                        obj,
                        now,
                        (ConditionType.VALID, False, Reason.REVOKED_IS_TERMINAL, decision.message),
                    ),
                }
            )
        return Outcome(status, decision)

    @staticmethod
    def _valid_event(obj: _Object, reason: str, message: str) -> tuple[Note, ...]:
        previous = find_condition(obj.observed.status.conditions, ConditionType.VALID)
        if previous is not None and previous.reason == reason:
            return ()
        return (Note(True, reason, message),)

    # -- Converge -------------------------------------------------------------------------

    def _converge(self, obj: _Object, decision: Converge, now: datetime) -> Outcome:
        names, previous = obj.names, obj.observed.status
        identity = Identity(
            names=names,
            uid=obj.uid,
            ticket_id=decision.approval.ticket_id,
            owner=decision.owner,
            scope=decision.scope,
            expires_at=decision.expires_at,
        )
        events: list[Note] = []
        # Every write of a converge that applies the approval already in force repairs drift.
        judged = approval_unchanged(previous, decision)
        key = (names.namespace, names.name)
        subject = self._check_vault_names(names, repairing=judged)
        detail: dict[str, str] = {}
        changed = self.kube.apply(names, kubernetes_objects(identity), changes=detail)
        repairs = kubernetes_repairs(detail) if judged else []
        policy_text = vault_policy(identity)
        if self.vault.ensure_policy(names.vault_policy, policy_text) and judged:
            repairs.append(Repair(DriftKind.VAULT_POLICY, names.vault_policy, 'policy text'))
        current_ttl = self.vault.role_token_ttl(names.vault_role)
        ttl = plan_token_ttl(now, decision.expires_at, current_ttl, self.settings.max_token_ttl)
        role = vault_role(identity, ttl.ttl_seconds)
        expected = self.vault_expected.get(key)
        if self.vault.ensure_role(role) and judged:
            if current_ttl is None:
                what = 'missing; created'
            elif subject != ((names.namespace,), (names.service_account,)):
                what = 'bound ServiceAccount or namespace'
            elif role_ttl_drifted(
                current=current_ttl,
                cap=int(self.settings.max_token_ttl.total_seconds()),
                last_written=expected.role.ttl_seconds if expected else None,
                kept=not ttl.write,
            ):
                what = 'token TTL'
            else:
                what = ''  # Tenure's own TTL step as the expiry nears: not drift
            if what:
                repairs.append(Repair(DriftKind.VAULT_ROLE, names.vault_role, what))

        if decision.revoke_issued_tokens:
            revoked = self.vault.revoke_issued_tokens(
                role=names.vault_role, namespace=names.namespace, service_account=names.name
            )
            log.info(
                '%s/%s: revoked %d Vault tokens issued before', names.namespace, names.name, revoked
            )

        vault_status, rotated, secret_repair = self._converge_secret(
            identity, decision, previous, now, judged=judged
        )
        if secret_repair is not None:
            repairs.append(secret_repair)
        unexpected = self._unexpected_bindings(key, repairs)
        if repairs:
            events.append(Note(True, Reason.DRIFT_REPAIRED, drift_message(repairs)))
            log.warning('%s/%s: %s', names.namespace, names.name, drift_message(repairs))
        self.vault_expected[key] = VaultExpectation(
            policy=names.vault_policy,
            policy_text=policy_text,
            role=role,
            secret_path=names.secret_path if decision.scope.secret_keys else None,
        )
        if rotated:
            events.append(
                Note(
                    False,
                    Reason.SECRET_ROTATED,
                    f'generated secret rotated to version {vault_status.secret_version}',
                )
            )
        if decision.previous_owner is not None:
            events.append(
                Note(
                    False,
                    Reason.OWNER_CHANGED,
                    f'owner changed from {decision.previous_owner.team} to {decision.owner.team}; '
                    'secret rotated and previously issued Vault tokens revoked',
                )
            )
        history = list(previous.owner_history)
        if decision.previous_owner is not None:
            history.append(
                OwnerRecord(
                    team=decision.previous_owner.team,
                    contact=decision.previous_owner.contact,
                    until=now,
                )
            )
        verdict = decision.verdict
        if not verdict.valid:
            events.extend(self._valid_event(obj, verdict.reason, verdict.message))
        summary = f'provisioned until {decision.expires_at:%Y-%m-%dT%H:%M:%SZ}'
        if changed and previous.phase is Phase.ACTIVE:
            log.info('%s/%s: converged %s', names.namespace, names.name, ', '.join(changed))
        events.extend(self._phase_event(obj, Phase.ACTIVE, False, Reason.PROVISIONED, summary))
        warning = expiry_warning(now, decision.expires_at, self.settings.expiry_warning)
        expiring = find_condition(previous.conditions, ConditionType.EXPIRING_SOON)
        if warning.expiring_soon and (expiring is None or expiring.status != 'True'):
            # Once per approval: the condition is persisted, so a restart does not repeat it, and
            # a new approval that moves the expiry resets it.
            events.append(Note(True, Reason.EXPIRING_SOON, warning.message))
        status = previous.model_copy(
            update={
                'phase': Phase.ACTIVE,
                'observed_generation': obj.generation,
                'service_account': names.service_account,
                'vault': vault_status,
                'approval': decision.approval,
                'applied_scope': decision.scope,
                'owner': decision.owner,
                'owner_history': history[-OWNER_HISTORY_LIMIT:],
                'expires_at': decision.expires_at,
                'closure_handled_at': now
                if decision.rotate_for_closure
                else previous.closure_handled_at,
                'rotation_request': decision.rotation_request or previous.rotation_request,
                'conditions': self._conditions(
                    obj,
                    now,
                    (ConditionType.VALID, verdict.valid, verdict.reason, verdict.message),
                    (ConditionType.PROVISIONED, True, Reason.PROVISIONED, summary),
                    (ConditionType.READY, True, Reason.ACTIVE, summary),
                    (
                        ConditionType.EXPIRING_SOON,
                        warning.expiring_soon,
                        Reason.EXPIRING_SOON if warning.expiring_soon else Reason.EXPIRES_LATER,
                        warning.message,
                    ),
                ),
            }
        )
        if unexpected is not None:
            previous_finding = find_condition(
                previous.conditions, ConditionType.UNEXPECTED_BINDINGS
            )
            message = unexpected_message(
                unexpected, removing=self.settings.remove_unexpected_bindings
            )
            if unexpected and (
                previous_finding is None
                or previous_finding.status != ConditionStatus.TRUE
                or previous_finding.message != message
            ):
                events.append(Note(True, Reason.UNEXPECTED_BINDING, message))
            status = status.model_copy(
                update={
                    'conditions': set_condition(
                        status.conditions,
                        type=ConditionType.UNEXPECTED_BINDINGS,
                        status=ConditionStatus.TRUE if unexpected else ConditionStatus.FALSE,
                        reason=Reason.UNEXPECTED_BINDING
                        if unexpected
                        else Reason.NO_UNEXPECTED_BINDINGS,
                        message=message,
                        generation=obj.generation,
                        now=now,
                    )
                }
            )
        deadlines = [decision.expires_at]
        if warning.starts_at is not None:
            deadlines.append(warning.starts_at)
        spec = obj.observed.spec
        rotation = rotation_due(status, spec, now) if spec is not None else None
        if rotation is not None:
            deadlines.append(rotation)
        return Outcome(
            status,
            decision,
            tuple(events),
            next_deadline=min(deadlines),
            token_refresh=TokenRefresh(identity, ttl.ttl_seconds, ttl.next_refresh)
            if ttl.next_refresh < decision.expires_at
            else None,
            repairs=tuple(repairs),
        )

    def _unexpected_bindings(
        self, key: tuple[str, str], repairs: list[Repair]
    ) -> list[BindingRef] | None:
        """The bindings outside Tenure granting the ServiceAccount, after removing those that
        may be removed (--remove-unexpected-bindings; each a repair). None: not known yet."""
        found = self.unexpected_bindings(key)
        if found is None or not self.settings.remove_unexpected_bindings:
            return found
        left = []
        for binding in found:
            if not binding.sole_subject:
                left.append(binding)  # removing it would end other subjects' access too
                continue
            self.kube.delete_binding(binding)
            where = f'{binding.namespace}/' if binding.namespace else ''
            repairs.append(
                Repair(
                    DriftKind(binding.kind),
                    f'{where}{binding.name}',
                    f'granted {binding.role} outside Tenure; deleted',
                )
            )
        return left

    def _converge_secret(
        self,
        identity: Identity,
        decision: Converge,
        previous: ServiceIdentityStatus,
        now: datetime,
        *,
        judged: bool = False,
    ) -> tuple[VaultStatus, bool, Repair | None]:
        """The secret's status, whether it was rotated, and the drift repaired (`judged`: the
        approval in force is unchanged, see `approval_unchanged`)."""
        names = identity.names
        old = previous.vault or VaultStatus()
        base = VaultStatus(policy=names.vault_policy, role=names.vault_role)
        if not decision.scope.secret_keys:
            if old.secret_path is not None:
                self.vault.delete_secret(names.secret_path)
            return base, False, None
        metadata = secret_metadata(identity)
        version = self.vault.secret_version(names.secret_path)
        rotated = False
        last_rotated = old.last_rotated_at
        keys_changed = old.secret_path is not None and set(decision.scope.secret_keys) != set(
            previous.applied_scope.secret_keys if previous.applied_scope else []
        )
        repair = None
        if version is None or decision.rotate_secret or keys_changed:
            missing = version is None and old.secret_version is not None
            version = self.vault.write_secret(
                names.secret_path, decision.scope.secret_keys, metadata
            )
            last_rotated = now
            if judged and missing:
                # Deleted (or destroyed) outside Tenure: re-created with new values; reported
                # as drift, not as a rotation nobody asked for.
                repair = Repair(
                    DriftKind.VAULT_SECRET,
                    names.secret_path,
                    f'deleted; re-created with new values as version {version}',
                )
            else:
                rotated = old.secret_version is not None
        elif self.vault.update_secret_metadata(names.secret_path, metadata) and judged:
            repair = Repair(DriftKind.VAULT_SECRET, names.secret_path, 'custom metadata')
        return (
            base.model_copy(
                update={
                    'secret_path': f'{names.kv_mount}/{names.secret_path}',
                    'secret_version': version,
                    'last_rotated_at': last_rotated,
                }
            ),
            rotated,
            repair,
        )

    # -- Revoke ---------------------------------------------------------------------------

    def _check_vault_names(
        self, names: IdentityNames, *, repairing: bool = False
    ) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """NameConflict when the Vault role or policy of this name is another identity's.
        Returns the role's binding as found.

        `repairing`: the identity is Active and these are its own objects, so a binding or text
        changed outside Tenure is drift to put back, unless a look-alike identity's names claim
        them (then it stays a conflict).
        """
        subject = self.vault.role_subject(names.vault_role)
        if not role_is_ours(subject, names) and (
            not repairing or role_claimed_by_other(subject, names)
        ):
            bound = '/'.join(','.join(part) for part in subject or ())
            raise NameConflict('Vault role', names.vault_role, f'it is bound to {bound}')
        text = self.vault.policy_text(names.vault_policy)
        if not policy_is_ours(text, names) and (
            not repairing or policy_claimed_by_other(text, names)
        ):
            raise NameConflict(
                'Vault policy', names.vault_policy, 'it was not written for this identity'
            )
        return subject

    def _revoke(self, obj: _Object, decision: Revoke, now: datetime) -> Outcome:
        """Vault and Kubernetes at once, the ServiceAccount last; then verify both at once.

        Vault (on a thread of its own): the role (no new logins), the issued tokens, the
        ServiceAccount's entity, the policy, the secret. Kubernetes meanwhile: the RoleBindings
        (access ends at the first write), the Role, the token Secrets. The ServiceAccount goes
        only once Vault's part succeeded: its uid names the Vault entity, and a revocation that
        failed part-way must still be able to read it when it is retried.

        A Vault role or policy of this name that belongs to another identity (names can look
        alike across namespaces) is left alone, and proven not to be this identity's.
        """
        names, previous = obj.names, obj.observed.status
        revocation = previous.revocation or RevocationStatus(
            reason=decision.reason, requested_at=now
        )
        sa_uid = self.kube.service_account_uid(names)
        vault_half = self._beside(self._revoke_vault, names, sa_uid)
        try:
            self.kube.delete_access(names)
        finally:
            role_ours, policy_ours = vault_half.result()  # raises what stopped Vault's part
        self.kube.delete_service_account(names)

        vault_proof = self._beside(
            self.vault.verify_gone,
            role=names.vault_role,
            policy=names.vault_policy,
            secret_path=names.secret_path,
            namespace=names.namespace,
            service_account=names.name,
        )
        try:
            kube_proof = self.kube.verify_gone(names)
        finally:
            checked = vault_proof.result()
        proof = [self._not_ours(p, names, role_ours, policy_ours) for p in checked] + kube_proof
        remaining = [p for p in proof if p.result != GONE]
        if remaining:
            revocation = revocation.model_copy(update={'proof': proof, 'verified': False})
            status = previous.model_copy(update={'revocation': revocation})
            detail = '; '.join(f'{p.object}: {p.result}' for p in remaining)
            raise _StillPresent(status, f'revocation not verified, still present: {detail}')
        revocation = revocation.model_copy(
            update={'proof': proof, 'verified': True, 'completed_at': self.clock()}
        )
        message = f'{decision.message}; access revoked and verified ({len(proof)} checks)'
        status = previous.model_copy(
            update={
                'phase': Phase.REVOKED,
                'observed_generation': obj.generation,
                'revocation': revocation,
                'conditions': self._conditions(
                    obj,
                    now,
                    (ConditionType.PROVISIONED, False, Reason.REVOKED, 'nothing is provisioned'),
                    (ConditionType.READY, False, Reason.REVOKED, message),
                ),
            }
        )
        return Outcome(status, decision, (Note(False, Reason.REVOKED, message),))

    def _revoke_vault(self, names: IdentityNames, sa_uid: str | None) -> tuple[bool, bool]:
        """Vault's part of a revocation, in order; returns whether the role and the policy
        were this identity's (and deleted)."""
        subject = self.vault.role_subject(names.vault_role)
        role_ours = role_is_ours(subject, names)
        if role_ours:
            self.vault.delete_role(names.vault_role)
        self.vault.revoke_issued_tokens(
            role=names.vault_role, namespace=names.namespace, service_account=names.name
        )
        if sa_uid is not None:
            self.vault.disable_entity(service_account_uid=sa_uid)
        policy_ours = policy_is_ours(self.vault.policy_text(names.vault_policy), names)
        if policy_ours:
            self.vault.delete_policy(names.vault_policy)
        self.vault.delete_secret(names.secret_path)
        return role_ours, policy_ours

    def _beside(self, work: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run `work` on another thread, in this thread's context (a revocation's urgency goes
        with it, see tenure.limits); the caller waits for the result before it returns."""
        context = contextvars.copy_context()
        return self._parallel.submit(context.run, work, *args, **kwargs)

    @staticmethod
    def _not_ours(
        check: ProofCheck, names: IdentityNames, role_ours: bool, policy_ours: bool
    ) -> ProofCheck:
        """A look-alike's role or policy is not this identity's access: proven by its owner."""
        foreign = (not role_ours and check.object.endswith(f'/role/{names.vault_role}')) or (
            not policy_ours and check.object.endswith(f'/acl/{names.vault_policy}')
        )
        if not foreign or check.result == GONE:
            return check
        return check.model_copy(
            update={
                'check': f'{check.check}; it belongs to another identity (bound elsewhere or '
                'written for another namespace/name) and was left alone',
                'result': GONE,
            }
        )

    # -- failures ---------------------------------------------------------------------------

    def _failed(
        self,
        obj: _Object,
        decision: Decision,
        now: datetime,
        error: TransientError | PermanentError,
    ) -> Outcome:
        previous = obj.observed.status
        message = str(error)
        if isinstance(decision, Revoke):
            base = error.status if isinstance(error, _StillPresent) else previous
            revocation = base.revocation or RevocationStatus(
                reason=decision.reason, requested_at=now
            )
            status = base.model_copy(
                update={
                    'revocation': revocation,
                    'conditions': self._conditions(
                        obj, now, (ConditionType.READY, False, Reason.REVOCATION_FAILED, message)
                    ),
                }
            )
            reason = Reason.REVOCATION_FAILED
        elif isinstance(error, NameConflict) and previous.phase is not Phase.ACTIVE:
            # Checked before anything is written: the identity is refused, nothing is created.
            status = previous.model_copy(
                update={
                    'phase': Phase.DENIED,
                    'observed_generation': obj.generation,
                    'conditions': self._conditions(
                        obj,
                        now,
                        (ConditionType.VALID, False, Reason.NAME_CONFLICT, message),
                        (ConditionType.PROVISIONED, False, Reason.DENIED, 'nothing is provisioned'),
                        (ConditionType.READY, False, Reason.DENIED, message),
                    ),
                }
            )
            reason = Reason.NAME_CONFLICT
        else:
            status = previous.model_copy(
                update={
                    'conditions': self._conditions(
                        obj,
                        now,
                        (ConditionType.PROVISIONED, False, Reason.PROVISIONING_FAILED, message),
                        (ConditionType.READY, False, Reason.PROVISIONING_FAILED, message),
                    ),
                }
            )
            reason = Reason.PROVISIONING_FAILED
        # One event per new failure reason: a name conflict is recorded on Valid, others on Ready.
        carrier = ConditionType.VALID if reason is Reason.NAME_CONFLICT else ConditionType.READY
        seen = find_condition(previous.conditions, carrier)
        events = (
            () if seen is not None and seen.reason == reason else (Note(True, reason, message),)
        )
        spec = obj.observed.spec
        deadline = effective_expiry(previous, spec) if spec is not None else previous.expires_at
        return Outcome(status, decision, events, next_deadline=deadline)


class _StillPresent(TransientError):
    """Revocation ran but verification found objects: retry, never report verified."""

    def __init__(self, status: ServiceIdentityStatus, message: str) -> None:
        super().__init__(message)
        self.status = status

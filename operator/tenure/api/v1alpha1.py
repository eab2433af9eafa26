"""`tenure.dev/v1alpha1`: the ServiceIdentity API. The single source of truth for the CRD.

Every cross-field rule exists twice on purpose: as a pydantic validator (for the operator and
`tenure check`) and as a CEL `x-kubernetes-validations` rule in the CRD (for the API server).
`tests/unit/test_crd_rules.py` runs both on the same table of manifests and fails if they disagree.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Final, Literal, Self

from pydantic import ConfigDict, Field, JsonValue, model_validator
from pydantic_core import PydanticCustomError

from tenure.api.base import (
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    ApiModel,
    Email,
    LabelValue,
    StringSet,
    Timestamp,
)
from tenure.api.durations import GoDuration

GROUP: Final = 'tenure.dev'
VERSION: Final = 'v1alpha1'
API_VERSION: Final = f'{GROUP}/{VERSION}'
KIND: Final = 'ServiceIdentity'
PLURAL: Final = 'serviceidentities'
SINGULAR: Final = 'serviceidentity'
SHORT_NAMES: Final = ('sid',)
CATEGORIES: Final = ('tenure',)

TICKET_ID_PATTERN: Final = r'^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'
TICKET_SYSTEM_PATTERN: Final = r'^[a-z][a-z0-9-]{0,31}$'
# RBAC names: API groups and resources are DNS-ish words; `*` is syntactically valid RBAC (the
# guardrails decide whether it is allowed), so the schema admits it.
RBAC_WORD_PATTERN: Final = r'^(\*|[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/[a-z0-9]([-a-z0-9]*[a-z0-9])?)?)$'
VERB_PATTERN: Final = r'^(\*|[a-z]+)$'
VAULT_PATH_PATTERN: Final = r'^[A-Za-z0-9_.+*-]+(/[A-Za-z0-9_.+*-]*)*$'
SECRET_KEY_PATTERN: Final = r'^[-._a-zA-Z0-9]+$'


class TicketState(StrEnum):
    """Where the authorising ticket stands in the ITSM."""

    REQUESTED = 'Requested'
    APPROVED = 'Approved'
    CLOSED = 'Closed'
    CANCELLED = 'Cancelled'
    REJECTED = 'Rejected'


class OnClose(StrEnum):
    """What the successful closure of the ticket does to the identity."""

    REVOKE = 'Revoke'
    ROTATE = 'Rotate'
    RETAIN = 'Retain'


class Ticket(ApiModel):
    """The ITSM record (change, request or access item) that authorises this identity."""

    model_config = ConfigDict(
        json_schema_extra={
            'x-kubernetes-validations': [
                {
                    'rule': "self.state == 'Requested' || has(self.approvedAt)",
                    'message': 'approvedAt is required once the ticket is no longer Requested',
                    'reason': 'FieldValueRequired',
                    'fieldPath': '.approvedAt',
                },
            ],
        },
    )

    id: Annotated[str, Field(pattern=TICKET_ID_PATTERN, max_length=64)]
    """Ticket number in the ITSM, e.g. CHG0031337 or OPS-1234."""
    system: Annotated[str, Field(pattern=TICKET_SYSTEM_PATTERN, max_length=32)]
    """The ITSM that holds the ticket, as a lowercase word: servicenow, jira, github, other, ..."""
    url: Annotated[str | None, Field(pattern=r'^https?://\S+$', max_length=2048)] = None
    """Link to the ticket, for people reading the identity."""
    state: TicketState
    """Requested: nothing is provisioned yet. Approved: the identity may exist. Closed (the
    successful end of the change) acts per onClose. Cancelled and Rejected always revoke."""
    requester: Email
    """Who asked for the identity (e-mail)."""
    approver: Email
    """Who approved the ticket (e-mail); must differ from the requester."""
    approved_at: Timestamp | None = None
    """When the ticket was approved (RFC 3339); required unless the state is Requested."""
    justification: Annotated[str, Field(min_length=10, max_length=2000)]
    """Why this identity must exist, as recorded in the ticket."""
    on_close: OnClose = OnClose.REVOKE
    """What closing the ticket does: Revoke (default) ends access, Rotate rotates the secret and
    invalidates issued Vault tokens, Retain keeps the identity until it expires."""

    @model_validator(mode='after')
    def _approval_is_consistent(self) -> Self:
        if self.state is not TicketState.REQUESTED and self.approved_at is None:
            raise PydanticCustomError(
                'ApprovalTimeMissing',
                'approvedAt is required once the ticket is no longer Requested',
            )
        return self


class Owner(ApiModel):
    """The team accountable for the identity: who to ask, who gets the expiry warning."""

    team: LabelValue
    """Owning team, as a label value (lowercase, e.g. payments-platform)."""
    contact: Email
    """Team contact e-mail, e.g. an on-call alias."""


class PolicyRule(ApiModel):
    """A namespaced RBAC rule (rbac.authorization.k8s.io/v1 PolicyRule without nonResourceURLs)."""

    api_groups: Annotated[
        list[
            Annotated[str, Field(pattern=r'^(\*|[a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$', max_length=253)]
        ],
        Field(max_length=16, json_schema_extra={'x-kubernetes-list-type': 'atomic'}),
    ] = []
    """API groups of the resources; "" is the core group."""
    resources: Annotated[
        StringSet[Annotated[str, Field(pattern=RBAC_WORD_PATTERN, max_length=253)]],
        Field(min_length=1, max_length=32),
    ]
    """Resources the rule applies to, e.g. configmaps or deployments/scale."""
    resource_names: Annotated[
        StringSet[Annotated[str, Field(min_length=1, max_length=253)]],
        Field(max_length=64),
    ] = []
    """Object names the rule is restricted to; empty means all objects of those resources."""
    verbs: Annotated[
        StringSet[Annotated[str, Field(pattern=VERB_PATTERN, max_length=32)]],
        Field(min_length=1, max_length=16),
    ]
    """Verbs allowed: get, list, watch, create, update, patch, delete, ..."""


class KubernetesAccess(ApiModel):
    """What the ServiceAccount may do in its own namespace."""

    rules: Annotated[list[PolicyRule], Field(max_length=32)] = []
    """Rules of the Role `tenure-<name>`; no Role is created when empty."""
    cluster_roles: Annotated[
        StringSet[Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)]],
        Field(max_length=16),
    ] = []
    """ClusterRoles bound in this namespace only (a RoleBinding each); only names the policy's
    catalog allows."""


class VaultPathRule(ApiModel):
    """One path of the identity's Vault ACL policy."""

    path: Annotated[str, Field(pattern=VAULT_PATH_PATTERN, max_length=512)]
    """Vault path, e.g. secret/data/payments/settlement/*."""
    capabilities: Annotated[
        StringSet[Annotated[str, Field(pattern=r'^[a-z]+$', max_length=32)]],
        Field(min_length=1, max_length=9),
    ]
    """Capabilities on that path, e.g. [read]."""


class GeneratedSecret(ApiModel):
    """A credential generated and owned by this identity, stored in Vault KV v2."""

    keys: Annotated[
        StringSet[Annotated[str, Field(pattern=SECRET_KEY_PATTERN, max_length=253)]],
        Field(min_length=1, max_length=32),
    ]
    """Keys of the secret; each gets a fresh random value (at least 32 bytes of entropy)."""
    rotate_every: GoDuration | None = None
    """Rotate the values on this schedule (Go duration, e.g. 720h)."""


class VaultAccess(ApiModel):
    """The identity's Vault material: a policy, a Kubernetes-auth role, optionally a secret."""

    policy: Annotated[list[VaultPathRule], Field(max_length=32)] = []
    """Paths this identity may use, besides read access to its own generated secret."""
    secret: GeneratedSecret | None = None
    """A credential generated for this identity at KV v2 path tenure/<namespace>/<name>."""


class Scope(ApiModel):
    """The access an approval grants: RBAC, ClusterRole bindings, Vault paths, secret keys."""

    rules: Annotated[list[PolicyRule], Field(max_length=32)] = []
    """RBAC rules of the Role."""
    cluster_roles: Annotated[
        StringSet[Annotated[str, Field(max_length=253)]],
        Field(max_length=16),
    ] = []
    """ClusterRoles bound in the namespace."""
    vault_policy: Annotated[list[VaultPathRule], Field(max_length=32)] = []
    """Vault ACL paths."""
    secret_keys: Annotated[
        StringSet[Annotated[str, Field(max_length=253)]],
        Field(max_length=32),
    ] = []
    """Keys of the generated secret."""


class ServiceIdentitySpec(ApiModel):
    """An approved request for one non-human identity: who owns it, why, what it may do and
    until when."""

    ticket: Ticket
    """The ticket that authorises the identity and drives its lifecycle."""
    owner: Owner
    """The accountable team."""
    service: Annotated[str, Field(pattern=r'^\S(.*\S)?$', min_length=1, max_length=253)]
    """The system or CMDB item the identity serves, e.g. settlement-exporter."""
    environment: LabelValue | None = None
    """Environment the identity belongs to (e.g. production); must match the namespace's
    tenure.dev/environment label when both are set."""
    expires_at: Timestamp
    """When access ends (RFC 3339 with a timezone). Revocation follows at this instant."""
    kubernetes: KubernetesAccess | None = None
    """Kubernetes RBAC for the ServiceAccount; none when absent."""
    vault: VaultAccess | None = None
    """Vault access for the identity; none when absent."""


class Phase(StrEnum):
    """Where the identity is in its lifecycle."""

    PENDING = 'Pending'
    ACTIVE = 'Active'
    DENIED = 'Denied'
    REVOKED = 'Revoked'


class RevocationReason(StrEnum):
    """Why access ended."""

    EXPIRED = 'Expired'
    TICKET_CLOSED = 'TicketClosed'
    TICKET_CANCELLED = 'TicketCancelled'
    TICKET_REJECTED = 'TicketRejected'
    DELETED = 'Deleted'
    EMERGENCY = 'Emergency'


class ConditionStatus(StrEnum):
    """Kubernetes condition status."""

    TRUE = 'True'
    FALSE = 'False'
    UNKNOWN = 'Unknown'


class Condition(ApiModel):
    """A Kubernetes-style condition (metav1.Condition)."""

    type: Annotated[
        str,
        Field(pattern=r'^([a-z0-9.-]+/)?[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$', max_length=316),
    ]
    """Condition type: Ready, Valid, Provisioned, ..."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: Annotated[
        str,
        Field(pattern=r'^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$', min_length=1, max_length=1024),
    ]
    """A CamelCase code for the last transition, stable for automation."""
    message: Annotated[str, Field(max_length=32768)] = ''
    """Human-readable details of the last transition."""
    last_transition_time: Timestamp
    """When the status last changed (not when the condition was last written)."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The metadata.generation the condition was computed from."""


class VaultStatus(ApiModel):
    """The Vault objects provisioned for the identity."""

    policy: Annotated[str, Field(max_length=512)] | None = None
    """Name of the ACL policy."""
    role: Annotated[str, Field(max_length=512)] | None = None
    """Name of the Kubernetes-auth role."""
    secret_path: Annotated[str, Field(max_length=1024)] | None = None
    """KV v2 path of the generated secret (never its values)."""
    secret_version: Annotated[int, Field(ge=0)] | None = None
    """KV v2 version of the generated secret currently in force."""
    last_rotated_at: Timestamp | None = None
    """When the generated secret was last rotated."""


class ApprovalRecord(ApiModel):
    """The approval under which the identity was last provisioned."""

    ticket_id: Annotated[str, Field(max_length=64)]
    """Ticket id at provisioning time."""
    approver: Annotated[str, Field(max_length=254)]
    """Approver at provisioning time."""
    approved_at: Timestamp | None = None
    """Approval time at provisioning time."""


class OwnerRecord(ApiModel):
    """An owner the identity had before, and until when."""

    team: Annotated[str, Field(max_length=63)]
    """The previous owning team."""
    contact: Annotated[str, Field(max_length=254)]
    """The previous team contact."""
    until: Timestamp
    """When ownership passed on."""


class ProofCheck(ApiModel):
    """One check that a revoked object is gone."""

    object: Annotated[str, Field(max_length=1024)]
    """The object checked, e.g. vault:policy/tenure-payments-exporter or
    k8s:ServiceAccount/payments/exporter."""
    check: Annotated[str, Field(max_length=1024)]
    """How it was checked, e.g. GET returned 404."""
    result: Annotated[str, Field(max_length=256)]
    """Gone, or what was still found."""
    at: Timestamp
    """When the check ran."""


class RevocationStatus(ApiModel):
    """How and when access ended, with proof."""

    reason: RevocationReason
    """Why access ended."""
    requested_at: Timestamp
    """When revocation was decided."""
    completed_at: Timestamp | None = None
    """When every object was verified gone."""
    verified: bool = False
    """True only once every managed object was checked and found gone."""
    proof: Annotated[list[ProofCheck], Field(max_length=64)] = []
    """The checks, one per managed object."""


class HistoryEntry(ApiModel):
    """One transition of the identity, kept durably (Events expire after an hour)."""

    at: Timestamp
    """When the transition was recorded."""
    phase: Phase | None = None
    """The phase after the transition."""
    reason: Annotated[
        str,
        Field(pattern=r'^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$', min_length=1, max_length=128),
    ]
    """A CamelCase code: Active, Denied, a guardrail rule, OwnerChanged, SecretRotated, Revoking,
    Revoked, ..."""
    message: Annotated[str, Field(max_length=1024)] = ''
    """What happened, for people (truncated to 1024 characters)."""
    generation: Annotated[int, Field(ge=0)] | None = None
    """The metadata.generation the transition was computed from."""


class TicketObservation(ApiModel):
    """What Tenure last read about the ticket in its ITSM (a TicketSource); never spec."""

    id: Annotated[str, Field(max_length=64)]
    """The ticket read (spec.ticket.id at the time)."""
    source: Annotated[str, Field(max_length=63)]
    """The TicketSource it was read from."""
    observed_state: TicketState
    """The ticket state the raw ITSM values map to. The effective state is the more restrictive
    of this and spec.ticket.state."""
    raw_state: Annotated[str, Field(max_length=256)] = ''
    """The ITSM's own values, e.g. state=4 approval=approved, or status=Done resolution=Won't Do."""
    observed_at: Timestamp
    """When the ticket was read with these values (rewritten only when something changes)."""
    approvers: Annotated[list[Annotated[str, Field(max_length=254)]], Field(max_length=32)] = []
    """Who approved the ticket in the ITSM (read only when the source verifies approvals)."""


class ServiceIdentityStatus(ApiModel):
    """Observed state, written only by the operator."""

    phase: Phase | None = None
    """Pending, Active, Denied or Revoked (terminal: the object stays as an audit record)."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The metadata.generation this status reflects."""
    service_account: Annotated[str, Field(max_length=253)] | None = None
    """Name of the ServiceAccount in this namespace."""
    vault: VaultStatus | None = None
    """The Vault objects provisioned."""
    approval: ApprovalRecord | None = None
    """The approval the identity was last provisioned under."""
    applied_scope: Scope | None = None
    """The access in force. A wider spec waits for a new approval; a narrower one applies."""
    owner: Owner | None = None
    """The owner in force (labels, annotations and Vault metadata carry it)."""
    owner_history: Annotated[list[OwnerRecord], Field(max_length=32)] = []
    """Previous owners, oldest first (the most recent 32)."""
    rotation_request: Annotated[str, Field(max_length=256)] | None = None
    """The last value of the tenure.dev/rotate annotation acted on (rotation on demand)."""
    closure_handled_at: Timestamp | None = None
    """When the ticket's closure was acted on (onClose: Rotate rotates once per closure)."""
    expires_at: Timestamp | None = None
    """The expiry in force (an extension needs a new approval)."""
    revocation: RevocationStatus | None = None
    """Set once access ends."""
    ticket: TicketObservation | None = None
    """The ticket as last read from its TicketSource, when spec.ticket.system names one."""
    history: Annotated[list[HistoryEntry], Field(max_length=50)] = []
    """Transitions, oldest first (the most recent 50): the durable audit trail of the phase, the
    Ready and Valid reasons, owner changes, rotations and the revocation."""
    conditions: Annotated[
        list[Condition],
        Field(
            max_length=16,
            json_schema_extra={
                'x-kubernetes-list-type': 'map',
                'x-kubernetes-list-map-keys': ['type'],
            },
        ),
    ] = []
    """Ready, Valid, Provisioned and others, with Kubernetes semantics."""


class ObjectMeta(ApiModel):
    """The part of metav1.ObjectMeta that Tenure reads; the rest passes through untouched."""

    model_config = ConfigDict(extra='allow')

    name: Annotated[str, Field(pattern=DNS_LABEL_PATTERN, min_length=1, max_length=63)]
    """The identity's name: also its ServiceAccount's name and a label value."""
    namespace: Annotated[str, Field(pattern=DNS_LABEL_PATTERN, max_length=63)] | None = None
    """The namespace; the ServiceAccount lives there too."""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class ServiceIdentity(ApiModel):
    """A non-human identity authorised by an approved ITSM ticket, with an owner and an expiry."""

    api_version: Literal['tenure.dev/v1alpha1']
    kind: Literal['ServiceIdentity']
    metadata: ObjectMeta
    spec: ServiceIdentitySpec
    status: ServiceIdentityStatus | None = None


CROSS_FIELD_PATHS: Final = {
    'ApprovalTimeMissing': 'approvedAt',
}
"""The field each cross-field rule points at (as the CRD's CEL `fieldPath` does)."""


POLICY_KIND: Final = 'IdentityPolicy'
POLICY_PLURAL: Final = 'identitypolicies'
POLICY_SINGULAR: Final = 'identitypolicy'
DEFAULT_POLICY_NAME: Final = 'default'


class PolicyMode(StrEnum):
    """What a guardrail violation does."""

    ENFORCE = 'Enforce'
    AUDIT = 'Audit'


class IdentityPolicySpec(ApiModel):
    """The guardrails' parameters for the whole cluster (the object named `default` applies)."""

    max_lifetime: Annotated[
        GoDuration,
        # pydantic would render the default as ISO 8601 (P90D), which the pattern refuses.
        Field(json_schema_extra={'default': '2160h'}),
    ] = timedelta(days=90)
    """Longest allowed expiresAt - approvedAt (Go duration, e.g. 2160h for 90 days)."""
    allowed_ticket_systems: Annotated[
        StringSet[Annotated[str, Field(pattern=TICKET_SYSTEM_PATTERN, max_length=32)]],
        Field(max_length=32),
    ] = []
    """Ticket systems identities may cite; empty allows any."""
    allowed_vault_path_prefixes: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=512)]],
        Field(max_length=32),
    ] = ['{kvMount}/data/{namespace}/', '{kvMount}/metadata/{namespace}/']
    """Vault paths must start with one of these; {namespace} and {kvMount} are filled in.
    sys/, auth/, identity/ and tenure/ secrets are refused whatever this says."""
    allowed_cluster_roles: Annotated[
        StringSet[Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)]],
        Field(max_length=64),
    ] = []
    """The catalog of ClusterRoles identities may bind in their namespace; empty allows none."""
    extra_forbidden_verbs: Annotated[
        StringSet[Annotated[str, Field(pattern=VERB_PATTERN, max_length=32)]],
        Field(max_length=32),
    ] = []
    """Verbs refused besides escalate, bind and impersonate."""
    min_justification_length: Annotated[int, Field(ge=10, le=2000)] = 10
    """Shortest allowed justification, in characters."""
    mode: PolicyMode = PolicyMode.ENFORCE
    """Enforce denies violations; Audit reports them (conditions, events, metrics) and still
    provisions, for a gradual rollout."""


class IdentityPolicy(ApiModel):
    """Cluster-wide guardrails for ServiceIdentities."""

    api_version: Literal['tenure.dev/v1alpha1']
    kind: Literal['IdentityPolicy']
    metadata: ObjectMeta
    spec: IdentityPolicySpec = IdentityPolicySpec()


SOURCE_KIND: Final = 'TicketSource'
SOURCE_PLURAL: Final = 'ticketsources'
SOURCE_SINGULAR: Final = 'ticketsource'


class TicketSourceType(StrEnum):
    """The kind of ITSM a TicketSource reads."""

    SERVICENOW = 'servicenow'
    JIRA = 'jira'
    WEBHOOK = 'webhook'
    """No API to read: the ITSM pushes signed ticket states (docs/itsm.md, "Webhook sources")."""


class ServiceNowTable(StrEnum):
    """The ServiceNow table that holds the tickets."""

    CHANGE_REQUEST = 'change_request'
    SC_REQ_ITEM = 'sc_req_item'


class SecretRef(ApiModel):
    """A Secret in a namespace the operator may read (its own, per the RBAC in deploy/)."""

    name: Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)]
    """The Secret's name."""
    namespace: Annotated[str, Field(pattern=DNS_LABEL_PATTERN, max_length=63)]
    """The Secret's namespace."""


class SecretKeyRef(SecretRef):
    """One key of a Secret: the value is read at run time, never written into a resource."""

    key: Annotated[str, Field(pattern=SECRET_KEY_PATTERN, max_length=253)] = 'hmac-key'
    """The key holding the value."""


class StateMapping(ApiModel):
    """Raw ITSM values that mean Cancelled, Closed or Rejected. An absent list keeps the
    defaults of the source type (see docs/itsm.md); an empty list maps nothing to that state."""

    cancelled: (
        Annotated[list[Annotated[str, Field(max_length=128)]], Field(max_length=32)] | None
    ) = None
    """ServiceNow state codes (default ["4"]), Jira resolution names (default Won't Do,
    Declined, Cancelled, Canceled) or pushed states (default ["Canceled"]) that mean the ticket
    was cancelled: access ends."""
    closed: Annotated[list[Annotated[str, Field(max_length=128)]], Field(max_length=32)] | None = (
        None
    )
    """ServiceNow state codes (default ["3"]), Jira status category keys (default ["done"]) or
    pushed states (default none) that mean the ticket was completed: onClose decides."""
    rejected: (
        Annotated[list[Annotated[str, Field(max_length=128)]], Field(max_length=32)] | None
    ) = None
    """ServiceNow approval values (default ["rejected"]), Jira resolution names (default
    ["Rejected"]) or pushed states (default none) that mean the request was refused: access
    ends."""


WEBHOOK_NEEDS_SECRET: Final = (
    'webhookSecret is required for type webhook: the HMAC key is all that authenticates its pushes'
)
WEBHOOK_HAS_NO_API: Final = (
    'makes no sense for type webhook: it has no API to read tickets from, the signed pushes '
    'are the observations'
)


# A webhook source has no API: these fields would be read by nothing (the message says why).
_NOT_FOR_WEBHOOK: Final = {
    'url': 'url',
    'credentials_secret_ref': 'credentialsSecretRef',
    'table': 'table',
}


def _source_rules() -> list[JsonValue]:
    """The CEL mirror of TicketSourceSpec._fits_its_type (same messages)."""
    rules: list[JsonValue] = [
        {
            'rule': f"self.type == 'webhook' || has(self.{field})",
            'message': f'{field} is required for servicenow and jira',
            'reason': 'FieldValueRequired',
            'fieldPath': f'.{field}',
        }
        for field in ('url', 'credentialsSecretRef')
    ]
    rules.append(
        {
            'rule': "self.type != 'webhook' || has(self.webhookSecret)",
            'message': WEBHOOK_NEEDS_SECRET,
            'reason': 'FieldValueRequired',
            'fieldPath': '.webhookSecret',
        }
    )
    rules += [
        {
            'rule': f"self.type != 'webhook' || !has(self.{field})",
            'message': f'{field} {WEBHOOK_HAS_NO_API}',
            'reason': 'FieldValueForbidden',
            'fieldPath': f'.{field}',
        }
        for field in _NOT_FOR_WEBHOOK.values()
    ]
    rules.append(
        {
            'rule': "self.type != 'webhook' || !has(self.verifyApproval) || !self.verifyApproval",
            'message': f'verifyApproval {WEBHOOK_HAS_NO_API}',
            'reason': 'FieldValueForbidden',
            'fieldPath': '.verifyApproval',
        }
    )
    return rules


class TicketSourceSpec(ApiModel):
    """Where tickets of one system are read (spec.ticket.system names the TicketSource)."""

    model_config = ConfigDict(json_schema_extra={'x-kubernetes-validations': _source_rules()})

    type: TicketSourceType
    """servicenow (Table API), jira (REST API v2, Service Management approvals) or webhook (no
    API: the ITSM pushes HMAC-signed ticket states to POST /webhooks/<name>)."""
    url: Annotated[str, Field(pattern=r'^https?://[^\s/]+(/\S*)?$', max_length=2048)] | None = None
    """Base URL of the instance, e.g. https://example.service-now.com (servicenow and jira)."""
    credentials_secret_ref: SecretRef | None = None
    """A Secret with keys username and password (basic auth) or token (bearer) (servicenow and
    jira)."""
    webhook_secret: SecretKeyRef | None = None
    """The HMAC-SHA256 key of POST /webhooks/<name>; without it, webhooks are refused. Required
    for type webhook."""
    poll_interval: Annotated[
        GoDuration,
        Field(json_schema_extra={'default': '60s'}),
    ] = timedelta(seconds=60)
    """How often each referenced ticket is read (Go duration); for type webhook, how often the
    HMAC key is read again (key rotation)."""
    table: ServiceNowTable | None = None
    """ServiceNow only: change_request (when absent) or sc_req_item."""
    state_mapping: StateMapping = StateMapping()
    """Which raw values mean Cancelled, Closed or Rejected (safe defaults per type)."""
    verify_approval: bool = False
    """When true, spec.ticket.approver must have approved the ticket in the ITSM (ServiceNow
    sysapproval_approver, Jira Service Management approvals); otherwise the identity is Denied
    (ApprovalNotVerified). Not for type webhook."""

    @property
    def servicenow_table(self) -> ServiceNowTable:
        return self.table or ServiceNowTable.CHANGE_REQUEST

    @model_validator(mode='after')
    def _fits_its_type(self) -> Self:
        if self.type is not TicketSourceType.WEBHOOK:
            for attribute, field in (
                ('url', 'url'),
                ('credentials_secret_ref', 'credentialsSecretRef'),
            ):
                if getattr(self, attribute) is None:
                    raise PydanticCustomError(
                        'FieldValueRequired', f'{field} is required for servicenow and jira'
                    )
            return self
        if self.webhook_secret is None:
            raise PydanticCustomError('FieldValueRequired', WEBHOOK_NEEDS_SECRET)
        for attribute, field in _NOT_FOR_WEBHOOK.items():
            if getattr(self, attribute) is not None:
                raise PydanticCustomError('FieldValueForbidden', f'{field} {WEBHOOK_HAS_NO_API}')
        if self.verify_approval:
            raise PydanticCustomError('FieldValueForbidden', f'verifyApproval {WEBHOOK_HAS_NO_API}')
        return self


class TicketSource(ApiModel):
    """An ITSM that drives the lifecycle of the ServiceIdentities citing it as ticket system."""

    api_version: Literal['tenure.dev/v1alpha1']
    kind: Literal['TicketSource']
    metadata: ObjectMeta
    spec: TicketSourceSpec

"""The base of every API model: camelCase on the wire, docstrings as `kubectl explain` text."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
)
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    """A Kubernetes API object part. Field docstrings become the CRD's descriptions."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        # A typo in a manifest (`expiresat`) must be an error, not a silently pruned field.
        extra='forbid',
        frozen=True,
        use_attribute_docstrings=True,
        use_enum_values=False,
    )


# RFC 3339 as Kubernetes accepts it for `format: date-time`: a full date, a time and a zone.
_RFC3339 = re.compile(
    r'^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$',
)


def _require_rfc3339(value: Any) -> Any:
    """Accept datetimes built in code, and strings only in RFC 3339 with a zone (no epoch ints)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _RFC3339.match(value):
        # Python 3.11 parses at most 6 fractional digits; Kubernetes allows 9.
        return re.sub(r'(\.\d{6})\d+', r'\1', value)
    raise ValueError('must be an RFC 3339 date-time with a timezone, e.g. 2026-12-31T00:00:00Z')


def format_timestamp(value: datetime) -> str:
    """Render a timestamp the Kubernetes way: UTC, `Z`, fractions only when there are any."""
    utc = value.astimezone(UTC)
    if utc.microsecond:
        return utc.strftime('%Y-%m-%dT%H:%M:%S.%fZ')
    return utc.strftime('%Y-%m-%dT%H:%M:%SZ')


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_require_rfc3339),
    PlainSerializer(format_timestamp, return_type=str, when_used='json'),
]
"""An RFC 3339 instant with a timezone; serialised in UTC with a trailing `Z`."""


def _unique(values: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ValueError(f'duplicate entry {value!r}')
        seen.add(value)
    return values


T = TypeVar('T')

StringSet = Annotated[
    list[T],
    AfterValidator(_unique),
    Field(json_schema_extra={'x-kubernetes-list-type': 'set'}),
]
"""A list of distinct values (`x-kubernetes-list-type: set` in the CRD)."""


EMAIL_PATTERN = r'^[A-Za-z0-9.!#$%&*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$'  # noqa: E501
Email = Annotated[str, Field(pattern=EMAIL_PATTERN, min_length=3, max_length=254)]
"""An e-mail address (RFC 5321 length limit)."""

# A Kubernetes label value: the team and environment end up in labels and Vault metadata.
LABEL_VALUE_PATTERN = r'^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$'
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE_PATTERN, min_length=1, max_length=63)]

# RFC 1123 DNS label: the ServiceIdentity's name is the ServiceAccount's and a label value.
DNS_LABEL_PATTERN = r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'
DNS_SUBDOMAIN_PATTERN = r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'

PATTERN_HINTS: dict[str, str] = {
    EMAIL_PATTERN: 'must be an e-mail address',
    LABEL_VALUE_PATTERN: 'must be a label value: lowercase letters, digits, "-", "_" or ".", '
    'starting and ending with a letter or digit',
    DNS_LABEL_PATTERN: 'must be an RFC 1123 label: lowercase letters, digits and "-", starting and '
    'ending with a letter or digit',
    DNS_SUBDOMAIN_PATTERN: 'must be an RFC 1123 subdomain: lowercase letters, digits, "-" and "."',
}
"""Readable explanations of the API's patterns, for `tenure check` and status messages."""

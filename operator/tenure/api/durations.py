"""Go-style durations (`720h`, `1h30m`, `90s`), as Kubernetes and Vault users write them."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

# Units as Go's time.ParseDuration knows them, in nanoseconds.
_UNIT_NANOS = {
    'ns': 1,
    'us': 1_000,
    'µs': 1_000,
    'μs': 1_000,
    'ms': 1_000_000,
    's': 1_000_000_000,
    'm': 60 * 1_000_000_000,
    'h': 3600 * 1_000_000_000,
}
_PART = re.compile(r'(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)')
DURATION_PATTERN = r'^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$'
"""The CRD's pattern for a positive Go duration (no sign, at least one unit)."""


def parse_duration(text: str) -> timedelta:
    """Parse a positive Go duration such as `720h` or `1h30m`; raise ValueError otherwise."""
    if not text or text in {'0'}:
        raise ValueError(f'invalid duration {text!r}: expected e.g. 720h, 1h30m or 90s')
    position = 0
    nanos = Decimal(0)
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        nanos += Decimal(match.group(1)) * _UNIT_NANOS[match.group(2)]
        position = match.end()
    if position != len(text):
        raise ValueError(f'invalid duration {text!r}: expected e.g. 720h, 1h30m or 90s')
    if nanos <= 0:
        raise ValueError(f'invalid duration {text!r}: must be greater than zero, e.g. 720h')
    return timedelta(microseconds=int(nanos / 1000))


def format_duration(value: timedelta) -> str:
    """Render a timedelta as Go does (`720h0m0s`), at microsecond precision."""
    micros = value // timedelta(microseconds=1)
    if micros == 0:
        return '0s'
    hours, rest = divmod(micros, 3600 * 1_000_000)
    minutes, rest = divmod(rest, 60 * 1_000_000)
    seconds = Decimal(rest) / 1_000_000
    text = f'{seconds.normalize():f}s'
    if hours or minutes:
        text = f'{minutes}m{text}'
    if hours:
        text = f'{hours}h{text}'
    return text


def _parse(value: object) -> object:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError('must be a duration string such as 720h, 1h30m or 90s')


GoDuration = Annotated[
    timedelta,
    BeforeValidator(_parse),
    PlainSerializer(format_duration, return_type=str, when_used='json'),
    WithJsonSchema({'type': 'string', 'pattern': DURATION_PATTERN, 'maxLength': 64}),
]
"""A positive duration written the Go way (`720h`); a timedelta in Python."""

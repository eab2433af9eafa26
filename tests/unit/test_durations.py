"""`rotateEvery` takes Go durations, as Kubernetes and Vault users write them."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenure.api.durations import DURATION_PATTERN, format_duration, parse_duration


@pytest.mark.parametrize(
    ('text', 'expected'),
    [
        pytest.param('720h', timedelta(hours=720), id='hours'),
        pytest.param('1h30m', timedelta(hours=1, minutes=30), id='hours-and-minutes'),
        pytest.param('90s', timedelta(seconds=90), id='seconds'),
        pytest.param('1.5h', timedelta(minutes=90), id='fractional-hours'),
        pytest.param('250ms', timedelta(milliseconds=250), id='milliseconds'),
        pytest.param('2h45m30.5s', timedelta(hours=2, minutes=45, seconds=30.5), id='go-format'),
    ],
)
def test_go_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert re.match(DURATION_PATTERN, text), 'the CRD pattern must accept what the parser accepts'


@pytest.mark.parametrize(
    'text',
    [
        pytest.param('', id='empty'),
        pytest.param('0', id='bare-zero'),
        pytest.param('0s', id='zero-seconds'),
        pytest.param('30d', id='days-are-not-go'),
        pytest.param('h', id='unit-without-number'),
        pytest.param('10', id='number-without-unit'),
        pytest.param('-1h', id='negative'),
        pytest.param('1h 30m', id='space'),
    ],
)
def test_invalid_durations_are_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match='720h'):
        parse_duration(text)


@given(st.integers(min_value=1, max_value=10**12))
def test_formatting_round_trips_through_parsing(micros: int) -> None:
    value = timedelta(microseconds=micros)
    assert parse_duration(format_duration(value)) == value

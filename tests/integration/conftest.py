"""Fixtures for tests against the local stack (a real OpenBao dev server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tenure_devtools.openbao import OpenBaoDevServer, running_openbao  # noqa: TID251


@pytest.fixture(scope='session')
def openbao() -> Iterator[OpenBaoDevServer]:
    """One OpenBao dev server shared by the session; tests that seal it start their own."""
    with running_openbao() as server:
        yield server

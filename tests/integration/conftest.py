"""Fixtures for tests against the local stack (a real OpenBao dev server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tenure_devtools.openbao import OpenBaoDevServer, running_openbao


@pytest.fixture(scope='session')
def openbao() -> Iterator[OpenBaoDevServer]:
    """One OpenBao dev server shared by the session; tests that seal it start their own.

    At debug level the server log says why a login was refused (`bao.log_tail()`).
    """
    with running_openbao(log_level='debug') as server:
        yield server

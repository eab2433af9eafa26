"""Fixtures for the ITSM tests: the integration stack of tests/integration, and fake ITSMs."""

from __future__ import annotations

from tests.integration.conftest import openbao, operator, stack, vault_for_identities

__all__ = ['openbao', 'operator', 'stack', 'vault_for_identities']

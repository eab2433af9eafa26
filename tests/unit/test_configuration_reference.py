"""docs/configuration.md is the command's own help, so it cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

from tenure.cli import configuration_reference

REPO = Path(__file__).resolve().parents[2]


def test_the_configuration_reference_is_current() -> None:
    committed = (REPO / 'docs' / 'configuration.md').read_text(encoding='utf-8')
    assert committed == configuration_reference(), 'docs/configuration.md is stale: run make docs'


def test_the_reference_lists_every_flag_of_tenure_run() -> None:
    text = configuration_reference()
    for flag in (
        '--leader-election',
        '--kube-qps',
        '--vault-auth-role',
        '--webhook-port',
        '--expiry-warning',
        '--max-workers',
    ):
        assert flag in text

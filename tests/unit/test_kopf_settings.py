"""kopf is configured so that Tenure's own annotations reach the handlers and nothing is pruned."""

from __future__ import annotations

import kopf

from tenure.runtime import operator_settings


def test_the_emergency_and_rotation_annotations_count_as_changes_for_kopf() -> None:
    """kopf drops every annotation under a prefix its storages use from the diff it reacts to;
    Tenure's bookkeeping prefix must not swallow `tenure.dev/revoke` (or `tenure.dev/rotate`)."""
    settings = operator_settings()
    storage = settings.persistence.diffbase_storage
    body = kopf.Body(
        {
            'metadata': {
                'name': 'x',
                'annotations': {
                    'kopf.tenure.dev/last-handled-configuration': '{"spec": {}}',
                    'tenure.dev/revoke': 'incident',
                    'tenure.dev/rotate': '2',
                },
            },
            'spec': {},
        }
    )
    essence = storage.build(body=body)
    assert essence['metadata']['annotations'] == {
        'tenure.dev/revoke': 'incident',
        'tenure.dev/rotate': '2',
    }


def test_progress_lives_in_annotations_not_in_the_pruned_status() -> None:
    settings = operator_settings()
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert settings.persistence.finalizer == 'tenure.dev/revocation'
    assert settings.posting.enabled is False

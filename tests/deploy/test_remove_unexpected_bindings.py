"""deploy/components/remove-unexpected-bindings: what `--remove-unexpected-bindings` needs beyond
the base install (issue #6), and nothing more.

The operator deletes bindings outside Tenure with `KubeObjects.delete_binding`: RoleBindings
(already granted by the base: it deletes its own on revocation) and ClusterRoleBindings (only
here). Deleting a binding needs no `bind` or `escalate`: only writing one does
(https://kubernetes.io/docs/reference/access-authn-authz/rbac/#restrictions-on-role-binding-creation-or-update).
"""

from __future__ import annotations

import os
from pathlib import Path

from .conftest import DEPLOY, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, Obj, find, kustomize

COMPONENT = DEPLOY / 'components' / 'remove-unexpected-bindings'


def _with_component(tmp_path: Path) -> list[Obj]:
    base = os.path.relpath(DEPLOY / 'base', tmp_path)
    component = os.path.relpath(COMPONENT, tmp_path)
    (tmp_path / 'kustomization.yaml').write_text(
        'apiVersion: kustomize.config.k8s.io/v1beta1\n'
        'kind: Kustomization\n'
        f'resources:\n  - {base}\n'
        f'components:\n  - {component}\n',
        encoding='utf-8',
    )
    return kustomize(tmp_path)


def test_the_component_grants_deleting_cluster_role_bindings_only(tmp_path: Path) -> None:
    install = _with_component(tmp_path)
    role = find(install, 'ClusterRole', 'tenure-remove-unexpected-bindings')
    assert role['rules'] == [
        {
            'apiGroups': ['rbac.authorization.k8s.io'],
            'resources': ['clusterrolebindings'],
            'verbs': ['delete'],
        }
    ]
    binding = find(install, 'ClusterRoleBinding', 'tenure-remove-unexpected-bindings')
    assert binding['roleRef']['name'] == 'tenure-remove-unexpected-bindings'
    assert binding['subjects'] == [
        {
            'kind': 'ServiceAccount',
            'name': OPERATOR_SERVICE_ACCOUNT,
            'namespace': OPERATOR_NAMESPACE,
        }
    ]


def test_the_base_install_cannot_delete_cluster_role_bindings() -> None:
    """Without the component the flag's ClusterRoleBinding deletions would be refused: the base
    grants ClusterRoleBindings read-only."""
    install = kustomize(DEPLOY / 'base')
    operator = find(install, 'ClusterRole', 'tenure-operator')
    verbs = {
        verb
        for rule in operator['rules']
        if 'clusterrolebindings' in rule['resources']
        for verb in rule['verbs']
    }
    assert verbs == {'list', 'watch'}

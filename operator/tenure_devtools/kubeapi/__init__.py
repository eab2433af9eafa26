"""A local Kubernetes API emulator. Development and test tooling, never the operator runtime.

It serves the Kubernetes REST API over HTTP from memory, faithfully enough that the real kopf
framework, the official `kubernetes` client and `kubectl` work against it unmodified: discovery,
CRDs with structural schemas and CEL validation, resourceVersions and watches, finalizers,
namespaces, garbage collection, ServiceAccount tokens. See `server.py` for the entry points and
the module docstrings for the behaviour each part reproduces and the Kubernetes documents they
follow.

    from tenure_devtools.kubeapi import KubeApiEmulator, running_emulator

    with running_emulator(crd_paths=[Path('crds')]) as emu:
        kubeconfig = emu.write_kubeconfig(tmp_path / 'kubeconfig')
"""

from tenure_devtools.kubeapi.server import KubeApiEmulator, running_emulator

__all__ = ['KubeApiEmulator', 'running_emulator']

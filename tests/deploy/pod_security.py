"""The Pod Security Standards' `restricted` profile as a check of a pod spec.

A transcription of the controls in
https://kubernetes.io/docs/concepts/security/pod-security-standards/ (Baseline, then Restricted),
as Pod Security Admission enforces them on a namespace labelled
`pod-security.kubernetes.io/enforce: restricted`. Each violation names the control and the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

BASELINE_CAPABILITIES = frozenset(
    {
        'AUDIT_WRITE',
        'CHOWN',
        'DAC_OVERRIDE',
        'FOWNER',
        'FSETID',
        'KILL',
        'MKNOD',
        'NET_BIND_SERVICE',
        'SETFCAP',
        'SETGID',
        'SETPCAP',
        'SETUID',
        'SYS_CHROOT',
    }
)
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        'configMap',
        'csi',
        'downwardAPI',
        'emptyDir',
        'ephemeral',
        'persistentVolumeClaim',
        'projected',
        'secret',
    }
)
SAFE_SYSCTLS = frozenset(
    {
        'kernel.shm_rmid_forced',
        'net.ipv4.ip_local_port_range',
        'net.ipv4.ip_unprivileged_port_start',
        'net.ipv4.tcp_syncookies',
        'net.ipv4.ping_group_range',
        'net.ipv4.ip_local_reserved_ports',
        'net.ipv4.tcp_keepalive_time',
        'net.ipv4.tcp_fin_timeout',
        'net.ipv4.tcp_keepalive_intvl',
        'net.ipv4.tcp_keepalive_probes',
    }
)
SELINUX_TYPES = frozenset(
    {'', 'container_t', 'container_init_t', 'container_kvm_t', 'container_engine_t'}
)

Obj = dict[str, Any]


def _containers(spec: Obj) -> Iterator[tuple[str, Obj]]:
    for field in ('initContainers', 'containers', 'ephemeralContainers'):
        for index, container in enumerate(spec.get(field) or []):
            yield f'spec.{field}[{index}]', container


def restricted_violations(spec: Obj) -> list[str]:
    """Why PodSecurity `restricted` would refuse a pod with this spec; empty when it admits it."""
    found: list[str] = []
    pod_ctx: Obj = spec.get('securityContext') or {}
    # -- Baseline --
    for field in ('hostNetwork', 'hostPID', 'hostIPC'):
        if spec.get(field):
            found.append(f'host namespaces: spec.{field} must be unset or false')
    if (pod_ctx.get('windowsOptions') or {}).get('hostProcess'):
        found.append('HostProcess: spec.securityContext.windowsOptions.hostProcess')
    for index, volume in enumerate(spec.get('volumes') or []):
        kinds = set(volume) - {'name'}
        if 'hostPath' in kinds:
            found.append(f'HostPath volumes: spec.volumes[{index}]')
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            found.append(f'volume types: spec.volumes[{index}] is {sorted(kinds)}')
    for sysctl in pod_ctx.get('sysctls') or []:
        if sysctl.get('name') not in SAFE_SYSCTLS:
            found.append(f'sysctls: {sysctl.get("name")} is not a safe sysctl')
    pod_seccomp = (pod_ctx.get('seccompProfile') or {}).get('type')
    if pod_seccomp == 'Unconfined':
        found.append('seccomp: spec.securityContext.seccompProfile.type must not be Unconfined')
    pod_non_root = pod_ctx.get('runAsNonRoot')
    if pod_ctx.get('runAsUser') == 0:
        found.append('running as non-root user: spec.securityContext.runAsUser is 0')
    if (pod_ctx.get('seLinuxOptions') or {}).get('type', '') not in SELINUX_TYPES:
        found.append('SELinux: spec.securityContext.seLinuxOptions.type')
    if (pod_ctx.get('appArmorProfile') or {}).get('type') == 'Unconfined':
        found.append('AppArmor: spec.securityContext.appArmorProfile.type is Unconfined')
    for path, container in _containers(spec):
        ctx: Obj = container.get('securityContext') or {}
        caps: Obj = ctx.get('capabilities') or {}
        if ctx.get('privileged'):
            found.append(f'privileged containers: {path}.securityContext.privileged')
        if (ctx.get('windowsOptions') or {}).get('hostProcess'):
            found.append(f'HostProcess: {path}.securityContext.windowsOptions.hostProcess')
        added = set(caps.get('add') or [])
        if not added <= BASELINE_CAPABILITIES:
            found.append(f'capabilities (baseline): {path} adds {sorted(added)}')
        for port_index, port in enumerate(container.get('ports') or []):
            if port.get('hostPort'):
                found.append(f'host ports: {path}.ports[{port_index}].hostPort')
        if ctx.get('procMount', 'Default') != 'Default':
            found.append(f'/proc mount type: {path}.securityContext.procMount')
        if (ctx.get('seLinuxOptions') or {}).get('type', '') not in SELINUX_TYPES:
            found.append(f'SELinux: {path}.securityContext.seLinuxOptions.type')
        if (ctx.get('appArmorProfile') or {}).get('type') == 'Unconfined':
            found.append(f'AppArmor: {path}.securityContext.appArmorProfile.type is Unconfined')
        # -- Restricted --
        if ctx.get('allowPrivilegeEscalation') is not False:
            found.append(
                f'privilege escalation: {path}.securityContext.allowPrivilegeEscalation must be '
                'false'
            )
        non_root = ctx.get('runAsNonRoot', pod_non_root)
        if non_root is not True:
            found.append(f'running as non-root: {path} must set runAsNonRoot: true')
        if ctx.get('runAsUser') == 0:
            found.append(f'running as non-root user: {path}.securityContext.runAsUser is 0')
        seccomp = (ctx.get('seccompProfile') or {}).get('type', pod_seccomp)
        if seccomp not in ('RuntimeDefault', 'Localhost'):
            found.append(f'seccomp: {path} needs seccompProfile RuntimeDefault or Localhost')
        if 'ALL' not in (caps.get('drop') or []):
            found.append(f'capabilities: {path} must drop ALL')
        if not added <= {'NET_BIND_SERVICE'}:
            found.append(f'capabilities: {path} may only add NET_BIND_SERVICE')
    return found

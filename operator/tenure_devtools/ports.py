"""Free TCP ports on the loopback interface, chosen at run time (never hard-coded)."""

from __future__ import annotations

import socket


def free_port(host: str = '127.0.0.1') -> int:
    """Return a port that was free on `host` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def free_port_pair(host: str = '127.0.0.1', attempts: int = 50) -> int:
    """Return a port `p` such that `p` and `p + 1` were both free (OpenBao dev binds both)."""
    for _ in range(attempts):
        port = free_port(host)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError(f'no pair of adjacent free ports found on {host} after {attempts} attempts')

"""`python -m tenure_devtools.kubeapi`: run the Kubernetes API emulator in the foreground.

Development/test tool. Prints one line, `kubeapi listening on http://HOST:PORT`, once it serves
requests, and stops cleanly on SIGINT or SIGTERM. With `--authorization` it enforces RBAC
(authz.py) and prints a second line, `kubeapi admin token: TOKEN`, the bearer token of a cluster
admin (also written into the `--kubeconfig`); it is valid for this process only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from tenure_devtools.kubeapi.server import KubeApiEmulator


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m tenure_devtools.kubeapi',
        description='Local Kubernetes API emulator (development and test tool).',
    )
    parser.add_argument('--host', default='127.0.0.1', help='address to listen on')
    parser.add_argument('--port', type=int, default=0, help='port to listen on (0: any free port)')
    parser.add_argument(
        '--crds',
        type=Path,
        action='append',
        default=[],
        help='CRD YAML file or directory to load at start (repeatable)',
    )
    parser.add_argument('--kubeconfig', type=Path, help='write a kubeconfig for the emulator here')
    parser.add_argument(
        '--authorization',
        action='store_true',
        help='authenticate bearer tokens and enforce RBAC (requests without a token are admin)',
    )
    parser.add_argument('--log-level', default='WARNING', help='logging level (default WARNING)')
    return parser


async def _serve(args: argparse.Namespace) -> None:
    emulator = KubeApiEmulator(args.crds, authorization=args.authorization)
    await emulator.start(host=args.host, port=args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        admin_token = emulator.admin_token if args.authorization else None
        if args.kubeconfig:
            emulator.write_kubeconfig(args.kubeconfig, token=admin_token)
        sys.stdout.write(f'kubeapi listening on {emulator.url}\n')
        if admin_token is not None:
            sys.stdout.write(f'kubeapi admin token: {admin_token}\n')
        sys.stdout.flush()
        await stop.wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.crds if not p.exists()]
    if missing:
        parser.error(f'--crds: no such file or directory: {", ".join(missing)}')
    logging.basicConfig(level=args.log_level.upper(), format='%(levelname)s %(name)s: %(message)s')
    asyncio.run(_serve(args))
    return 0


if __name__ == '__main__':
    sys.exit(main())

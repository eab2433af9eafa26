"""The `tenure` command line."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from tenure import __version__
from tenure.audit import add_report_arguments, run_report
from tenure.config import ConfigError, add_run_arguments, parse_run_config
from tenure.manifests import CheckReport, check_paths, load_policy
from tenure.plan import add_plan_arguments, run_plan

EXIT_OK = 0
EXIT_PROBLEMS = 1


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='tenure',
        description='Tenure governs non-human identities (Kubernetes ServiceAccounts, RBAC and '
        'Vault material) from approved ITSM tickets.',
    )
    parser.add_argument('--version', action='version', version=f'tenure {__version__}')
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    check = commands.add_parser(
        'check',
        help='validate ServiceIdentity manifests offline',
        description='Validate ServiceIdentity manifests offline against the tenure.dev/v1alpha1 '
        'API (for GitOps CI). Exit 0 when every manifest is valid, 1 with one line per problem '
        '(file:line, object, field path, message).',
    )
    check.add_argument('paths', nargs='*', type=Path, metavar='PATH', help='file or directory')
    check.add_argument(
        '-f',
        '--filename',
        dest='filenames',
        action='append',
        type=Path,
        default=[],
        metavar='PATH',
        help='file or directory (repeatable; like kubectl -f)',
    )
    check.add_argument(
        '-o', '--output', choices=('text', 'json'), default='text', help='output format'
    )
    check.add_argument(
        '--ignore-other-kinds',
        action='store_true',
        help='skip documents that are not ServiceIdentities instead of reporting them',
    )
    check.add_argument(
        '--policy',
        type=Path,
        metavar='FILE',
        help='an IdentityPolicy manifest to check against (default: the built-in policy)',
    )
    check.add_argument(
        '--kv-mount',
        default='secret',
        metavar='PATH',
        help='the KV v2 mount the operator uses, for the Vault path rules [secret]',
    )
    report = commands.add_parser(
        'report',
        help='inventory every non-human identity: Managed, Leaked or Unmanaged',
        description='Read the cluster and Vault (read-only) and classify every non-human '
        'identity: Managed (an Active ServiceIdentity stands behind it), Leaked (Tenure made it '
        'for an identity that is revoked or gone) or Unmanaged (ServiceAccounts, token Secrets, '
        'bindings granting ServiceAccounts, Vault Kubernetes-auth roles and ACL policies with no '
        'ServiceIdentity behind them), each with the OWASP NHI Top 10 risk it maps to. '
        'Kubernetes from --kubeconfig, $KUBECONFIG or in-cluster config; Vault from $VAULT_ADDR '
        'and $VAULT_TOKEN (a token that may list and read auth/<mount>/role and '
        'sys/policies/acl). Exit 0 when the report was printed, 1 when a source could not be read.',
    )
    add_report_arguments(report)
    plan = commands.add_parser(
        'plan',
        help='show what applying ServiceIdentity manifests would do, changing nothing',
        description='Show what applying ServiceIdentity manifests would create, change or delete '
        'in Kubernetes and Vault, with the guardrail verdicts and the lifecycle decision the '
        'operator would take (e.g. a wider scope refused without a new approval). Compares with '
        'the live cluster and Vault when they can be read (read-only), and plans from the '
        'manifests alone otherwise (and with --offline). Writes nothing. Exit 0 when every '
        'manifest would take effect as written, 1 when one would be refused, denied, held or '
        'ignored.',
    )
    add_plan_arguments(plan)
    run = commands.add_parser(
        'run',
        help='run the operator',
        description='Run the Tenure operator: reconcile ServiceIdentities into Kubernetes '
        'ServiceAccounts with RBAC and Vault material, and revoke them with proof. Kubernetes from '
        '--kubeconfig, $KUBECONFIG or in-cluster config; Vault from $VAULT_ADDR and $VAULT_TOKEN '
        '(flags override the environment). Fails fast when Kubernetes or Vault is unreachable, the '
        'CRD is missing, or the auth or KV mount does not exist.',
    )
    add_run_arguments(run)
    dev = commands.add_parser(
        'dev',
        help='run the local sandbox: Kubernetes API emulator, OpenBao and the operator',
        description='Start the local sandbox on 127.0.0.1, on free ports: the Kubernetes API '
        'emulator (in memory) with the CRDs, a real OpenBao dev server (in memory) with Kubernetes '
        'auth against the emulator, and the operator (tenure run). Then create the namespaces the '
        'example manifests need, apply them, wait for their phases, write a kubeconfig and the '
        'OpenBao root token (mode 0600, never printed) into the state directory, and print the '
        'kubectl and Vault commands to try. Runs until Ctrl-C or SIGTERM, then stops everything '
        'it started; nothing survives a restart. Needs the sandbox extra '
        "(pip install -e '.[sandbox]').",
    )
    dev.add_argument(
        '--state-dir',
        type=Path,
        default=Path('.tenure/dev'),
        metavar='DIR',
        help='where the kubeconfig, the vault-token file and the logs go (default: %(default)s)',
    )
    dev.add_argument(
        '--port',
        type=int,
        default=0,
        help='port of the Kubernetes API emulator, to keep the kubeconfig the same across runs '
        '(default: a free port)',
    )
    dev.add_argument(
        '--crds',
        type=Path,
        default=Path('crds'),
        metavar='PATH',
        help='CRD file or directory to load (default: %(default)s)',
    )
    examples = dev.add_mutually_exclusive_group()
    examples.add_argument(
        '--examples',
        type=Path,
        default=Path('examples'),
        metavar='PATH',
        help='manifest file or directory to apply at start (default: %(default)s)',
    )
    examples.add_argument('--no-examples', action='store_true', help='apply no manifests')
    return parser


def configuration_reference() -> str:
    """docs/configuration.md: every flag of `tenure run`, from the parser itself."""
    parser = _build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    run = commands.choices['run']
    run.formatter_class = functools.partial(argparse.HelpFormatter, width=100)
    return (
        '# Configuration reference: `tenure run`\n\n'
        'Generated from the command itself by `make docs`; a test fails when it is stale.\n'
        'Environment: `KUBECONFIG`, `VAULT_ADDR`, `VAULT_TOKEN`, `VAULT_NAMESPACE`,\n'
        '`VAULT_CACERT`, `VAULT_SKIP_VERIFY`, `POD_NAMESPACE`; flags override the environment.\n\n'
        f'```\n{run.format_help()}```\n'
    )


def _print_check(report: CheckReport, output: str, out: TextIO) -> None:
    if output == 'json':
        doc = {
            'valid': report.ok,
            'objects': report.objects,
            'problems': [dataclasses.asdict(p) for p in report.problems],
        }
        out.write(json.dumps(doc, indent=2) + '\n')
        return
    for problem in report.problems:
        out.write(problem.describe() + '\n')
    if report.ok:
        out.write(f'{report.objects} ServiceIdentity manifest(s) valid\n')
    elif not report.problems:
        out.write('no ServiceIdentity manifests found\n')


def main(
    argv: Sequence[str] | None = None,
    out: TextIO | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Run the `tenure` command; return its exit code. `clock` is the time rules' "now"."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    stream = out if out is not None else sys.stdout
    if args.command == 'check':
        paths = [*args.paths, *args.filenames]
        if not paths:
            parser.error('check needs at least one PATH (or -f PATH)')
        try:
            policy = load_policy(args.policy) if args.policy else None
        except ValueError as e:
            parser.error(str(e))
        report = check_paths(
            paths,
            now=clock(),
            policy=policy,
            kv_mount=args.kv_mount.strip('/'),
            ignore_other_kinds=args.ignore_other_kinds,
        )
        _print_check(report, args.output, stream)
        return EXIT_OK if report.ok else EXIT_PROBLEMS
    if args.command == 'report':
        try:
            return run_report(args, stream, sys.stderr, clock())
        except ValueError as e:
            parser.error(str(e))
    if args.command == 'plan':
        try:
            return run_plan(args, stream, clock())
        except ValueError as e:
            parser.error(str(e))
    if args.command == 'run':
        try:
            config = parse_run_config(args, os.environ)
        except ConfigError as e:
            parser.error(str(e))
        from tenure.app import run as run_operator

        return run_operator(config)
    if args.command == 'dev':
        if not 0 <= args.port <= 65535:
            parser.error(f'--port must be between 0 and 65535, not {args.port}')
        # Imported here: the dev tools and the sandbox extra are not part of the operator.
        try:
            from tenure_devtools import sandbox
        except ImportError as e:
            parser.error(f"tenure dev needs the sandbox extra (pip install -e '.[sandbox]'): {e}")
        options = sandbox.SandboxOptions(
            state_dir=args.state_dir,
            crds=args.crds,
            examples=None if args.no_examples else args.examples,
            port=args.port,
        )
        return sandbox.main(options, stream)
    raise AssertionError(f'unhandled command {args.command!r}')

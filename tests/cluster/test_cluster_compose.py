"""The compose profile ``cluster``: NATS cluster, three sentinels, chat replicas on Redis."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"


def _compose() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def _config(compose: list[str], *extra: str) -> str:
    result = subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "--profile", "cluster", "config", *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_cluster_profile_validates_and_joins_every_sentinel_to_nats() -> None:
    compose = _compose()
    if compose is None:
        pytest.skip("neither 'docker compose' nor docker-compose is installed")
    services = set(_config(compose, "--services").split())
    assert {"nats-1", "nats-2", "nats-3", "sentinel-1", "sentinel-2", "sentinel-3"} <= services
    assert {"redis", "chat-cluster"} <= services
    # The resolved file (anchors and merges expanded): each sentinel joins all three NATS
    # servers, without credentials in the URL, under an id of its own.
    text = _config(compose)
    cluster_urls = re.findall(r"FAME_CLUSTER_URL: '?([^'\n]+)", text)
    assert len(cluster_urls) == 3
    for urls in cluster_urls:
        assert sorted(urls.split(",")) == [f"nats://nats-{i}:4222" for i in (1, 2, 3)]
    ids = re.findall(r"FAME_NODE_ID: '?(sentinel-\d)", text)
    assert sorted(ids) == ["sentinel-1", "sentinel-2", "sentinel-3"]
    admission = re.findall(r"FAME_DIRECT_ADMISSION_URL: '?(ws://sentinel-1[^'\n]+)", text)
    assert admission and len(admission[0].split(",")) == 3

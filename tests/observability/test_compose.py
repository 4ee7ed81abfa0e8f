"""The compose profile ``observability``: Jaeger and Prometheus, with the files it mounts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "observability" / "prometheus.yml"


def _compose() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_the_observability_profile_validates_and_adds_jaeger_and_prometheus() -> None:
    compose = _compose()
    if compose is None:
        pytest.skip("neither 'docker compose' nor docker-compose is installed")
    base = [*compose, "-f", str(ROOT / "docker-compose.yml")]
    env = {
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "FAME_METRICS_TOKEN": "t",
        "FAME_METRICS_PORT": "9464",
    }
    checked = subprocess.run(
        [*base, "--profile", "observability", "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert checked.returncode == 0, checked.stderr
    services = subprocess.run(
        [*base, "--profile", "observability", "config", "--services"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert {"jaeger", "prometheus", "sentinel", "chat-agent"} <= set(services.stdout.split())
    # Prometheus gets the config in the repository and the token; the services get the endpoint.
    assert "deploy/observability/prometheus.yml" in checked.stdout
    assert "/etc/prometheus/metrics.token" in checked.stdout
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in checked.stdout


def test_prometheus_scrapes_the_sentinel_and_the_agent_with_the_token() -> None:
    text = PROMETHEUS.read_text()
    assert 'targets: ["sentinel:8000"]' in text
    assert 'targets: ["chat-agent:9464"]' in text
    assert text.count("credentials_file: /etc/prometheus/metrics.token") == 2
    assert text.count("metrics_path: /metrics") == 2

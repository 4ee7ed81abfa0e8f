"""FAME_CLUSTER_* settings: URLs, credentials from the environment or files only, timing."""

from __future__ import annotations

from pathlib import Path

import pytest

from famefabric.errors import ConfigurationError
from famefabric.sentinel.cluster.settings import ClusterSettings


def test_no_url_means_no_cluster() -> None:
    assert ClusterSettings.from_env({}) is None
    assert ClusterSettings.from_env({"FAME_CLUSTER_URL": "  "}) is None


def test_several_urls_default_port_and_the_flag_wins() -> None:
    env = {"FAME_CLUSTER_URL": "nats://ignored:1"}
    settings = ClusterSettings.from_env(env, url="nats://a:4222, nats://b ,tls://c:7422")
    assert settings is not None
    assert settings.servers == ("nats://a:4222", "nats://b:4222", "tls://c:7422")
    assert settings.tls and settings.prefix == "fame"
    assert settings.heartbeat_interval == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://a:4222", "not a NATS URL"),
        ("nats://", "not a NATS URL"),
        ("nats://user:secret@a:4222", "must not carry credentials"),
        ("nats://a:notaport", "not a valid URL"),
        (",,", "names no NATS server"),
    ],
)
def test_bad_urls_are_refused_with_what_to_do(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        ClusterSettings.from_env({"FAME_CLUSTER_URL": url})
    assert "secret" not in str(caught.value)


def test_credentials_come_from_variables_and_files(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    settings = ClusterSettings.from_env(
        {
            "FAME_CLUSTER_URL": "nats://a",
            "FAME_CLUSTER_USER": "sentinel",
            "FAME_CLUSTER_PASSWORD_FILE": str(password),
        }
    )
    assert settings is not None
    assert (settings.user, settings.password) == ("sentinel", "s3cret")
    assert "s3cret" not in repr(settings)


def test_inconsistent_credentials_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="FAME_CLUSTER_USER is not"):
        ClusterSettings.from_env({"FAME_CLUSTER_URL": "nats://a", "FAME_CLUSTER_PASSWORD": "x"})
    with pytest.raises(ConfigurationError, match="not both"):
        ClusterSettings.from_env(
            {
                "FAME_CLUSTER_URL": "nats://a",
                "FAME_CLUSTER_TOKEN": "x",
                "FAME_CLUSTER_TOKEN_FILE": str(tmp_path),
            }
        )
    with pytest.raises(ConfigurationError, match="FAME_CLUSTER_CREDS"):
        ClusterSettings.from_env(
            {"FAME_CLUSTER_URL": "nats://a", "FAME_CLUSTER_CREDS": str(tmp_path / "none")}
        )


def test_prefix_and_timeout_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="subject prefix"):
        ClusterSettings.from_env({"FAME_CLUSTER_URL": "nats://a", "FAME_CLUSTER_PREFIX": "a.*"})
    with pytest.raises(ConfigurationError, match="FAME_CLUSTER_PEER_TIMEOUT"):
        ClusterSettings.from_env(
            {"FAME_CLUSTER_URL": "nats://a", "FAME_CLUSTER_PEER_TIMEOUT": "0.01"}
        )

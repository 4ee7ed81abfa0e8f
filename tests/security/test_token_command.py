"""``fame token create``: prints a token the sentinel's verifier accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from famefabric.cli import main
from famefabric.security import TokenVerifier

SECRET = "c" * 40


def test_token_create_prints_a_verifiable_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAME_AUTH_SECRET", SECRET)
    monkeypatch.setenv("FAME_JWT_AUDIENCE", "aud-1")
    argv = ["token", "create", "--subject", "ops", "--serve", "a@b.c", "--call", ">"]
    assert main([*argv, "--admin", "--ttl", "120"]) == 0
    printed = capsys.readouterr().out.strip()
    verifier = TokenVerifier.from_env({"FAME_AUTH_SECRET": SECRET, "FAME_JWT_AUDIENCE": "aud-1"})
    assert verifier is not None
    identity = verifier.verify(printed)
    assert (identity.subject, identity.admin) == ("ops", True)
    assert identity.may_serve("a@b.c") and identity.may_call("x@y.z")


def test_token_create_reads_a_secret_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FAME_AUTH_SECRET", raising=False)
    path = tmp_path / "secret"
    path.write_text(SECRET)
    assert main(["token", "create", "--subject", "x", "--auth-secret-file", str(path)]) == 0
    verifier = TokenVerifier.from_env({}, secret_file=str(path))
    assert verifier is not None
    assert verifier.verify(capsys.readouterr().out.strip()).subject == "x"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--subject", "x"], "set FAME_AUTH_SECRET or pass --auth-secret-file"),
        (["--subject", "x", "--serve", "a b"], "contains white space"),
        (["--subject", "x", "--ttl", "0"], "must be a positive"),
    ],
)
def test_token_create_explains_bad_input(
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("FAME_AUTH_SECRET", raising=False)
    if "--serve" in argv or "--ttl" in argv:
        monkeypatch.setenv("FAME_AUTH_SECRET", SECRET)
    assert main(["token", "create", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and SECRET not in err

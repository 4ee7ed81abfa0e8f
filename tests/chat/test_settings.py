"""Where the chat agent keeps conversations by default: one place, not the working directory."""

from __future__ import annotations

from pathlib import Path

from famefabric.chat.settings import ChatSettings, data_dir


def test_fame_data_dir_wins(tmp_path: Path) -> None:
    env = {"FAME_DATA_DIR": str(tmp_path), "XDG_DATA_HOME": "/elsewhere", "HOME": "/home/x"}
    assert data_dir(env) == tmp_path
    assert ChatSettings.from_env(env).store == f"sqlite:///{tmp_path}/conversations.db"


def test_xdg_data_home_then_home() -> None:
    assert data_dir({"XDG_DATA_HOME": "/xdg", "HOME": "/home/x"}) == Path("/xdg/famefabric")
    assert data_dir({"HOME": "/home/x"}) == Path("/home/x/.local/share/famefabric")


def test_chat_store_still_wins(tmp_path: Path) -> None:
    env = {"FAME_DATA_DIR": str(tmp_path), "CHAT_STORE": "memory://"}
    assert ChatSettings.from_env(env).store == "memory://"

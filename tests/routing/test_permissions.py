"""Address patterns and identities (famefabric.routing.permissions)."""

from __future__ import annotations

import pytest

from famefabric.routing.permissions import (
    EVERYTHING,
    NOTHING,
    Identity,
    Permissions,
    check_pattern,
)


@pytest.mark.parametrize(
    ("pattern", "address", "expected"),
    [
        ("chat@fame.fabric", "chat@fame.fabric", True),
        ("chat@fame.fabric", "chat2@fame.fabric", False),
        ("chat@fame.fabric", "chat@fame.fabricX", False),
        ("*@fame.fabric", "echo@fame.fabric", True),
        ("*@fame.fabric", "echo@a.fame.fabric", False),
        ("chat@*.fabric", "chat@fame.fabric", True),
        ("chat@*.fabric", "chat@a.b.fabric", False),
        ("chat@>", "chat@a.b.fabric", True),
        ("chat@**", "chat@/S/C", True),
        (">", "anything@/a/b", True),
        ("**", "x@y", True),
        ("__rpc__*@/S/*", "__rpc__abc@/S/C", True),
        ("__rpc__*@/S/*", "__rpc__abc@/S/C/D", False),
        ("a.b@c", "aXb@c", False),  # a dot is literal, never "any character"
    ],
)
def test_pattern_matching(pattern: str, address: str, expected: bool) -> None:
    assert Permissions((pattern,)).allows(address) is expected


def test_deny_wins_over_allow_in_any_order() -> None:
    for patterns in (("*@fame.fabric", "!admin@fame.fabric"), ("!admin@fame.fabric", ">")):
        permissions = Permissions(patterns)
        assert permissions.allows("chat@fame.fabric")
        assert not permissions.allows("admin@fame.fabric")


def test_deny_alone_allows_nothing() -> None:
    assert not Permissions(("!x@y",)).allows("z@y")


def test_empty_and_everything() -> None:
    assert not NOTHING.allows("chat@fame.fabric")
    assert EVERYTHING.allows("chat@fame.fabric")


@pytest.mark.parametrize("bad", ["", "!", "a b@c", " ", "!\t"])
def test_invalid_patterns_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        check_pattern(bad)
    with pytest.raises(ValueError, match="pattern"):
        Permissions((bad,))


def test_non_string_pattern_is_refused() -> None:
    with pytest.raises(ValueError, match="string"):
        check_pattern(3)  # type: ignore[arg-type]


def test_answers_are_cached_and_bounded() -> None:
    permissions = Permissions(("*@fame.fabric",))
    for index in range(5000):
        permissions.allows(f"a{index}@fame.fabric")
    assert len(permissions._cache) <= 4096
    assert permissions.allows("a1@fame.fabric")


def test_identity_checks_serve_and_call_separately() -> None:
    identity = Identity(
        subject="alice",
        serve=Permissions(("alice-*@fame.fabric",)),
        call=Permissions(("chat@fame.fabric",)),
    )
    assert identity.may_serve("alice-bot@fame.fabric")
    assert not identity.may_serve("chat@fame.fabric")
    assert identity.may_call("chat@fame.fabric")
    assert not identity.may_call("alice-bot@fame.fabric")


def test_admin_grants_no_address_permission() -> None:
    admin = Identity(subject="root", admin=True)
    assert not admin.may_serve("chat@fame.fabric")
    assert not admin.may_call("chat@fame.fabric")

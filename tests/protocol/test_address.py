"""Addresses: grammar and pool matching (PROTOCOL.md §6)."""

from __future__ import annotations

import pytest

from famefabric.errors import ProtocolError
from famefabric.protocol.address import host_matches_pool, is_address, parse_address


@pytest.mark.parametrize(
    ("text", "participant", "host", "path"),
    [
        ("chat@fame.fabric", "chat", "fame.fabric", None),
        ("math@*.fame.fabric", "math", "*.fame.fabric", None),
        (
            "__rpc__CgiURQd1tXRlnDCT@/K8Kb3WylQODnk0IQ/VPQzzQ1FTj9UM8jy",
            "__rpc__CgiURQd1tXRlnDCT",
            None,
            "/K8Kb3WylQODnk0IQ/VPQzzQ1FTj9UM8jy",
        ),
        ("svc@fame.fabric/api/v1", "svc", "fame.fabric", "/api/v1"),
        ("a@b@fame.fabric", "a@b", None, None),
    ],
)
def test_parse_address_splits_at_the_last_at(
    text: str, participant: str, host: str | None, path: str | None
) -> None:
    if "@" in participant:
        with pytest.raises(ProtocolError, match="bad participant"):
            parse_address(text)
        return
    address = parse_address(text)
    assert (address.participant, address.host, address.path) == (participant, host, path)
    assert str(address) == text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("noat", "missing '@'"),
        ("x@", "empty location after '@'"),
        ("@fame.fabric", "bad participant ''"),
        ("x y@fame.fabric", "bad participant 'x y'"),
        ("x@/a/*", "bad path segment '*'"),
        ("x@fame.*.fabric", "bad host label '*'"),
    ],
)
def test_parse_address_names_the_bad_part(text: str, error: str) -> None:
    with pytest.raises(ProtocolError, match=error.replace("*", r"\*")):
        parse_address(text)
    assert not is_address(text)


def test_pool_pattern_matches_its_suffix_and_sub_domains() -> None:
    assert host_matches_pool("fame.fabric", "*.fame.fabric")
    assert host_matches_pool("any.fame.fabric", "*.fame.fabric")
    assert host_matches_pool("a.b.fame.fabric", "*.fame.fabric")
    assert not host_matches_pool("otherfame.fabric", "*.fame.fabric")
    assert not host_matches_pool("fabric", "*.fame.fabric")

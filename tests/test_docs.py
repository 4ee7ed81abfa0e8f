"""Every wire-format reference in the code resolves inside docs/.

Comments cite sections of docs/PROTOCOL.md as ``§5.6`` (or by name, as
``PROTOCOL.md, "Security"``) and conformance scenarios as ``C-15`` (ranges
as ``C-27..C-29``); each must name a heading of PROTOCOL.md or a row of
CONFORMANCE.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CITING = (ROOT / "src", ROOT / "tests")

SECTION = re.compile(r"§\s?(\d+(?:\.\d+)*)")
NAMED_SECTION = re.compile(r'PROTOCOL\.md,?\s+"([^"]+)"')
SCENARIO = re.compile(r"\bC-(\d{2})(?:\s*(?:\.\.|\u2013|-)\s*C-(\d{2}))?")
HEADING = re.compile(r"^#{2,4}\s+(\d+(?:\.\d+)*)\.?\s+(.+)$", re.MULTILINE)
SCENARIO_ROW = re.compile(r"^\|\s*C-(\d{2})\s*\|", re.MULTILINE)


def _sources() -> list[Path]:
    return sorted(
        path
        for root in CITING
        for path in root.rglob("*.py")
        if ".venv" not in path.parts and path != Path(__file__).resolve()
    )


def _citations(pattern: re.Pattern[str]) -> dict[str, list[str]]:
    """Map each cited token to the places (``path:line``) citing it."""
    found: dict[str, list[str]] = {}
    for path in _sources():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for match in pattern.finditer(line):
                for token in _expand(pattern, match):
                    found.setdefault(token, []).append(f"{path.relative_to(ROOT)}:{number}")
    return found


def _expand(pattern: re.Pattern[str], match: re.Match[str]) -> list[str]:
    if pattern is not SCENARIO:
        return [match.group(1)]
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) else first
    return [f"{n:02d}" for n in range(first, max(first, last) + 1)]


def _headings() -> dict[str, str]:
    text = (DOCS / "PROTOCOL.md").read_text()
    return {number: title for number, title in HEADING.findall(text)}


def test_every_section_the_code_cites_is_a_heading_of_the_protocol_document() -> None:
    headings = _headings()
    cited = _citations(SECTION)
    assert cited, "no § citation found: the pattern or the source paths are wrong"
    missing = {number: places[:3] for number, places in cited.items() if number not in headings}
    assert not missing, f"sections cited but missing from docs/PROTOCOL.md: {missing}"


def test_every_section_cited_by_name_exists() -> None:
    titles = {title.strip().lower() for title in _headings().values()}
    cited = _citations(NAMED_SECTION)
    missing = {name: places[:3] for name, places in cited.items() if name.lower() not in titles}
    assert not missing, f"named sections missing from docs/PROTOCOL.md: {missing}"


def test_the_security_section_keeps_its_number() -> None:
    # Code of several modules cites §17.x: renumbering it would orphan them.
    assert _headings()["17"] == "Security"


def test_every_scenario_the_code_cites_has_a_row_in_the_conformance_table() -> None:
    rows = set(SCENARIO_ROW.findall((DOCS / "CONFORMANCE.md").read_text()))
    cited = _citations(SCENARIO)
    assert cited, "no C-nn citation found: the pattern or the source paths are wrong"
    missing = {f"C-{n}": places[:3] for n, places in cited.items() if n not in rows}
    assert not missing, f"scenarios cited but missing from docs/CONFORMANCE.md: {missing}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("see C-27..C-29", ["27", "28", "29"]), ("C-20/C-21", ["20", "21"]), ("C-05", ["05"])],
)
def test_scenario_ranges_are_expanded(text: str, expected: list[str]) -> None:
    tokens = [t for m in SCENARIO.finditer(text) for t in _expand(SCENARIO, m)]
    assert tokens == expected


def test_the_protocol_document_references_only_its_own_sections() -> None:
    headings = _headings()
    text = (DOCS / "PROTOCOL.md").read_text() + (DOCS / "CONFORMANCE.md").read_text()
    dangling = sorted({n for n in SECTION.findall(text) if n not in headings})
    assert not dangling, f"docs cite sections they do not have: {dangling}"

"""No module of the package or of the test harness grows past what a reader takes in at once."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 450
"""Above this, a module has more than one concept in it: split it along them."""


def lengths(folder: Path) -> dict[str, int]:
    """Line counts of the Python modules under ``folder``, by path from the repository."""
    return {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(folder.rglob("*.py"))
    }


def test_the_folders_hold_modules() -> None:
    assert len(lengths(ROOT / "src" / "famefabric")) > 100
    assert len(lengths(ROOT / "tests" / "support")) > 5


def test_no_module_of_the_package_or_the_harness_is_over_the_limit() -> None:
    sizes = lengths(ROOT / "src" / "famefabric") | lengths(ROOT / "tests" / "support")
    over = {path: size for path, size in sizes.items() if size > MAX_LINES}
    assert over == {}, f"modules over {MAX_LINES} lines (split them by concept): {over}"

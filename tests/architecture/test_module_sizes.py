"""No module of the package grows past 450 lines.

The house aims at modules under ~400 lines, one idea each (README, "How it works"); 450
leaves room for a module near the aim to take a fix without a split in the same change,
while a module that has grown two ideas fails here and gets split. Lines are counted as
``wc -l`` does, comments and docstrings included: they are read too.

``KNOWN_OVER`` lists the modules over the limit today, each with its size then; the test
fails when one of them grows, and when one is back under the limit (strike it off).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mqi_communicator"
LIMIT = 450

#: Modules over the limit when this test was written: path -> its line count then.
KNOWN_OVER: dict[str, int] = {}


def _sizes() -> dict[str, int]:
    return {
        p.relative_to(PACKAGE).as_posix(): len(p.read_bytes().splitlines())
        for p in sorted(PACKAGE.rglob("*.py"))
    }


def test_no_module_exceeds_the_limit() -> None:
    over = {path: n for path, n in _sizes().items() if n > LIMIT and n > KNOWN_OVER.get(path, 0)}
    assert not over, f"split these modules (over {LIMIT} lines, or grown past KNOWN_OVER): {over}"


def test_known_offenders_are_still_over() -> None:
    sizes = _sizes()
    back = [path for path in KNOWN_OVER if sizes.get(path, 0) <= LIMIT]
    assert not back, f"no longer over {LIMIT} lines: remove from KNOWN_OVER: {back}"

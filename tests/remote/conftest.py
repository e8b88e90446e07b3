"""Fixtures for the remote adapters: stand-in Pueue daemons (v3 and v4 shapes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.infra.pueue import PueueStandin, pueue_daemon


@pytest.fixture(params=[3, 4], ids=["pueue3", "pueue4"])
def pueue(request: pytest.FixtureRequest) -> Iterator[PueueStandin]:
    """A running stand-in pueued, torn down with every task group it spawned."""
    with pueue_daemon(request.param) as standin:
        yield standin

"""Fixtures of the hook tests: a real HTTP receiver; the store fixtures of tests/persistence."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.persistence.conftest import store, store_url  # noqa: F401 -- shared fixtures
from tests.service.conftest import ws  # noqa: F401 -- the real local workspace

from .receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()

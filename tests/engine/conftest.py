"""Store fixtures of tests/persistence (both backends) for the engine's store-backed tests."""

from __future__ import annotations

from tests.persistence.conftest import store, store_url  # noqa: F401 -- shared fixtures

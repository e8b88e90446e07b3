"""Skip-or-fail policy for tests that need a real service."""

from __future__ import annotations

import os

import pytest


def required(service: str) -> bool:
    """True when a missing ``service`` must fail the run instead of skipping (CI)."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        return True
    return os.environ.get(f"MQI_REQUIRE_{service.upper()}", "") == "1"


def unavailable(service: str, reason: str) -> None:
    """Skip with ``reason``, or fail when the service is required here."""
    msg = f"{service} unavailable: {reason}"
    if required(service):
        pytest.fail(msg + f" (required because CI or MQI_REQUIRE_{service.upper()}=1)")
    pytest.skip(msg)

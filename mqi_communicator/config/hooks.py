"""The ``hooks:`` section: notification targets and the outbox's delivery policy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from .engine import BackoffConfig
from .validation import _fail, _Strict

__all__ = ["HookEvent", "HookTargetConfig", "HooksConfig"]


#: The event kinds a hook may subscribe to (``persistence.outbox.EventKind``; a test
#: keeps the two equal). Host events are accepted but not emitted yet: the engine keeps
#: host health in memory only.
HookEvent = Literal[
    "case_failed", "case_completed", "gpu_zombie", "gpu_recovered", "host_down", "host_up"
]


class HookTargetConfig(_Strict):
    """One notification target: a command (JSON on stdin) or an HTTP webhook (POST JSON)."""

    #: argv of a local command; the event document arrives on its stdin.
    command: list[str] | None = Field(default=None, min_length=1)
    #: An http(s) URL that receives the document as ``POST application/json``.
    url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    #: Extra HTTP headers (e.g. ``Authorization``); never logged.
    headers: dict[str, str] = Field(default_factory=dict)
    #: A call that takes longer is killed and counts as failed.
    timeout_s: PositiveFloat = 10.0
    #: The events it receives (default: every kind).
    events: list[HookEvent] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> HookTargetConfig:
        if (self.command is None) == (self.url is None):
            _fail("command/url", "expected exactly one of 'command' or 'url'")
        if self.headers and self.url is None:
            _fail("headers", "only used with 'url'")
        return self


class HooksConfig(_Strict):
    """Notifications: targets and the delivery policy of the outbox."""

    targets: dict[str, HookTargetConfig] = Field(default_factory=dict)
    #: Attempts per event before it is marked failed.
    max_attempts: PositiveInt = 10
    #: Wait between attempts of one event.
    backoff: BackoffConfig = BackoffConfig()
    #: How often the delivery loop looks for new events.
    poll_interval_s: PositiveFloat = 2.0
    #: Events sent per pass at most (a flood of events waits its turn).
    batch_size: PositiveInt = Field(default=20, le=1000)

    @field_validator("targets")
    @classmethod
    def _names(cls, value: dict[str, HookTargetConfig]) -> dict[str, HookTargetConfig]:
        for name in value:
            if not name or "," in name:
                raise ValueError(f"expected a hook name without commas, got {name!r}")
        return value

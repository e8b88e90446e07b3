"""The ``web:`` section of the config: where the web console listens and who may act.

Kept apart from :mod:`.model` so the web console's settings stay in one small place.
The token is best given through the environment (``MQI__WEB__TOKEN``) so it is not
written in the config file; it is a :class:`~pydantic.SecretStr`, so it never shows in
a ``repr``, an error message or a log line.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, SecretStr

__all__ = ["WebConfig"]


class WebConfig(BaseModel):
    """Settings of ``mqi-communicator web`` (command-line options override them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Listen address. Anything but a loopback address requires ``token``.
    host: str = "127.0.0.1"
    port: int = Field(default=8350, ge=1, le=65535)
    #: Required on every request when set (``Authorization: Bearer`` or the login form).
    token: SecretStr | None = None
    #: No action at all (retry, cancel, GPU offline/online): the pages only show.
    read_only: bool = False
    #: How often open pages poll for fresh state.
    refresh_s: PositiveFloat = 2.0

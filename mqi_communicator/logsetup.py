"""Logging to a rotating file, with timestamps in a configurable time zone.

The original site reads its logs in KST, so ``log.timezone: Asia/Seoul`` renders every
line as e.g. ``2026-11-29 06:46:55.123 +0900``, whatever the machine's zone is.
"""

from __future__ import annotations

import logging
from datetime import datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .config import LogConfig
from .textsafe import printable

__all__ = ["LOGGER_NAME", "ZonedFormatter", "setup_logging", "teardown_logging"]

#: The package's root logger; every module logs below it.
LOGGER_NAME = "mqi_communicator"
_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class ZonedFormatter(logging.Formatter):
    """A formatter whose ``%(asctime)s`` is rendered in a fixed IANA time zone.

    Every record is one line: control characters in the message (a case folder named
    with a newline or an escape sequence) are written as escapes, so a name can never
    forge a log line or drive the terminal of whoever reads the log (``printable``).
    """

    def __init__(self, fmt: str = _FORMAT, *, timezone: str = "UTC") -> None:
        super().__init__(fmt)
        self.zone = ZoneInfo(timezone)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """``YYYY-MM-DD HH:MM:SS.mmm +HHMM`` in the configured zone (or ``datefmt``)."""
        moment = datetime.fromtimestamp(record.created, tz=self.zone)
        if datefmt:
            return moment.strftime(datefmt)
        return f"{moment:%Y-%m-%d %H:%M:%S}.{int(record.msecs):03d} {moment:%z}"

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The line with the message's control characters escaped."""
        return printable(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        """The traceback, its own line breaks kept and anything else escaped."""
        return printable(super().formatException(ei), keep_newlines=True)


def setup_logging(config: LogConfig) -> Path | None:
    """Attach a rotating file handler to the package logger, as ``config`` says.

    Calling it again replaces the handler this function added before (no duplicates).
    Without a file, warnings and errors go to stderr as Python's last-resort handler
    would write them (the bare message), but escaped like every log line.

    Returns:
        The log file, or None when ``config.file`` is not set.
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(config.level)
    teardown_logging()
    if config.file is None:
        stderr = logging.StreamHandler()  # sys.stderr, where lastResort writes
        stderr.setLevel(logging.WARNING)
        stderr.setFormatter(ZonedFormatter("%(message)s"))
        stderr.set_name(_HANDLER_NAME)
        logger.addHandler(stderr)
        return None
    config.file.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(
        config.file, maxBytes=config.max_bytes, backupCount=config.backups, encoding="utf-8"
    )
    handler.setFormatter(ZonedFormatter(timezone=config.timezone))
    handler.set_name(_HANDLER_NAME)
    logger.addHandler(handler)
    return config.file


_HANDLER_NAME = "mqi-communicator-file"


def teardown_logging() -> None:
    """Remove and close the handler :func:`setup_logging` added, if any."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        if handler.get_name() == _HANDLER_NAME:
            logger.removeHandler(handler)
            handler.close()

"""The names re-exported from ``mqi_communicator``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mqi_communicator


def test_every_public_name_resolves() -> None:
    for name in mqi_communicator.__all__:
        assert getattr(mqi_communicator, name) is not None, name
    assert mqi_communicator.Communicator.__module__ == "mqi_communicator.service"
    assert issubclass(mqi_communicator.EngineLockedError, mqi_communicator.MqiError)
    assert issubclass(mqi_communicator.ConfigError, mqi_communicator.PermanentError)
    with pytest.raises(AttributeError):
        _ = mqi_communicator.NoSuchName  # type: ignore[attr-defined]


def test_import_is_light() -> None:
    """``import mqi_communicator`` must not drag in the database and SSH stacks."""
    code = (
        "import sys, mqi_communicator; "
        "print(sorted(m for m in ('sqlalchemy', 'fabric', 'paramiko', 'watchdog') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""The ``engine:`` section: the reconciler's timeouts, intervals and retry policy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator

from .transfers import TransfersConfig
from .validation import _Strict

__all__ = ["BackoffConfig", "EngineConfig", "check_results_subdir"]


class BackoffConfig(_Strict):
    """Per-host exponential backoff: ``base_s * factor**(n-1)``, capped at ``cap_s``."""

    base_s: PositiveFloat = 5.0
    factor: float = Field(default=2.0, ge=1.0)
    cap_s: PositiveFloat = 600.0


class EngineConfig(_Strict):
    """Timeouts, intervals and the retry policy of the reconciler."""

    poll_interval_s: PositiveFloat = 10.0
    #: Measured from the job's start; the job is killed after this long.
    job_timeout_s: PositiveFloat = 21600.0
    #: A kill not confirmed by a poll within this window puts the GPU in ``zombie``.
    kill_confirm_s: PositiveFloat = 120.0
    max_attempts: PositiveInt = 3
    #: Failed downloads (the transfer, not a full results disk) before the case fails.
    max_retrieve_failures: PositiveInt = 5
    #: Consecutive local errors on one case (I/O, a bug, a refused step) before it fails.
    max_local_failures: PositiveInt = 5
    #: The folder inside the remote case directory that the job writes its results into;
    #: only it is downloaded. The case's own folder of that name (any letter case) is
    #: never uploaded, so everything in it was written by the job (README, "How it works").
    results_subdir: str = "output"
    label_prefix: str = Field(default="mqic", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    transfer_timeout_s: PositiveFloat = 3600.0
    #: With several engines (PostgreSQL): a case's lease that is not renewed for this
    #: long (by the database's clock) has expired, and another engine may take the case
    #: over. The working engine renews it every ``lease_ttl_s / 3``.
    lease_ttl_s: float = Field(default=60.0, ge=2.0)
    #: With several engines: how long a ``submitting`` case that holds NO lease (rows
    #: from before leases) must stay unchanged before another engine recovers it. It
    #: must cover a whole start step, so at least ``transfer_timeout_s`` plus the
    #: longest ``hosts.*.scheduler.timeout_s``; omitted, it is exactly that
    #: (:attr:`Config.takeover_grace_s`).
    submit_grace_s: PositiveFloat | None = None
    #: What happens to a case's remote folder (and its ``.mqi`` markers) once the case
    #: ended: ``keep_failed`` removes it after a verified retrieval and keeps failed and
    #: cancelled ones for diagnosis; ``delete`` removes those too; ``keep`` removes
    #: nothing (engine/retention.py).
    remote_retention: Literal["delete", "keep", "keep_failed"] = "keep_failed"
    #: A removal waits this long after the case ended (``cases log`` still reads the
    #: job log meanwhile, and a follower gets its last lines).
    remote_retention_grace_s: float = Field(default=600.0, ge=0)
    backoff: BackoffConfig = BackoffConfig()
    #: Uploads and downloads beside the tick: ``max_parallel`` (0: inline), ``max_per_host``.
    transfers: TransfersConfig = TransfersConfig()

    @field_validator("results_subdir")
    @classmethod
    def _results_subdir(cls, value: str) -> str:
        return check_results_subdir(value)


def check_results_subdir(value: str) -> str:
    """``value`` as a results folder: a relative POSIX path inside the case directory.

    Trailing slashes are dropped. The whole case directory (``""``, ``"."``) is refused:
    it holds the uploaded files, which must never count as results of the run.

    Raises:
        ValueError: saying what is wrong and what is expected.
    """
    norm = value.rstrip("/")
    if norm in ("", "."):
        raise ValueError(
            "the whole case directory cannot be the results: the uploaded files would "
            "count as results of the run; name the folder the job writes, e.g. 'output'"
        )
    parts = norm.split("/")
    if (
        norm.startswith("/")
        or any(ch in norm for ch in "\\\0\n\r")
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise ValueError(
            f"expected a relative path of plain names inside the case directory "
            f"(e.g. 'output'), got {value!r}"
        )
    if parts[0].casefold() == ".mqi":
        raise ValueError(f"{value!r} is the communicator's marker folder, not a results folder")
    return norm

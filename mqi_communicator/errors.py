"""The package's exception tree.

Transient errors are retried by the engine with backoff; permanent ones are not.
The engine relies on "we could not reach the host" (:class:`HostUnreachableError`)
being distinct from "the host answered no" (:class:`RemoteCommandError`).
"""

from __future__ import annotations

__all__ = [
    "CaseContentError",
    "ConfigError",
    "ConflictError",
    "GuardRejectedError",
    "HostKeyError",
    "HostUnreachableError",
    "InvalidTransitionError",
    "LegacyAdoptionError",
    "MqiError",
    "NotFoundError",
    "PermanentError",
    "RemoteCommandError",
    "RemoteSourceMissingError",
    "SchedulerOutputError",
    "SchedulerUnavailableError",
    "SchemaMismatchError",
    "StaleOutcomeError",
    "SubmissionRejectedError",
    "TransferAborted",
    "TransferError",
    "TransientError",
]


class MqiError(Exception):
    """Root of every error raised by mqi_communicator."""


class TransientError(MqiError):
    """May succeed if tried again later (network, busy scheduler, write conflict)."""


class PermanentError(MqiError):
    """Will fail again if repeated unchanged."""


class HostUnreachableError(TransientError):
    """We could not ask the host: connect failed, connection dropped, or a call timed out."""


class SchedulerUnavailableError(TransientError):
    """The host answered but its scheduler daemon did not (pueued or slurmctld down)."""


class ConflictError(TransientError):
    """Another writer changed the row first (optimistic version check failed)."""


class StaleOutcomeError(ConflictError):
    """An outcome arrived for an attempt the case no longer holds; nothing was written.

    A remote action (upload, submit, kill, download) is started for one attempt and
    label. If the case moved on meanwhile (another engine took it over, retried it), the
    outcome belongs to nobody: the engine logs it and drops it.
    """

    def __init__(
        self,
        case_id: int | None,
        expected: tuple[int | None, str | None],
        actual: tuple[int | None, str | None],
    ) -> None:
        what = f"case {case_id}" if case_id is not None else "GPU"
        super().__init__(
            f"{what}: outcome of attempt {expected[0]} ({expected[1]}) is stale;"
            f" the row now holds attempt {actual[0]} ({actual[1]})"
        )
        self.case_id = case_id
        self.expected_attempt, self.expected_label = expected
        self.actual_attempt, self.actual_label = actual


class TransferError(TransientError):
    """A transfer did not complete or did not verify; nothing partial was left in place."""


class TransferAborted(BaseException):
    """The engine is stopping (SIGTERM/SIGINT): a transfer was cut off, nothing was sent after.

    Deliberately NOT an :class:`MqiError` (nor an ``Exception``), like
    ``asyncio.CancelledError``: no step may count an abort as a failure of the case
    (requeue it, back it off, fail it). It unwinds through the step (leases end,
    partial copies are removed or left to the far side's own cleanup) to the transfer
    pool, which leaves the case exactly as a crash at that point would; the next start
    recovers it (``recover_submitting``, or the retrieval starts again).
    """


class RemoteCommandError(PermanentError):
    """The host answered, and the answer was no (non-zero exit of a remote command)."""

    def __init__(self, message: str, *, exit_code: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.stderr = stderr


class RemoteSourceMissingError(RemoteCommandError):
    """The directory to download does not exist on the host."""


class SubmissionRejectedError(RemoteCommandError):
    """The scheduler refused the job (unknown group, bad partition, ...)."""


class SchedulerOutputError(PermanentError):
    """Scheduler output could not be understood; callers map this to status ``unknown``."""


class HostKeyError(PermanentError):
    """The server's host key is unknown or changed; we refuse to talk to it."""


class CaseContentError(PermanentError):
    """The case directory cannot be sent as it is (escaping symlink, unreadable file, empty)."""


class ConfigError(PermanentError):
    """The configuration is malformed; the message names the file, key and expectation."""


class LegacyAdoptionError(PermanentError):
    """A legacy database cannot be adopted as it is; it was left unchanged."""


class NotFoundError(PermanentError):
    """No case or GPU with that id or name."""


class SchemaMismatchError(PermanentError):
    """The database schema is behind or ahead of this code."""


class InvalidTransitionError(PermanentError):
    """A trigger is not legal from the current state. Names the machine, state and trigger."""

    def __init__(self, machine: str, state: str, trigger: str, reason: str = "") -> None:
        msg = f"{machine}: trigger {trigger!r} is not allowed from state {state!r}"
        if reason:
            msg += f": {reason}"
        super().__init__(msg)
        self.machine = machine
        self.state = state
        self.trigger = trigger
        self.reason = reason


class GuardRejectedError(InvalidTransitionError):
    """The trigger exists from this state but a safety guard refused it (e.g. no evidence)."""

    def __init__(self, machine: str, state: str, trigger: str, reason: str = "") -> None:
        super().__init__(machine, state, trigger, reason)
        self.args = (f"{machine}: trigger {trigger!r} from state {state!r} refused: {reason}",)

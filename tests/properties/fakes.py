"""What the property tests share: the probe's text rendered from marker facts, a fake
transport that answers with rendered text, and the two readings of "ended".

The probe text follows :func:`mqi_communicator.remote.markers.probe_snippet` line for
line (``@mqi <token> <key> <value>`` closed by ``end``), so the REAL
:func:`~mqi_communicator.remote.markers.parse_probe` reads it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from mqi_communicator.remote.protocol import CommandResult, JobState, JobStatus, TransferReport
from mqi_communicator.statemachine.decide import Apply, GpuView, JobObservation, decide_zombie
from mqi_communicator.statemachine.states import GpuState

__all__ = [
    "NOW",
    "ProbeFacts",
    "ScriptedTransport",
    "counted_as_ended",
    "engine_frees",
    "forge",
    "render_probe",
]

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class ProbeFacts:
    """What the probe prints for one directory (None: that line is not printed).

    ``alive`` None with a pgid is the probe that could not tell (no writable /tmp):
    the pgid line is printed, the ``alive`` line is not. ``record`` False drops the
    whole record (truncated output); ``cut`` keeps it but without its ``end`` line.
    """

    dir_exists: bool = True
    label: str | None = None
    started: int | None = None
    signal: str | None = None
    exit_code: int | None = None
    pgid: int | None = None
    alive: bool | None = None
    tail: str = ""
    record: bool = True
    cut: bool = False


def _token(remote_dir: str) -> str:
    return base64.urlsafe_b64encode(remote_dir.encode("utf-8")).decode("ascii")


def render_probe(remote_dir: str, facts: ProbeFacts) -> str:
    """The lines ``probe_snippet([remote_dir])`` prints for ``facts``."""
    if not facts.record:
        return ""
    tok = _token(remote_dir.rstrip("/") or "/")
    lines = [f"@mqi {tok} dir {1 if facts.dir_exists else 0}"]
    if facts.label is not None:
        lines.append(f"@mqi {tok} label {facts.label}")
    if facts.started is not None:
        lines.append(f"@mqi {tok} started {facts.started}")
    if facts.signal is not None:
        lines.append(f"@mqi {tok} signal {facts.signal}")
    if facts.exit_code is not None:
        lines.append(f"@mqi {tok} exit {facts.exit_code}")
    if facts.pgid is not None:
        lines.append(f"@mqi {tok} pgid {facts.pgid}")
        if facts.alive is not None:
            lines.append(f"@mqi {tok} alive {1 if facts.alive else 0}")
    if facts.tail and facts.exit_code not in (None, 0):
        encoded = base64.b64encode(facts.tail.encode()).decode()
        lines.append(f"@mqi {tok} tail {encoded}")
    if not facts.cut:
        lines.append(f"@mqi {tok} end")
    return "\n".join(lines) + "\n"


def forge(facts: ProbeFacts, label: str) -> ProbeFacts:
    """``facts`` under a forged ``.mqi/`` uploaded with the case (issue 8, bug 1).

    The case brought ``label``, ``exit`` 0 and the pgid of a dead group; the wrapper
    overwrites only what it writes itself (pgid and started when it starts, exit when it
    ends), so every marker it has not written yet is the forger's.
    """
    if not facts.record:
        return facts
    return replace(
        facts,
        label=label,
        started=facts.started if facts.started is not None else 1_700_000_000,
        exit_code=facts.exit_code if facts.exit_code is not None else 0,
        pgid=facts.pgid if facts.pgid is not None else 999_999,
        alive=facts.alive if facts.pgid is not None else False,
    )


def counted_as_ended(status: JobStatus) -> bool:
    """The adapter's own claim "over, nothing left": terminal with processes gone, or absent."""
    if status.state is JobState.ABSENT:
        return status.processes_gone is not False
    terminal = (JobState.SUCCEEDED, JobState.FAILED, JobState.KILLED)
    return status.state in terminal and status.processes_gone is True


def engine_frees(status: JobStatus, label: str) -> bool:
    """Whether the engine's REAL decision would free a GPU on this status (zombie recovery)."""
    obs = JobObservation(
        reachable=True,
        observed_at=NOW,
        state=status.state,
        exit_code=status.exit_code,
        processes_gone=status.processes_gone,
        detail=status.detail,
    )
    gpu = GpuView("h/gpu0", GpuState.ZOMBIE, label, job_id="1")
    return isinstance(decide_zombie(gpu, obs), Apply)


@dataclass
class ScriptedTransport:
    """A Transport whose ``run`` answers from a list; every command is recorded.

    The first answers go to the first calls; once they are used up every call gets
    ``default`` (exit 0, no output).
    """

    answers: list[CommandResult]
    default: CommandResult = field(default_factory=lambda: CommandResult(0, "", ""))
    host_name: str = "prop"
    commands: list[str] = field(default_factory=list)

    def run(
        self, command: Sequence[str] | str, *, timeout: float, stdin: bytes | None = None
    ) -> CommandResult:
        """Record the command (the script itself when passed on stdin) and answer."""
        text = stdin.decode() if stdin is not None else command
        self.commands.append(text if isinstance(text, str) else " ".join(text))
        return self.answers.pop(0) if self.answers else self.default

    def upload_tree(self, local_dir: Path, remote_dir: str, **kw: object) -> TransferReport:
        """Not used by the adapters' poll/kill/find."""
        raise NotImplementedError

    def download_tree(self, remote_dir: str, local_dir: Path, **kw: object) -> TransferReport:
        """Not used by the adapters' poll/kill/find."""
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to release."""

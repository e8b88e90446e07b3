"""What the property tests share: the probe's text rendered from marker facts, a fake
transport that answers with rendered text, and the two readings of "ended".

The probe text follows :func:`mqi_communicator.remote.job.marker_probe.probe_snippet` line
for line (``@mqi <key> <field> <value>`` records closed by ``end``, then the /proc token
scan with its canary), so the REAL :func:`~mqi_communicator.remote.job.marker_probe.parse_probe`
reads it. ``tests/properties/test_probe_properties.py`` checks this renderer against the
real probe run on real files; every property test renders through it.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import event

from mqi_communicator.remote.job.marker_probe import TOKEN_ENV, _key
from mqi_communicator.remote.protocol import CommandResult, JobStatus, TransferReport
from mqi_communicator.statemachine import GpuFacts
from mqi_communicator.statemachine.decide import Apply, JobObservation, decide_zombie
from mqi_communicator.statemachine.jobs import JobState
from mqi_communicator.statemachine.states import GpuState

__all__ = [
    "NOW",
    "PROBE_FAULTS",
    "SCAN_MODES",
    "ProbeFacts",
    "ScriptedTransport",
    "Tally",
    "counted_as_ended",
    "engine_frees",
    "forge",
    "probe_fault",
    "render_batch",
    "render_probe",
]

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


#: What ``kill -0 -PGID`` prints into the probe's ``kill`` line (LC_ALL=C, dash).
_KILL_ANSWER = {
    True: "alive",  # kill -0 succeeded and printed nothing, then the probe's "alive"
    False: "sh: 1: kill: No such process",
    None: "sh: 1: kill: Input/output error",  # an answer the probe cannot read
}
#: How the /proc scan section ends: ``ok``, or one of the ways it fails to prove itself.
SCAN_MODES = ("ok", "missing", "no_canary", "no_end")
_CANARY_PID = 900


@dataclass(frozen=True)
class ProbeFacts:
    """What the probe prints for one directory (None: that line is not printed).

    ``token`` is the token file of ``<dir>.mqi/`` (None: nothing installed there);
    ``carriers`` how many live processes carry it in their environment (the scan finds
    them). ``alive`` is kill -0's answer about the pgid: True alive, False "No such
    process", None an answer the probe cannot read. ``record`` False drops the whole
    record, and ``cut`` keeps it without its ``end`` line: both are truncated output, so
    the scan (printed after every record) is missing too. ``in_case`` adds a record of a
    ``.mqi/`` INSIDE the case (what a forged upload would look like if anything read it).
    ``scan`` is how the scan section ends (:data:`SCAN_MODES`).
    """

    dir_exists: bool = True
    token: str | None = None
    label: str | None = None
    started: int | None = None
    signal: str | None = None
    exit_code: int | None = None
    pgid: int | None = None
    alive: bool | None = None
    tail: str = ""
    carriers: int = 0
    record: bool = True
    cut: bool = False
    in_case: tuple[str, ...] = ()
    scan: str = "ok"


def _record(remote_dir: str, facts: ProbeFacts) -> list[str]:
    """The lines ``_mqi_probe`` prints for one token directory, in its order."""
    k = _key(remote_dir, False)
    out = [f"@mqi {k} dir {int(facts.dir_exists)}"]
    if facts.token is not None:
        out.append(f"@mqi {k} token {facts.token}")
    for name, value in (
        ("label", facts.label),
        ("started", facts.started),
        ("signal", facts.signal),
        ("exit", facts.exit_code),
    ):
        if value is not None:
            out.append(f"@mqi {k} {name} {value}")
    if facts.pgid is not None:
        out.append(f"@mqi {k} pgid {facts.pgid}")
        out.append(f"@mqi {k} kill {_KILL_ANSWER[facts.alive]}")
    if facts.tail and facts.exit_code not in (None, 0):
        out.append(f"@mqi {k} tail {base64.b64encode(facts.tail.encode()).decode()}")
    if not facts.cut:
        out.append(f"@mqi {k} end")
    if facts.in_case:
        fk = _key(remote_dir, True)
        out += [f"@mqi {fk} dir 1", *(f"@mqi {fk} {line}" for line in facts.in_case)]
        out.append(f"@mqi {fk} end")
    return out


def _scan(batch: Sequence[tuple[str, ProbeFacts]], mode: str) -> list[str]:
    """The /proc scan section: the canary's own environ, then every token carrier."""
    if mode == "missing":
        return []
    out = [f"@mqi-scan canary {_CANARY_PID}"]
    if mode != "no_canary":
        out.append(f"/proc/{_CANARY_PID}/environ:{TOKEN_ENV}=mqi-probe-canary")
    for i, (_, facts) in enumerate(batch):
        if facts.token is None:
            continue  # the probe only looks for tokens it read from a marker directory
        pids = range(1000 * (i + 1), 1000 * (i + 1) + facts.carriers)
        out += [f"/proc/{pid}/environ:{TOKEN_ENV}={facts.token}" for pid in pids]
    if mode != "no_end":
        out.append("@mqi-scan end")
    return out


def render_batch(batch: Sequence[tuple[str, ProbeFacts]], scan: str = "ok") -> str:
    """The text ``probe_snippet([d for d, _ in batch])`` prints (one renderer for all tests).

    Truncated output (a dropped or cut record) also loses the scan printed after it.
    """
    lines: list[str] = []
    for remote_dir, facts in batch:
        if not facts.record:
            return "\n".join(lines) + "\n" if lines else ""
        lines += _record(remote_dir, facts)
        if facts.cut:
            return "\n".join(lines) + "\n"
    return "\n".join([*lines, *_scan(batch, scan)]) + "\n"


def render_probe(remote_dir: str, facts: ProbeFacts) -> str:
    """The lines ``probe_snippet([remote_dir])`` prints for ``facts``."""
    return render_batch([(remote_dir, facts)], facts.scan)


def forge(facts: ProbeFacts, label: str) -> ProbeFacts:
    """``facts`` with a forged ``.mqi/`` uploaded INSIDE the case (issue 8, bug 1).

    The case brought ``label``, ``exit`` 0 and the pgid of a dead group. Markers of a
    job with a token live in ``<dir>.mqi/``, a sibling no upload writes to, so the probe
    never reads the forgery; it is rendered as an in-case record anyway (as if something
    did) and the adapters must not take it for ours.
    """
    forged = (f"label {label}", "exit 0", "pgid 999999", f"kill {_KILL_ANSWER[False]}")
    return replace(facts, in_case=forged)


#: What can go wrong with the probe (the worlds draw one per example).
PROBE_FAULTS = (
    "honest",
    "honest",
    "honest",
    "missing",
    "cut",
    "unknown_liveness",
    "env_cleared",
    "env_cleared_unclear",
    "scan_missing",
    "scan_no_canary",
    "scan_no_end",
    "foreign_label",
    "foreign_token",
    "forged_foreign",
    "forged_ours",
)


def probe_fault(facts: ProbeFacts, fault: str) -> ProbeFacts:
    """``facts`` as the probe prints them under ``fault`` (one of :data:`PROBE_FAULTS`).

    ``missing``/``cut``: the output was truncated; ``unknown_liveness``: kill -0 gave an
    answer the probe cannot read; ``env_cleared``: our live processes in the wrapper's
    group cleared their environment, so the scan finds none of them (only the group
    check sees them; a documented limit), ``env_cleared_unclear``: and kill -0 is
    unclear too; ``scan_*``: the /proc scan did not prove itself;
    ``foreign_label``/``foreign_token``: the marker directory is another job's or
    another attempt's; ``forged_*``: the case shipped a ``.mqi/`` of its own.
    """
    if fault == "missing":
        return replace(facts, record=False)
    if fault == "cut":
        return replace(facts, cut=True)
    if fault == "unknown_liveness":
        return replace(facts, alive=None)
    if fault.startswith("env_cleared"):
        return replace(facts, carriers=0, alive=None if fault.endswith("unclear") else facts.alive)
    if fault.startswith("scan_"):
        return replace(facts, scan=fault.removeprefix("scan_"))
    if fault == "foreign_label":
        return replace(facts, label="mqic-99-a1")
    if fault == "foreign_token":
        return replace(facts, token="f" * 32)
    if fault.startswith("forged"):
        return forge(facts, facts.label or "" if fault == "forged_ours" else "mqic-99-a1")
    return facts


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
    gpu = GpuFacts("h/gpu0", GpuState.ZOMBIE, job_label=label, job_id="1")
    return isinstance(decide_zombie(gpu, obs), Apply)


@dataclass
class Tally:
    """How the examples of one property run came out (shown by ``--hypothesis-show-statistics``).

    A property whose examples all parse to UNKNOWN proves nothing: the runner of the
    property asserts that a decent share reached a definite answer.
    """

    counts: Counter[str] = field(default_factory=Counter)

    def note(self, status: JobStatus) -> None:
        """Count one example by the adapter's answer."""
        kind = "ended" if counted_as_ended(status) else status.state.value
        self.counts["examples"] += 1
        self.counts[kind] += 1
        event(f"status: {kind}")

    def require(self, *, ended: float, definite: float) -> None:
        """At least ``ended`` of the examples ended, ``definite`` were not UNKNOWN."""
        n = self.counts["examples"]
        assert n > 0, "no example ran"
        assert self.counts["ended"] >= ended * n, dict(self.counts)
        assert n - self.counts[JobState.UNKNOWN.value] >= definite * n, dict(self.counts)
        print(f"\n[tally] {dict(self.counts)}")


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
    #: The stdin of each command ("" when none), index for index with ``commands``.
    stdins: list[str] = field(default_factory=list)

    def run(
        self, command: Sequence[str] | str, *, timeout: float, stdin: bytes | None = None
    ) -> CommandResult:
        """Record the command and its stdin, and answer.

        A script too long for argv travels on stdin (``sh -c 'eval "$(cat)"'``): then
        the script is recorded as the command.
        """
        text = command if isinstance(command, str) else " ".join(command)
        data = stdin.decode() if stdin is not None else ""
        if "eval" in text and data:
            text, data = data, ""
        self.commands.append(text)
        self.stdins.append(data)
        return self.answers.pop(0) if self.answers else self.default

    def upload_tree(self, local_dir: Path, remote_dir: str, **kw: object) -> TransferReport:
        """Not used by the adapters' poll/kill/find."""
        raise NotImplementedError

    def download_tree(self, remote_dir: str, local_dir: Path, **kw: object) -> TransferReport:
        """Not used by the adapters' poll/kill/find."""
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to release."""

"""Generated ground truth for one of our Slurm jobs, and the text the poll command prints.

The poll command (``slurm.commands.poll_command``) prints squeue's ``-O`` lines
(``id|STATE|reason|wait status|start|name|``, as captured in
``tests/remote/schedulers/data/slurm_squeue_mixed.txt``), then ``@@mqi-squeue-end <rc>``, then the
marker probe. :func:`render` builds that stdout (and squeue's stderr) from a
:class:`SlurmTruth`.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from .fakes import PROBE_FAULTS, ProbeFacts, probe_fault, render_probe

__all__ = ["DIR", "JOB_ID", "LABEL", "TOKEN", "SlurmTruth", "render", "slurm_truths"]

LABEL = "mqic-5-a1"
DIR = "/scratch/mqic/case_5_a1"
JOB_ID = 31
#: The attempt's token (what the submit installed in ``<DIR>.mqi/token``).
TOKEN = "slurm-attempt-token-0005"
_START = "2026-11-30T11:40:04"

#: Where our job really is. ``cancelled_running``: scancel was sent while it ran.
PHASES = (
    "pending",
    "running",
    "completed",
    "failed",
    "cancelled_pending",
    "cancelled_running",
    "timeout",
    "node_fail",
    "out_of_memory",
)

#: squeue's honest line per phase: (STATE, reason, wait status, started), alternatives.
_LINES: dict[str, tuple[tuple[str, str, str, bool], ...]] = {
    "pending": (("PENDING", "Priority", "0", False), ("PENDING", "JobHeldUser", "0", False)),
    "running": (
        ("RUNNING", "None", "0", True),
        ("COMPLETING", "None", "0", True),
        ("SUSPENDED", "None", "0", True),
    ),
    "completed": (("COMPLETED", "None", "0", True),),
    "failed": (("FAILED", "NonZeroExitCode", "{w}", True),),
    "cancelled_pending": (("CANCELLED", "None", "0", False),),
    "cancelled_running": (("CANCELLED", "None", "15", True), ("COMPLETING", "None", "15", True)),
    "timeout": (("TIMEOUT", "TimeLimit", "15", True),),
    "node_fail": (("NODE_FAIL", "None", "9", True),),
    "out_of_memory": (("OUT_OF_MEMORY", "OutOfMemory", "9", True),),
}

_STRANGER_STATES = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")


@dataclass(frozen=True)
class SlurmTruth:
    """The ground truth of our job and of what squeue and the probe make of it.

    Attributes:
        phase: One of :data:`PHASES`.
        exit_code: The command's code for ``failed``.
        lingering: For ``cancelled_running``: the wrapper's group still winds down.
        honest: Index into the honest squeue lines of the phase.
        forgotten: The controller no longer lists the job (``MinJobAge`` after it ended;
            for a pending job: a controller that lost its state, so it never runs).
        stranger: A stranger's job now holds our id (state name), only once forgotten.
        answer: ``ok``, ``bad_line`` (a garbage line: untrusted), ``no_end`` (end marker
            missing), ``lost_line`` (our line lost AND a garbage line), ``rc_other``
            (squeue failed), ``invalid_id`` (exit 1 "Invalid job id"; only when no line
            is printed), ``cut_at`` (stdout cut at ``cut_at``).
        probe: What goes wrong with the probe (``fakes.PROBE_FAULTS``, ``probe_fault``).
        others: Lines of other jobs (our user's other cases) in the same answer.
    """

    phase: str
    exit_code: int
    lingering: bool
    honest: int
    forgotten: bool
    stranger: str | None
    answer: str
    cut_at: float
    probe: str
    others: int

    @property
    def alive(self) -> bool:
        """Some process of our job runs now."""
        if self.phase == "running":
            return True
        return self.phase == "cancelled_running" and self.lingering

    @property
    def may_start(self) -> bool:
        """Pending and still known to the controller: it may start any time."""
        return self.phase == "pending" and not self.forgotten

    @property
    def finished(self) -> bool:
        """Nothing of our job runs, and nothing of it ever will."""
        return not self.alive and not self.may_start

    def our_line(self) -> str | None:
        """squeue's line for our job, None when the controller does not list it."""
        if self.forgotten:
            return None
        lines = _LINES[self.phase]
        state, reason, wait, started = lines[self.honest % len(lines)]
        wait = wait.format(w=self.exit_code << 8)
        return f"{JOB_ID}|{state}|{reason}|{wait}|{_START if started else 'N/A'}|{LABEL}|"

    def probe_facts(self) -> ProbeFacts:
        """What the probe prints for our directory (Slurm ended the group it tracked).

        Our wrapper and its processes carry the token; a ``lingering`` cancelled job's
        wrapper is still handling TERM (no exit marker yet).
        """
        run = {"token": TOKEN, "label": LABEL, "started": 1_764_502_804, "pgid": 5151}
        live = ProbeFacts(**run, alive=True, carriers=1)  # type: ignore[arg-type]
        facts = {
            "running": live,
            "completed": ProbeFacts(**run, exit_code=0, alive=False),  # type: ignore[arg-type]
            "failed": ProbeFacts(**run, exit_code=self.exit_code, alive=False, tail="oops\n"),  # type: ignore[arg-type]
            "timeout": ProbeFacts(**run, exit_code=143, signal="TERM", alive=False),  # type: ignore[arg-type]
            "node_fail": ProbeFacts(**run, alive=False),  # type: ignore[arg-type]
            "out_of_memory": ProbeFacts(**run, exit_code=137, alive=False),  # type: ignore[arg-type]
        }.get(self.phase, ProbeFacts(token=TOKEN, label=LABEL))
        if self.phase == "cancelled_running":
            if self.lingering:
                facts = live
            else:
                facts = ProbeFacts(**run, exit_code=143, signal="TERM", alive=False)  # type: ignore[arg-type]
        return probe_fault(facts, self.probe)


def render(truth: SlurmTruth) -> tuple[str, str]:
    """The (stdout, stderr) of ``poll_command([our ref])`` for ``truth``."""
    lines = [f"{100 + i}|RUNNING|None|0|{_START}|mqic-{100 + i}-a1|" for i in range(truth.others)]
    ours = truth.our_line()
    if ours is not None and truth.answer != "lost_line":
        lines.append(ours)
    elif ours is None and truth.stranger is not None:
        lines.append(f"{JOB_ID}|{truth.stranger}|None|0|{_START}|someone-elses-job|")
    if truth.answer in ("bad_line", "lost_line"):
        lines.append(f"{JOB_ID + 1}|RUNNING|None|0|{_START}|cut-off-na")
    rc, stderr = 0, ""
    if truth.answer == "rc_other":
        rc, stderr = 1, "squeue: error: slurm_load_jobs error: Socket timed out on send/recv\n"
    elif truth.answer == "invalid_id" and not lines:
        rc, stderr = 1, "slurm_load_jobs error: Invalid job id specified\n"
    end = "" if truth.answer == "no_end" else f"@@mqi-squeue-end {rc}\n"
    out = "".join(f"{line}\n" for line in lines) + end + render_probe(DIR, truth.probe_facts())
    if truth.answer == "cut_at":
        out = out[: int(len(out) * truth.cut_at)]
    return out, stderr


@st.composite
def slurm_truths(draw: st.DrawFn) -> SlurmTruth:
    """Any ground truth of our job, with the faults squeue and the probe have."""
    forgotten = draw(st.booleans())
    return SlurmTruth(
        phase=draw(st.sampled_from(PHASES)),
        exit_code=draw(st.sampled_from([1, 3, 127, 255])),
        lingering=draw(st.booleans()),
        honest=draw(st.integers(0, 2)),
        forgotten=forgotten,
        stranger=draw(st.none() | st.sampled_from(_STRANGER_STATES)) if forgotten else None,
        answer=draw(
            st.sampled_from(
                [
                    "ok",
                    "ok",
                    "ok",
                    "bad_line",
                    "no_end",
                    "lost_line",
                    "rc_other",
                    "invalid_id",
                    "cut_at",
                ]
            )
        ),
        cut_at=draw(st.floats(0.0, 1.0)),
        probe=draw(st.sampled_from(PROBE_FAULTS)),
        others=draw(st.integers(0, 2)),
    )

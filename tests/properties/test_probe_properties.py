"""The marker probe, property-tested from generated ground truth.

Each example is a batch of jobs with a known truth (never started, starting, running,
ended with code N, ended by a signal, SIGKILLed, a detached descendant still alive, a
pgid reused by a stranger, a marker directory of another attempt, a forged in-case
``.mqi``, a probe that could not tell a group's liveness, a /proc scan that failed).
From it we render the exact text the real probe prints with the renderer every property
test shares (``fakes.render_batch``; checked against the real probe in
``test_renderer_matches_the_real_probe``),
cut or spoil it, and run the real parser and decision functions. Then:

* a status the engine counts as ended implies that in the truth nothing of the job runs;
* ``processes_gone`` True implies the same;
* any answer but UNKNOWN implies the markers were our attempt's (token and label);
* a job whose own evidence is clear gets the same answer alone or in any batch.

Not modelled (documented limits): a job process that cleared its environment AND left
the wrapper's process group; the instant between the scheduler starting the wrapper and
its re-exec with the token (the schedulers' own view covers it).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mqi_communicator.remote.job.marker_probe import _CARRIER, parse_probe, probe_snippet
from mqi_communicator.remote.job.marker_status import status_from_markers
from mqi_communicator.remote.protocol import JobRef, JobStatus
from mqi_communicator.remote.schedulers.pueue.status import decide
from mqi_communicator.remote.schedulers.slurm.status import decide_status
from mqi_communicator.statemachine.decide import JobObservation, _ended
from mqi_communicator.statemachine.jobs import JobState

from .fakes import SCAN_MODES, ProbeFacts, forge, render_batch

PHASES = ("never", "starting", "running", "exited", "signalled", "sigkilled")
#: Phases in which the wrapper process itself is alive (after its re-exec with the token).
WRAPPER_ALIVE = {"starting", "running"}
#: Phases that wrote pgid and started.
STARTED = {"running", "exited", "signalled", "sigkilled"}


@dataclass(frozen=True)
class Truth:
    """What really is on the server for one job."""

    index: int
    dir_exists: bool
    owner: str  # "ours", "foreign" (another attempt's token), "none" (nothing installed)
    foreign_label: bool  # a foreign attempt labelled differently (else: our very label)
    phase: str
    exit_code: int
    descendant: bool  # a detached process (setsid) carrying the directory's token
    hidden_in_group: bool  # a job process that cleared its environment, in the wrapper's group
    stranger_group: bool  # the pgid was reused by a stranger's live group
    kill_unclear: bool  # kill -0 printed something we cannot read
    forged_in_case: bool  # the case ships a .mqi/ claiming "exit 0, group gone"

    @property
    def remote_dir(self) -> str:
        return f"/base/mqic_case_{self.index}_a1"

    @property
    def ours(self) -> JobRef:
        return JobRef(str(1000 + self.index), self.label, self.remote_dir, token=self.token)

    @property
    def label(self) -> str:
        return f"mqic-{self.index}-a1"

    @property
    def token(self) -> str:
        return f"{self.index:02d}" * 16

    @property
    def dir_token(self) -> str | None:
        return {"ours": self.token, "foreign": "f" * 30 + f"{self.index:02d}", "none": None}[
            self.owner
        ]

    @property
    def anything_alive(self) -> bool:
        """Any process of whatever ran at this place (ours or another attempt's)."""
        if self.owner == "none":
            return False
        return self.phase in WRAPPER_ALIVE or self.descendant or self.hidden_in_group


@st.composite
def truths(draw: st.DrawFn, index: int) -> Truth:
    owner = draw(st.sampled_from(["ours", "ours", "ours", "foreign", "none"]))
    phase = draw(st.sampled_from(PHASES)) if owner != "none" else "never"
    return Truth(
        index=index,
        dir_exists=draw(st.booleans()) if owner == "none" else True,
        owner=owner,
        foreign_label=draw(st.booleans()),
        phase=phase,
        exit_code=draw(st.sampled_from([0, 1, 3, 137, 143])),
        descendant=owner != "none" and phase != "never" and draw(st.booleans()),
        hidden_in_group=phase in STARTED and draw(st.integers(0, 3)) == 0,
        stranger_group=phase in ("exited", "signalled", "sigkilled") and draw(st.booleans()),
        kill_unclear=phase in STARTED and draw(st.integers(0, 4)) == 0,
        forged_in_case=draw(st.booleans()),
    )


def _dir_label(t: Truth) -> str:
    """The label marker: ours, or another installation's (maybe the same label scheme)."""
    return "mqic-other-a1" if t.owner == "foreign" and t.foreign_label else t.label


def facts_of(t: Truth) -> ProbeFacts:
    """What the real probe reads for ``t`` (rendered by the shared renderer)."""
    code = 143 if t.phase == "signalled" else t.exit_code
    ended = t.phase in ("exited", "signalled")
    if t.kill_unclear:
        alive: bool | None = None
    else:
        alive = t.phase == "running" or t.stranger_group or t.hidden_in_group
    facts = ProbeFacts(
        dir_exists=t.dir_exists,
        token=t.dir_token,
        label=_dir_label(t) if t.dir_token is not None else None,
        started=1800000000 if t.phase in STARTED else None,
        signal="TERM" if t.phase == "signalled" else None,
        exit_code=code if ended else None,
        pgid=5000 + t.index if t.phase in STARTED else None,
        alive=alive,
        tail="boom" if ended else "",
        carriers=(t.phase in WRAPPER_ALIVE) + t.descendant,
    )
    return forge(facts, t.label) if t.forged_in_case else facts


def render(batch: list[Truth], scan: str) -> str:
    return render_batch([(t.remote_dir, facts_of(t)) for t in batch], scan)


def _counts_as_ended(status: JobStatus) -> bool:
    obs = JobObservation(
        True, datetime.now(UTC), status.state, processes_gone=status.processes_gone
    )
    return _ended(obs)


def _decisions(t: Truth, text: str) -> dict[str, JobStatus]:
    info = parse_probe(text).get(t.remote_dir)
    ref = t.ours
    return {
        "markers": status_from_markers(info, ref.label, ref.token),
        # Pueue lost the task / Slurm forgot the job: the markers alone decide.
        "pueue": decide(ref, None, True, info),
        "slurm": decide_status(ref, None, True, info),
    }


def _check_safe(t: Truth, statuses: dict[str, JobStatus]) -> None:
    for who, status in statuses.items():
        if _counts_as_ended(status) or status.processes_gone is True:
            assert not t.anything_alive, (who, t, status)
        if status.state is not JobState.UNKNOWN:
            assert t.owner in ("ours", "none"), (who, t, status)


batches = st.integers(1, 4).flatmap(lambda n: st.tuples(*(truths(i) for i in range(n))))
scans = st.sampled_from(["ok", "ok", "ok", *SCAN_MODES[1:]])


@given(batches, scans)
def test_whole_output_never_ends_a_live_job(batch: tuple[Truth, ...], scan: str) -> None:
    text = render(list(batch), scan)
    for t in batch:
        statuses = _decisions(t, text)
        _check_safe(t, statuses)
        status = statuses["markers"]
        if scan != "ok" and t.owner == "ours" and t.phase != "never":
            # Without a proven scan, a started job's processes are never called gone.
            assert status.processes_gone is not True, (t, status)
        if t.owner == "ours" and t.phase == "exited" and t.descendant and scan == "ok":
            # The detached descendant: the job may have succeeded, its GPU is not free.
            assert status.processes_gone is False and not _counts_as_ended(status), status


@given(batches, scans, st.data())
def test_cut_or_spoiled_output_never_ends_a_live_job(
    batch: tuple[Truth, ...], scan: str, data: st.DataObject
) -> None:
    text = render(list(batch), scan)
    scan_at = max(text.find("@mqi-scan"), 0)  # spoiling the scan hides processes
    cut = data.draw(st.integers(0, len(text)) | st.integers(scan_at, len(text)))
    junk = data.draw(st.text(max_size=40) | st.sampled_from(["@mqi-scan end\n", "\n", "0"]))
    spoiled = data.draw(st.sampled_from([text[:cut], text[:cut] + junk + text[cut:]]))
    for t in batch:
        _check_safe(t, _decisions(t, spoiled))


@given(batches, st.data(), st.text(max_size=20))
def test_a_spoiled_scan_line_hides_nothing(
    batch: tuple[Truth, ...], data: st.DataObject, junk: str
) -> None:
    """A line of the scan section that is not a well-formed carrier voids the whole scan."""
    lines = render(list(batch), "ok").splitlines()
    inside = [i for i, line in enumerate(lines) if line.startswith("/proc/")]
    i = data.draw(st.sampled_from(inside))
    spoiled = data.draw(st.sampled_from([junk + lines[i], lines[i][:-1] + "\0", lines[i][:5]]))
    lines[i] = spoiled
    for t in batch:
        info = parse_probe("\n".join(lines) + "\n").get(t.remote_dir)
        still_whole = _CARRIER.match(spoiled) is not None
        assert info is None or info.token_procs is None or still_whole, info


@given(batches, st.data())
def test_one_unclear_job_does_not_change_the_others(
    batch: tuple[Truth, ...], data: st.DataObject
) -> None:
    t = data.draw(st.sampled_from(batch))
    alone = _decisions(t, render([t], "ok"))
    together = _decisions(t, render(list(batch), "ok"))
    assert alone == together


def _materialize(root: Path, t: Truth) -> None:
    """Write ``t``'s files (no processes: only phases without live ones are built)."""
    case = root / Path(t.remote_dir).relative_to("/")
    if t.dir_exists:
        case.mkdir(parents=True)
    if t.dir_token is None:
        return
    mqi = Path(str(case) + ".mqi")
    mqi.mkdir(parents=True)
    (mqi / "token").write_text(t.dir_token + "\n")
    (mqi / "label").write_text(_dir_label(t) + "\n")
    if t.phase in STARTED:
        (mqi / "started").write_text("1800000000\n")
        (mqi / "pgid").write_text(f"{_dead_pgid()}\n")
    if t.phase == "signalled":
        (mqi / "signal").write_text("TERM\n")
    if t.phase in ("exited", "signalled"):
        (mqi / "exit").write_text(f"{143 if t.phase == 'signalled' else t.exit_code}\n")
        (mqi / "job.log").write_text("boom")


def _dead_pgid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@settings(max_examples=25)
@given(
    st.lists(truths(0), min_size=1, max_size=1).map(
        lambda ts: [t for t in ts if not t.anything_alive]
    ),
    st.data(),
)
def test_renderer_matches_the_real_probe(batch: list[Truth], data: st.DataObject) -> None:
    """The rendered text parses like the real probe's output on the same files."""
    import tempfile

    for t in batch:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            _materialize(root, t)
            real_dir = str(root / Path(t.remote_dir).relative_to("/"))
            out = subprocess.run(
                ["sh", "-c", probe_snippet([real_dir])], capture_output=True, text=True, check=True
            ).stdout
            real = parse_probe(out).get(real_dir)
            real_only = {"forged_in_case": False, "stranger_group": False, "kill_unclear": False}
            plain = Truth(**{**t.__dict__, **real_only})
            rendered = parse_probe(render([plain], "ok")).get(t.remote_dir)
            assert real is not None and rendered is not None
            # The pgid differs (a real dead process); everything else must agree.
            assert real.__dict__ | {"pgid": 0} == rendered.__dict__ | {"pgid": 0}

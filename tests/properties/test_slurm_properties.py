"""Property tests of the Slurm adapter against generated ground truth (issue 8).

From a :class:`~.slurm_world.SlurmTruth` the test renders the poll command's stdout
(squeue lines, the end marker, the marker probe) and runs the REAL
``SlurmScheduler.poll`` on it through a scripted transport (``read_answer``,
``parse_squeue_section``, ``parse_probe``, ``decide_status``). It asserts:

* a status the adapter counts as ended, or on which the engine's real decision would
  free a GPU, comes only from a job that is dead and can never start;
* a squeue line under our id with another name is ignored: the status is the one the
  same answer gives with no line at all ("ours" means our label);
* ``find_by_label`` returns only a job named with our label (or our markers' id).

Slurm's own process tracking is trusted to have ended the job's tracked processes
when it reports a final state other than CANCELLED (scancel is a request); processes
that escape that tracking (``setsid``) are the descendant scan's work (issue 8) and are
not generated here.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import example, given

from mqi_communicator.errors import SchedulerOutputError, SchedulerUnavailableError
from mqi_communicator.remote.job.marker_probe import parse_probe
from mqi_communicator.remote.protocol import CommandResult, JobRef
from mqi_communicator.remote.schedulers.slurm.scheduler import SlurmScheduler
from mqi_communicator.remote.schedulers.slurm.status import decide_status, read_answer

from .fakes import ScriptedTransport, Tally, counted_as_ended, engine_frees
from .slurm_world import DIR, JOB_ID, LABEL, TOKEN, SlurmTruth, render, slurm_truths

REF = JobRef(str(JOB_ID), LABEL, DIR, token=TOKEN)
#: Every run of the main property counts its examples' answers here.
TALLY = Tally()


def _truth(**kw: object) -> SlurmTruth:
    base: dict[str, object] = {
        "phase": "running",
        "exit_code": 3,
        "lingering": False,
        "honest": 0,
        "forgotten": False,
        "stranger": None,
        "answer": "ok",
        "cut_at": 1.0,
        "probe": "honest",
        "others": 1,
    }
    return SlurmTruth(**{**base, **kw})  # type: ignore[arg-type]


def _poll(truth: SlurmTruth) -> object:
    out, err = render(truth)
    sched = SlurmScheduler(ScriptedTransport([CommandResult(0, out, err)]))
    return sched.poll([REF])[REF]


@example(_truth(phase="pending", answer="lost_line"))  # a missing line, untrusted answer
@example(_truth(phase="pending", answer="no_end", probe="missing"))
@example(_truth(phase="cancelled_running", lingering=True))  # CANCELLED, group alive
@example(_truth(phase="cancelled_running", lingering=True, probe="unknown_liveness"))
@example(_truth(phase="running", forgotten=True, probe="unknown_liveness"))
@example(_truth(phase="running", forgotten=True, stranger="COMPLETED"))
@example(_truth(phase="completed", forgotten=True, answer="invalid_id", others=0))
@example(_truth(phase="timeout", answer="cut_at", cut_at=0.5))
@given(slurm_truths())
def _ended_only_when_the_job_is_dead(truth: SlurmTruth) -> None:
    out, err = render(truth)
    sched = SlurmScheduler(ScriptedTransport([CommandResult(0, out, err)]))
    status = sched.poll([REF])[REF]
    TALLY.note(status)
    if counted_as_ended(status) or engine_frees(status, LABEL):
        assert truth.finished, f"{status} while the truth is {truth}\n--- rendered:\n{out}"


def test_ended_only_when_the_job_is_dead() -> None:
    TALLY.counts.clear()
    _ended_only_when_the_job_is_dead()
    # A property whose examples all came out UNKNOWN would prove nothing.
    TALLY.require(ended=0.15, definite=0.4)


@example(_truth(phase="running", forgotten=True, stranger="COMPLETED"))
@example(_truth(phase="pending", forgotten=True, stranger="FAILED", probe="foreign_label"))
@given(slurm_truths())
def test_a_strangers_line_is_not_ours(truth: SlurmTruth) -> None:
    # Every example: the controller forgot our job and a stranger's job took its id.
    truth = replace(truth, forgotten=True, stranger=truth.stranger or "RUNNING")
    if truth.answer == "cut_at":
        truth = replace(truth, answer="ok")
    out, err = render(truth)
    result = CommandResult(0, out, err)
    status = SlurmScheduler(ScriptedTransport([result])).poll([REF])[REF]
    answer, trusted = read_answer(result, "prop")
    marker = parse_probe(answer.rest).get(DIR)
    assert answer.jobs[str(JOB_ID)].name != LABEL
    # Same facts as with no line at all; only the human detail names the stranger.
    expected = decide_status(REF, None, trusted, marker)
    assert replace(status, detail="") == replace(expected, detail="")


@example(_truth(phase="running", forgotten=True, stranger="RUNNING"))
@given(slurm_truths())
def test_find_by_label_finds_only_ours(truth: SlurmTruth) -> None:
    out, err = render(truth)
    sched = SlurmScheduler(ScriptedTransport([CommandResult(0, out, err)]))
    try:
        found = sched.find_by_label(LABEL, DIR)
    except (SchedulerOutputError, SchedulerUnavailableError):
        return  # "cannot tell" is always allowed
    if found is None:
        assert not truth.alive or truth.probe != "honest", truth
        return
    assert found.label == LABEL
    if found.job_id:
        assert found.job_id == str(JOB_ID) and truth.our_line() is not None, (found, truth)


def test_an_unreachable_controller_is_never_an_answer() -> None:
    err = "squeue: error: Unable to contact slurm controller (connect failure)\n"
    sched = SlurmScheduler(ScriptedTransport([CommandResult(1, "@@mqi-squeue-end 1\n", err)]))
    with pytest.raises(SchedulerUnavailableError):
        sched.poll([REF])

"""Pure builders of the shell text the Slurm adapter runs (one remote command per call).

Every value that reaches the shell is quoted (:mod:`mqi_communicator.remote.quoting`), so
hostile case directories and labels stay data. Files the adapter keeps next to the
wrapper's markers in the marker directory ``<case>.mqi/`` (outside the case, see
:mod:`~mqi_communicator.remote.job.markers`):

* ``slurm_job_id`` -- written by the job itself when it starts (``$SLURM_JOB_ID``);
* ``slurm_submitted`` -- the id sbatch returned, recorded in the same command;
* ``slurm_submit.lock`` -- a directory made atomically before sbatch, so a repeated
  submit (after a dropped connection or a crash) never queues a second job.
"""

from __future__ import annotations

from collections.abc import Sequence

from mqi_communicator.remote.job.markers import (
    READ_TOKEN,
    install_snippet,
    marker_dir,
    poll_script,
    probe_snippet,
    wrapper_argv,
)
from mqi_communicator.remote.job.process_kill import token_kill_fragment
from mqi_communicator.remote.protocol import JobRef, JobSpec
from mqi_communicator.remote.quoting import env_prefix, join_argv, quote
from mqi_communicator.remote.schedulers.slurm.parse import (
    ID_RECORD,
    SQUEUE_END,
    SQUEUE_FORMAT,
    is_job_id,
)

__all__ = [
    "JOB_ID_FILE",
    "MARKER_KILL_RECORD",
    "find_command",
    "kill_script",
    "poll_command",
    "sbatch_argv",
    "submit_script",
]

#: Written by the job itself (``$SLURM_JOB_ID``) into ``<case>.mqi/`` when it starts.
JOB_ID_FILE = "slurm_job_id"
_SUBMITTED_FILE = "slurm_submitted"
_LOCK_DIR = "slurm_submit.lock"
#: kill_script prints this when it signalled the wrapper group itself.
MARKER_KILL_RECORD = "@@mqi-marker-kill"
_SQUEUE_BASE = ("squeue", "-h", "-t", "all", "-O", SQUEUE_FORMAT)


def _mqi(remote_dir: str) -> str:
    return quote(marker_dir(remote_dir))


def _output_path(remote_dir: str) -> str:
    """slurm's --output for a case directory, safe from slurm's filename patterns.

    The marker directory is outside the case, so the path is absolute: slurmstepd
    expands ``%`` patterns in it (``%%`` is a literal ``%``), and any backslash disables
    patterns and is deleted, so a directory holding one gets /dev/null (the wrapper
    keeps its own log in job.log).
    """
    if "\\" in remote_dir:
        return "/dev/null"
    return f"{marker_dir(remote_dir).replace('%', '%%')}/slurm-%j.out"


def _minutes(seconds: int) -> str:
    """``--time`` as ``M:SS`` (slurm enforces whole minutes, rounding up)."""
    minutes, secs = divmod(max(1, seconds), 60)
    return f"{minutes}:{secs:02d}"


def sbatch_argv(
    spec: JobSpec,
    *,
    partition: str | None,
    gres: str | None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``sbatch`` argv that runs ``spec`` under the wrapper.

    ``--wrap``, not the wrapper as the batch script: slurm copies a batch script to its
    spool dir, and the wrapper finds its case directory from its own path. The job
    records its id first (in the marker directory) so it can be found after the
    controller has forgotten it.
    """
    env = dict(spec.env)
    if not gres and spec.gpu.cuda_devices is not None:
        env.setdefault("CUDA_VISIBLE_DEVICES", spec.gpu.cuda_devices)
    wrap = (
        f'echo "$SLURM_JOB_ID" >{quote(marker_dir(spec.remote_dir) + "/" + JOB_ID_FILE)}; exec '
        + env_prefix(env)
        + join_argv(wrapper_argv(spec.remote_dir, spec.label, spec.command))
    )
    return [
        "sbatch",
        "--parsable",
        f"--job-name={spec.label}",
        f"--chdir={spec.remote_dir}",
        f"--output={_output_path(spec.remote_dir)}",
        *([f"--partition={partition}"] if partition else []),
        *([f"--gres={gres}"] if gres else []),
        *([f"--time={_minutes(spec.time_limit_s)}"] if spec.time_limit_s is not None else []),
        *extra,
        f"--wrap={wrap}",
    ]


def submit_script(spec: JobSpec, sbatch: Sequence[str]) -> str:
    """Shell text: submit once, or print the id of the job an earlier submit queued.

    0. Install the wrapper and the token (refused if the marker directory holds another
       attempt's token, so no other attempt's job id is ever returned).
    1. ``slurm_submitted`` exists: print it (a repeated call after a lost reply).
    2. The lock exists but no id was recorded (the earlier command died around sbatch):
       print the id slurm knows under our name, or the one the job wrote when it
       started; if there is none, that submit never reached slurm: go on.
    3. Take the lock, sbatch, record the id. On sbatch failure the
       lock is removed and sbatch's exit code and stderr are passed on.

    The command reads the attempt's token from stdin (:data:`~.markers.READ_TOKEN`).
    """
    m = _mqi(spec.remote_dir)
    name_filter = "" if "," in spec.label else f" -n {quote(spec.label)}"
    return f"""\
{READ_TOKEN}_m={m}
{install_snippet(spec.remote_dir, spec.label)} || exit $?
if [ -s "$_m/{_SUBMITTED_FILE}" ]; then cat "$_m/{_SUBMITTED_FILE}"; exit 0; fi
if [ -d "$_m/{_LOCK_DIR}" ]; then
  _sq=$(squeue -h -t all{name_filter} -O 'JobID:|,Name:|') || exit $?
  _ids=$(printf '%s\n' "$_sq" | while IFS= read -r _l; do
    [ "${{_l#*|}}" = {quote(spec.label + "|")} ] && echo "${{_l%%|*}}"; done)
  if [ -z "$_ids" ] && [ -s "$_m/{JOB_ID_FILE}" ]; then _ids=$(cat "$_m/{JOB_ID_FILE}"); fi
  _id=$(printf '%s\\n' $_ids | sort -n | tail -n 1)
  if [ -n "$_id" ]; then
    printf '%s\\n' "$_id" >"$_m/{_SUBMITTED_FILE}"; echo "$_id"; exit 0
  fi
  rmdir "$_m/{_LOCK_DIR}" 2>/dev/null
fi
mkdir "$_m/{_LOCK_DIR}" || exit 75
_id=$({join_argv(sbatch)} </dev/null) || {{ _rc=$?; rmdir "$_m/{_LOCK_DIR}"; exit $_rc; }}
_s="$_m/{_SUBMITTED_FILE}"
printf '%s\\n' "$_id" >"$_s.tmp" && mv -f "$_s.tmp" "$_s"
printf '%s\\n' "$_id"
"""


def poll_command(refs: Sequence[JobRef]) -> str:
    """squeue for every plain job id, the end marker, then the marker probe of every dir."""
    ids = sorted({r.job_id for r in refs if is_job_id(r.job_id)}, key=int)
    # With no id slurm could know, the markers alone decide.
    squeue = join_argv([*_SQUEUE_BASE, "-j", ",".join(ids)]) if ids else "true"
    return f'{squeue}; echo "{SQUEUE_END} $?"; {poll_script(refs)}'


def kill_script(ref: JobRef, grace_s: float) -> str:
    """scancel, then end every process of the job this host can see.

    ``scancel --name`` skips a job whose id now names someone else's job. Slurm's own
    tracking may miss descendants that left the job's process group, and a job the
    controller forgot must still be killable, so the token killer
    (:mod:`~mqi_communicator.remote.job.process_kill`) runs as well; it signals nothing
    unless the marker directory holds the job's token. The command reads that token
    from stdin (:data:`~.markers.READ_TOKEN`) and exits with scancel's status.

    A job without a token (started before the upgrade) keeps the old rule: when squeue
    says the id is unknown or names another job, and its in-case markers say the
    wrapper is ours (label), still running (no exit marker) and has a group, that group
    is signalled (``MARKER_KILL_RECORD`` is printed).
    """
    name = "" if "," in ref.label else f" --name={quote(ref.label)}"
    scancel = f"scancel{name} {ref.job_id}; _rc=$?\n" if is_job_id(ref.job_id) else "_rc=0\n"
    if ref.token is not None:
        if not ref.remote_dir.strip("/"):  # no marker directory to check the token in
            return READ_TOKEN + scancel + "exit $_rc\n"
        return READ_TOKEN + scancel + token_kill_fragment(ref.remote_dir, grace_s) + "exit $_rc\n"
    m = quote(marker_dir(ref.remote_dir, legacy=True))
    killer = 'kill -TERM -"$1" 2>/dev/null; sleep "$2"; kill -KILL -"$1" 2>/dev/null'
    return f"""\
{scancel}_n=$(squeue -h -t all -j {ref.job_id} -O 'Name:|' 2>&1); _q=$?
_forgot=0
[ $_q = 0 ] && [ "$_n" != {quote(ref.label + "|")} ] && _forgot=1
case $_n in *"Invalid job id specified"*) _forgot=1;; esac
if [ $_forgot = 1 ] && [ ! -e {m}/exit ]; then
  _p=; _l=
  [ -f {m}/pgid ] && read -r _p <{m}/pgid
  [ -f {m}/label ] && IFS= read -r _l <{m}/label
  case $_p in ''|*[!0-9]*) _p=0;; esac
  if [ "$_p" -gt 1 ] && [ "$_l" = {quote(ref.label)} ]; then
    setsid sh -c {quote(killer)} mqi-kill "$_p" {grace_s:g} </dev/null >/dev/null 2>&1 &
    echo "{MARKER_KILL_RECORD} $_p"
  fi
fi
exit $_rc
"""


def find_command(label: str, remote_dir: str) -> str:
    """squeue by name, the end marker, the marker probe, and the job-written id."""
    argv = list(_SQUEUE_BASE)
    if "," not in label:  # --name takes a comma-separated list
        argv += ["-n", label]
    id_file = quote(f"{marker_dir(remote_dir)}/{JOB_ID_FILE}")
    return (
        f'{join_argv(argv)}; echo "{SQUEUE_END} $?"; {probe_snippet([remote_dir])}; '
        f'[ -f {id_file} ] && IFS= read -r v <{id_file} && echo "{ID_RECORD} $v"; true'
    )

"""Shell fragments that install the job wrapper and read the markers it leaves.

The wrapper (``wrapper.sh`` next to this module) runs every job in its case directory and
leaves markers in ``<case_dir>/.mqi/``: ``label``, ``pgid``, ``started``, ``exit``,
``signal`` and ``job.log``. Every scheduler adapter (local, Pueue, Slurm) uses the same
markers, so "is our job still running on that GPU?" has one answer whatever the scheduler
says: the wrapper's process group is alive or it is not.

Everything here is pure: functions build shell text or parse it. Paths and labels are
quoted with :func:`shlex.quote`, so hostile directory names (quotes, ``$(...)``, spaces,
unicode) stay data.
"""

from __future__ import annotations

import base64
import binascii
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

from mqi_communicator.remote.protocol import CommandResult, JobState, JobStatus, Transport

__all__ = [
    "MQI_DIR",
    "MarkerInfo",
    "install_snippet",
    "parse_probe",
    "probe_snippet",
    "revoke_snippet",
    "run_script",
    "status_from_markers",
    "wrapper_argv",
    "wrapper_path",
    "wrapper_source",
]

#: Scripts longer than this go to the far shell on stdin: Linux caps ONE argv string
#: (the ``sh -c`` text) at 128 KiB, and a probe of ~1,000 directories exceeds it.
_ARGV_SAFE_BYTES = 64 * 1024

#: The marker directory inside a case directory.
MQI_DIR = ".mqi"

#: How much of job.log a probe returns for a failed job, in bytes.
_TAIL_BYTES = 2000

_RECORD = "@mqi"


@dataclass(frozen=True)
class MarkerInfo:
    """What the markers of one case directory said.

    Attributes:
        dir_exists: Whether the case directory exists.
        label: The label marker, or None when absent.
        pgid: The wrapper's process group id, or None when absent or malformed.
        started: Start time (epoch seconds), or None.
        exit_code: The exit marker, or None while the job has not ended (or was SIGKILLed).
        signal: TERM/INT/HUP when a signal ended the job, else None.
        group_alive: True when the process group exists (a ``kill -0`` EPERM counts as
            alive), False when the kernel said "No such process", None when not checked
            (no pgid marker) or the answer was unclear.
        log_tail: The last bytes of job.log (decoded leniently) when exit != 0, else "".
    """

    dir_exists: bool
    label: str | None = None
    pgid: int | None = None
    started: int | None = None
    exit_code: int | None = None
    signal: str | None = None
    group_alive: bool | None = None
    log_tail: str = ""

    @property
    def processes_gone(self) -> bool | None:
        """True only when we positively saw the wrapper's group gone, or it never started.

        A directory without a pgid marker never started a wrapper, so nothing of ours
        can be running from it.
        """
        if self.pgid is None:
            return True if self.exit_code is None and self.started is None else None
        if self.group_alive is None:
            return None
        return not self.group_alive


def wrapper_source() -> str:
    """The text of ``wrapper.sh`` as shipped in the package."""
    return resources.files(__package__).joinpath("wrapper.sh").read_text(encoding="utf-8")


def wrapper_path(remote_dir: str) -> str:
    """Where the wrapper lives for the case in ``remote_dir``."""
    return f"{remote_dir.rstrip('/')}/{MQI_DIR}/wrapper.sh"


def _check_label(label: str) -> None:
    if not label or any(ch in label for ch in "\n\r\0"):
        raise ValueError(f"job label must be one non-empty line: {label!r}")


def install_snippet(remote_dir: str, label: str) -> str:
    """A shell fragment that writes the wrapper and the label marker into ``remote_dir``.

    It prints nothing on success (so it can precede a command whose output is parsed,
    like ``pueue add -p``) and fails (non-zero) if the directory cannot be written.
    Both files are written atomically.

    Args:
        remote_dir: The uploaded case directory (must exist).
        label: Our job label (one line).
    """
    _check_label(label)
    mqi = shlex.quote(f"{remote_dir.rstrip('/')}/{MQI_DIR}")
    return (
        f"mkdir -p {mqi}"
        f" && printf '%s' {shlex.quote(wrapper_source())} >{mqi}/wrapper.sh.tmp"
        f" && mv -f {mqi}/wrapper.sh.tmp {mqi}/wrapper.sh"
        f" && printf '%s\\n' {shlex.quote(label)} >{mqi}/label.tmp"
        f" && mv -f {mqi}/label.tmp {mqi}/label"
    )


#: What the revoke's ``.mqi/start`` symlink points to (the wrapper's own claim is a directory).
REVOKED = "revoked"


def revoke_snippet(remote_dir: str) -> str:
    """A shell fragment that takes the start claim of ``remote_dir`` away from the wrapper.

    It creates ``.mqi/start`` atomically, as a symlink to ``revoked``; the wrapper claims
    the same name with ``mkdir`` and runs nothing if it exists (see ``wrapper.sh``).
    Exit 0: revoked -- no wrapper can ever start in ``remote_dir`` now (also when an
    earlier revoke did it, so a repeat after a crash still succeeds). Non-zero: a wrapper
    already started there, or the claim could not be written; the job may run.

    Args:
        remote_dir: The case directory (need not exist yet: a submit may still create it).
    """
    root = remote_dir.rstrip("/")
    mqi = shlex.quote(f"{root}/{MQI_DIR}")
    start = shlex.quote(f"{root}/{MQI_DIR}/start")
    # ln's exit status is not used: on a wrapper's start DIRECTORY, ln would put the link
    # inside it and succeed. Only the revoke ever makes a symlink there, so -L decides.
    return f"mkdir -p {mqi} && {{ ln -s {REVOKED} {start} 2>/dev/null; [ -L {start} ]; }}"


def wrapper_argv(remote_dir: str, label: str, command: Sequence[str]) -> list[str]:
    """The argv that runs ``command`` under the wrapper of ``remote_dir``."""
    _check_label(label)
    if not command:
        raise ValueError("empty job command")
    return ["sh", wrapper_path(remote_dir), label, "--", *command]


def _token(remote_dir: str) -> str:
    return base64.urlsafe_b64encode(remote_dir.encode("utf-8")).decode("ascii")


# One function defined once, then called per directory: keeps the command short (a
# single argv string is capped at 128 KiB by Linux) and forks only where unavoidable.
# `read` and `kill` are builtins; kill's message goes through a temp file, not $(...).
_PROBE_FUNCTION = f"""\
_mqi_t=$(mktemp 2>/dev/null || echo /tmp/mqi_probe.$$)
_mqi_rd() {{ _mqi_v=; [ -f "$1" ] && IFS= read -r _mqi_v <"$1"; }}
_mqi_num() {{ case $_mqi_v in ''|*[!0-9]*) _mqi_v=;; esac; }}
_mqi_probe() {{
  _mqi_k=$1; _mqi_m=$2/{MQI_DIR}
  if [ -d "$2" ]; then echo "{_RECORD} $_mqi_k dir 1"; else echo "{_RECORD} $_mqi_k dir 0"; fi
  _mqi_rd "$_mqi_m/label"; [ -n "$_mqi_v" ] && echo "{_RECORD} $_mqi_k label $_mqi_v"
  _mqi_rd "$_mqi_m/started"; _mqi_num; [ -n "$_mqi_v" ] && echo "{_RECORD} $_mqi_k started $_mqi_v"
  _mqi_rd "$_mqi_m/signal"; [ -n "$_mqi_v" ] && echo "{_RECORD} $_mqi_k signal $_mqi_v"
  _mqi_rd "$_mqi_m/exit"; _mqi_num; _mqi_x=$_mqi_v
  [ -n "$_mqi_x" ] && echo "{_RECORD} $_mqi_k exit $_mqi_x"
  _mqi_rd "$_mqi_m/pgid"; _mqi_num
  if [ -n "$_mqi_v" ] && [ "$_mqi_v" -gt 1 ]; then
    echo "{_RECORD} $_mqi_k pgid $_mqi_v"
    if kill -0 "-$_mqi_v" 2>"$_mqi_t"; then echo "{_RECORD} $_mqi_k alive 1"
    else
      _mqi_e=; IFS= read -r _mqi_e <"$_mqi_t"
      case $_mqi_e in
        *ermitted*) echo "{_RECORD} $_mqi_k alive 1";;
        *"No such process"*) echo "{_RECORD} $_mqi_k alive 0";;
      esac
    fi
  fi
  if [ -n "$_mqi_x" ] && [ "$_mqi_x" != 0 ] && [ -f "$_mqi_m/job.log" ]; then
    echo "{_RECORD} $_mqi_k tail $(tail -c {_TAIL_BYTES} "$_mqi_m/job.log" | base64 | tr -d '\\n')"
  fi
  echo "{_RECORD} $_mqi_k end"
}}
"""


def probe_snippet(remote_dirs: Sequence[str]) -> str:
    """ONE shell fragment that prints the markers of every directory in ``remote_dirs``.

    Each directory yields ``@mqi <token> <key> <value>`` lines closed by an ``end`` line;
    :func:`parse_probe` reads them back. The fragment runs with ``LC_ALL=C`` so that
    ``kill``'s messages are the ones we match, and always exits 0.

    Liveness uses ``kill -0 -PGID``: EPERM means alive (someone else's processes),
    "No such process" means gone. A pgid reused by an unrelated process group makes a
    finished job look alive; that errs on the safe side (the GPU stays quarantined).
    """
    calls = "\n".join(
        f"_mqi_probe {_token(d)} {shlex.quote(d.rstrip('/') or '/')}" for d in remote_dirs
    )
    return "(LC_ALL=C; export LC_ALL\n" + _PROBE_FUNCTION + calls + '\nrm -f "$_mqi_t"; exit 0)'


def _decode_token(token: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeError):
        return None


def _as_int(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def _build(fields: dict[str, str]) -> MarkerInfo | None:
    if fields.get("dir") not in {"0", "1"}:
        return None
    tail = ""
    if "tail" in fields:
        try:
            tail = base64.b64decode(fields["tail"], validate=True).decode("utf-8", "replace")
        except (ValueError, binascii.Error):
            tail = ""
    alive = {"1": True, "0": False}.get(fields.get("alive", ""))
    return MarkerInfo(
        dir_exists=fields["dir"] == "1",
        label=fields.get("label"),
        pgid=_as_int(fields.get("pgid", "")),
        started=_as_int(fields.get("started", "")),
        exit_code=_as_int(fields.get("exit", "")),
        signal=fields.get("signal"),
        group_alive=alive,
        log_tail=tail,
    )


def parse_probe(text: str) -> dict[str, MarkerInfo]:
    """Parse the output of :func:`probe_snippet` into ``{remote_dir: MarkerInfo}``.

    Only complete records (ending in ``end``) count; garbage, truncated output and
    malformed records yield no entry, never a guess. Lines not starting with ``@mqi``
    (e.g. login banners, other commands' output) are ignored.
    """
    pending: dict[str, dict[str, str]] = {}
    result: dict[str, MarkerInfo] = {}
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 3 or parts[0] != _RECORD:
            continue
        remote_dir = _decode_token(parts[1])
        if remote_dir is None:
            continue
        key = parts[2]
        if key == "end":
            fields = pending.pop(remote_dir, None)
            info = _build(fields) if fields is not None else None
            if info is not None:
                result[remote_dir] = info
            continue
        if len(parts) == 4:
            pending.setdefault(remote_dir, {})[key] = parts[3]
    return result


def status_from_markers(info: MarkerInfo | None, label: str) -> JobStatus:
    """What the markers alone say about the job ``label`` (scheduler-independent).

    * no record (garbage/truncated probe) or a foreign label marker -> UNKNOWN;
    * exit marker -> SUCCEEDED (0), KILLED (signal marker) or FAILED (code + log tail);
    * pgid marker, no exit: group alive -> RUNNING; group gone -> KILLED (the wrapper
      died without writing exit: SIGKILL or reboot); unclear -> UNKNOWN;
    * neither pgid nor exit -> ABSENT ("the wrapper never started here"). Adapters whose
      scheduler can hold a job queued decide with the scheduler's answer instead.

    ``processes_gone`` always comes from the process-group check, so an exit marker
    with a lingering grandchild is terminal but keeps the GPU quarantined.
    """
    if info is None:
        return JobStatus(JobState.UNKNOWN, detail="no marker record in the probe output")
    if info.label is not None and info.label != label:
        return JobStatus(
            JobState.UNKNOWN, detail=f"label marker is {info.label!r}, expected {label!r}"
        )
    started = datetime.fromtimestamp(info.started, UTC) if info.started is not None else None
    gone = info.processes_gone
    if info.exit_code is not None:
        if info.signal is not None:
            state, detail = JobState.KILLED, f"ended by SIG{info.signal}"
        elif info.exit_code == 0:
            state, detail = JobState.SUCCEEDED, ""
        else:
            state, detail = JobState.FAILED, f"exit code {info.exit_code}"
        return JobStatus(
            state,
            exit_code=info.exit_code,
            detail=detail,
            log_tail=info.log_tail,
            started_at=started,
            processes_gone=gone,
        )
    if info.pgid is not None:
        if info.group_alive is True:
            return JobStatus(JobState.RUNNING, started_at=started, processes_gone=False)
        if info.group_alive is False:
            return JobStatus(
                JobState.KILLED,
                detail="wrapper gone without an exit marker (SIGKILL or reboot)",
                started_at=started,
                processes_gone=True,
            )
        return JobStatus(
            JobState.UNKNOWN, detail="could not tell whether the process group is alive"
        )
    where = "case directory exists" if info.dir_exists else "case directory missing"
    return JobStatus(
        JobState.ABSENT, detail=f"wrapper never started ({where})", processes_gone=gone
    )


def run_script(transport: Transport, script: str, *, timeout: float) -> CommandResult:
    """Run a shell ``script`` on ``transport``, however long it is.

    Short scripts are passed as the command text. Long ones (polls of many jobs) are
    read whole from stdin by ``cat`` and then ``eval``-ed, so no argv limit applies and
    no command in the script can swallow the rest of it by reading stdin.
    """
    if len(script.encode("utf-8")) <= _ARGV_SAFE_BYTES:
        return transport.run(script, timeout=timeout)
    return transport.run(
        ["sh", "-c", 'eval "$(cat)"'], timeout=timeout, stdin=script.encode("utf-8")
    )

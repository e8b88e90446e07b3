"""The marker probe: ONE shell fragment that reads every job's markers and finds its processes.

For each case directory the probe prints the markers of its marker directory (see
:mod:`~mqi_communicator.remote.job.markers` for the place) and checks the wrapper's process
group with ``kill -0``. Then, once for the whole batch, it scans
``/proc/<pid>/environ`` of every process for ``MQI_JOB_TOKEN=<token>`` of the tokens it
found: one ``grep -F`` pass, so 1,000 jobs cost one read of /proc, not 1,000.

Nothing in the probe writes anywhere (no temp file, no ``/tmp``): ``kill``'s message is
printed into the probe's own output and read here. The scan proves it works on every
run: it runs in a shell started with a canary token, whose own environ must show up in
the result; a grep that lacks an option, a /proc we cannot read, or a truncated output
leaves the canary missing, and then no job's liveness is known (None), never "gone".

Output lines (anything else, e.g. login banners, is ignored)::

    @mqi <key> <field> <value>        per directory, closed by "@mqi <key> end"
    @mqi-scan canary <pid>            the scan's own shell
    /proc/<pid>/environ:MQI_JOB_TOKEN=<token>   one per live process carrying a token
    @mqi-scan end

Limits (README, "The evidence rule"): a process that clears its environment, a
non-dumpable process, or a process of another user is not seen by the scan; the
process-group check still covers the first two while they stay in the wrapper's group.
"""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "LEGACY_MQI_DIR",
    "MQI_SUFFIX",
    "TOKEN_ENV",
    "MarkerInfo",
    "marker_dir",
    "parse_probe",
    "probe_key",
    "probe_snippet",
]

#: The environment variable that carries the attempt's token into every job process.
TOKEN_ENV = "MQI_JOB_TOKEN"  # noqa: S105  (a variable name, not a secret)

#: The marker directory of ``<remote_dir>`` is ``<remote_dir>`` + this suffix.
MQI_SUFFIX = ".mqi"
#: Where jobs started before the attempt token existed kept their markers (in the case).
LEGACY_MQI_DIR = ".mqi"

#: How much of job.log a probe returns for a failed job, in bytes.
_TAIL_BYTES = 2000
_RECORD = "@mqi"
_SCAN = "@mqi-scan"
_CANARY = "mqi-probe-canary"
_CARRIER = re.compile(rf"/proc/([0-9]+)/environ:{TOKEN_ENV}=([0-9A-Za-z_-]+)\Z")


@dataclass(frozen=True)
class MarkerInfo:
    """What the markers of one case directory said, and what the process scan found.

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
        token: The token of the marker directory (None: no token file).
        token_procs: How many live processes carry ``token``; None when unknown (no
            token, or the scan did not prove itself with its canary).
        legacy: Read from the pre-token place inside the case (a job started before the
            upgrade); such markers have no token and no scan.
    """

    dir_exists: bool
    label: str | None = None
    pgid: int | None = None
    started: int | None = None
    exit_code: int | None = None
    signal: str | None = None
    group_alive: bool | None = None
    log_tail: str = ""
    token: str | None = None
    token_procs: int | None = None
    legacy: bool = False

    @property
    def wrapper_started(self) -> bool:
        """Whether any marker the wrapper writes (not install) is present."""
        return (
            self.pgid is not None
            or self.started is not None
            or self.exit_code is not None
            or self.signal is not None
        )

    @property
    def processes_gone(self) -> bool | None:
        """True only on positive evidence that nothing of the job can still run.

        Token markers: no live process carries the token AND (no pgid marker, or its
        group is gone). A marker directory without a token file never ran a wrapper (it
        refuses to start without one). Legacy markers: the old rule, process group only.
        False when something of the job was seen alive; None when it cannot be told.
        """
        if self.legacy:
            if self.pgid is None:
                return True if self.exit_code is None and self.started is None else None
            return None if self.group_alive is None else not self.group_alive
        if self.group_alive is True or (self.token_procs or 0) > 0:
            return False
        if self.token is None:
            return None if self.wrapper_started else True
        if self.token_procs is None:
            return None
        if self.pgid is not None and self.group_alive is not False:
            return None
        return True


def marker_dir(remote_dir: str, *, legacy: bool = False) -> str:
    """The marker directory of the case in ``remote_dir`` (the place: see ``markers``)."""
    root = remote_dir.rstrip("/")
    if legacy:
        return f"{root}/{LEGACY_MQI_DIR}"
    if not root:
        raise ValueError(f"not a case directory: {remote_dir!r}")
    return root + MQI_SUFFIX


def _key(remote_dir: str, legacy: bool) -> str:
    raw = ("L" if legacy else "T") + remote_dir
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii")


def probe_key(remote_dir: str, token: str | None) -> str:
    """The key of ``remote_dir``'s record in :func:`parse_probe`'s result.

    ``remote_dir`` itself for a job with a token; the legacy marker directory
    (``<remote_dir>/.mqi``) for a job without one, so both can share one batch.
    """
    return remote_dir if token is not None else marker_dir(remote_dir, legacy=True)


# One function defined once, then called per directory: keeps the command short (a
# single argv string is capped at 128 KiB by Linux) and forks only where unavoidable.
# `read`, `kill` and `printf` are builtins; kill's message goes to stdout (no temp file).
_PROBE_FUNCTION = f"""\
_mqi_pat={TOKEN_ENV}={_CANARY}
_mqi_rd() {{ _mqi_v=; [ -f "$1" ] && IFS= read -r _mqi_v <"$1"; }}
_mqi_put() {{ [ -n "$_mqi_v" ] && printf '{_RECORD} %s %s %s\\n' "$_mqi_k" "$1" "$_mqi_v"; }}
_mqi_num() {{ case $_mqi_v in ''|*[!0-9]*) _mqi_v=;; esac; }}
_mqi_probe() {{
  _mqi_k=$1; _mqi_m=$3
  if [ -d "$2" ]; then echo "{_RECORD} $_mqi_k dir 1"; else echo "{_RECORD} $_mqi_k dir 0"; fi
  if [ "$4" = 0 ]; then
    _mqi_rd "$_mqi_m/token"
    case $_mqi_v in ''|*[!0-9A-Za-z_-]*) ;; *) printf '{_RECORD} %s token %s\\n' "$_mqi_k" "$_mqi_v"
      _mqi_pat="$_mqi_pat
{TOKEN_ENV}=$_mqi_v";; esac
  fi
  _mqi_rd "$_mqi_m/label"; _mqi_put label
  _mqi_rd "$_mqi_m/started"; _mqi_num; _mqi_put started
  _mqi_rd "$_mqi_m/signal"; _mqi_put signal
  _mqi_rd "$_mqi_m/exit"; _mqi_num; _mqi_x=$_mqi_v; _mqi_put exit
  _mqi_rd "$_mqi_m/pgid"; _mqi_num
  if [ -n "$_mqi_v" ] && [ "$_mqi_v" -gt 1 ]; then
    _mqi_put pgid
    printf '{_RECORD} %s kill ' "$_mqi_k"; kill -0 "-$_mqi_v" 2>&1 && printf 'alive'; echo
  fi
  if [ -n "$_mqi_x" ] && [ "$_mqi_x" != 0 ] && [ -f "$_mqi_m/job.log" ]; then
    echo "{_RECORD} $_mqi_k tail $(tail -c {_TAIL_BYTES} "$_mqi_m/job.log" | base64 | tr -d '\\n')"
  fi
  echo "{_RECORD} $_mqi_k end"
}}
"""

# The scan runs in a shell exec'd with the canary token: its own environ proves that
# grep ran with these options over a complete /proc listing it could read.
_SCAN_SHELL = (
    f'echo "{_SCAN} canary $$"; '
    "grep -a -s -z -x -F -f - /proc/[0-9]*/environ | tr '\\0' '\\n'; "
    f'echo "{_SCAN} end"'
)
_SCAN_COMMAND = (
    f'printf "%s\\n" "$_mqi_pat" | env {TOKEN_ENV}={_CANARY} sh -c {shlex.quote(_SCAN_SHELL)}'
)


def probe_snippet(remote_dirs: Sequence[str], legacy_dirs: Sequence[str] = ()) -> str:
    """ONE shell fragment that prints the markers and token processes of every directory.

    Args:
        remote_dirs: Case directories of jobs with a token (markers in ``<dir>.mqi/``).
        legacy_dirs: Case directories of jobs started before the token existed (markers
            in ``<dir>/.mqi/``, no token scan).

    The fragment runs with ``LC_ALL=C`` (kill's messages are the ones we match), writes
    nothing anywhere and always exits 0. Liveness of the group uses ``kill -0 -PGID``:
    EPERM means alive, "No such process" means gone. A pgid reused by an unrelated group
    makes a finished job look alive; that errs on the safe side.
    """
    # A ref without a directory (e.g. an adopted job) gets no record, hence UNKNOWN.
    targets = [(d, False) for d in dict.fromkeys(remote_dirs) if d.strip("/")]
    targets += [(d, True) for d in dict.fromkeys(legacy_dirs) if d.strip("/")]
    calls = [
        f"_mqi_probe {_key(d, legacy)} {shlex.quote(d.rstrip('/') or '/')} "
        f"{shlex.quote(marker_dir(d, legacy=legacy))} {int(legacy)}"
        for d, legacy in targets
    ]
    body = "\n".join(calls)
    return f"(LC_ALL=C; export LC_ALL\n{_PROBE_FUNCTION}{body}\n{_SCAN_COMMAND}\nexit 0)"


def _decode_key(key: str) -> tuple[str, bool] | None:
    try:
        raw = base64.urlsafe_b64decode(key.encode("ascii")).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeError):
        return None
    if raw[:1] not in ("T", "L"):
        return None
    return raw[1:], raw[0] == "L"


def _as_int(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def _alive(message: str | None) -> bool | None:
    """kill -0's answer: printed "alive", EPERM (someone's group) or ESRCH (gone)."""
    if message is None:
        return None
    if message.endswith("alive") or "ermitted" in message:
        return True
    if "No such process" in message:
        return False
    return None


def _scan(lines: list[str]) -> dict[str, int] | None:
    """Live processes per token, or None unless the scan's section proves itself whole.

    Whole: a canary line, then only well-formed carrier lines (one of them the canary's
    own environ), then the end line. Any other line inside the section (a spoiled or
    merged line could hide a carrier) makes the whole scan unknown.
    """
    canary: str | None = None
    counts: dict[str, set[str]] = {}
    state = "before"
    for line in lines:
        if line.startswith(f"{_SCAN} canary "):
            canary, counts, state = line.split(" ", 2)[2], {}, "inside"
        elif state != "inside":
            continue
        elif line == f"{_SCAN} end":
            state = "ended"
        elif m := _CARRIER.match(line):
            counts.setdefault(m.group(2), set()).add(m.group(1))
        else:
            state = "spoiled"
    if state != "ended" or canary not in counts.pop(_CANARY, set()):
        return None
    return {token: len(pids) for token, pids in counts.items()}


def _build(fields: dict[str, str], legacy: bool, scan: dict[str, int] | None) -> MarkerInfo | None:
    if fields.get("dir") not in {"0", "1"}:
        return None
    tail = ""
    if "tail" in fields:
        try:
            tail = base64.b64decode(fields["tail"], validate=True).decode("utf-8", "replace")
        except (ValueError, binascii.Error):
            tail = ""
    token = None if legacy else fields.get("token")
    return MarkerInfo(
        dir_exists=fields["dir"] == "1",
        label=fields.get("label"),
        pgid=_as_int(fields.get("pgid", "")),
        started=_as_int(fields.get("started", "")),
        exit_code=_as_int(fields.get("exit", "")),
        signal=fields.get("signal"),
        group_alive=_alive(fields.get("kill")) if "pgid" in fields else None,
        log_tail=tail,
        token=token,
        token_procs=scan.get(token, 0) if scan is not None and token is not None else None,
        legacy=legacy,
    )


def parse_probe(text: str) -> dict[str, MarkerInfo]:
    """Parse the output of :func:`probe_snippet` into ``{probe_key: MarkerInfo}``.

    Only complete records (ending in ``end``) count; garbage, truncated output and
    malformed records yield no entry, never a guess. Lines not starting with ``@mqi``
    or ``/proc/`` are ignored. The key is :func:`probe_key` of the directory.
    """
    lines = text.splitlines()
    scan = _scan(lines)
    pending: dict[tuple[str, bool], dict[str, str]] = {}
    result: dict[str, MarkerInfo] = {}
    for line in lines:
        parts = line.split(" ", 3)
        if len(parts) < 3 or parts[0] != _RECORD:
            continue
        target = _decode_key(parts[1])
        if target is None:
            continue
        if parts[2] == "dir":  # a record starts afresh: nothing before it counts
            pending[target] = {}
        if parts[2] == "end":
            fields = pending.pop(target, None)
            info = _build(fields, target[1], scan) if fields is not None else None
            if info is not None:
                remote_dir, legacy = target
                result[marker_dir(remote_dir, legacy=True) if legacy else remote_dir] = info
            continue
        if len(parts) == 4:
            pending.setdefault(target, {})[parts[2]] = parts[3]
        elif parts[2] == "kill":  # kill printed nothing: an unclear answer
            pending.setdefault(target, {})["kill"] = ""
    return result

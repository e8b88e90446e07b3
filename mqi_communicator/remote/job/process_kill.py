"""Kill every process of one job: the processes that carry its token, and their groups.

Used by every adapter for cancel, timeout and zombie re-kill. The kill command reads the
attempt's token from stdin (never on a command line), checks that the job's marker
directory holds that very token (otherwise it signals nothing: exit 3), and starts a
small detached killer that:

1. finds every live process whose ``/proc/<pid>/environ`` carries
   ``MQI_JOB_TOKEN=<token>`` (one ``grep -F`` over /proc), and TERMs each of them and
   each process group one of them belongs to -- so descendants that called ``setsid``,
   double-forked or left the wrapper's group are reached, and so are members of those
   groups that cleared their environment;
2. after the grace period, scans again and KILLs what still carries the token.

A group is signalled only while a process of ours is in it, so a stranger's group that
reused a dead job's pgid is never signalled. The remaining race is the usual one of
``kill(1)``: a pid that ends and is reused within the instant between scan and signal.

Jobs without a token (started before the upgrade) keep the old rule:
:func:`group_kill_script` signals the wrapper's group named by its in-case pgid marker.
"""

from __future__ import annotations

from mqi_communicator.errors import RemoteCommandError
from mqi_communicator.remote.job.marker_probe import TOKEN_ENV
from mqi_communicator.remote.job.markers import READ_TOKEN, marker_dir, token_stdin
from mqi_communicator.remote.protocol import JobRef, Transport
from mqi_communicator.remote.quoting import quote

__all__ = [
    "EXIT_NOT_OURS",
    "group_kill_script",
    "kill_job",
    "token_kill_fragment",
    "token_kill_script",
]

#: Exit status of a kill script that found the job not ours and signalled nothing.
EXIT_NOT_OURS = 3

# $1: the marker directory, $2: the grace in seconds. The token is re-read from the
# marker directory (it is never replaced), so the killer's own environment and argv do
# not carry it and the killer is never one of the processes it hunts.
_KILLER = f"""\
_sig() {{
  _t=; IFS= read -r _t <"$1/token" || return 0
  case $_t in ''|*[!0-9A-Za-z_-]*) return 0;; esac
  printf '{TOKEN_ENV}=%s\\n' "$_t" |
  grep -a -s -l -z -x -F -f - /proc/[0-9]*/environ | while IFS= read -r _f; do
    _p=${{_f#/proc/}}; _p=${{_p%/environ}}
    case $_p in ''|*[!0-9]*) continue;; esac
    _s=; IFS= read -r _s <"/proc/$_p/stat" 2>/dev/null
    _g=${{_s##*) }}; _g=${{_g#* }}; _g=${{_g#* }}; _g=${{_g%% *}}
    kill -s "$2" "$_p" 2>/dev/null
    case $_g in ''|*[!0-9]*) ;; *) [ "$_g" -gt 1 ] && kill -s "$2" -- "-$_g" 2>/dev/null;; esac
  done
}}
_sig "$1" TERM; sleep "$2"; _sig "$1" KILL
"""


def token_kill_fragment(remote_dir: str, grace_s: float) -> str:
    """Shell text (after :data:`~.markers.READ_TOKEN`): start the detached token killer.

    Sets ``$_mqi_kill`` to 0 when the killer started, to :data:`EXIT_NOT_OURS` (with one
    line on stderr) when the marker directory does not hold the token read from stdin.
    """
    m = quote(marker_dir(remote_dir))
    return f"""\
_mqi_m={m}; _mqi_have=
[ -f "$_mqi_m/token" ] && IFS= read -r _mqi_have <"$_mqi_m/token"
if [ -n "$_mqi_tok" ] && [ "$_mqi_have" = "$_mqi_tok" ]; then
  setsid sh -c {quote(_KILLER)} mqi-kill "$_mqi_m" {grace_s:g} </dev/null >/dev/null 2>&1 &
  _mqi_kill=0
else
  echo "mqi-kill: the marker directory does not hold this attempt's token" >&2
  _mqi_kill={EXIT_NOT_OURS}
fi
"""


def token_kill_script(remote_dir: str, grace_s: float, *, pgid: int | None = None) -> str:
    """The whole kill command for a job with a token (stdin: :func:`~.markers.token_stdin`).

    Args:
        remote_dir: The case directory.
        grace_s: Seconds between TERM and KILL.
        pgid: When given, the pgid marker must name it too (the local scheduler's job
            id), else nothing is signalled.
    """
    check = ""
    if pgid is not None:
        m = quote(marker_dir(remote_dir))
        check = (
            f"_p=; [ -f {m}/pgid ] && read -r _p <{m}/pgid\n"
            f'[ "$_p" = {int(pgid)} ] || {{ echo "pgid marker is \'$_p\'" >&2; '
            f"exit {EXIT_NOT_OURS}; }}\n"
        )
    return READ_TOKEN + check + token_kill_fragment(remote_dir, grace_s) + "exit $_mqi_kill\n"


def group_kill_script(remote_dir: str, pgid: int, grace_s: float) -> str:
    """Legacy jobs: TERM the wrapper's group now, SIGKILL it ``grace_s`` later, detached.

    Exits 3 (signalling nothing) unless the in-case pgid marker names ``pgid``.
    """
    if pgid <= 1:
        raise ValueError(f"not a process group id: {pgid}")
    mqi = quote(marker_dir(remote_dir, legacy=True))
    killer = f"kill -TERM -{pgid} 2>/dev/null; sleep {grace_s:g}; kill -KILL -{pgid} 2>/dev/null"
    return (
        f"_p=; [ -f {mqi}/pgid ] && read -r _p <{mqi}/pgid\n"
        f'[ "$_p" = {pgid} ] || {{ echo "pgid marker is \'$_p\'" >&2; exit {EXIT_NOT_OURS}; }}\n'
        f"setsid sh -c {quote(killer)} </dev/null >/dev/null 2>&1 &\n"
    )


def kill_job(
    transport: Transport, ref: JobRef, *, grace_s: float, timeout: float, pgid: int | None = None
) -> None:
    """Kill every process of ``ref`` on ``transport`` (TERM, KILL after ``grace_s``).

    Returns once the detached killer started; a later poll confirms. A job without a
    token needs ``pgid`` (its wrapper's group, from its markers).

    Raises:
        RemoteCommandError: the job is not ours (nothing signalled) or the command failed.
    """
    if not ref.remote_dir.strip("/"):
        raise RemoteCommandError(
            f"{transport.host_name}: job {ref.label!r} has no directory; nothing signalled",
            exit_code=EXIT_NOT_OURS,
        )
    if ref.token is not None:
        script = token_kill_script(ref.remote_dir, grace_s, pgid=pgid)
        result = transport.run(script, timeout=timeout, stdin=token_stdin(ref.token))
    elif pgid is not None:
        result = transport.run(group_kill_script(ref.remote_dir, pgid, grace_s), timeout=timeout)
    else:
        raise RemoteCommandError(
            f"{transport.host_name}: job {ref.label!r} has neither a token nor a process group "
            "to signal",
            exit_code=EXIT_NOT_OURS,
            stderr="",
        )
    if result.exit_code != 0:
        raise RemoteCommandError(
            f"{transport.host_name}: could not kill job {ref.label!r}: {result.stderr.strip()}",
            exit_code=result.exit_code,
            stderr=result.stderr,
        )

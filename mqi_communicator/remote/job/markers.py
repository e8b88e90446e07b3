"""Where the job wrapper keeps its markers, and the shell fragments that install it.

Marker place (decision): ``<remote_dir>.mqi/``, a SIBLING of the uploaded case
directory (:func:`marker_dir`). The upload writes only inside ``<remote_dir>``, whose
name we choose (``mqic_case_<id>_a<attempt>``), so no file of a case can land there: a
``.mqi/`` folder shipped inside a case is inert data that nothing reads. We chose a
sibling over "refuse or strip ``.mqi`` at upload" because it holds whatever the upload
does (a new transfer method, a symlink trick, a file added to the share after the
manifest) and because the case's files stay exactly what the user sent.

Each attempt has a secret token (``JobSpec.token``, made when the GPU is claimed). The
submit command reads it from stdin (:data:`READ_TOKEN`, :func:`token_stdin`; never on a
command line that ``ps`` shows) and :func:`install_snippet` writes it to
``<remote_dir>.mqi/token`` once (an existing different token refuses the install). The
wrapper exports it as ``MQI_JOB_TOKEN`` to every process it starts; markers count only
with the attempt's token, and "the job's processes are gone" means no live process
carries it (:mod:`~mqi_communicator.remote.job.marker_probe`,
:mod:`~mqi_communicator.remote.job.marker_status`,
:mod:`~mqi_communicator.remote.job.process_kill`).

Jobs started before the token existed (``token`` None) kept their markers in the case
directory (``<remote_dir>/.mqi/``). Polls and kills of such jobs read that place with the
old rules (process group only); a new job is never started without a token.

Everything here is pure: functions build shell text. Paths and labels are quoted with
:func:`shlex.quote`, so hostile directory names stay data.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from importlib import resources

from mqi_communicator.errors import SubmissionRejectedError
from mqi_communicator.remote.job.marker_probe import (
    LEGACY_MQI_DIR,
    MQI_SUFFIX,
    TOKEN_ENV,
    MarkerInfo,
    marker_dir,
    parse_probe,
    probe_key,
    probe_snippet,
)
from mqi_communicator.remote.job.marker_status import status_from_markers, trusted_markers
from mqi_communicator.remote.protocol import CommandResult, JobRef, JobSpec, Transport

__all__ = [
    "LEGACY_MQI_DIR",
    "MQI_SUFFIX",
    "READ_TOKEN",
    "REVOKED",
    "TOKEN_ENV",
    "MarkerInfo",
    "check_token",
    "install_snippet",
    "marker_dir",
    "parse_probe",
    "poll_script",
    "probe_key",
    "probe_snippet",
    "require_token",
    "revoke_snippet",
    "run_script",
    "status_from_markers",
    "token_stdin",
    "trusted_markers",
    "wrapper_argv",
    "wrapper_path",
    "wrapper_source",
]

#: Scripts longer than this go to the far shell on stdin: Linux caps ONE argv string
#: (the ``sh -c`` text) at 128 KiB, and a probe of ~1,000 directories exceeds it.
_ARGV_SAFE_BYTES = 64 * 1024

#: First line of every command that needs the token: reads it from stdin into ``$_mqi_tok``.
READ_TOKEN = "IFS= read -r _mqi_tok || _mqi_tok=\n"  # noqa: S105  (shell text, no secret)

#: What the revoke's ``start`` symlink points to (the wrapper's own claim is a directory).
REVOKED = "revoked"

_TOKEN = re.compile(r"[0-9A-Za-z_-]{16,128}\Z")


def check_token(token: str | None) -> str:
    """``token`` if it is a usable attempt token (16-128 of ``[0-9A-Za-z_-]``).

    Raises:
        ValueError: no token, or one that could not travel safely through the shell.
    """
    if token is None or not _TOKEN.match(token):
        raise ValueError(f"not an attempt token: {token!r}")
    return token


def token_stdin(token: str | None) -> bytes:
    """The stdin for a command that starts with :data:`READ_TOKEN`."""
    return (check_token(token) + "\n").encode("ascii")


def require_token(spec: JobSpec) -> bytes:
    """The submit command's stdin: the attempt's token.

    Raises:
        SubmissionRejectedError: the spec has no usable token. Every attempt claimed since
            tokens exist has one; an attempt claimed before the upgrade is refused (and
            retried as a new attempt) rather than started without one.
    """
    try:
        return token_stdin(spec.token)
    except ValueError as err:
        raise SubmissionRejectedError(
            f"job {spec.label!r} has no attempt token (claimed before the upgrade?): "
            "not started; a new attempt gets one"
        ) from err


def poll_script(refs: Sequence[JobRef]) -> str:
    """The marker probe for ``refs`` (token jobs at the sibling place, others in the case)."""
    return probe_snippet(
        [r.remote_dir for r in refs if r.token is not None],
        # An adopted job of the original system (``legacy``) never ran our wrapper:
        # any ``.mqi`` in its case is content, so it gets no marker record at all.
        [r.remote_dir for r in refs if r.token is None and not r.legacy],
    )


def wrapper_source() -> str:
    """The text of ``wrapper.sh`` as shipped in the package."""
    return resources.files(__package__).joinpath("wrapper.sh").read_text(encoding="utf-8")


def wrapper_path(remote_dir: str) -> str:
    """Where the wrapper lives for the case in ``remote_dir``."""
    return f"{marker_dir(remote_dir)}/wrapper.sh"


def _check_label(label: str) -> None:
    if not label or any(ch in label for ch in "\n\r\0"):
        raise ValueError(f"job label must be one non-empty line: {label!r}")


def install_snippet(remote_dir: str, label: str) -> str:
    """A shell fragment that installs the wrapper, the token and the label marker.

    Runs after :data:`READ_TOKEN` (the token is in ``$_mqi_tok``). The token is written
    once with ``ln`` (atomic, never replaces): when the marker directory already holds a
    different token (another attempt or another installation used this path) the
    fragment fails, so two attempts' markers never mix. It prints nothing on success (so
    it can precede a command whose output is parsed, like ``pueue add -p``) and fails
    (non-zero, one line on stderr) if the directory cannot be written.

    Args:
        remote_dir: The uploaded case directory (must exist).
        label: Our job label (one line).
    """
    _check_label(label)
    m = shlex.quote(marker_dir(remote_dir))
    return (
        f"{{ case $_mqi_tok in ''|*[!0-9A-Za-z_-]*) echo 'mqi: no attempt token' >&2; false;; esac"
        f" && mkdir -p {m}"
        f" && {{ [ -f {m}/token ] || {{ (umask 077; printf '%s\\n' \"$_mqi_tok\" >{m}/token.tmp.$$)"
        f" && ln {m}/token.tmp.$$ {m}/token 2>/dev/null; rm -f {m}/token.tmp.$$; }}; }}"
        f" && _mqi_have= && IFS= read -r _mqi_have <{m}/token"
        f' && {{ [ "$_mqi_have" = "$_mqi_tok" ] ||'
        f" {{ echo 'mqi: the marker directory belongs to another attempt' >&2; false; }}; }}"
        f" && printf '%s' {shlex.quote(wrapper_source())} >{m}/wrapper.sh.tmp"
        f" && mv -f {m}/wrapper.sh.tmp {m}/wrapper.sh"
        f" && printf '%s\\n' {shlex.quote(label)} >{m}/label.tmp"
        f" && mv -f {m}/label.tmp {m}/label; }}"
    )


def revoke_snippet(remote_dir: str, *, legacy: bool = False) -> str:
    """A shell fragment that takes the start claim of ``remote_dir`` away from the wrapper.

    It creates ``start`` in the marker directory atomically, as a symlink to ``revoked``;
    the wrapper claims the same name with ``mkdir`` and runs nothing if it exists (see
    ``wrapper.sh``). Exit 0: revoked -- no wrapper can ever start for ``remote_dir`` now
    (also when an earlier revoke did it, so a repeat after a crash still succeeds).
    Non-zero: a wrapper already started there, or the claim could not be written; the
    job may run.

    Args:
        remote_dir: The case directory (need not exist yet: a submit may still create it).
        legacy: Revoke at the pre-token place (an attempt claimed before the upgrade).
    """
    mqi = shlex.quote(marker_dir(remote_dir, legacy=legacy))
    start = shlex.quote(f"{marker_dir(remote_dir, legacy=legacy)}/start")
    # ln's exit status is not used: on a wrapper's start DIRECTORY, ln would put the link
    # inside it and succeed. Only the revoke ever makes a symlink there, so -L decides.
    return f"mkdir -p {mqi} && {{ ln -s {REVOKED} {start} 2>/dev/null; [ -L {start} ]; }}"


def wrapper_argv(remote_dir: str, label: str, command: Sequence[str]) -> list[str]:
    """The argv that runs ``command`` under the wrapper of ``remote_dir``."""
    _check_label(label)
    if not command:
        raise ValueError("empty job command")
    return ["sh", wrapper_path(remote_dir), label, "--", *command]


def run_script(
    transport: Transport, script: str, *, timeout: float, stdin: bytes | None = None
) -> CommandResult:
    """Run a shell ``script`` on ``transport``, however long it is.

    Short scripts are passed as the command text (with ``stdin`` if given). Long ones
    (polls of many jobs) are read whole from stdin by ``cat`` and then ``eval``-ed, so no
    argv limit applies and no command in the script can swallow the rest of it by
    reading stdin; such a script cannot also take ``stdin``.
    """
    if len(script.encode("utf-8")) <= _ARGV_SAFE_BYTES:
        return transport.run(script, timeout=timeout, stdin=stdin)
    if stdin is not None:
        raise ValueError("a script too long for argv cannot also read stdin")
    return transport.run(
        ["sh", "-c", 'eval "$(cat)"'], timeout=timeout, stdin=script.encode("utf-8")
    )

"""Local scheduler command builders (pure): the shell text that starts one job."""

from __future__ import annotations

from mqi_communicator.remote.job.command import job_command
from mqi_communicator.remote.job.markers import (
    READ_TOKEN,
    install_snippet,
    marker_dir,
    wrapper_argv,
)
from mqi_communicator.remote.protocol import JobSpec
from mqi_communicator.remote.quoting import join_argv, quote

__all__ = ["EXIT_INSTALL_REFUSED", "EXIT_NOT_STARTED", "start_script"]

#: The install refused a marker directory of another attempt (other token).
EXIT_INSTALL_REFUSED = 3
#: The wrapper did not write its pgid within the wait.
EXIT_NOT_STARTED = 4


def start_script(spec: JobSpec, start_wait_s: float) -> str:
    """Install the wrapper, start it detached, and print its pgid once written.

    Reads the attempt's token from stdin. Idempotent: a pgid marker means our wrapper
    already started in ``spec.remote_dir``, and its pgid is printed.
    """
    mqi = quote(marker_dir(spec.remote_dir))
    argv = wrapper_argv(spec.remote_dir, spec.label, job_command(spec))
    tries = max(1, int(start_wait_s / 0.05))
    return (
        READ_TOKEN
        # The install refuses a marker directory of another attempt (other token).
        + f"{install_snippet(spec.remote_dir, spec.label)} || exit {EXIT_INSTALL_REFUSED}\n"
        # Idempotent: a pgid marker means our wrapper already started here.
        f"if [ -s {mqi}/pgid ]; then cat {mqi}/pgid; exit 0; fi\n"
        f"setsid {join_argv(argv)} </dev/null >/dev/null 2>&1 &\n"
        f"_i=0; while [ ! -s {mqi}/pgid ] && [ $_i -lt {tries} ]; do"
        " sleep 0.05; _i=$((_i+1)); done\n"
        f"[ -s {mqi}/pgid ] && cat {mqi}/pgid || exit {EXIT_NOT_STARTED}\n"
    )

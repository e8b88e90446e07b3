#!/bin/sh
# MQI Communicator job wrapper (POSIX sh, Linux). Installed per attempt as
# <case_dir>.mqi/wrapper.sh by mqi_communicator.remote.job.markers.install_snippet.
#
# Usage: sh <case_dir>.mqi/wrapper.sh <label> -- <argv...>
#
# Where the markers live: in <case_dir>.mqi/, a SIBLING of the uploaded case directory,
# never inside it. The upload writes only inside <case_dir>, and the case directory's
# name is ours (mqic_case_<id>_a<attempt>), so nothing a case contains can reach this
# directory: a `.mqi/` folder shipped inside a case is plain data that nobody reads.
# The command still runs with <case_dir> as its working directory.
#
# The attempt's token: install_snippet writes <case_dir>.mqi/token (the attempt's secret,
# never on a command line) before the wrapper can start. The wrapper refuses to run
# without it, re-executes itself once with MQI_JOB_TOKEN=<token> in its environment, so
# the wrapper and every process it starts carry it (/proc/<pid>/environ is fixed at exec
# time), and the pollers count a process as ours while any live process carries the
# token, whatever its process group or session (setsid, double fork).
#
# Start claim: before running anything the wrapper creates <case_dir>.mqi/start with mkdir
# (atomic). If it already exists the wrapper logs one line to wrapper.log and exits 0
# without writing a marker or running the command. Two writers race for it:
#   * the wrapper (a directory), which claims the right to run;
#   * the communicator's revoke (markers.revoke_snippet: a symlink to "revoked", also
#     atomic and, unlike a directory, self-describing, so a repeated revoke succeeds),
#     after a submit with an unknown outcome was looked up and not found. Whoever comes
#     first wins: a submit landing after the revoke can never start the job, and a revoke
#     after the start fails, so the communicator keeps the GPU.
# Decision on repeats: ANY second start in the same directory is refused. The repeat-safe
# submits of local and slurm return the job already there (its pgid, the recorded id);
# `pueue add` does not, and the engine looks a job up by label before submitting again,
# but a duplicate pueue task (or two racing local submits) exits at once instead of
# running the case twice and overwriting the first run's markers. A Slurm requeue (node
# failure) or a `pueue restart` reruns the wrapper in the same directory: it exits 0 at
# once, the first run's markers stay (pgid, no exit, group gone -> KILLED), and the
# communicator decides about a new attempt, in a new directory.
#
# Markers in <case_dir>.mqi/, each written atomically (tmp file, then mv):
#   token    the attempt's token (written by install_snippet, never replaced)
#   label    our job label (one line)
#   pgid     the process group id of this wrapper and its child
#   started  start time, seconds since the epoch
#   exit     the exit code; written only once the child has ended
#   signal   TERM, INT or HUP when a signal ended the job (exit is then 128+N)
#   job.log  stdout+stderr of the command (appended)
# A job killed with SIGKILL leaves no exit marker: the pollers then see "pgid present,
# exit absent, group gone, no process with the token", which they report as killed.
#
# On TERM/INT/HUP the wrapper TERMs its whole process group, so it expects to lead a group
# of its own (or share pueue's/slurm's per-task group), never its caller's. Descendants
# that left the group are found (and killed) by the token, not by this trap.
#
# The wrapper prints nothing on stdout/stderr (its own diagnostics go to wrapper.log),
# so it can never disturb the output the schedulers parse (e.g. `pueue add -p`).

set -u

mqi_dir=$(cd "$(dirname "$0")" && pwd -P) || exit 125
case_dir=${mqi_dir%.mqi}
exec >>"$mqi_dir/wrapper.log" 2>&1 </dev/null
if [ "$case_dir" = "$mqi_dir" ] || [ -z "$case_dir" ]; then
    echo "mqi-wrapper: $mqi_dir is not a <case_dir>.mqi directory"
    exit 125
fi

token=
[ -f "$mqi_dir/token" ] && IFS= read -r token <"$mqi_dir/token"
case $token in
    '' | *[!0-9A-Za-z_-]*)
        echo "mqi-wrapper: no valid token in $mqi_dir/token; not running"
        exit 125
        ;;
esac
if [ "${MQI_JOB_TOKEN:-}" != "$token" ]; then
    # Once: from now on this process's own /proc/<pid>/environ carries the token too.
    MQI_JOB_TOKEN=$token
    export MQI_JOB_TOKEN
    exec sh "$mqi_dir/wrapper.sh" "$@"
fi

if [ "$#" -lt 2 ] || [ "$2" != "--" ]; then
    echo "mqi-wrapper: usage: wrapper.sh <label> -- <argv...>"
    exit 125
fi
label=$1
shift 2
if [ "$#" -eq 0 ]; then
    echo "mqi-wrapper: no command given"
    exit 125
fi
cd "$case_dir" || exit 125

# The start claim (see the header): the first write of this attempt.
if ! mkdir "$mqi_dir/start" 2>/dev/null; then
    echo "mqi-wrapper: $label: start claim exists (revoked, or started before); not running"
    exit 0
fi

# put NAME VALUE: atomic marker write. mv within one directory is a rename, so a reader
# sees either no marker or the complete one.
put() {
    printf '%s\n' "$2" >"$mqi_dir/$1.tmp.$$" && mv -f "$mqi_dir/$1.tmp.$$" "$mqi_dir/$1"
}

# Field 5 of /proc/PID/stat is the pgrp; the comm field (2) may hold spaces, so cut
# after its closing parenthesis first. Function arguments keep "$@" intact.
own_pgid() {
    _stat=$(cat "/proc/$$/stat" 2>/dev/null) || _stat=
    if [ -n "$_stat" ]; then
        _rest=${_stat##*) }
        # shellcheck disable=SC2086  # word splitting is the point here
        set -- $_rest
        echo "$3"
    else
        ps -o pgid= -p "$$" | tr -d ' '
    fi
}

child=
on_signal() {
    # Ignore further signals, then TERM the whole process group: the command is usually
    # `sh -c 'a && b'`, so the process doing the work is a grandchild that a signal to
    # $child alone would miss. (INT is not forwarded as INT: background children of a
    # non-interactive shell ignore it.)
    trap '' TERM INT HUP
    put signal "$1"
    kill -TERM 0 2>/dev/null
    # Wait for the child so "exit present" keeps meaning "the command has ended"; a
    # stubborn child is left to the SIGKILL that follows a TERM from our killers.
    [ -n "$child" ] && wait "$child" 2>/dev/null
    put exit "$2"
    exit "$2"
}
trap 'on_signal TERM 143' TERM
trap 'on_signal INT 130' INT
trap 'on_signal HUP 129' HUP

: >>"$mqi_dir/job.log" # exists from the start, even if a signal arrives before the child
put label "$label"
put pgid "$(own_pgid)"
put started "$(date +%s)"

# Background + wait: a trapped signal interrupts `wait` at once, whereas a foreground
# child would delay the trap until it exits.
"$@" >>"$mqi_dir/job.log" 2>&1 </dev/null &
child=$!
wait "$child"
rc=$?
put exit "$rc"
exit "$rc"

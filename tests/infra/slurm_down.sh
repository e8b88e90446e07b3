#!/usr/bin/env bash
# Stop the loopback Slurm started by slurm_up.sh and remove its root directory.
# Cancels jobs first: slurmstepd is reparented to PID 1 and would survive slurmd.
set -u
R=${MQI_SLURM_ROOT:-/tmp/mqi-slurm}
[ -d "$R" ] || exit 0
# Refuse to delete a directory slurm_up.sh did not make (MQI_SLURM_ROOT is user input).
[ -f "$R/slurm.conf" ] || [ -d "$R/munge" ] || { echo "slurm_down: $R is not a slurm_up.sh root; not removing it" >&2; exit 1; }
export PATH="$PATH:/usr/sbin:/sbin"
export SLURM_CONF=$R/slurm.conf
if [ -s "$R/slurmctld.fgpid" ] && kill -0 "$(cat "$R/slurmctld.fgpid")" 2>/dev/null; then
  scancel --user=root 2>/dev/null || true
  for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
fi
pids=$(cat "$R/slurmd.fgpid" "$R/slurmctld.fgpid" "$R/munge/munged.pid" 2>/dev/null)
# shellcheck disable=SC2086
[ -n "$pids" ] && kill $pids 2>/dev/null   # each takes ~2 s to exit; stop them in parallel
for _ in $(seq 100); do
  alive=0; for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break; sleep 0.1
done
for p in $pids; do kill -0 "$p" 2>/dev/null && { echo "slurm_down: SIGKILL $p" >&2; kill -9 "$p"; }; done
rm -rf "$R"
exit 0

#!/usr/bin/env bash
# Start a private, loopback Slurm (munged + slurmctld + slurmd) for the tests.
#
# Everything lives under $MQI_SLURM_ROOT (default /tmp/mqi-slurm); nothing in /etc/slurm or /run.
# Adapted from /work/shared/recipes/slurm-loopback.md (Debian 12, slurm-wlm 22.05).
# Needs root (slurmd runs jobs; /etc/hosts may need the short hostname) and the Debian
# packages munge slurmctld slurmd slurm-client.
#
# Environment (all optional):
#   MQI_SLURM_ROOT          state/log/config directory       (/tmp/mqi-slurm)
#   MQI_SLURM_CTLD_PORT     slurmctld port                    (16817)
#   MQI_SLURM_SLURMD_PORT   slurmd port                       (16818)
#   MQI_SLURM_MIN_JOB_AGE   seconds a finished job stays visible (300)
#   MQI_SLURM_CPUS          CPUs advertised by the node       (8; config_overrides)
#
# On success the last stdout line is `export SLURM_CONF=<root>/slurm.conf`.
set -euo pipefail

R=${MQI_SLURM_ROOT:-/tmp/mqi-slurm}
CTLD_PORT=${MQI_SLURM_CTLD_PORT:-16817}
SLURMD_PORT=${MQI_SLURM_SLURMD_PORT:-16818}
MIN_JOB_AGE=${MQI_SLURM_MIN_JOB_AGE:-300}
CPUS=${MQI_SLURM_CPUS:-8}

die() { echo "slurm_up: $*" >&2; exit 1; }

missing=""
for exe in munged munge slurmctld slurmd sbatch squeue sinfo scontrol scancel; do
  command -v "$exe" >/dev/null 2>&1 || [ -x "/usr/sbin/$exe" ] || missing="$missing $exe"
done
[ -z "$missing" ] || die "missing executables:$missing. Install the Debian packages:
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends munge slurmctld slurmd slurm-client"
[ "$(id -u)" = 0 ] || die "must run as root (slurmd launches jobs; SlurmUser=root)"
export PATH="$PATH:/usr/sbin:/sbin"

HOST=$(hostname -s)
mkdir -p "$R"/{munge,state,spool,log,dev}
chmod 755 "$R" "$R/munge"   # munged wants the socket dir traversable; the key stays 0600

# 1. NodeName must equal the short hostname, and slurmd finds itself by resolving it.
getent hosts "$HOST" >/dev/null || echo "127.0.0.1 $HOST" >> /etc/hosts

# 2. munge with a private key and socket (no /run/munge, no munge user needed).
[ -s "$R/munge/munge.key" ] || dd if=/dev/urandom of="$R/munge/munge.key" bs=1024 count=1 status=none
chmod 600 "$R/munge/munge.key"
if ! { [ -s "$R/munge/munged.pid" ] && kill -0 "$(cat "$R/munge/munged.pid")" 2>/dev/null; }; then
  munged --force --socket="$R/munge/munge.socket.2" --key-file="$R/munge/munge.key" \
    --pid-file="$R/munge/munged.pid" --log-file="$R/log/munged.log" --seed-file="$R/munge/munged.seed"
fi
for _ in $(seq 50); do munge -n -S "$R/munge/munge.socket.2" >/dev/null 2>&1 && break; sleep 0.1; done
munge -n -S "$R/munge/munge.socket.2" >/dev/null || die "munged did not start: $(tail -5 "$R/log/munged.log" 2>/dev/null)"

# 3. fake GPUs: slurmd rejects regular files; char devices or symlinks to /dev/null work.
for i in 0 1 2 3; do
  rm -f "$R/dev/nvidia$i"
  mknod -m 666 "$R/dev/nvidia$i" c 195 "$i" 2>/dev/null || ln -s /dev/null "$R/dev/nvidia$i"
done

cat > "$R/slurm.conf" <<CONF
ClusterName=mqici
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$R/munge/munge.socket.2
StateSaveLocation=$R/state
SlurmdSpoolDir=$R/spool
SlurmctldPidFile=$R/slurmctld.pid
SlurmdPidFile=$R/slurmd.pid
SlurmctldLogFile=$R/log/slurmctld.log
SlurmdLogFile=$R/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobContainerType=job_container/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$R/log/jobcomp.log
ReturnToService=2
MinJobAge=$MIN_JOB_AGE
KillWait=2
InactiveLimit=0
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=2000 Gres=gpu:4 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
cat > "$R/gres.conf" <<CONF
AutoDetect=off
NodeName=$HOST Name=gpu File=$R/dev/nvidia[0-3]
CONF

export SLURM_CONF="$R/slurm.conf"   # clients AND daemons read this
# -c: start from empty state (job ids restart at 1).
setsid slurmctld -D -c >"$R/log/slurmctld.out" 2>&1 </dev/null & echo $! >"$R/slurmctld.fgpid"
setsid slurmd -D       >"$R/log/slurmd.out"    2>&1 </dev/null & echo $! >"$R/slurmd.fgpid"

# 4. wait for the node to be idle
for _ in $(seq 300); do
  [ "$(sinfo -h -n "$HOST" -o %T 2>/dev/null)" = idle ] && break; sleep 0.1
done
if [ "$(sinfo -h -n "$HOST" -o %T 2>/dev/null)" != idle ]; then
  echo "slurm_up: node $HOST did not become idle" >&2
  tail -n 20 "$R"/log/slurmctld.log "$R"/log/slurmd.log "$R"/log/*.out >&2 2>/dev/null || true
  exit 1
fi
echo "export SLURM_CONF=$R/slurm.conf"

#!/usr/bin/env bash
# Start a throw-away OpenSSH sshd on 127.0.0.1 for tests and benchmarks.
# Usage: sshd_up.sh DIR [PORT [readonly-tmp]]
#   (DIR must be outside the repo; keys are made fresh there)
# Prints nothing on success; DIR then holds id_ed25519 (client key), known_hosts,
# sshd_config, sshd.pid and sshd.log. Stop with: kill "$(cat DIR/sshd.pid)".
# readonly-tmp: sshd (and so every session and command it starts) runs in a private mount
# namespace where /tmp is a read-only bind of itself: a GPU server whose /tmp cannot be
# written. DIR must then be outside /tmp (sshd writes its pid file and log there).
# On a fresh machine install the server first: apt-get install -y openssh-server
set -euo pipefail
DIR=${1:?usage: sshd_up.sh DIR [PORT [readonly-tmp]]}; PORT=${2:-22222}; MODE=${3:-}
SSHD=/usr/sbin/sshd
[ -x "$SSHD" ] || { echo "sshd_up: $SSHD not found (apt-get install openssh-server)" >&2; exit 3; }
mkdir -p "$DIR" /run/sshd && chmod 0755 /run/sshd   # sshd refuses to start without /run/sshd
[ -f "$DIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C mqi-test-host -f "$DIR/host_ed25519"
[ -f "$DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C mqi-test-client -f "$DIR/id_ed25519"
cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
cat > "$DIR/sshd_config" <<CFG
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_ed25519
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxSessions 64
MaxStartups 64:30:128
LogLevel VERBOSE
Subsystem sftp internal-sftp
CFG
"$SSHD" -t -f "$DIR/sshd_config"
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
  echo "sshd_up: port $PORT is already in use (another sshd? set another port)" >&2; exit 5
fi
rm -f "$DIR/sshd.pid"
if [ "$MODE" = readonly-tmp ]; then
  case $(cd "$DIR" && pwd -P)/ in /tmp/*) echo "sshd_up: readonly-tmp needs DIR outside /tmp" >&2; exit 7;; esac
  # --propagation private: the read-only mount never reaches the host's namespace.
  # shellcheck disable=SC2016  # $@ is expanded by the inner shell
  unshare --mount --propagation private sh -c \
    'mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp && exec "$@"' mqi-readonly-tmp \
    "$SSHD" -f "$DIR/sshd_config" -E "$DIR/sshd.log" \
    || { echo "sshd_up: cannot start sshd with a read-only /tmp (unshare/mount above)" >&2; exit 8; }
else
  "$SSHD" -f "$DIR/sshd_config" -E "$DIR/sshd.log"
fi
for _ in $(seq 100); do
  if ssh-keyscan -p "$PORT" -t ed25519 127.0.0.1 >"$DIR/known_hosts.new" 2>/dev/null \
     && [ -s "$DIR/known_hosts.new" ]; then
    mv "$DIR/known_hosts.new" "$DIR/known_hosts"; break
  fi
  sleep 0.1
done
[ -s "$DIR/known_hosts" ] || { echo "sshd_up: sshd did not answer on port $PORT" >&2; exit 4; }
# The server that answered must be ours (not another one that won the port).
grep -qF "$(cut -d' ' -f2 "$DIR/host_ed25519.pub")" "$DIR/known_hosts" \
  || { echo "sshd_up: port $PORT answered with a foreign host key" >&2; exit 6; }
ssh -p "$PORT" -i "$DIR/id_ed25519" -o BatchMode=yes -o IdentitiesOnly=yes \
  -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$DIR/known_hosts" root@127.0.0.1 true

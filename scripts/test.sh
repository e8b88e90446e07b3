#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian/Ubuntu machine, then runs
# ruff, mypy --strict, import-linter and pytest. The tests themselves start the loopback sshd,
# the loopback Slurm, the Pueue stand-in and headless Chromium (the web console's
# browser tests; screenshots under $MQI_ARTIFACTS if set); PostgreSQL is expected
# at 127.0.0.1:5432 (database `test`), as MQI_TEST_POSTGRES_URL may override.
#
#   bash scripts/test.sh [pytest args...]
#   MQI_HYPOTHESIS_PROFILE=thorough bash scripts/test.sh tests/safety
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v /usr/sbin/sshd >/dev/null 2>&1 || need_pkgs+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need_pkgs+=(openssh-client)
command -v munged >/dev/null 2>&1 || need_pkgs+=(munge)
command -v slurmctld >/dev/null 2>&1 || need_pkgs+=(slurmctld)
command -v slurmd >/dev/null 2>&1 || need_pkgs+=(slurmd)
command -v sbatch >/dev/null 2>&1 || need_pkgs+=(slurm-client)
command -v rsync >/dev/null 2>&1 || need_pkgs+=(rsync)
# The web console's browser tests drive Debian's Chromium through its chromedriver.
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
[ -x /usr/bin/chromedriver ] || need_pkgs+=(chromium-driver)
command -v tmux >/dev/null 2>&1 || need_pkgs+=(tmux)  # the `top` tests drive a real terminal
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need_pkgs[*]}"
    apt-get update -qq
    # postinst scripts try to start services and are refused in containers: harmless.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null || true
  else
    echo "warning: missing ${need_pkgs[*]}; tests needing them will skip (or fail under CI=true)" >&2
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check . && ruff format --check .
echo "== mypy --strict"; mypy
# The layers drawn in the README ("How it works"), contracts in pyproject.toml.
echo "== import-linter"; lint-imports
# Two workers: most tests wait on real processes (sshd, Slurm, jobs), so two run in the
# time of one on the 2-CPU machines this targets; MQI_TEST_WORKERS=0 runs them in-process.
echo "== pytest"; exec pytest -n "${MQI_TEST_WORKERS:-2}" "$@"

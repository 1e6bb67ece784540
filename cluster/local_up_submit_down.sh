#!/usr/bin/env bash
# On demand (needs root and openssh-server; installs ~7 GB into the test user's venv the first time):
# the exact launcher path of cluster/gpu.yaml on this machine, through cluster/local.yaml.
#
#   sudo cluster/local_up_submit_down.sh            # from the repository root
#
# It creates the local user `langdml` with an SSH key for root, starts sshd if none runs (and stops it
# again), then runs `ray up`, `ray submit cluster/local.yaml sweeps/demo.py -- --smoke` and `ray down`.
# `ray stop`, which the start commands run, acts as the user `langdml` and so touches only its processes.
# Exit status: that of `ray submit` (the smoke sweep), or the first failing step.
set -euo pipefail
cd "$(dirname "$0")/.."
RAY="${RAY:-$PWD/.venv/bin/ray}"
USER_NAME=langdml
KEY="$HOME/.ssh/langdml_local_cluster"

[[ $(id -u) == 0 ]] || { echo "run as root (it creates a user and starts sshd)" >&2; exit 2; }
command -v sshd >/dev/null || [[ -x /usr/sbin/sshd ]] || {
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssh-server rsync; }
command -v rsync >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q rsync

id "$USER_NAME" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$USER_NAME"
mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh"
[[ -f "$KEY" ]] || ssh-keygen -q -t ed25519 -N "" -f "$KEY"
home="$(getent passwd "$USER_NAME" | cut -d: -f6)"
# Each run starts clean: the previous run's sweep state, results and MLflow database (the test user's only).
rm -rf "$home/langdml-shared" "$home/results" "$home/mlflow"
install -d -m 700 -o "$USER_NAME" -g "$USER_NAME" "$home/.ssh"
install -m 600 -o "$USER_NAME" -g "$USER_NAME" "$KEY.pub" "$home/.ssh/authorized_keys"

started_sshd=""
if ! (exec 3<>/dev/tcp/127.0.0.1/22) 2>/dev/null; then
  mkdir -p /run/sshd
  [[ -f /etc/ssh/ssh_host_ed25519_key ]] || ssh-keygen -A
  /usr/sbin/sshd -o ListenAddress=127.0.0.1 -o PidFile=/run/sshd-langdml.pid
  started_sshd=/run/sshd-langdml.pid
fi
cleanup() {
  "$RAY" down -y cluster/local.yaml || true
  # On this machine `ray down` leaves the head's MLflow server running (on AWS the instance goes with it).
  ssh -i "$KEY" -o BatchMode=yes "$USER_NAME@127.0.0.1" \
    'test -f ~/mlflow/server.pid && kill -- "-$(cat ~/mlflow/server.pid)"; rm -f ~/mlflow/server.pid' || true
  if [[ -n "$started_sshd" && -f "$started_sshd" ]]; then kill "$(cat "$started_sshd")" || true; fi
}
trap cleanup EXIT

for attempt in 1 2 3 4 5 6 7 8 9 10; do  # sshd may take a moment to listen
  ssh -i "$KEY" -o StrictHostKeyChecking=no -o BatchMode=yes "$USER_NAME@127.0.0.1" true && break
  [[ $attempt == 10 ]] && { echo "cannot ssh to $USER_NAME@127.0.0.1" >&2; exit 1; }
  sleep 1
done
echo "== ray up"
time "$RAY" up -y cluster/local.yaml
echo "== ray submit cluster/local.yaml sweeps/demo.py -- --smoke"
status=0
time "$RAY" submit cluster/local.yaml sweeps/demo.py -- --smoke || status=$?
echo "== ray down (exit status of the sweep: $status)"
exit "$status"

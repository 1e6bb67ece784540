#!/usr/bin/env bash
# Start (or restart) the MLflow tracking server on the head. Its database outlives the cluster (README,
# "Where the tracking database lives"): by default SQLite on the head's disk, restored from the bucket before
# the server starts and backed up to it every LANGDML_MLFLOW_BACKUP_MINUTES and at `ray down` (mlflow_db.sh);
# with LANGDML_MLFLOW_BACKEND (e.g. postgresql://langdml@db.internal/langdml) a database outside the cluster
# instead. Artifacts are proxied to $LANGDML_BUCKET/mlflow-artifacts. It binds 0.0.0.0 (LANGDML_MLFLOW_HOST),
# port 5000 (LANGDML_MLFLOW_PORT), so that workers reach it at the head's private IP and an SSH tunnel at
# localhost; nothing else can, because the security group admits only SSH from outside the cluster (see
# cluster/README.md). Idempotent: head_start_ray_commands run it on every `ray up`. MLflow answers only Host
# headers of localhost and private addresses (10.*, 172.16-31.*, 192.168.*: EC2's);
# LANGDML_MLFLOW_ALLOWED_HOSTS widens that where the head's address is another.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${LANGDML_MLFLOW_DIR:-$HOME/mlflow}"
port="${LANGDML_MLFLOW_PORT:-5000}"
mkdir -p "$dir"
for name in server backup; do  # a previous server and its backup loop (their process groups)
  if [[ -f "$dir/$name.pid" ]] && kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null; then
    kill -- "-$(cat "$dir/$name.pid")" 2>/dev/null || kill "$(cat "$dir/$name.pid")"
    sleep 2
  fi
  rm -f "$dir/$name.pid"
done
backend="${LANGDML_MLFLOW_BACKEND:-sqlite:///$dir/mlflow.db}"
"$here/mlflow_db.sh" restore  # no-op with LANGDML_MLFLOW_BACKEND
setsid nohup mlflow server \
  --backend-store-uri "$backend" \
  --artifacts-destination "$LANGDML_BUCKET/mlflow-artifacts" \
  --host "${LANGDML_MLFLOW_HOST:-0.0.0.0}" --port "$port" --workers 2 \
  ${LANGDML_MLFLOW_ALLOWED_HOSTS:+--allowed-hosts "$LANGDML_MLFLOW_ALLOWED_HOSTS"} \
  >"$dir/server.log" 2>&1 </dev/null &
echo $! >"$dir/server.pid"
for _ in $(seq 90); do
  if curl -sf "http://127.0.0.1:$port/health" >/dev/null; then
    echo "MLflow tracking server up: $MLFLOW_TRACKING_URI (log: $dir/server.log)"
    if [[ -z "${LANGDML_MLFLOW_BACKEND:-}" ]]; then
      setsid nohup "$here/mlflow_db.sh" loop >>"$dir/backup.log" 2>&1 </dev/null &
      echo $! >"$dir/backup.pid"
      echo "MLflow database backed up to the bucket every ${LANGDML_MLFLOW_BACKUP_MINUTES:-10} minutes (log: $dir/backup.log)"
    fi
    exit 0
  fi
  kill -0 "$(cat "$dir/server.pid")" 2>/dev/null || break  # it exited: no use waiting
  sleep 2
done
echo "MLflow server did not answer /health (within 180 s); see $dir/server.log" >&2
tail -n 20 "$dir/server.log" >&2
exit 1

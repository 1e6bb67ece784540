#!/usr/bin/env bash
# Start (or restart) the MLflow tracking server on the head: SQLite on the head's disk, artifacts proxied to
# $LANGDML_BUCKET/mlflow-artifacts. It binds 0.0.0.0, port 5000 (LANGDML_MLFLOW_PORT), so that workers reach
# it at the head's private IP and an SSH tunnel at localhost; nothing else can, because the security group
# admits only SSH from outside the cluster (see cluster/README.md). Idempotent: head_start_ray_commands run
# it on every `ray up`. MLflow answers only Host headers of localhost and private addresses (10.*, 172.16-31.*,
# 192.168.*: EC2's); LANGDML_MLFLOW_ALLOWED_HOSTS widens that where the head's address is another.
set -euo pipefail
dir="${LANGDML_MLFLOW_DIR:-$HOME/mlflow}"
mkdir -p "$dir"
if [[ -f "$dir/server.pid" ]] && kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; then
  kill -- "-$(cat "$dir/server.pid")" 2>/dev/null || kill "$(cat "$dir/server.pid")"  # its process group
  sleep 2
fi
setsid nohup mlflow server \
  --backend-store-uri "sqlite:///$dir/mlflow.db" \
  --artifacts-destination "$LANGDML_BUCKET/mlflow-artifacts" \
  --host 0.0.0.0 --port "${LANGDML_MLFLOW_PORT:-5000}" --workers 2 \
  ${LANGDML_MLFLOW_ALLOWED_HOSTS:+--allowed-hosts "$LANGDML_MLFLOW_ALLOWED_HOSTS"} \
  >"$dir/server.log" 2>&1 </dev/null &
echo $! >"$dir/server.pid"
for _ in $(seq 90); do
  if curl -sf "http://127.0.0.1:${LANGDML_MLFLOW_PORT:-5000}/health" >/dev/null; then
    echo "MLflow tracking server up: $MLFLOW_TRACKING_URI (log: $dir/server.log)"
    exit 0
  fi
  sleep 2
done
echo "MLflow server did not answer /health within 180 s; see $dir/server.log" >&2
tail -n 20 "$dir/server.log" >&2
exit 1

#!/usr/bin/env bash
# The head's MLflow database (SQLite, $LANGDML_MLFLOW_DIR/mlflow.db on the head's disk) outlives the cluster
# through a copy in the bucket, $LANGDML_BUCKET/mlflow-db/mlflow.db:
#
#   mlflow_db.sh restore   # before the server starts (mlflow_server.sh): a head without a database gets the
#                          # bucket's copy; a head that has one keeps it; no copy yet: a new database
#   mlflow_db.sh backup    # a consistent snapshot (SQLite's online backup, safe while the server writes) to
#                          # the bucket; run every LANGDML_MLFLOW_BACKUP_MINUTES (10) by `loop` and by `ray stop`
#                          # on the head, which `ray down` runs first (the hook in head-env.sh)
#   mlflow_db.sh loop      # backup every LANGDML_MLFLOW_BACKUP_MINUTES, forever (mlflow_server.sh starts it)
#
# The bucket may be s3://... (aws s3 cp) or a local folder (cluster/local-env.sh, tests). Nothing to do when
# LANGDML_MLFLOW_BACKEND names a database outside the cluster (PostgreSQL: cluster/README.md).
set -euo pipefail
dir="${LANGDML_MLFLOW_DIR:-$HOME/mlflow}"
db="$dir/mlflow.db"
remote="${LANGDML_BUCKET:?LANGDML_BUCKET is not set (cluster/env.sh)}/mlflow-db/mlflow.db"
PYTHON="${PYTHON:-python3}"

if [[ -n "${LANGDML_MLFLOW_BACKEND:-}" ]]; then
  echo "MLflow database: $(sed -E 's#//[^/@]*@#//***@#' <<<"$LANGDML_MLFLOW_BACKEND") (outside the cluster); no copy kept"
  exit 0
fi

remote_exists() {  # 0: there, 1: not there; anything else (credentials, network) stops the script
  if [[ "$remote" == s3://* ]]; then
    local out status=0
    out="$(aws s3 ls "$remote" 2>&1)" || status=$?
    if [[ $status == 0 && -n "$out" ]]; then return 0; fi
    if [[ $status == 1 && -z "$out" ]]; then return 1; fi  # `aws s3 ls` of a missing key: status 1, no output
    echo "cannot read $remote: $out" >&2
    exit 3
  fi
  [[ -f "$remote" ]]
}

copy() {  # copy SRC DEST, either of them in the bucket; a half-written copy never replaces a whole one
  if [[ "$1" == s3://* || "$2" == s3://* ]]; then
    aws s3 cp --only-show-errors "$1" "$2"
  else
    mkdir -p "$(dirname "$2")"
    cp "$1" "$2.partial" && mv -f "$2.partial" "$2"
  fi
}

backup() {
  if [[ ! -f "$db" ]]; then
    echo "no MLflow database at $db yet: nothing to back up"
    return 0
  fi
  local snapshot="$dir/.backup-snapshot.db"
  rm -f "$snapshot"
  "$PYTHON" - "$db" "$snapshot" <<'EOF'
import sqlite3, sys
source, target = sqlite3.connect(sys.argv[1], timeout=60), sqlite3.connect(sys.argv[2])
source.backup(target)
target.close()
source.close()
EOF
  copy "$snapshot" "$remote"
  rm -f "$snapshot"
  echo "MLflow database backed up: $db -> $remote ($(date -u +%FT%TZ))"
}

case "${1:-}" in
  restore)
    if [[ -f "$db" ]]; then
      echo "MLflow database: $db (kept: this head already has one)"
    elif remote_exists; then
      mkdir -p "$dir"
      copy "$remote" "$db.restoring"
      mv "$db.restoring" "$db"
      echo "MLflow database restored: $remote -> $db"
    else
      echo "MLflow database: none in the bucket yet ($remote); the server starts a new one at $db"
    fi
    ;;
  backup)
    backup
    ;;
  loop)
    minutes="${LANGDML_MLFLOW_BACKUP_MINUTES:-10}"
    while sleep "$((minutes * 60))"; do
      backup || echo "MLflow database backup failed; retrying in $minutes minutes" >&2
    done
    ;;
  *)
    echo "usage: $0 restore|backup|loop" >&2
    exit 2
    ;;
esac

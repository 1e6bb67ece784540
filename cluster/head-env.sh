# The head's extra environment (head_setup_commands append `source ~/langdml/cluster/head-env.sh` to
# ~/.bashrc after env.sh): a sweep driver started on the head (`ray submit`, `ray attach`) joins the
# running cluster and logs through the head's MLflow server, at an address every worker can reach.
export RAY_ADDRESS="${RAY_ADDRESS:-auto}"  # the cluster this head runs
LANGDML_HEAD_IP="$(hostname -I | awk '{print $1}')"  # the private IP (an EC2 instance has no other)
export MLFLOW_TRACKING_URI="http://$LANGDML_HEAD_IP:${LANGDML_MLFLOW_PORT:-5000}"
export LANGDML_MLFLOW_DIR="${LANGDML_MLFLOW_DIR:-$HOME/mlflow}"  # SQLite database on the head's disk
# Unless LANGDML_MLFLOW_BACKEND names a database outside the cluster (README: "Where the tracking database
# lives"), that database outlives the head through the bucket: mlflow_server.sh restores it at `ray up`
# and backs it up every LANGDML_MLFLOW_BACKUP_MINUTES; Ray's launcher has no teardown hook, but `ray down`
# runs `ray stop` on the head through this shell first, so `ray stop` here takes a last backup before Ray
# stops (a failed backup is reported and does not block `ray down`).
LANGDML_CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ray() {
  if [[ "${1:-}" == stop ]]; then
    "$LANGDML_CLUSTER_DIR/mlflow_db.sh" backup || echo "WARNING: the MLflow database was NOT backed up" >&2
  fi
  command ray "$@"
}

# The head's extra environment (head_setup_commands append `source ~/langdml/cluster/head-env.sh` to
# ~/.bashrc after env.sh): a sweep driver started on the head (`ray submit`, `ray attach`) joins the
# running cluster and logs through the head's MLflow server, at an address every worker can reach.
export RAY_ADDRESS="${RAY_ADDRESS:-auto}"  # the cluster this head runs
LANGDML_HEAD_IP="$(hostname -I | awk '{print $1}')"  # the private IP (an EC2 instance has no other)
export MLFLOW_TRACKING_URI="http://$LANGDML_HEAD_IP:${LANGDML_MLFLOW_PORT:-5000}"
export LANGDML_MLFLOW_DIR="$HOME/mlflow"  # SQLite database on the head's disk

# Overrides for cluster/local.yaml, the one-machine test cluster (no S3, no GPU, a box shared with other Ray
# users): ~/.bashrc sources this BEFORE env.sh, whose values give way to these.
export LANGDML_BUCKET="$HOME/langdml-shared"      # a local folder instead of s3://
export LANGDML_GPUS_PER_TRIAL=0                   # trials on CPU, on the head (the only node)
export LANGDML_CPUS_PER_TRIAL=1
export LANGDML_MLFLOW_PORT=23005                  # off defaults and Ray's worker ports (10002-19999)
export RAY_TMPDIR="/tmp/rl-$USER"                 # Ray's /tmp/ray may belong to another user here
export PIP_FIND_LINKS=/opt/wheels                 # this box's local wheel mirror (see /etc/pip.conf)
export PIP_EXTRA_INDEX_URL="file:///opt/pypi/simple file:///opt/pypi-more/simple"
# This box's address is not a private range that MLflow's host check admits by default.
export LANGDML_MLFLOW_ALLOWED_HOSTS="$(hostname -I | awk '{print $1}'):*,localhost:*,127.0.0.1:*"
# `auto` could pick another user's Ray on a shared box: name this cluster's GCS (local.yaml's --port).
export RAY_ADDRESS="$(hostname -I | awk '{print $1}'):23000"

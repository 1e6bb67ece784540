# The cluster's environment. setup_commands append `source ~/langdml/cluster/env.sh` to ~/.bashrc on every
# node; the launcher runs every command (`ray start`, and `ray submit`'s `python ~/SCRIPT.py`) through
# `bash -i` with ~/.bashrc, so Ray, every trial and every sweep driver see these values.
# A value set before (cluster/local-env.sh, for the one-machine test cluster) wins.

# The ONE place for the bucket: Tune's storage_path, MLflow's artifacts, the dataset and model copies.
export LANGDML_BUCKET="${LANGDML_BUCKET:-s3://my-langdml-bucket/langdml}"  # EDIT: your S3 bucket/prefix

# Optional: the MLflow database outside the cluster instead of SQLite on the head (restored from and backed
# up to the bucket, $LANGDML_BUCKET/mlflow-db/): a PostgreSQL the head reaches, password in ~/.pgpass, and
# `~/venv/bin/pip install -q 'psycopg[binary]'` in head_setup_commands (cluster/README.md).
# export LANGDML_MLFLOW_BACKEND="postgresql://langdml@db.internal:5432/langdml"

export PATH="$HOME/venv/bin:$PATH"  # the venv setup_commands install langdml into
# Tune state and checkpoints, shared by all nodes (the sweep's --storage default).
export LANGDML_STORAGE="${LANGDML_STORAGE:-$LANGDML_BUCKET/ray}"
# Datasets at $LANGDML_DATA_ROOT/{cub200,cars196,sop}, copied from the bucket by sync_data.sh.
export LANGDML_DATA_ROOT="${LANGDML_DATA_ROOT:-$HOME/data}"
export LANGDML_CACHE="$HOME/.cache/langdml"  # language tables, converted weights (per node)
# Sweep defaults on the cluster (a flag still wins): one g5.xlarge (1 GPU, 4 vCPU) per trial.
export LANGDML_GPUS_PER_TRIAL="${LANGDML_GPUS_PER_TRIAL:-1}"
export LANGDML_CPUS_PER_TRIAL="${LANGDML_CPUS_PER_TRIAL:-4}"
export HF_HUB_OFFLINE=1  # pretrained weights come from the synced cache, never from a download
# Ray's INFO logs print each trial's runtime_env, which Tune fills with the driver's AWS_* variables.
export RAY_LOGGER_LEVEL="${RAY_LOGGER_LEVEL:-warning}"

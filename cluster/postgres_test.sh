#!/usr/bin/env bash
# On demand (root; uses Debian's postgresql, installed if missing, and pip's psycopg[binary], the driver
# SQLAlchemy 2.1 picks for postgresql://, into $PYLIB if the venv lacks it): the MLflow database in PostgreSQL, outside the cluster, outlives the head.
#
#   sudo cluster/postgres_test.sh          # from anywhere; about 4 minutes on 2 busy cores
#
# 1. a private PostgreSQL server (its own data directory and port under $WORK; the system's clusters are not
#    touched), a role `langdml` whose password is only in a pgpass file (PGPASSFILE), a database `langdml`;
# 2. the head's MLflow server as cluster/mlflow_server.sh starts it, with
#    LANGDML_MLFLOW_BACKEND=postgresql://langdml@127.0.0.1:PORT/langdml (what env.sh or the sbatch script set);
# 3. tests/fixtures/tiny_sweep.py against it (4 trials, 2 epochs each);
# 4. that server stopped and its head directory deleted (`ray down`), a new server on a new head directory on
#    the same database, and `langdml report` from it: every run and every epoch (cluster/check_tracking.py).
# Exit status 0 when the record is complete.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VENV="${LANGDML_VENV:-$ROOT/.venv}"
WORK="${WORK:-/tmp/langdml-pg-test}"
PG_PORT="${PG_PORT:-25432}"
MLFLOW_PORT="${MLFLOW_PORT:-25000}"

[[ $(id -u) == 0 ]] || { echo "run as root (it runs PostgreSQL as the user postgres)" >&2; exit 2; }
[[ -x "$VENV/bin/python" ]] || { echo "no venv at $VENV (set LANGDML_VENV)" >&2; exit 2; }
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [[ -z "$pg_bin" ]]; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
  pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
fi

if [[ -f "$WORK/pg/postmaster.pid" ]]; then runuser -u postgres -- "$pg_bin/pg_ctl" -D "$WORK/pg" stop -m fast || true; fi
rm -rf "$WORK"
install -d -m 755 "$WORK"
install -d -o postgres -g postgres -m 700 "$WORK/pg"
install -d -o postgres -g postgres -m 755 "$WORK/sock" "$WORK/pglog"
export PATH="$VENV/bin:$PATH"
PYLIB="${PYLIB:-/tmp/langdml-pylib}"  # kept between runs
if ! python -c "import psycopg" 2>/dev/null; then
  export PYTHONPATH="$PYLIB${PYTHONPATH:+:$PYTHONPATH}"
  if ! python -c "import psycopg" 2>/dev/null; then
    echo "== pip install psycopg psycopg-binary (into $PYLIB, without dependencies: the venv stays as it is)"
    python -m pip install -q --no-deps --target "$PYLIB" psycopg psycopg-binary
  fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

echo "== PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT ($WORK/pg)"
runuser -u postgres -- "$pg_bin/initdb" -D "$WORK/pg" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$WORK/pg" -l "$WORK/pglog/postgres.log" -w \
  -o "-p $PG_PORT -k $WORK/sock -c listen_addresses=127.0.0.1" start
password="$(python -c 'import secrets; print(secrets.token_hex(16))')"
psql=(runuser -u postgres -- psql -h "$WORK/sock" -p "$PG_PORT" -v ON_ERROR_STOP=1 -q)
"${psql[@]}" -c "CREATE ROLE langdml LOGIN PASSWORD '$password'" -c "CREATE DATABASE langdml OWNER langdml"
echo "127.0.0.1:$PG_PORT:langdml:langdml:$password" >"$WORK/pgpass"
chmod 600 "$WORK/pgpass"
export PGPASSFILE="$WORK/pgpass"  # libpq reads the password here: none in the URI, none on a command line

export LANGDML_MLFLOW_BACKEND="postgresql://langdml@127.0.0.1:$PG_PORT/langdml"
export LANGDML_BUCKET="$WORK/bucket" LANGDML_STORAGE="$WORK/bucket/ray"
export LANGDML_MLFLOW_HOST=127.0.0.1 LANGDML_MLFLOW_PORT="$MLFLOW_PORT"
export MLFLOW_TRACKING_URI="http://127.0.0.1:$MLFLOW_PORT"
export LANGDML_RAY_TEMP_DIR="/tmp/rpg$$" LANGDML_CACHE="$WORK/cache" RAY_DEDUP_LOGS=0
unset RAY_ADDRESS

stop_server() {  # the process group mlflow_server.sh started, until it is gone
  local dir="$1" group
  [[ -f "$dir/server.pid" ]] || return 0
  group="$(cat "$dir/server.pid")"
  rm -f "$dir/server.pid"
  kill -- "-$group" 2>/dev/null || return 0
  for _ in $(seq 60); do kill -0 -- "-$group" 2>/dev/null || return 0; sleep 0.5; done
  kill -KILL -- "-$group" 2>/dev/null || true
}
teardown() {
  set +e
  echo "== teardown"
  stop_server "$WORK/head1"
  stop_server "$WORK/head2"
  runuser -u postgres -- "$pg_bin/pg_ctl" -D "$WORK/pg" stop -m fast
  rm -rf "$LANGDML_RAY_TEMP_DIR"
}
trap teardown EXIT

echo "== head 1: cluster/mlflow_server.sh"
LANGDML_MLFLOW_DIR="$WORK/head1" cluster/mlflow_server.sh
echo "== sweep: python tests/fixtures/tiny_sweep.py (MLflow: $MLFLOW_TRACKING_URI)"
python tests/fixtures/tiny_sweep.py --results "$WORK/results" >"$WORK/sweep.log" 2>&1 || {
  tail -n 40 "$WORK/sweep.log"
  exit 1
}
tail -n 3 "$WORK/sweep.log"
echo "== ray down: head 1's MLflow server stopped, its disk gone"
stop_server "$WORK/head1"
rm -rf "$WORK/head1" "$WORK/results"
echo "== the database alone: $("${psql[@]}" -d langdml -At -c "SELECT count(*) || ' runs, ' || (SELECT count(*) FROM metrics) || ' metric values' FROM runs")"
echo "== head 2: cluster/mlflow_server.sh on the same database"
LANGDML_MLFLOW_DIR="$WORK/head2" cluster/mlflow_server.sh
echo "== langdml report from head 2's MLflow"
status=0
python cluster/check_tracking.py "$MLFLOW_TRACKING_URI" --sweep tests/fixtures/tiny_sweep.py --results "$WORK/report" || status=1
echo "== result: $([[ $status == 0 ]] && echo PASSED || echo FAILED)"
exit "$status"

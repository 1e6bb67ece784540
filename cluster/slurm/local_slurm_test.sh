#!/usr/bin/env bash
# On demand (root; installs Debian's slurm-wlm and munge the first time): cluster/slurm/sweep.sbatch for real,
# on a one-node SLURM cluster on this machine, slurmctld and slurmd both here (partition `gpu`, 2 CPUs and
# 2 stand-in GPUs as GRES, so the script's --gres line and one-GPU-per-trial path run; no GPU needed: each
# trial holds one of Ray's GPUs and trains on the CPU).
#
#   sudo cluster/slurm/local_slurm_test.sh          # from anywhere; about 6 minutes on 2 cores
#
# Two jobs, as a user would submit them (only --nodes, --cpus-per-task, --mem-per-cpu, --gres and --time
# differ from the file, on the sbatch command line):
#   1. `sbatch cluster/slurm/sweep.sbatch sweeps/demo.py --smoke`: squeue while it runs, then every trial
#      FINISHED with every epoch in MLflow (cluster/check_tracking.py on the database the job left behind);
#   2. `sbatch cluster/slurm/sweep.sbatch tests/fixtures/tiny_sweep.py`: a new job, a new MLflow server on
#      the same database on the "shared filesystem": its log lists job 1's runs, and both sweeps' records are
#      complete afterwards (the database outlives each job).
# Then it stops the daemons it started and checks that no process of the jobs is left. Everything lives
# under $WORK (default /tmp/langdml-slurm-test; SLURM_CONF points there, nothing in /etc/slurm is written).
# Exit status: 0 when both jobs COMPLETED and both records are complete.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
VENV="${LANGDML_VENV:-$ROOT/.venv}"
WORK="${WORK:-/tmp/langdml-slurm-test}"
PARTITION=gpu  # the sbatch script's own partition name

[[ $(id -u) == 0 ]] || { echo "run as root (it installs packages and starts slurmctld, slurmd and munged)" >&2; exit 2; }
[[ -x "$VENV/bin/python" ]] || { echo "no venv at $VENV (set LANGDML_VENV)" >&2; exit 2; }
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge
fi

for pidfile in "$WORK"/run/*.pid; do  # a previous run's daemons, if it was interrupted
  [[ -f "$pidfile" ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
done
rm -rf "$WORK"
mkdir -p "$WORK"/{etc,state,spool,log,run,shared,data,cache}
export SLURM_CONF="$WORK/etc/slurm.conf"
node="$(hostname -s)"
memory="$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
cat >"$SLURM_CONF" <<EOF
ClusterName=langdml-test
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/run/slurmctld.pid
SlurmdPidFile=$WORK/run/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
GresTypes=gpu
ReturnToService=2
MinJobAge=600
KillWait=30
NodeName=$node NodeAddr=127.0.0.1 CPUs=2 RealMemory=$memory Gres=gpu:2 State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
# Two stand-in GPUs: slurmd drops a GPU without a device file, so two character devices with /dev/null's
# numbers play them. Slurm allocates them and sets SLURM_GPUS_ON_NODE and CUDA_VISIBLE_DEVICES; nothing opens them.
mkdir -p "$WORK/dev"
for i in 0 1; do mknod "$WORK/dev/gpu$i" c 1 3; done
echo "NodeName=$node Name=gpu File=$WORK/dev/gpu[0-1]" >"$WORK/etc/gres.conf"

started_munged=""
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  [[ -f /etc/munge/munge.key ]] || mungekey --create
  install -d -o munge -g munge -m 755 /run/munge
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/langdml-test.pid
  started_munged=/run/munge/langdml-test.pid
fi
teardown() {
  set +e
  echo "== teardown"
  scancel --quiet --partition="$PARTITION" 2>/dev/null
  for daemon in slurmd slurmctld; do
    [[ -f "$WORK/run/$daemon.pid" ]] && kill "$(cat "$WORK/run/$daemon.pid")" && echo "stopped $daemon"
  done
  [[ -n "$started_munged" && -f "$started_munged" ]] && kill "$(cat "$started_munged")" && echo "stopped munged"
  sleep 3
  left="$(ps -eo pid=,args= | grep -E "/tmp/ray-[0-9]+|$WORK/shared/mlflow|slurmstepd" | grep -v grep || true)"
  if [[ -n "$left" ]]; then echo "LEFT RUNNING:"; echo "$left"; else echo "no process of the jobs is left"; fi
}
trap teardown EXIT
slurmctld -f "$SLURM_CONF"
nice -n 19 slurmd -f "$SLURM_CONF"  # the jobs inherit slurmd's niceness: this box is shared
for _ in $(seq 30); do
  sinfo -h -o %T -p "$PARTITION" 2>/dev/null | grep -q idle && break
  sleep 1
done
echo "== sinfo"
sinfo -N -o "%N %P %T %c %m %G"

export LANGDML_PROJECT="$ROOT" LANGDML_VENV="$VENV" LANGDML_SHARED="$WORK/shared"
export LANGDML_DATA_ROOT="$WORK/data" LANGDML_CACHE="$WORK/cache"
sbatch_flags=(--nodes=1 --cpus-per-task=2 --mem-per-cpu=2G --gres=gpu:2 --time=00:30:00
  --chdir="$ROOT" --output="$WORK/langdml-%j.out")
db="sqlite:///$WORK/shared/mlflow/mlflow.db"
python="$VENV/bin/python"

run_job() {  # run_job SWEEP [FLAGS]: submit, watch squeue, wait; prints the job's state
  local job state
  echo "== sbatch ${sbatch_flags[*]} cluster/slurm/sweep.sbatch $*"
  job="$(sbatch --parsable "${sbatch_flags[@]}" cluster/slurm/sweep.sbatch "$@")"
  echo "Submitted batch job $job"
  local shown=0
  while squeue -h -j "$job" 2>/dev/null | grep -q .; do
    if ((shown % 6 == 0)); then
      echo "== squeue ($(date -u +%T))"
      squeue -o "%.8i %.9P %.10j %.8u %.2t %.10M %.6D %.4C %b %R"
    fi
    shown=$((shown + 1))
    sleep 10
  done
  state="$(scontrol show job "$job" | grep -oE 'JobState=[A-Z_]+|ExitCode=[0-9:]+' | tr '\n' ' ')"
  echo "== job $job: $state"
  echo "== the job's output ($WORK/langdml-$job.out)"
  cat "$WORK/langdml-$job.out"
  [[ "$state" == *"JobState=COMPLETED"* ]]
}

status=0
run_job sweeps/demo.py --smoke || status=1
echo "== after job 1: the smoke sweep's record in MLflow (the database on the shared filesystem)"
"$python" cluster/check_tracking.py "$db" --sweep sweeps/demo.py --smoke --results "$WORK/report" || status=1

run_job tests/fixtures/tiny_sweep.py || status=1
echo "== after job 2: both sweeps' records, from the database both jobs' MLflow servers used"
"$python" cluster/check_tracking.py "$db" --sweep sweeps/demo.py --smoke --results "$WORK/report" || status=1
"$python" cluster/check_tracking.py "$db" --sweep tests/fixtures/tiny_sweep.py --results "$WORK/report" || status=1
echo "== result: $([[ $status == 0 ]] && echo PASSED || echo FAILED)"
exit "$status"

"""cluster/: Ray's own schema accepts every yaml, every EDIT marker is documented, the README's cost table is
the one computed from the sweep, the SLURM sbatch script follows Ray's pattern, the head's MLflow database
is backed up to and restored from the bucket; slow tier: a fake multi-node GPU cluster autoscales a submitted
sweep onto GPU workers, and a sweep's MLflow record survives tearing the head down and bringing it up again."""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
README = CLUSTER / "README.md"
YAMLS = sorted(CLUSTER.glob("*.yaml"))
TINY = ROOT / "tests" / "fixtures" / "tiny_sweep.py"
RAY = str(Path(sys.executable).with_name("ray"))
SBATCH = CLUSTER / "slurm" / "sweep.sbatch"
CHECK_TRACKING = CLUSTER / "check_tracking.py"
SCRIPTS = sorted(p for p in CLUSTER.rglob("*") if p.suffix in (".sh", ".sbatch"))
EDIT = re.compile(r"#\s*EDIT:")
JOB = "fake-gpu-smoke"
PORT_FLAGS = (
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
    "ray-client-server-port",
    "node-manager-port",
    "object-manager-port",
)


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def ray_checked(config: dict) -> dict:
    """What Ray itself does with a cluster yaml: `ray up` fills defaults then validates (prepare_config);
    the autoscaler monitor validates the raw file (the fake provider ships no defaults file)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    if config["provider"]["type"] != "fake_multinode":
        config = prepare_config(config)
    validate_config(config)
    return config


# ---- static checks (every CI run) -------------------------------------------------------------------------
def test_cluster_files_exist():
    names = {p.name for p in YAMLS}
    assert {"gpu.yaml", "fake-gpu.yaml", "local.yaml"} <= names
    for script in SCRIPTS:
        if script.name not in ("env.sh", "head-env.sh", "local-env.sh"):  # sourced, not run
            assert script.stat().st_mode & 0o111, f"{script.relative_to(CLUSTER)} is not executable"
    assert {"local_up_submit_down.sh", "postgres_test.sh", "sweep.sbatch", "local_slurm_test.sh"} <= {
        p.name for p in SCRIPTS
    }


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(CLUSTER)))
def test_every_cluster_script_is_valid_bash(path):
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_every_cluster_yaml_passes_rays_validation(path):
    ray_checked(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_rays_validation_catches_a_typo_in_each_yaml(path):
    import jsonschema

    config = yaml.safe_load(path.read_text())
    config["min_worker"] = 0  # the typo Ray's schema exists for (min_workers)
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        ray_checked(config)


def test_gpu_cluster_shape():
    config = ray_checked(load("gpu.yaml"))
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0, "GPU": 0}  # no trial can land on the head
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert workers and all(t["min_workers"] == 0 for t in workers)  # scales from zero
    assert all(t["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot" for t in workers)
    assert "IpPermissions" not in config["provider"].get(
        "security_group", {}
    )  # only Ray's SSH + intra-cluster

    setup = "\n".join(config["setup_commands"])
    assert "pip install" in setup and "-e" in setup and "[gpu,demo]" in setup
    assert "~/langdml" in config["file_mounts"]
    head_start = "\n".join(config["head_start_ray_commands"])
    assert head_start.endswith("~/langdml/cluster/mlflow_server.sh")
    server = (CLUSTER / "mlflow_server.sh").read_text()  # SQLite on the head's disk, artifacts to the bucket
    assert "mlflow server" in server and "sqlite:///$dir/mlflow.db" in server
    assert '--artifacts-destination "$LANGDML_BUCKET/mlflow-artifacts"' in server
    # the database comes back from the bucket before the server opens it, and goes there while it runs
    assert server.index('mlflow_db.sh" restore') < server.index("mlflow server")
    assert 'mlflow_db.sh" loop' in server
    assert "--num-gpus" not in head_start  # resources come from the node type above
    assert "--dashboard-host=127.0.0.1" in head_start  # the dashboard: SSH tunnel only


def test_the_bucket_is_set_in_one_place():
    texts = {p.name: p.read_text() for p in sorted(CLUSTER.iterdir()) if p.suffix in (".yaml", ".sh")}
    holders = [name for name, text in texts.items() if re.search(r"s3://[a-z0-9]", text)]
    assert holders == ["env.sh"], holders
    assert re.search(r"^export LANGDML_BUCKET=.*s3://\S+.*#\s*EDIT:", texts["env.sh"], re.MULTILINE)


def test_local_yaml_runs_the_same_file_mounts_setup_and_start_as_gpu_yaml():
    gpu, local = load("gpu.yaml"), load("local.yaml")
    for key in ("file_mounts", "rsync_exclude", "rsync_filter"):
        assert local[key] == gpu[key], key
    # the one difference in setup: faiss for a CPU box
    assert local["setup_commands"] == [c.replace("[gpu,demo]", "[cpu,demo]") for c in gpu["setup_commands"]]
    assert set(local["head_setup_commands"]) <= set(gpu["head_setup_commands"])
    for yaml_file in (gpu, local):
        assert yaml_file["head_start_ray_commands"][-1] == "~/langdml/cluster/mlflow_server.sh"


def test_cluster_environment_selects_cluster_storage_tracking_and_data():
    env = (CLUSTER / "env.sh").read_text()
    for name in ("LANGDML_STORAGE", "LANGDML_DATA_ROOT", "LANGDML_GPUS_PER_TRIAL", "LANGDML_CACHE"):
        assert re.search(rf"^export {name}=", env, re.MULTILINE), name
    head = (CLUSTER / "head-env.sh").read_text()
    assert re.search(r"^export RAY_ADDRESS=", head, re.MULTILINE)
    assert re.search(r'^export MLFLOW_TRACKING_URI="http://\$LANGDML_HEAD_IP:', head, re.MULTILINE)


def test_sweep_flags_take_their_defaults_from_the_cluster_environment(monkeypatch):
    import argparse

    from langdml_core.runner.cli import add_arguments

    monkeypatch.setenv("LANGDML_GPUS_PER_TRIAL", "0.5")
    monkeypatch.setenv("LANGDML_CPUS_PER_TRIAL", "3")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([])
    assert (args.gpus_per_trial, args.cpus_per_trial) == (0.5, 3.0)
    assert parser.parse_args(["--gpus-per-trial", "1"]).gpus_per_trial == 1.0  # a flag still wins


SBATCH_OPTION = re.compile(r"^#SBATCH\s+(--[\w-]+)[= ]")
EDIT_OPTION = re.compile(r"^#\s*EDIT:\s*([\w-]+):")


def edit_markers() -> set[tuple[str, str]]:
    """(file, key) for every value marked `# EDIT:` under cluster/ (file relative to cluster/): a yaml key or
    shell variable on the marked line, or an sbatch option (`#SBATCH --partition=...`, which takes no
    trailing comment) right under a `# EDIT: partition: ...` line naming it."""
    found = set()
    for path in SCRIPTS + YAMLS:
        name = str(path.relative_to(CLUSTER))
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            option = SBATCH_OPTION.match(line)
            if option and number and (above := EDIT_OPTION.match(lines[number - 1])):
                assert f"--{above.group(1)}" == option.group(1), (
                    f"{name}: `{lines[number - 1]}` above `{line}`"
                )
                found.add((name, option.group(1)))
            if not EDIT.search(line) or line.lstrip().startswith("#"):  # prose, or an sbatch option's note
                continue
            code = EDIT.split(line)[0]
            match = re.match(r"\s*(?:export\s+)?-?\s*([A-Za-z_][\w.]*)\s*[:=]", code)
            assert match, f"{name}: an EDIT marker must sit on a `key: value` or `NAME=value` line: {line}"
            found.add((name, match.group(1)))
        for number, line in enumerate(lines):  # an `# EDIT: option:` note must sit on an #SBATCH line
            if EDIT_OPTION.match(line):
                assert number + 1 < len(lines) and SBATCH_OPTION.match(lines[number + 1]), f"{name}: {line}"
    return found


def readme_edit_tables() -> set[tuple[str, str]]:
    """(file, key) from the README's "What you must edit" tables (rows `| file | `key` | ... |`)."""
    sections = re.split(r"^#+ ", README.read_text(), flags=re.MULTILINE)
    rows = set()
    for section in sections:
        if section.startswith("What you must edit"):
            rows |= set(
                re.findall(
                    r"^\|\s*`?([\w./-]+\.(?:yaml|sh|sbatch))`?\s*\|\s*`([\w.-]+)`", section, re.MULTILINE
                )
            )
    return rows


def test_every_edit_marker_is_documented_and_every_documented_value_is_marked():
    markers = edit_markers()
    assert len({key for file, key in markers if file.endswith(".sbatch")}) >= 8, markers  # SLURM
    assert len(markers) >= 13, markers  # AWS: region, AMI, bucket, ...; SLURM: partition, gres, ...
    assert readme_edit_tables() == markers


def test_readme_cost_table_is_the_one_computed_from_the_sweep():
    result = subprocess.run(
        [sys.executable, str(CLUSTER / "cost.py")], capture_output=True, text=True, timeout=120, check=True
    )
    table = result.stdout.strip()
    assert "81 trials" in table and "estimate" in table.lower()
    assert table in README.read_text(), "rerun `python cluster/cost.py` and paste its output into the README"


def test_readme_has_the_commands():
    text = README.read_text()
    for command in (
        "ray up cluster/gpu.yaml",
        "ray submit --tmux cluster/gpu.yaml sweeps/table1.py",
        "ray attach cluster/gpu.yaml",
        "ray dashboard cluster/gpu.yaml",
        "ray down cluster/gpu.yaml",
        "KubeRay",
    ):
        assert command in text, command


# ---- SLURM: cluster/slurm/sweep.sbatch (the real run: cluster/slurm/local_slurm_test.sh, on demand) -------
def sbatch_commands() -> list[str]:
    """The script's command lines, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", SBATCH.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def sbatch_directives() -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH\s+(--[\w-]+)=(\S+)$", SBATCH.read_text(), re.MULTILINE))


def test_sbatch_directives_come_before_the_first_command_and_ask_for_one_ray_node_per_slurm_node():
    lines = SBATCH.read_text().splitlines()
    first_command = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    # sbatch reads #SBATCH lines only up to the first command, and takes no comment after an option
    assert all(i < first_command for i, line in enumerate(lines) if line.startswith("#SBATCH"))
    assert all(re.fullmatch(r"#SBATCH --[\w-]+=\S+", line) for line in lines if line.startswith("#SBATCH"))
    directives = sbatch_directives()
    assert directives["--ntasks-per-node"] == "1"  # one `ray start` per node (Ray's SLURM guide)
    assert re.fullmatch(r"gpu:\d+", directives["--gres"])
    assert re.fullmatch(r"\d+(-\d+)?(:\d+){0,2}|\d+-\d+:\d+:\d+", directives["--time"])
    assert directives["--signal"].startswith("B:TERM@")  # the driver stops cleanly before the time limit


def test_sbatch_starts_the_ray_head_then_workers_with_srun_as_rays_guide_does():
    commands = sbatch_commands()
    text = "\n".join(commands)
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in text
    head = [c for c in commands if c.startswith("srun ") and "ray start --head" in c]
    workers = [c for c in commands if c.startswith("srun ") and "ray start --address" in c]
    assert len(head) == 1 and len(workers) == 1, (head, workers)
    for command in head + workers:
        assert "--nodes=1 --ntasks=1" in command and "-w " in command and "--block &" in command
        assert '--num-gpus="$gpus_per_node"' in command and '--num-cpus="$cpus_per_node"' in command
        assert '--cpus-per-task="$cpus_per_node"' in command  # srun of SLURM 22.05+ does not inherit it
    assert '-w "$head_node"' in head[0] and '--port="$ray_port"' in head[0]
    assert "--dashboard-host=127.0.0.1" in head[0]
    assert '-w "$node"' in workers[0] and '--address="$RAY_ADDRESS"' in workers[0]
    # the head listens before any worker starts; the workers go on every node but the first
    wait = text.index("/dev/tcp/$head_ip/$ray_port")
    assert text.index("ray start --head") < wait < text.index("ray start --address")
    assert 'for node in "${nodes[@]:1}"' in text
    assert "RAY_AUTH_MODE=token" in text  # other users of the cluster cannot join or drive this Ray


def test_sbatch_runs_mlflow_on_shared_storage_then_the_sweep_then_stops_everything():
    commands = sbatch_commands()
    text = "\n".join(commands)
    assert 'mlflow_dir="$LANGDML_SHARED/mlflow"' in text
    assert 'backend="${LANGDML_MLFLOW_BACKEND:-sqlite:///$mlflow_dir/mlflow.db}"' in text
    server = next(c for c in commands if "mlflow server" in c)
    assert '--backend-store-uri "$backend"' in server and "--workers 1" in server  # one writer
    assert 'export LANGDML_DATA_ROOT LANGDML_STORAGE="$LANGDML_SHARED/ray"' in text
    assert 'export MLFLOW_TRACKING_URI="http://$head_ip:$mlflow_port"' in text
    sweep = next(c for c in commands if c.startswith("python -u "))
    assert sweep == 'python -u "$sweep" --address "$RAY_ADDRESS" --results "$results" "$@" &'
    assert text.index("ray start --head") < text.index("mlflow server") < text.index("python -u ")
    assert "trap cleanup EXIT" in text and text.index("trap cleanup EXIT") < text.index("ray start --head")
    cleanup = SBATCH.read_text().split("cleanup() {", 1)[1].split("\n}\n", 1)[0]
    assert 'kill -TERM "${ray_pids[$i]}"' in cleanup and 'kill -TERM -- "-$mlflow_pid"' in cleanup
    assert "ray stop" not in SBATCH.read_text()  # it would stop every Ray of the user on the node


def test_readme_documents_the_slurm_path_and_where_each_database_lives():
    text = README.read_text()
    for needle in (
        "sbatch cluster/slurm/sweep.sbatch sweeps/table1.py",
        "cluster/slurm/local_slurm_test.sh",
        "## Where the tracking database lives",
        "$LANGDML_SHARED/mlflow/mlflow.db",
        "$LANGDML_BUCKET/mlflow-db/mlflow.db",
        "postgresql://",
        "cluster/postgres_test.sh",
    ):
        assert needle in text, needle


# ---- the head's MLflow database and the bucket (AWS path) ---------------------------------------------------
def head_env(tmp_path, **extra) -> dict[str, str]:
    """The environment of a head whose bucket is a local folder (as cluster/local-env.sh sets it)."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "LANGDML_BUCKET": str(tmp_path / "bucket"),
        "LANGDML_MLFLOW_DIR": str(tmp_path / "head"),
        **extra,
    }
    env.pop("LANGDML_MLFLOW_BACKEND", None)
    return env


def mlflow_db(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CLUSTER / "mlflow_db.sh"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_heads_mlflow_database_is_backed_up_to_the_bucket_and_restored_on_a_new_head(tmp_path):
    import sqlite3

    env = head_env(tmp_path)
    assert "none in the bucket yet" in mlflow_db(env, "restore").stdout  # first `ray up`: a new database
    assert "nothing to back up" in mlflow_db(env, "backup").stdout
    head = tmp_path / "head"
    head.mkdir()
    with sqlite3.connect(head / "mlflow.db") as db:
        db.execute("CREATE TABLE runs (id TEXT)")
        db.executemany("INSERT INTO runs VALUES (?)", [("a",), ("b",)])
    done = mlflow_db(env, "backup")
    assert done.returncode == 0 and "backed up" in done.stdout, done.stderr
    copy = tmp_path / "bucket" / "mlflow-db" / "mlflow.db"
    assert copy.is_file() and not list(copy.parent.glob("*.partial"))

    shutil.rmtree(head)  # `ray down`: the head's disk is gone; `ray up`: a fresh head
    done = mlflow_db(env, "restore")
    assert done.returncode == 0 and "restored" in done.stdout, done.stderr
    with sqlite3.connect(head / "mlflow.db") as db:
        assert sorted(row[0] for row in db.execute("SELECT id FROM runs")) == ["a", "b"]
    with sqlite3.connect(head / "mlflow.db") as db:  # a head that has a database keeps it
        db.execute("INSERT INTO runs VALUES ('c')")
    assert "kept" in mlflow_db(env, "restore").stdout
    with sqlite3.connect(head / "mlflow.db") as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 3

    outside = mlflow_db({**env, "LANGDML_MLFLOW_BACKEND": "postgresql://u:secret@db/langdml"}, "backup")
    assert "outside the cluster" in outside.stdout and "secret" not in outside.stdout


def test_ray_stop_on_the_head_backs_the_database_up_first(tmp_path):
    """`ray down` runs `ray stop` on the head through ~/.bashrc; head-env.sh's hook backs up, then stops."""
    import sqlite3

    stub = tmp_path / "stub"
    stub.mkdir()
    calls = tmp_path / "ray-calls"
    (stub / "ray").write_text(f'#!/bin/sh\necho "ray $*" >> {calls}\n')  # never the real `ray stop` here
    (stub / "ray").chmod(0o755)
    env = head_env(tmp_path)
    env["PATH"] = f"{stub}{os.pathsep}{env['PATH']}"
    (tmp_path / "head").mkdir()
    with sqlite3.connect(tmp_path / "head" / "mlflow.db") as db:
        db.execute("CREATE TABLE runs (id TEXT)")
    script = f"source {CLUSTER / 'head-env.sh'}; ray status; ray stop"
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert calls.read_text() == "ray status\nray stop\n"
    assert done.stdout.count("backed up") == 1  # by `ray stop` only
    assert (tmp_path / "bucket" / "mlflow-db" / "mlflow.db").is_file()


# ---- the fake multi-node GPU cluster (slow) ---------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pids_using(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (our own temp dir: nothing else names it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def stop_cluster(head: subprocess.Popen, temp_dir: str) -> list[int]:
    """SIGTERM the head's process group, then SIGKILL anything still running from our temp dir."""
    if head.poll() is None:
        try:
            os.killpg(head.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            head.wait(timeout=10)  # gcs_server can outlive a SIGTERM: then SIGKILL
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while pids_using(temp_dir) and time.monotonic() < deadline:
        time.sleep(1)
    left = pids_using(temp_dir)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def alive_nodes(dashboard: str) -> list[dict]:
    from ray.util.state import list_nodes

    return [
        {"id": n.node_id, "head": n.is_head_node, "gpus": n.resources_total.get("GPU", 0)}
        for n in list_nodes(
            address=dashboard, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False
        )
    ]


@pytest.mark.slow
def test_fake_gpu_cluster_autoscales_a_submitted_sweep_onto_gpu_workers(tmp_path):
    from ray._private.services import get_node_ip_address
    from ray.job_submission import JobStatus, JobSubmissionClient

    temp_dir = f"/tmp/rc{secrets.token_hex(4)}"  # short: Ray's socket paths must stay under 107 bytes
    gcs_port, dashboard_port = free_port(), free_port()
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    config = load("fake-gpu.yaml")
    config["provider"]["gcs_address"] = f"{get_node_ip_address()}:{gcs_port}"
    autoscaling = tmp_path / "fake-gpu.yaml"
    autoscaling.write_text(yaml.safe_dump(config))

    storage, results = tmp_path / "storage", tmp_path / "results"
    # What cluster/env.sh and head-env.sh export on a real cluster; the job inherits it from the head.
    env = {
        **os.environ,
        "RAY_FAKE_CLUSTER": "1",
        "RAY_AUTH_MODE": "disabled",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "LANGDML_STORAGE": str(storage),
        "LANGDML_DATA_ROOT": str(tmp_path / "data"),
        "LANGDML_GPUS_PER_TRIAL": "1",
        "LANGDML_CPUS_PER_TRIAL": "1",
        "RAY_DEDUP_LOGS": "0",
    }
    env.pop("RAY_ADDRESS", None)
    head_command = [RAY, "start", "--head", "--block", f"--port={gcs_port}", f"--temp-dir={temp_dir}"]
    head_command += ["--num-cpus=0", "--num-gpus=0", f"--autoscaling-config={autoscaling}"]
    head_command += [
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
    ]
    # Ray's other fixed default ports would collide with any other Ray on this box (e.g. a parallel test).
    for flag in PORT_FLAGS:
        head_command.append(f"--{flag}={free_port()}")
    head = subprocess.Popen(
        head_command,
        env=env,
        stdout=open(tmp_path / "head.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        client = None
        deadline = time.monotonic() + 120
        while client is None:
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the head did not come up in 120 s"
            try:
                client = JobSubmissionClient(dashboard)
            except Exception:
                time.sleep(2)
        while not (before := alive_nodes(dashboard)):  # the state API lags the dashboard's start
            assert time.monotonic() < deadline, "the head never appeared in the state API"
            time.sleep(1)
        assert [(n["head"], n["gpus"]) for n in before] == [(True, 0)]  # the head alone, without GPUs
        head_id = before[0]["id"]

        # What `ray submit` does on a real cluster, minus SSH: the driver runs on the head, as a plain script.
        submit = [RAY, "job", "submit", "--address", dashboard, "--submission-id", JOB, "--no-wait", "--"]
        submit += [sys.executable, str(TINY), "--results", str(results), "--set", "run.epochs=1"]
        deadline = time.monotonic() + 90
        while (
            done := subprocess.run(submit, env=env, capture_output=True, text=True, timeout=120)
        ).returncode:
            # the head's job agent registers a few seconds after the dashboard answers
            assert "No available agent" in done.stderr and time.monotonic() < deadline, done.stderr[-3000:]
            time.sleep(3)

        most_gpu_workers, seen = 0, []
        deadline = time.monotonic() + 420
        while not (status := client.get_job_status(JOB)).is_terminal():
            assert time.monotonic() < deadline, client.get_job_logs(JOB)[-3000:]
            nodes = alive_nodes(dashboard)
            gpu_workers = [n for n in nodes if not n["head"] and n["gpus"] > 0]
            most_gpu_workers = max(most_gpu_workers, len(gpu_workers))
            seen.append(len(nodes))
            time.sleep(2)
        logs = client.get_job_logs(JOB)
        errors = [f.read_text()[-1500:] for f in storage.glob("tiny/*/error.txt")]
        assert status == JobStatus.SUCCEEDED, logs[-3000:] + "\n".join(errors)
        print(
            f"alive node counts seen while the job ran: {seen}; most GPU workers at once: {most_gpu_workers}"
        )
        assert seen and seen[0] <= 2 and most_gpu_workers >= 2  # grew from the head alone to 2+ GPU workers

        # Where each trial ran (placement.json, written by the trainable) and when: its MLflow run's times.
        placements = {}
        for path in sorted((storage / "tiny").glob("*/placement.json")):
            placement = json.loads(path.read_text())
            placements[placement["node_id"], tuple(placement["gpu_ids"])] = path.parent.name
        assert len(placements) == 4, placements  # four trials, four distinct (node, GPU) pairs
        assert head_id not in {node for node, _ in placements}  # no trial on the head
        assert all(len(gpus) == 1 for _, gpus in placements)
        assert len({node for node, _ in placements}) >= 2

        from mlflow import MlflowClient

        tracking = MlflowClient(env["MLFLOW_TRACKING_URI"])
        experiment = tracking.get_experiment_by_name("tiny").experiment_id
        runs = [r for r in tracking.search_runs([experiment]) if "langdml.node_id" in r.data.tags]
        spans = [
            (
                r.data.tags["langdml.node_id"],
                r.data.tags["langdml.gpu_ids"],
                r.info.start_time,
                r.info.end_time,
            )
            for r in runs
        ]
        assert len(spans) == 4 and all(r.info.status == "FINISHED" for r in runs)
        overlapping = [
            (a, b) for i, a in enumerate(spans) for b in spans[i + 1 :] if a[2] < b[3] and b[2] < a[3]
        ]
        assert overlapping, f"no two trials ran at the same time: {spans}"
        for a, b in overlapping:
            assert a[:2] != b[:2], f"concurrent trials shared a GPU: {a} {b}"
        assert (results / "tiny" / "table.md").is_file()
    finally:
        left = stop_cluster(head, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not left, f"processes still running after the head stopped: {left}"


# ---- the sweep's record outlives the cluster (slow) --------------------------------------------------------
def stop_head(head: Path) -> None:
    """What the head's end does to mlflow_server.sh's processes: its server and backup loop (process groups)."""
    for name in ("server", "backup"):
        pidfile = head / f"{name}.pid"
        if not pidfile.is_file():
            continue
        group = int(pidfile.read_text())
        pidfile.unlink()
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):  # MLflow's job workers take a while
            try:
                os.killpg(group, sig)
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline:
                    os.killpg(group, 0)
                    time.sleep(0.5)
            except ProcessLookupError:
                break


@pytest.mark.slow
def test_a_sweeps_record_outlives_tearing_the_head_down_and_bringing_it_up_again(tmp_path):
    """The AWS path on this machine (a folder as the bucket): the head's MLflow server as mlflow_server.sh
    starts it, a sweep logging through it, `ray down` (the head-env.sh hook backs the database up, the server
    stops, the head's disk is deleted), `ray up` on a fresh head (restored from the bucket), and `langdml
    report` from the new head's MLflow: every trial FINISHED, every epoch there."""
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = head_env(
        tmp_path,
        LANGDML_MLFLOW_HOST="127.0.0.1",
        LANGDML_MLFLOW_PORT=str(port),
        LANGDML_MLFLOW_BACKUP_MINUTES="60",
        MLFLOW_TRACKING_URI=uri,
        LANGDML_STORAGE=str(tmp_path / "bucket" / "ray"),
        LANGDML_RAY_TEMP_DIR=f"/tmp/rb{secrets.token_hex(4)}",
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        RAY_DEDUP_LOGS="0",
    )
    env.pop("RAY_ADDRESS", None)
    first, second = tmp_path / "head", tmp_path / "head-2"
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "ray").write_text("#!/bin/sh\nexit 0\n")  # `ray stop` itself would stop every Ray of this user
    (stub / "ray").chmod(0o755)

    def up(head: Path) -> str:
        done = subprocess.run(
            [str(CLUSTER / "mlflow_server.sh")],
            env={**env, "LANGDML_MLFLOW_DIR": str(head)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    try:
        assert "none in the bucket yet" in up(first)
        sweep = subprocess.run(
            [sys.executable, str(TINY), "--seeds", "1", "--results", str(tmp_path / "results")],  # 2 trials
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
        down = subprocess.run(  # `ray down`: `ray stop` on the head through its shell
            ["bash", "-c", f"source {CLUSTER / 'head-env.sh'}; ray stop"],
            env={**env, "PATH": f"{stub}{os.pathsep}{env['PATH']}", "LANGDML_MLFLOW_DIR": str(first)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert down.returncode == 0 and "backed up" in down.stdout, down.stdout + down.stderr
    finally:
        stop_head(first)
        for pid in pids_using(env["LANGDML_RAY_TEMP_DIR"]):  # the embedded Ray's leftovers, if any
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(env["LANGDML_RAY_TEMP_DIR"], ignore_errors=True)
    shutil.rmtree(first)  # the head and its disk are gone
    shutil.rmtree(tmp_path / "results")  # and so are the driver's reports

    try:
        assert "restored" in up(second)
        check = subprocess.run(
            [
                sys.executable,
                str(CHECK_TRACKING),
                uri,
                "--sweep",
                str(TINY),
                "--seeds",
                "1",
                "--results",
                str(tmp_path / "report"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        stop_head(second)
    print(check.stdout)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("MLflow FINISHED, epochs [1, 2]; report TERMINATED, 2 epochs") == 2
    assert (tmp_path / "report" / "tiny" / "table.md").is_file()

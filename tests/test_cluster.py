"""cluster/: Ray's own schema accepts every yaml, every EDIT marker is documented, the README's cost table is
the one computed from the sweep, and a fake multi-node GPU cluster autoscales a submitted sweep onto GPU
workers (slow tier)."""

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
    assert (CLUSTER / "local_up_submit_down.sh").stat().st_mode & 0o111


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
    assert "mlflow server" in server and '"sqlite:///$dir/mlflow.db"' in server
    assert '--artifacts-destination "$LANGDML_BUCKET/mlflow-artifacts"' in server
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


def edit_markers() -> dict[str, str]:
    """{key: file} for every line marked `# EDIT:` in cluster/ (yaml key or shell variable before it)."""
    found = {}
    for path in sorted(CLUSTER.iterdir()):
        if path.suffix not in (".yaml", ".sh"):
            continue
        for line in path.read_text().splitlines():
            if not EDIT.search(line) or line.lstrip().startswith("#"):  # prose mentioning the marker
                continue
            code = EDIT.split(line)[0]
            match = re.match(r"\s*(?:export\s+)?-?\s*([A-Za-z_][\w.]*)\s*[:=]", code)
            assert match, (
                f"{path.name}: an EDIT marker must sit on a `key: value` or `NAME=value` line: {line}"
            )
            found[match.group(1)] = path.name
    return found


def readme_edit_table() -> dict[str, str]:
    """{key: file} from the README's "What you must edit" table (rows `| file | `key` | ... |`)."""
    text = README.read_text()
    section = text.split("## What you must edit", 1)[1].split("\n## ", 1)[0]
    return {
        key: file
        for file, key in re.findall(
            r"^\|\s*`?([\w.-]+\.(?:yaml|sh))`?\s*\|\s*`([\w.]+)`", section, re.MULTILINE
        )
    }


def test_every_edit_marker_is_documented_and_every_documented_value_is_marked():
    markers = edit_markers()
    assert len(markers) >= 5, markers  # region, AMI, bucket, ... (see README)
    assert readme_edit_table() == markers


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

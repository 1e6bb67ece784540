"""The sweep service end to end on a local Ray: trials, MLflow runs, reports, GPU packing, resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from langdml_core.errors import ConfigError
from langdml_core.runner.sweep_file import load_sweep, trial_name

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "tiny_sweep.py"
SWEEPS = sorted((ROOT / "sweeps").glob("*.py"))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_sweep_file_lists_its_declared_trial_count(path):
    sweep = load_sweep(path)
    assert sweep.declared_trials is not None, f"{path.name}: docstring must state 'Trials: N'"
    assert len(sweep.trials) == sweep.declared_trials
    assert len({t.name for t in sweep.trials}) == len(sweep.trials)  # names identify trials
    source = path.read_text()
    assert "import torch" not in source and "__main__" in source


def test_trial_names_and_overrides():
    assert (
        trial_name(
            {
                "data.name": "cub200",
                "loss.name": "multisimilarity",
                "language.guidance": "plg",
                "language.omega": 7.5,
                "run.seed": 0,
            }
        )
        == "cub200/msim/plg/omega=7.5/seed=0"
    )
    sweep = load_sweep(TINY, overrides=["loss.name=margin"], seeds=3)
    assert [t.name for t in sweep.trials] == ["seed=0", "seed=1", "seed=2"]
    assert all(t.config["loss.name"] == "margin" for t in sweep.trials)


def test_bad_sweep_override_is_one_sentence():
    from langdml_core.errors import ConfigError

    with pytest.raises(ConfigError, match="optim.lrr"):
        load_sweep(TINY, overrides=["optim.lrr=1"])


def ray_temp(tmp_path) -> str:
    """A short per-test Ray temp dir (Ray's socket paths must stay under 107 bytes)."""
    import zlib

    return f"/tmp/rt{zlib.crc32(str(tmp_path).encode())}"


def run_sweep(tmp_path, *flags, timeout=600, wait=True):
    env = {**os.environ, "LANGDML_RAY_TEMP_DIR": ray_temp(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_DEDUP_LOGS", None)  # langdml's own default is under test
    env["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = "1"  # the tiny trials last seconds
    cmd = [sys.executable, str(TINY), "--results", str(tmp_path / "results"), *flags]
    if not wait:
        return subprocess.Popen(
            cmd,
            env=env,
            stdout=open(tmp_path / "driver.log", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def torch_version():
    from importlib import metadata

    return metadata.version("torch")


def mlflow_runs(tmp_path):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    return client, client.search_runs([experiment.experiment_id]) if experiment else []


def trial_dirs(tmp_path, storage=None):
    storage = storage or tmp_path / "results" / "ray"
    return sorted(d for d in (storage / "tiny").glob("*_*") if d.is_dir() and d.name[0] != ".")


def stop_ray(tmp_path):
    """Stop only the Ray processes this test started (by their temp dir), never a blanket `ray stop`."""
    temp = ray_temp(tmp_path)
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if temp in (proc / "cmdline").read_bytes().decode(errors="ignore"):
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
    import shutil

    shutil.rmtree(temp, ignore_errors=True)


def first_test_image():
    """The demo's first test image, as the tiny sweep's trials evaluated it (data.name=demo)."""
    from langdml_core.config import DataConfig
    from langdml_core.data import build_dataset

    return build_dataset(DataConfig(name="demo")).test.load(0)


def reloaded_embedding(run, tracking_uri, image):
    import torch

    from langdml_core.runner.logged_model import MODEL_URI_TAG, load_embedding_model

    model, transform = load_embedding_model(run.data.tags[MODEL_URI_TAG], tracking_uri)
    with torch.no_grad():
        return model(transform(image)[None])[0]


@pytest.mark.slow
def test_sweep_runs_tracks_reports_and_replays_and_a_fresh_sweep_is_a_new_record(tmp_path):
    try:
        result = run_sweep(tmp_path, "--max-concurrent", "2")
    finally:
        stop_ray(tmp_path)
    assert "langdml ui" in result.stdout
    # Ray's console names every trial as the sweep does, shows progress columns, dumps no config, and each
    # worker line says which trial it is (none folded away as "[repeated 2x]")
    console = result.stdout + result.stderr
    for trial in load_sweep(TINY).trials:
        assert f"Trial {trial.name} started with configuration" in console
        assert f"[{trial.name}] epoch 2  train/dml_loss=" in console
    assert "trainable_" not in console and "repeated" not in console
    assert "data.name" not in console and "optim.batch_size" not in console
    header = [line for line in console.splitlines() if "Trial name" in line][-1]  # the final table
    assert header.split()[1:-1] == [
        "Trial", "name", "status", "trial", "iter", "total", "time", "(s)", "epoch", "test/recall_at_1",
        "test/map_at_r", "train/dml_loss",
    ]  # fmt: skip
    client, runs = mlflow_runs(tmp_path)
    parents = [r for r in runs if r.data.tags.get("langdml.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    # the parent run is the sweep's record: its report as the description, the report's files as artifacts
    assert "| multisimilarity | 2 | 0 |" in parents[0].data.tags["mlflow.note.content"]
    assert {a.path for a in client.list_artifacts(parents[0].info.run_id, "report")} >= {
        "report/table.md",
        "report/curves.png",
        "report/trials.parquet",
    }
    assert sorted(r.data.tags["langdml.trial"] for r in children) == sorted(
        t.name for t in load_sweep(TINY).trials
    )
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        history = client.get_metric_history(run.info.run_id, "test/recall_at_1")
        assert [m.step for m in history] == [1, 2]
        assert "pid" not in run.data.metrics and "timestamp" not in run.data.metrics
        # how the metrics were computed: tags, not metrics
        assert not [k for k in run.data.metrics if k.endswith(("/knn_k", "/nmi_seed", "/excluded_queries"))]
        assert run.data.tags["eval.test/nmi_seed"] == "0" and int(run.data.tags["eval.test/knn_k"]) > 0
        # provenance: the code (commit read on the driver) and the packages the trial ran with
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert run.data.tags["mlflow.source.git.commit"] == head.stdout.strip()
        assert run.data.tags["provenance.git_dirty"] in ("true", "false")
        assert run.data.tags["mlflow.source.name"] == "tests/fixtures/tiny_sweep.py"  # the UI's Source column
        assert run.data.tags["provenance.torch"] == torch_version()
        # the protocol summary beside the per-epoch history, with the epoch each protocol picked
        best = max(history, key=lambda m: (m.value, -m.step))
        assert run.data.metrics["best_test_epoch/test/recall_at_1"] == best.value
        assert run.data.metrics["best_test_epoch/epoch"] == best.step
        assert run.data.metrics["last/epoch"] == 2
        assert run.data.params["loss.name"] in ("multisimilarity", "margin")
        # the final test embeddings travel with the run: the last epoch's metrics recomputed from them
        from langdml_core.evaluate import EMBEDDINGS_FILE, load_embeddings, retrieval_metrics

        local = client.download_artifacts(run.info.run_id, EMBEDDINGS_FILE, str(tmp_path / run.info.run_id))
        embeddings, labels, _ = load_embeddings(local)
        assert retrieval_metrics(embeddings, labels, ks=[1])["recall_at_1"] == history[-1].value
        # what it trained and tested on: each split a dataset input (the UI's Dataset column)
        inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
        assert sorted(i.dataset.name for i in inputs) == ["demo-test", "demo-train"]
        # the network, loaded back from MLflow, embeds a test image as the trial's last evaluation did
        assert reloaded_embedding(run, client.tracking_uri, first_test_image()).allclose(
            embeddings[0], atol=1e-5
        )
        # and the node's CPU and memory while it trained
        assert "system/cpu_utilization_percentage" in run.data.metrics

    # The report from Tune's files equals the one rebuilt from MLflow.
    table_md = tmp_path / "results" / "tiny" / "table.md"
    from_tune = table_md.read_text()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "langdml_core.runner.cli",
            "report",
            str(TINY),
            "--results",
            str(tmp_path / "results"),
        ],
        check=True,
        capture_output=True,
    )
    assert table_md.read_text() == from_tune
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "results" / "tiny" / "trials.parquet")
    assert len(frame) == 4 and set(frame["status"]) == {"TERMINATED"}

    # `langdml ui` serves the sweep's experiment and its trial runs by name (MLflow REST API), on loopback only.
    check_ui_serves_runs(tmp_path, sorted(r.data.tags["langdml.trial"] for r in children))

    # One trial replayed locally without Ray gives the sweep's numbers.
    name = "margin/seed=1"
    out = tmp_path / "replay"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "langdml_core.runner.cli",
            "train",
            "--sweep",
            str(TINY),
            "--trial",
            name,
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    replay = json.loads((out / "metrics.json").read_text())["final"]
    swept = frame[frame["trial"] == name].iloc[0]
    assert replay["test/recall_at_1"] == pytest.approx(swept["last/test/recall_at_1"], abs=1e-12)

    # The same sweep afresh on a new --storage, one seed, 5 epochs, on a local Ray with 2 (fake) GPUs: a new
    # record beside the first, one checkpoint home per trial, one GPU reserved per trial without being asked.
    try:
        again = run_sweep(
            tmp_path, "--seeds", "1", "--storage", str(tmp_path / "other"), "--local-gpus", "2",
            "--set", "run.epochs=5",
        )  # fmt: skip
    finally:
        stop_ray(tmp_path)
    check_a_fresh_sweep_gets_new_runs_and_leaves_the_old_ones_alone(tmp_path, runs)
    dirs = trial_dirs(tmp_path, tmp_path / "other")
    check_one_checkpoint_home_and_at_most_two_checkpoints(dirs, epochs=5)
    assert "Reserving 1 GPU per trial (2 in the cluster" in again.stdout
    placements = [json.loads((d / "placement.json").read_text()) for d in dirs]
    assert len(placements) == 2 and all(len(p["gpu_ids"]) == 1 for p in placements)


def check_a_fresh_sweep_gets_new_runs_and_leaves_the_old_ones_alone(tmp_path, first_runs):
    client, runs = mlflow_runs(tmp_path)
    parents = sorted(
        (r for r in runs if r.data.tags.get("langdml.role") == "parent"), key=lambda r: r.info.start_time
    )
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    old = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert {r.info.run_id: r.data.metrics for r in old} == {
        r.info.run_id: r.data.metrics for r in first_runs if r.data.tags.get("mlflow.parentRunId")
    }
    new = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[1].info.run_id]
    assert sorted(r.data.tags["langdml.trial"] for r in new) == ["margin/seed=0", "msim/seed=0"]
    for run in new:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "test/recall_at_1")] == [
            1,
            2,
            3,
            4,
            5,
        ]


def check_one_checkpoint_home_and_at_most_two_checkpoints(dirs, epochs):
    import torch

    assert len(dirs) == 2
    for d in dirs:
        assert not list(d.glob("checkpoint_epoch*.pt"))  # no second copy of the state beside Tune's
        folders = sorted(d.glob("checkpoint_0*"))
        assert len(folders) == 2, folders  # the newest two of the epochs
        newest = folders[-1] / "checkpoint.pt"
        assert torch.load(newest, weights_only=True)["epoch"] == epochs
        total = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        one = newest.stat().st_size
        kept = sum((d / name).stat().st_size for name in ("test_embeddings.npz", "retrieval_examples.jpg"))
        print(
            f"{d.name}: {total} bytes in storage, one checkpoint {one} bytes, embeddings and examples {kept}"
        )
        # two checkpoints, the final test embeddings and examples image, and small text files (logs, metrics)
        assert total - kept < 2 * one + 512 * 1024


def check_ui_serves_runs(tmp_path, trial_names):
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ui = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "langdml_core.runner.cli",
            "ui",
            "--results",
            str(tmp_path / "results"),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(base + "/health", timeout=2).read()
                break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("langdml ui did not answer /health within 120 s")
        got = json.loads(
            urllib.request.urlopen(
                base + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=tiny", timeout=10
            ).read()
        )
        experiment_id = got["experiment"]["experiment_id"]
        request = urllib.request.Request(
            base + "/api/2.0/mlflow/runs/search",
            method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps({"experiment_ids": [experiment_id], "max_results": 100}).encode(),
        )
        runs = json.loads(urllib.request.urlopen(request, timeout=10).read())["runs"]
        names = sorted(r["info"]["run_name"] for r in runs if r["info"]["run_name"] != "tiny")
        assert names == trial_names
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)


@pytest.mark.slow
def test_fake_gpus_pack_two_trials_per_gpu_and_run_on_cpu(tmp_path):
    try:
        run_sweep(
            tmp_path,
            "--local-gpus",
            "4",
            "--gpus-per-trial",
            "0.5",
            "--cpus-per-trial",
            "0.5",
            "--max-concurrent",
            "4",
            "--set",
            "run.epochs=1",
        )
    finally:
        stop_ray(tmp_path)
    placements = [json.loads((d / "placement.json").read_text()) for d in trial_dirs(tmp_path)]
    assert len(placements) == 4
    assert all(len(p["gpu_ids"]) == 1 for p in placements)
    ids = [p["gpu_ids"][0] for p in placements]
    assert all(ids.count(i) <= 2 for i in ids)  # at most two trials per GPU id
    metrics = [json.loads((d / "metrics.json").read_text()) for d in trial_dirs(tmp_path)]
    assert all("test/recall_at_1" in m["final"] for m in metrics)  # they ran (on CPU: no CUDA here)


def test_trials_start_seed_by_seed_in_the_sweeps_order_within_a_seed():
    """Tune gets the grid seed-major: every setup's first seed before any setup's second, so the demo's two
    PLG trials (one computes the pseudo-labels, the other would wait on its lock) do not start side by side."""
    from langdml_core.runner.state import execution_order, trials_table

    demo = trials_table(load_sweep(ROOT / "sweeps" / "demo.py").trials)
    assert list(demo)[:4] == ["none/seed=0", "none/seed=1", "none/seed=2", "elg/seed=0"]
    order = execution_order(demo)
    assert order[:6] == ["none/seed=0", "elg/seed=0", "plg/seed=0", "none/seed=1", "elg/seed=1", "plg/seed=1"]
    assert sorted(order) == sorted(demo) and [demo[n]["varied"]["run.seed"] for n in order] == sorted(
        demo[n]["varied"]["run.seed"] for n in order
    )
    seeds = trials_table(load_sweep(ROOT / "sweeps" / "demo_seeds.py").trials)  # seeds 3-7: their own ranks
    assert execution_order(seeds)[:3] == ["none/seed=3", "elg/seed=3", "plg/seed=3"]
    unseeded = trials_table(load_sweep(TINY, overrides=["run.seed=3"]).trials)  # no swept seed: as declared
    assert execution_order(unseeded) == list(unseeded)


def test_resume_refuses_tune_state_of_other_trials_and_names_the_difference(tmp_path):
    from langdml_core.runner.state import load_trials, store_trials, trials_table

    full = load_sweep(TINY)
    smoke = load_sweep(TINY, smoke=True)
    path = str(tmp_path / "ray" / "tiny")
    store_trials(path, trials_table(full.trials), resume=False)
    assert load_trials(path) == trials_table(full.trials)  # JSON's types: it compares equal after a reload
    store_trials(path, trials_table(full.trials), resume=True)  # the same sweep resumes
    with pytest.raises(
        ConfigError, match=r"holds other trials than this sweep \(trials only in the stored st"
    ):
        store_trials(path, trials_table(smoke.trials), resume=True)  # e.g. a --smoke run's state
    longer = load_sweep(TINY, overrides=["run.epochs=3"])
    with pytest.raises(ConfigError, match=r"\(trial margin/seed=0 run\.epochs: stored 2, sweep 3\)"):
        store_trials(path, trials_table(longer.trials), resume=True)
    edited = load_sweep(TINY, overrides=["optim.lr=0.01"])
    with pytest.raises(ConfigError, match=r"optim\.lr: stored 0\.0001, sweep 0\.01"):
        store_trials(path, trials_table(edited.trials), resume=True)
    fewer = trials_table(full.trials[:2])
    with pytest.raises(ConfigError, match=r"only in the stored state: \['margin/seed=0', 'margin/seed=1'\]"):
        store_trials(path, fewer, resume=True)
    assert load_trials(path) == trials_table(full.trials)  # a refusal changes nothing
    store_trials(path, fewer, resume=False)  # a new experiment records its own trials
    assert load_trials(path) == fewer


def test_resume_accepts_state_written_before_a_config_key_was_added_while_it_holds_its_default(tmp_path):
    """A sweep started by an older langdml resumes after an upgrade that added a key (its default is what
    the stored trials ran with); a non-default value of that key is still another experiment."""
    from langdml_core.runner.state import load_trials, store_trials, trials_table

    path = str(tmp_path / "ray" / "tiny")
    current = trials_table(load_sweep(TINY).trials)
    older = {
        name: {**t, "config": {k: v for k, v in t["config"].items() if k != "run.init_seed"}}
        for name, t in current.items()
    }
    store_trials(path, older, resume=False)
    store_trials(path, current, resume=True)
    assert load_trials(path) == current
    store_trials(path, older, resume=False)
    moved = trials_table(load_sweep(TINY, overrides=["run.init_seed=5"]).trials)
    with pytest.raises(ConfigError, match=r"run\.init_seed: stored None, sweep 5"):
        store_trials(path, moved, resume=True)


def test_gpus_are_reserved_per_trial_by_default_and_unreserved_cuda_is_refused():
    from langdml_core.runner.resources import gpus_per_trial, trial_device

    trials = load_sweep(TINY).trials
    assert gpus_per_trial(None, trials, cluster_gpus=2) == 1.0  # GPUs in the cluster: one per trial
    assert gpus_per_trial(None, trials, cluster_gpus=0) == 0.0
    assert gpus_per_trial(0.5, trials, cluster_gpus=2) == 0.5  # a flag wins
    assert gpus_per_trial(0, trials, cluster_gpus=2) == 0.0  # asked: trials then run on the CPU
    cuda = load_sweep(TINY, overrides=["run.device=cuda"]).trials
    with pytest.raises(ConfigError) as refused:
        gpus_per_trial(0, cuda, cluster_gpus=2)
    assert str(refused.value) == (
        "run.device='cuda' but --gpus-per-trial is 0 (the cluster has 2 GPUs): a trial would use a GPU no one "
        "reserved for it; pass --gpus-per-trial 1 (or 0.5 to share one), or use run.device=auto."
    )
    # inside a trial: no GPU reserved -> CPU, whatever the node has; a reserved one -> CUDA as asked
    assert trial_device("auto", []) == "cpu"
    assert trial_device("auto", ["0"]) == "auto" and trial_device("cuda:0", ["1"]) == "cuda:0"


def finished_and_running(tmp_path, epochs=3):
    done, running = [], []
    for d in trial_dirs(tmp_path):
        try:
            history = json.loads((d / "metrics.json").read_text())["history"]
        except (OSError, ValueError):  # not there yet, or caught mid-copy by Tune's sync
            continue
        (done if len(history) == epochs else running).append(d)
    return done, running


KILL_POINTS = {
    # before any trial: the sweep's MLflow parent run exists, no trial has started
    "before_trials": lambda tmp_path: (
        (tmp_path / "results" / "mlflow.db").exists() and not trial_dirs(tmp_path)
    ),
    # mid-sweep: one trial finished, one RUNNING, two PENDING (max-concurrent 1)
    "mid_sweep": lambda tmp_path: all(finished_and_running(tmp_path)),
    # during the final report: every trial finished, the table not written yet
    "before_report": lambda tmp_path: (
        len(finished_and_running(tmp_path)[0]) == 4
        and not (tmp_path / "results" / "tiny" / "table.md").exists()
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_killed_driver_resumes_without_rerunning_finished_trials(tmp_path, point):
    # one trial at a time where the kill point needs a sweep caught between trials, else two
    concurrent = "1" if point == "mid_sweep" else "2"
    driver = run_sweep(tmp_path, "--max-concurrent", concurrent, "--set", "run.epochs=3", wait=False)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not KILL_POINTS[point](tmp_path):
            time.sleep(0.05)
        if not KILL_POINTS[point](tmp_path):
            pytest.fail(f"the sweep did not reach {point}: " + (tmp_path / "driver.log").read_text()[-2000:])
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        # what a finished trial wrote: a re-run epoch would change it (its train/seconds, at least); Ray may copy
        # the trial's files again on restore, so their mtimes are no evidence either way
        finished_first = {d.name: (d / "metrics.json").read_text() for d in finished_and_running(tmp_path)[0]}
    finally:
        stop_ray(tmp_path)
    try:
        resumed = run_sweep(tmp_path, "--max-concurrent", concurrent, "--set", "run.epochs=3", "--resume")
    finally:
        stop_ray(tmp_path)
    assert "| margin |" in resumed.stdout  # the report was written by the resumed driver
    for name, text in finished_first.items():  # not re-run
        assert (tmp_path / "results" / "ray" / "tiny" / name / "metrics.json").read_text() == text
    client, runs = mlflow_runs(tmp_path)
    assert len([r for r in runs if r.data.tags.get("langdml.role") == "parent"]) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    names = [r.data.tags["langdml.trial"] for r in children]
    assert sorted(names) == sorted(set(names)) and len(names) == 4  # exactly one run per trial
    assert all(r.info.status == "FINISHED" for r in children)
    for run in children:  # each epoch logged once, even for the trial that was running at the kill
        assert [m.step for m in client.get_metric_history(run.info.run_id, "epoch")] == [1, 2, 3]
    assert len(trial_dirs(tmp_path)) == 4


@pytest.mark.slow
def test_ctrl_c_mid_sweep_exits_non_zero_and_records_what_did_not_finish(tmp_path):
    driver = run_sweep(tmp_path, "--max-concurrent", "1", "--set", "run.epochs=3", wait=False)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not KILL_POINTS["mid_sweep"](tmp_path):
            time.sleep(0.05)
        os.kill(driver.pid, signal.SIGINT)  # Ctrl-C in the driver's terminal
        code = driver.wait(timeout=300)
    finally:
        stop_ray(tmp_path)
    log = (tmp_path / "driver.log").read_text()
    assert code == 130, log[-3000:]
    assert "did not finish" in log and "rerun with --resume" in log
    client, runs = mlflow_runs(tmp_path)
    parent = next(r for r in runs if r.data.tags.get("langdml.role") == "parent")
    assert parent.info.status == "KILLED"  # not FINISHED: the record says no more than happened
    table = (tmp_path / "results" / "tiny" / "table.md").read_text()
    assert "## Not finished" in table and "| failed |" in table
    assert "| margin | 0 | 0 |" in table or "`margin/seed=1`" in table


GOLDEN = ROOT / "tests" / "golden" / "table1_resolved.jsonl"


def golden_diffs(golden: list[dict], current: list[dict]) -> list[str]:
    """Every difference between two resolved trial lists, one line each (name, key: old -> new)."""
    if [t["name"] for t in golden] != [t["name"] for t in current]:
        return ["the trial names or their order differ"]
    diffs = []
    for want, got in zip(golden, current, strict=True):
        for part in ("config", "sources"):
            for key in sorted(set(want[part]) | set(got[part])):
                if want[part].get(key) != got[part].get(key):
                    diffs.append(
                        f"{got['name']} {part} {key}: {want[part].get(key)!r} -> {got[part].get(key)!r}"
                    )
    return diffs


def test_table1_resolved_configs_match_the_golden_file():
    """Any change to a Table 1 trial (a default, an omega, a batch size, a value's source) must show up as a
    reviewed diff. Regenerate with:
    python sweeps/table1.py --list --resolve | head -n -1 > tests/golden/table1_resolved.jsonl"""
    golden = [json.loads(line) for line in GOLDEN.read_text().splitlines()]
    current = [
        {"name": t.name, "config": t.config, "sources": t.sources}
        for t in load_sweep(ROOT / "sweeps" / "table1.py").trials
    ]
    assert len(current) == len(golden) == 81
    assert not golden_diffs(golden, current), "\n".join(golden_diffs(golden, current)[:20])
    changed = json.loads(json.dumps(current))  # the check catches one changed value or source
    changed[0]["config"]["run.epochs"] += 1
    assert golden_diffs(golden, changed) == [f"{changed[0]['name']} config run.epochs: 200 -> 201"]
    changed[0]["config"]["run.epochs"] -= 1
    changed[3]["sources"]["language.omega"] = "a guess"
    assert len(golden_diffs(golden, changed)) == 1


def test_overrides_reach_derive_and_win_over_derived_values():
    sop = load_sweep(ROOT / "sweeps" / "table1.py", overrides=["data.name=sop"])
    assert len(sop.trials) == 27 and {t.config["optim.batch_size"] for t in sop.trials} == {108}
    fixed = load_sweep(ROOT / "sweeps" / "table1.py", overrides=["data.name=cub200", "language.omega=3"])
    assert {t.config["language.omega"] for t in fixed.trials} == {3.0}
    assert {t.sources["language.omega"] for t in fixed.trials} == {"--set override"}
    # a dotted sub-key lands inside the recipe's loss.kwargs instead of being replaced by it
    sub = load_sweep(
        ROOT / "sweeps" / "table1.py", overrides=["data.name=cub200", "loss.kwargs.feat_distill_weight=7"]
    )
    s2sd = next(t for t in sub.trials if t.config["loss.name"] == "s2sd")
    assert s2sd.config["loss.kwargs"]["feat_distill_weight"] == 7 and s2sd.config["loss.kwargs"]["pool_aggr"]
    assert s2sd.sources["loss.kwargs"].endswith("| feat_distill_weight: --set override")


def test_keep_drops_grid_points_and_the_count_follows():
    search = load_sweep(ROOT / "sweeps" / "demo_search.py")
    none = [t for t in search.trials if t.config["language.guidance"] == "none"]
    guided = [t for t in search.trials if t.config["language.guidance"] != "none"]
    assert len(none) == 2 and len(guided) == 24  # 2 seeds; 2 guidance x 3 omegas x 2 temperatures x 2 seeds
    assert {t.config["data.val_classes"] for t in search.trials} == {12}


def test_a_second_driver_on_the_same_sweep_state_is_refused(tmp_path):
    from langdml_core.runner import state as state_module

    path = str(tmp_path / "ray" / "tiny")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from langdml_core.runner.state import hold_driver_lock; "
            f"hold_driver_lock('tiny', {path!r}); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(ConfigError) as refused:
            state_module.hold_driver_lock("tiny", path)
        assert str(refused.value) == (
            f"Sweep 'tiny' is being run by another driver on {path}; wait for it to end, or pass --storage DIR "
            "(and --results DIR) to run a separate copy."
        )
    finally:
        holder.kill()
        holder.wait()
    state_module.hold_driver_lock("tiny", path)  # the first driver is gone: its lock went with it
    assert path in state_module._held_locks
    state_module._held_locks.pop(path).release()


def test_drivers_creating_one_experiment_at_once_all_get_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = (
        "import time, sys; from langdml_core.runner.tracking_store import client; from langdml_core.runner.tracking import _create_experiment; c = client(sys.argv[1]); "
        "time.sleep(max(0, float(sys.argv[2]) - time.time())); print(_create_experiment(c, sys.argv[1], 'race'))"
    )
    start = str(time.time() + 12)  # all at once, after every process has imported MLflow
    procs = [
        subprocess.Popen([sys.executable, "-c", code, uri, start], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert len(set(outputs)) == 1 and outputs[0]


def test_a_syntax_error_or_a_raising_sweep_file_is_one_sentence_with_its_line(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text(
        'def get_config():\n    return {"data.name": "demo"\n\ndef get_sweep():\n    return {}\n'
    )
    with pytest.raises(ConfigError) as err:
        load_sweep(broken)
    assert str(err.value).startswith(
        "Sweep file broken.py has a syntax error at line 2: '{' was never closed;"
    )
    raising = tmp_path / "raising.py"
    raising.write_text(
        'def get_config():\n    return {}\n\ndef get_sweep():\n    return {"run.seed": [1 / 0]}\n'
    )
    with pytest.raises(ConfigError) as err:
        load_sweep(raising)
    assert str(err.value) == (
        "Sweep file raising.py failed in get_sweep() (line 5): ZeroDivisionError: division by zero."
    )
    importing = tmp_path / "importing.py"
    importing.write_text("import no_such_module_here\n")
    with pytest.raises(ConfigError, match=r"failed importing it \(line 1\): ModuleNotFoundError: No module"):
        load_sweep(importing)


def test_a_grid_beyond_the_cap_is_refused_unless_allowed(tmp_path):
    from langdml_core.runner.sweep_file import MAX_GRID

    big = tmp_path / "big.py"
    big.write_text(
        'def get_config():\n    return {"data.name": "demo"}\n\n'
        "def get_sweep():\n    return {'run.seed': list(range(SEEDS)), 'optim.lr': [i * 1e-6 for i in range(1, 101)]}\n"
    )
    big.write_text("SEEDS = 101\n" + big.read_text())
    assert 101 * 100 > MAX_GRID
    with pytest.raises(ConfigError) as err:
        load_sweep(big)
    assert str(err.value) == (
        "big.py: get_sweep() spans 10,100 grid points, more than 10,000 (each is a Tune trial and an MLflow "
        "run); sweep fewer values, or pass --allow-large-grid if you mean it."
    )
    small = tmp_path / "small.py"  # expanding 10,100 trials takes ~20 s: the flag is checked on a smaller cap
    small.write_text(big.read_text().replace("SEEDS = 101", "SEEDS = 3"))
    with pytest.raises(ConfigError, match="spans 300 grid points, more than 299"):
        load_sweep(small, max_grid=299)
    assert len(load_sweep(small, max_grid=None).trials) == 300
    listed = subprocess.run(
        [sys.executable, "-m", "langdml_core.runner.cli", "sweep", str(big), "--list"],
        capture_output=True,
        text=True,
    )
    assert listed.returncode == 2 and listed.stderr.strip() == f"error: {err.value}"


def test_cpus_per_trial_beyond_a_node_or_not_positive_is_refused(tmp_path, capsys):
    from langdml_core.runner.resources import check_trial_cpus

    nodes = [{"Resources": {"CPU": 2.0}}, {"Resources": {"CPU": 8.0, "GPU": 1.0}}]
    check_trial_cpus(8, local=False, nodes=nodes)  # fits the larger node
    with pytest.raises(ConfigError) as err:
        check_trial_cpus(4, local=True, nodes=nodes[:1])
    assert str(err.value) == (
        "--cpus-per-trial 4 is more than this machine's local Ray has (2 CPUs); no trial could ever start: pass "
        "--cpus-per-trial 2 or less."
    )
    check_trial_cpus(16, local=False, nodes=nodes)  # a cluster may grow: a warning, not a refusal
    assert "trials wait until the autoscaler adds a larger node" in capsys.readouterr().err
    refused = subprocess.run(
        [sys.executable, "-m", "langdml_core.runner.cli", "sweep", str(TINY), "--cpus-per-trial", "0"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().endswith(
        "argument --cpus-per-trial: '0' must be > 0 (each trial needs a share of a CPU), e.g. 1"
    )


def test_a_local_sweep_asking_more_cpus_than_the_machine_has_ends_at_once_without_a_run(tmp_path):
    env = {**os.environ, "LANGDML_RAY_TEMP_DIR": ray_temp(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    cpus = (os.cpu_count() or 1) + 2
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(TINY), "--results", str(tmp_path / "results"), "--cpus-per-trial", str(cpus)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"error: --cpus-per-trial {cpus} is more than this machine's local Ray has" in done.stderr
    assert time.monotonic() - started < 120  # was: every trial PENDING for ever
    assert mlflow_runs(tmp_path)[1] == []  # refused before the sweep's parent run was opened


def test_the_demo_trains_the_recipe_its_validation_sweeps_chose_under():
    """sweeps/demo.py takes omega and temperature from sweeps/demo_search.py, its training budget from
    sweeps/demo_budget3.py, its images per class per batch from sweeps/demo_spc.py and its training crop from
    sweeps/demo_crop.py, all run on a validation split: a change of the demo's recipe that the search did not run
    under (or a budget, batch composition or crop other than the one chosen) would make the table's protocol line
    untrue."""
    demo = load_sweep(ROOT / "sweeps" / "demo.py")
    search = load_sweep(ROOT / "sweeps" / "demo_search.py")
    split_keys = {"data.val_classes", "data.test_images_per_class"}  # the search's validation split itself
    tried = {"language.guidance", "language.omega", "language.temperature", "run.seed"}
    for trial in demo.trials:
        # its search twin: the same guidance and, for a guided trial, the same omega and temperature
        same = ("language.guidance",) + (
            () if trial.config["language.guidance"] == "none" else tuple(tried - {"run.seed"})
        )
        twin = next(t for t in search.trials if all(t.config[k] == trial.config[k] for k in same))
        differing = {
            k for k in set(trial.config) | set(twin.config) if trial.config.get(k) != twin.config.get(k)
        }
        assert differing <= split_keys | tried, differing
    # the budget: the setup marked chosen in the committed selection, one of those demo_budget3.py ran
    selected = (ROOT / "results" / "demo_budget3" / "selected.md").read_text().splitlines()
    (row,) = [line.split("|") for line in selected if line.startswith("| ") and "**yes**" in line]
    chosen = (int(row[1]), int(row[2]))
    budget = load_sweep(ROOT / "sweeps" / "demo_budget3.py")
    assert chosen in {
        (t.config["data.train_images_per_class"], t.config["run.epochs"]) for t in budget.trials
    }
    assert {(t.config["data.train_images_per_class"], t.config["run.epochs"]) for t in demo.trials} == {
        chosen
    }
    # the images of each class per batch and the training crop: the values marked chosen by the rules of
    # sweeps/demo_spc.py and sweeps/demo_crop.py
    for sweep, key, kind in (
        ("demo_spc", "data.samples_per_class", int),
        ("demo_crop", "data.crop_scale", float),
    ):
        selected = (ROOT / "results" / sweep / "selected.md").read_text().splitlines()
        (row,) = [line.split("|") for line in selected if line.startswith("| ") and "**yes**" in line]
        assert {t.config[key] for t in demo.trials} == {kind(row[1])}, sweep

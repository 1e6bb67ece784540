"""Every sweep file runs with --smoke. The paper sweeps run against fixture trees in the official
CUB200/CARS196/SOP layouts and tiny models under the real Hub ids (tests/paper_world.py), so their own
dataset loaders, backbones, PLG classifier and text encoders run end to end."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import paper_world
import pytest
from test_sweeps import ray_temp, stop_ray

from langdml_core.config import DataConfig
from langdml_core.data import build_dataset
from langdml_core.runner.sweep_file import load_sweep, smoke_trials

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "sweeps").glob("*.py"))
CORE = {"table1", "backbones", "language_models", "demo", "demo_search"}
"""Smoke runs in `make test` (CI): between them every dataset x loss x guidance, every backbone, every text
encoder, the embedded default and the search. The other sweep files vary knobs of the same code paths (their
resolved configs are checked by the fast tests); their smoke runs are in `make test-all` (about 15 min more)."""
SMOKE_RUNS = [p if p.stem in CORE else pytest.param(p, marks=pytest.mark.extended) for p in SWEEPS]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return paper_world.build(tmp_path_factory.mktemp("paper_world"))


@pytest.fixture(scope="module")
def cluster(world, tmp_path_factory):
    """One Ray head for every smoke run (as sweeps share a cluster), started with the fixture world's
    environment (trial workers inherit the head's, not the driver's), and one results folder (one MLflow
    database with an experiment per sweep): each run skips Ray's and MLflow's start-up."""
    home = tmp_path_factory.mktemp("smoke")
    temp = ray_temp(home)
    # token authentication, as cluster/slurm/sweep.sbatch runs a shared cluster: the drivers carry the token
    token = secrets.token_hex(32)
    env = {**os.environ, **world, "RAY_DEDUP_LOGS": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    env.pop("RAY_ADDRESS", None)
    ray = Path(sys.executable).with_name("ray")
    try:
        subprocess.run(
            [str(ray), "start", "--head", "--num-cpus", "2", "--num-gpus", "0", "--temp-dir", temp,
             "--include-dashboard", "false", "--disable-usage-stats", "--port", "0", "--node-ip-address", "127.0.0.1"],
            env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        address = (Path(temp) / "ray_current_cluster").read_text().split()[0]
        yield {**env, "RAY_ADDRESS": address}, home / "results"
    finally:
        stop_ray(home)


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_smoke_trials_run_every_swept_value_once_at_least(path):
    full, smoke = load_sweep(path), load_sweep(path, smoke=True)
    assert 0 < len(smoke.trials) <= 6
    if full.search is not None:  # a search: 2 proposals and 1 retrain seed, smoke settings in both phases
        assert [t.name for t in smoke.trials] == ["search/sample=1", "search/sample=2", "final/seed=0"]
        assert all(t.config["run.epochs"] == 1 for t in smoke.trials)
        return
    for key in full.trials[0].varied:
        assert {repr(t.varied[key]) for t in smoke.trials} == {repr(t.varied[key]) for t in full.trials}
    assert all(t.config["run.epochs"] == 1 and t.config["optim.batch_size"] == 16 for t in smoke.trials)
    assert smoke_trials(full.trials) == [t for t in full.trials if t.name in {s.name for s in smoke.trials}]


@pytest.mark.slow
@pytest.mark.parametrize("path", SMOKE_RUNS, ids=lambda p: p.stem)
def test_sweep_file_smoke_run(path, world, cluster, monkeypatch):
    env, results = cluster
    command = [sys.executable, str(path), "--smoke", "--set", "data.check_counts=false"]
    sweep = load_sweep(path, smoke=True)
    if sweep.search is not None:  # the fixture's 10 training classes: 2 for validation, 8 for a batch
        command += ["--set", "data.val_classes=2"]
    done = subprocess.run(
        [*command, "--results", str(results), "--max-concurrent", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(sweep.name)
    runs = client.search_runs([experiment.experiment_id])
    children = {r.data.tags["langdml.trial"]: r for r in runs if r.data.tags.get("mlflow.parentRunId")}
    if sweep.search is not None:  # proposals are named by their sampled values
        searched = [name for name in children if name.startswith("search/omega=")]
        assert len(searched) == sweep.search.samples and "final/seed=0" in children
        assert (results / sweep.name / "best.json").is_file() and (
            results / sweep.name / "search.png"
        ).is_file()
        trials = [t for t in sweep.trials if t.name.startswith("final/")]
    else:
        assert sorted(children) == sorted(t.name for t in sweep.trials)
        trials = sweep.trials
    for trial in trials:
        run = children[trial.name]
        assert run.info.status == "FINISHED"
        assert run.data.params["data.name"] == trial.config["data.name"]
        assert "test/recall_at_1" in run.data.metrics
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.json", "metrics.json"} <= artifacts
        if trial.config["language.guidance"] == "plg":
            assert "plg_pseudo_labels.csv" in artifacts
    for trial_dir in (results / "ray").glob(f"{sweep.name}*/*"):  # PLG ran on the fixture's own classes
        if (trial_dir / "plg_pseudo_labels.csv").is_file():
            config = json.loads((trial_dir / "config.json").read_text())["data"]
            monkeypatch.setenv("LANGDML_DATA_ROOT", world["LANGDML_DATA_ROOT"])
            dataset = build_dataset(DataConfig(**config))
            rows = (trial_dir / "plg_pseudo_labels.csv").read_text().splitlines()[1:]
            assert {row.split(",")[1] for row in rows} == set(dataset.train.class_texts)
    assert (results / sweep.name / "table.md").is_file() and (results / sweep.name / "curves.png").is_file()

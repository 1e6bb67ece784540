"""Faults a multi-day sweep meets: a dead trial worker, a NaN, a lost tracking server, a corrupt checkpoint.

Fast tests drive the pieces directly; the slow ones run the tiny sweep on a local Ray and inject the fault.
"""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_sweeps import TINY, finished_and_running, mlflow_runs, ray_temp, run_sweep, stop_ray, trial_dirs

from langdml_core.runner.records import TrialRecord
from langdml_core.runner.sweep_file import load_sweep
from langdml_core.runner.tracking import parent_run, sync_records
from langdml_core.runner.tracking_store import redact
from langdml_core.runner.trial_run import TrialRun

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sqlite_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def record(name, epochs, status="TERMINATED"):
    history = [
        {"epoch": e, "test/recall_at_1": 0.1 * e, "timestamp": 1e9 + e, "config/trial/name": name}
        for e in epochs
    ]
    return TrialRecord(name, {"run.seed": 0}, {"run.seed": 0}, status, history=history)


# ---- tracking ------------------------------------------------------------------------------------------------
def test_unreachable_tracking_server_never_stops_training(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with caplog.at_level(logging.WARNING, logger="langdml_core.runner.tracking"):
        run = TrialRun(uri, "1", "parent", "msim/seed=0")
        run.log_params({"optim.lr": 1e-5})
        for epoch in (1, 2):
            run.log_epoch({"epoch": epoch, "test/recall_at_1": 0.5})
        assert run.end("FINISHED") is False and run.run_id is None
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1 and "--sync-mlflow" in warnings[0]  # one warning per outage, not per call


def test_rows_that_could_not_be_sent_are_sent_once_when_the_server_answers_again(tmp_path):
    from mlflow.exceptions import MlflowException

    uri = sqlite_uri(tmp_path)
    experiment_id, parent = parent_run(uri, "faults")
    run = TrialRun(uri, experiment_id, parent, "a")
    real, calls = run.client.log_batch, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MlflowException("connection refused")
        return real(*args, **kwargs)

    run.client.log_batch = flaky
    run.log_epoch({"epoch": 1, "test/recall_at_1": 0.25})  # lost
    run.log_epoch({"epoch": 2, "test/recall_at_1": 0.5})  # sends 1 and 2
    run.log_epoch({"epoch": 2, "test/recall_at_1": 0.5})  # a replayed epoch: not twice
    assert run.end("FINISHED")
    history = run.client.get_metric_history(run.run_id, "test/recall_at_1")
    assert [(m.step, m.value) for m in history] == [(1, 0.25), (2, 0.5)]
    assert run.client.get_run(run.run_id).info.status == "FINISHED"


def test_sync_backfills_missing_epochs_and_ends_runs_without_duplicates(tmp_path):
    uri = sqlite_uri(tmp_path)
    sweep = load_sweep(TINY)
    experiment_id, parent = parent_run(uri, sweep.name)
    half = TrialRun(uri, experiment_id, parent, "a")  # the server died after epoch 1 of trial a
    half.log_epoch({"epoch": 1, "test/recall_at_1": 0.1})
    records = [record("a", [1, 2, 3]), record("b", [1, 2]), record("c", [1], status="ERROR")]
    ids = (experiment_id, parent)  # as the sweep's Tune state keeps them
    first = sync_records(uri, sweep, records, ids)
    again = sync_records(uri, sweep, records, ids)
    assert first == {"runs": 3, "epochs_sent": 5} and again == {"runs": 3, "epochs_sent": 0}
    client, runs = mlflow_runs_at(uri, sweep.name)
    children = {r.data.tags["langdml.trial"]: r for r in runs if r.data.tags.get("mlflow.parentRunId")}
    assert sorted(children) == ["a", "b", "c"] and children["a"].info.run_id == half.run_id
    assert {n: r.info.status for n, r in children.items()} == {
        "a": "FINISHED",
        "b": "FINISHED",
        "c": "FAILED",
    }
    steps = [m.step for m in client.get_metric_history(children["a"].info.run_id, "test/recall_at_1")]
    assert steps == [1, 2, 3]
    assert "timestamp" not in children["a"].data.metrics  # Tune's bookkeeping is not a metric


def mlflow_runs_at(uri, name):
    import mlflow

    client = mlflow.MlflowClient(uri)
    return client, client.search_runs([client.get_experiment_by_name(name).experiment_id])


def test_credentials_in_a_tracking_uri_are_never_printed():
    assert redact("https://alice:s3cret@mlflow.example.org:5000") == "https://***@mlflow.example.org:5000"
    assert redact("sqlite:////home/alice/results/mlflow.db") == "sqlite:////home/alice/results/mlflow.db"


def test_report_from_a_dead_tracking_server_is_one_sentence_at_once(tmp_path):
    """`langdml report` reads the sweep's record from MLflow: a server that is not there is one sentence (its
    password hidden) within seconds, not minutes of MLflow's HTTP retries and chained tracebacks."""
    uri = f"http://alice:s3cret@127.0.0.1:{free_port()}"
    for extra in ([], ["--sync-mlflow"]):
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "langdml_core.runner.cli", "report", str(TINY), "--tracking-uri", uri,
             "--results", str(tmp_path), *extra],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert time.monotonic() - start < 60
        assert done.returncode != 0 and "Traceback" not in done.stderr
        message = done.stderr.strip().splitlines()
        assert len(message) == 1 and "MLflow tracking server http://***@127.0.0.1" in message[0], done.stderr
        assert "is unreachable" in message[0] and "s3cret" not in done.stdout + done.stderr


# ---- checkpoints -----------------------------------------------------------------------------------------------
def test_corrupt_tune_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    from ray import tune

    from langdml_core.runner.tune import CHECKPOINT_FILE, resume_from_tune

    for index, epoch in ((0, 1), (1, 2)):
        folder = tmp_path / f"checkpoint_{index:06d}"
        folder.mkdir()
        torch.save({"epoch": epoch}, folder / CHECKPOINT_FILE)
    newest = tmp_path / "checkpoint_000001" / CHECKPOINT_FILE
    newest.write_bytes(newest.read_bytes()[:40])  # truncated, as by a node lost mid-upload
    with caplog.at_level(logging.WARNING, logger="langdml_core.runner.tune"):
        state = resume_from_tune(tune.Checkpoint.from_directory(str(tmp_path / "checkpoint_000001")))
    assert state == {"epoch": 1}
    assert any(
        "unreadable" in r.getMessage() and "checkpoint_000001" in r.getMessage() for r in caplog.records
    )


# ---- end to end on a local Ray (slow) ----------------------------------------------------------------------------
ONE_TRIAL = ["--set", "loss.name=margin", "--set", "run.seed=1", "--set", "run.epochs=3"]
ONE_TRIAL += ["--set", "run.max_steps_per_epoch=6"]


@pytest.mark.slow
def test_killed_trial_worker_is_retried_from_its_checkpoint_with_the_same_run_and_numbers(tmp_path):
    driver = run_sweep(tmp_path, *ONE_TRIAL, wait=False)
    killed = None
    try:
        deadline = time.time() + 300
        while killed is None and time.time() < deadline:  # SIGKILL the worker in the middle of the trial
            done, running = finished_and_running(tmp_path)  # Tune syncs trial directories at each report
            for d in running:
                try:
                    killed = json.loads((d / "placement.json").read_text())["pid"]
                except (OSError, ValueError):  # not synced yet
                    continue
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        assert killed is not None, (tmp_path / "driver.log").read_text()[-3000:]
        assert driver.wait(timeout=600) == 0, (tmp_path / "driver.log").read_text()[-3000:]
    finally:
        stop_ray(tmp_path)
    (trial,) = trial_dirs(tmp_path)
    assert json.loads((trial / "placement.json").read_text())["pid"] != killed  # a new worker finished it
    history = json.loads((trial / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    client, runs = mlflow_runs(tmp_path)
    (child,) = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert child.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(child.info.run_id, "epoch")] == [1, 2, 3]

    # The same trial without the fault, replayed without Ray: the same numbers.
    out = tmp_path / "uninterrupted"
    flags = [f for f in ONE_TRIAL if f not in ("loss.name=margin", "run.seed=1")]
    flags = [f for i, f in enumerate(flags) if not (f == "--set" and flags[i + 1] == "--set")]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "langdml_core.runner.cli",
            "train",
            "--sweep",
            str(TINY),
            "--trial",
            "margin/seed=1",
        ]
        + [*flags, "--set", "run.threads=1", "--out", str(out)],  # the trial's CPU share: same float order
        check=True,
        capture_output=True,
    )
    want = json.loads((out / "metrics.json").read_text())["final"]
    got = json.loads((trial / "metrics.json").read_text())["final"]
    for key in ("test/recall_at_1", "test/map_at_r", "test/nmi", "train/dml_loss"):
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


@pytest.mark.slow
def test_a_nan_trial_or_a_bad_size_fails_alone_and_is_not_retried(tmp_path):
    sweep = tmp_path / "nan_sweep.py"
    source = TINY.read_text().replace(
        'return {"loss.name": ["multisimilarity", "margin"], "run.seed": [0, 1]}',
        'return {"optim.lr": [1e-4, 1e30, 2e-4]}\n\n\n'
        "def derive(trial):  # 5000 neighbours of 1,152 test images: refused inside the trial\n"
        '    return {"eval.ks": [1, 5000]} if trial["optim.lr"] == 2e-4 else {}',
    )
    assert "1e30" in source and "5000" in source
    sweep.write_text(source.replace("Trials: 4", "Trials: 3"))
    env = {**os.environ, "LANGDML_RAY_TEMP_DIR": ray_temp(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    try:
        done = subprocess.run(
            [sys.executable, str(sweep), "--results", str(tmp_path / "results"), "--set", "run.epochs=2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        stop_ray(tmp_path)
    assert done.returncode == 1  # the sweep finished, and says a trial failed
    table = (tmp_path / "results" / "tiny" / "table.md").read_text()
    rows = {
        line.split("|")[1].strip(): line.split("|")
        for line in table.splitlines()[4:]
        if line.startswith("| ")
    }
    assert rows["0.0001"][3].strip() == "0" and rows["1e+30"][3].strip() == "1"  # failed column
    assert rows["0.0002"][3].strip() == "1"
    client, runs = mlflow_runs(tmp_path)
    children = {r.data.tags["langdml.trial"]: r for r in runs if r.data.tags.get("mlflow.parentRunId")}
    assert children["lr=0.0001"].info.status == "FINISHED"
    bad = children["lr=1e+30"]
    assert (
        bad.info.status == "FAILED" and "Non-finite loss at epoch 1, step" in bad.data.tags["langdml.error"]
    )
    assert "last finite values" in bad.data.tags["langdml.error"]
    too_many = children["lr=0.0002"]
    assert too_many.info.status == "FAILED"
    assert "eval.ks=[1, 5000] asks for 5000 neighbours" in too_many.data.tags["langdml.error"]
    failed_dirs = [d.name for d in trial_dirs(tmp_path) if (d / "failed.json").is_file()]
    # each failed trial trained (or was refused) once; Tune's retries stopped at once (was: 3 tries each)
    said = done.stdout + done.stderr
    assert "Non-finite loss" in said and said.count("not retried: it would recur") >= 2
    assert said.count("asks for 5000 neighbours") >= 2  # the first try and the refused retry
    # a trial's directory is <trial name>_<Tune's random id>_<index>; the id may itself hold "1e" (it did: 461eb)
    assert sorted(name.rsplit("_", 2)[0] for name in failed_dirs) == ["lr=0.0002", "lr=1e_30"], failed_dirs

    # the report reads the same table from MLflow and from Tune's files (no stray error column)
    results = tmp_path / "results"
    places = ["--storage", str(results / "ray"), "--tracking-uri", f"sqlite:///{results / 'mlflow.db'}"]
    frames = {}
    for source in ("mlflow", "tune"):
        out = tmp_path / f"from_{source}"
        cmd = [sys.executable, "-m", "langdml_core.runner.cli", "report", str(sweep), "--source", source]
        report = subprocess.run(
            [*cmd, "--results", str(out), *places], env=env, capture_output=True, text=True
        )
        assert report.returncode == 0, report.stderr[-3000:]
        frames[source] = pd.read_parquet(out / "tiny" / "trials.parquet").drop(columns="error")
        assert (out / "tiny" / "table.md").read_text() == table, source
    pd.testing.assert_frame_equal(frames["mlflow"], frames["tune"])


@pytest.mark.slow
def test_tracking_server_lost_mid_sweep_then_backfilled_without_duplicates(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # this test's own client fails fast
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    db = tmp_path / "server" / "mlflow.db"
    db.parent.mkdir()

    def start_server():
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "langdml_core.runner.cli",
                "ui",
                "--tracking-uri",
                f"sqlite:///{db}",
                "--port",
                str(port),
            ],
            cwd=db.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(uri + "/health", timeout=2).read()
                return server
            except OSError:
                time.sleep(0.5)
        pytest.fail("the MLflow server did not start")

    server = start_server()
    flags = ["--tracking-uri", uri, "--max-concurrent", "1", "--set", "run.epochs=3"]
    driver = run_sweep(tmp_path, *flags, wait=False)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:  # lose the server once the first trial has logged an epoch
            if any((d / "metrics.json").is_file() for d in trial_dirs(tmp_path)):
                break
            time.sleep(0.2)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        code = driver.wait(timeout=900)
    finally:
        stop_ray(tmp_path)
    log_text = (tmp_path / "driver.log").read_text()
    assert code == 0, log_text[-3000:]  # every trial trained to the end
    assert "unreachable" in log_text and "--sync-mlflow" in log_text

    server = start_server()
    try:
        for _ in range(2):  # syncing twice must not duplicate anything
            subprocess.run(
                [sys.executable, "-m", "langdml_core.runner.cli", "report", str(TINY), "--sync-mlflow"]
                + ["--tracking-uri", uri, "--results", str(tmp_path / "results")],
                check=True,
                capture_output=True,
            )
        import mlflow

        client = mlflow.MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
        steps = {
            r.info.run_id: [m.step for m in client.get_metric_history(r.info.run_id, "epoch")] for r in runs
        }
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    names = [r.data.tags["langdml.trial"] for r in children]
    assert sorted(names) == sorted(t.name for t in load_sweep(TINY).trials)  # one run per trial
    for run in children:
        assert run.info.status == "FINISHED"
        assert steps[run.info.run_id] == [1, 2, 3]


def test_truncated_trial_checkpoint_falls_back_and_a_failed_write_leaves_no_partial_file(tmp_path, caplog):
    from langdml_core import checkpoint

    checkpoint.save(tmp_path, 1, {"epoch": 1})
    newest = checkpoint.save(tmp_path, 2, {"epoch": 2})
    newest.write_bytes(newest.read_bytes()[:50])
    with caplog.at_level(logging.WARNING, logger="langdml_core.checkpoint"):
        assert checkpoint.load_latest(tmp_path) == {"epoch": 1}
    assert any(newest.name in r.getMessage() and "falling back" in r.getMessage() for r in caplog.records)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")  # a write that dies half-way

    with pytest.raises(RuntimeError, match="disk full"):
        checkpoint.save(tmp_path, 3, {"epoch": 3, "bad": Unpicklable()})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_epoch0001.pt",
        "checkpoint_epoch0002.pt",
    ]
    # weights-only loading: a checkpoint that would run arbitrary code when unpickled is refused, not loaded
    torch.save({"epoch": 4, "payload": ArbitraryObject()}, tmp_path / "checkpoint_epoch0004.pt")
    assert checkpoint.load_latest(tmp_path) == {"epoch": 1}


class ArbitraryObject:
    """Any pickled class instance: torch.load(weights_only=True) must not construct it."""


def test_tracking_check_sends_uri_credentials_as_basic_auth_and_never_prints_them():
    import base64
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from langdml_core.errors import TrackingError
    from langdml_core.runner.tracking_store import check_tracking

    want = "Basic " + base64.b64encode(b"alice:s3cret word").decode()

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path == "/health" and self.headers.get("Authorization") == want
            self.send_response(200 if ok else 401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        check_tracking(f"http://alice:s3cret%20word@127.0.0.1:{port}/")  # accepted: no exception
        with pytest.raises(TrackingError) as err:
            check_tracking(f"http://alice:wrong-pass@127.0.0.1:{port}")
        assert "wrong-pass" not in str(err.value) and f"http://***@127.0.0.1:{port}" in str(err.value)
    finally:
        server.shutdown()


def test_credentials_of_an_http_tracking_uri_travel_as_mlflows_variables(monkeypatch):
    """MLflow prints every ended run's link with its client's URI: an http(s) URI's password goes through
    MLFLOW_TRACKING_USERNAME/PASSWORD instead; a database URI keeps its own (SQLAlchemy reads it there)."""
    from langdml_core.runner.tracking_store import client, split_credentials

    assert split_credentials("https://alice:s3cret%20word@mlflow.example.org:5000/") == (
        "https://mlflow.example.org:5000/", "alice", "s3cret word"
    )  # fmt: skip
    for uri in ("postgresql://bob:pw@db.example.org/mlflow", "sqlite:////tmp/mlflow.db", "http://host:5000"):
        assert split_credentials(uri) == (uri, None, None)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    made = client("http://alice:s3cret@127.0.0.1:9")
    assert made.tracking_uri == "http://127.0.0.1:9"
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == (
        "alice",
        "s3cret",
    )


def test_trial_runs_left_open_or_killed_by_a_stop_end_as_tune_recorded_their_trials(tmp_path):
    """A worker killed before it could end its run (a trial stopped by ASHA, or torn down) leaves the run
    RUNNING; one that saw only Tune's stop ends it KILLED. After the sweep each gets its trial's Tune status."""
    from langdml_core.runner.tracking import close_open_trial_runs, end_run

    uri = sqlite_uri(tmp_path)
    experiment_id, parent = parent_run(uri, "tiny")
    runs = {name: TrialRun(uri, experiment_id, parent, name) for name in "abcdef"}
    end_run(uri, runs["d"].run_id, "FINISHED")  # ended by its trial: left alone
    end_run(uri, runs["e"].run_id, "KILLED")  # stopped early by the scheduler, which Tune counts as finished
    end_run(uri, runs["f"].run_id, "KILLED")  # stopped by a Ctrl-C: stays KILLED
    records = [record("a", [1]), record("b", [1], status="ERROR"), record("c", [], status="INCOMPLETE"),
               record("d", [1]), record("e", [1]), record("f", [1], status="INCOMPLETE")]  # fmt: skip
    assert close_open_trial_runs(uri, parent, records) == 4
    client, found = mlflow_runs_at(uri, "tiny")
    status = {
        r.data.tags["langdml.trial"]: r.info.status for r in found if r.data.tags.get("mlflow.parentRunId")
    }
    assert status == {
        "a": "FINISHED",
        "b": "FAILED",
        "c": "KILLED",
        "d": "FINISHED",
        "e": "FINISHED",
        "f": "KILLED",
    }
    assert close_open_trial_runs(uri, parent, records) == 0  # nothing left to change


def test_the_driver_gives_up_on_a_lost_tracking_server_in_seconds(tmp_path, monkeypatch):
    """At a sweep's end the driver ends its runs and files the report: with the server gone each is one
    warning after one request, not MLflow's ~4 minutes of retries per call (measured: 248 s)."""
    from langdml_core.runner.tracking import close_open_trial_runs, end_run, record_report

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)  # MLflow's own default retries
    uri = f"http://127.0.0.1:{free_port()}"
    report = tmp_path / "report"
    report.mkdir()
    start = time.monotonic()
    assert end_run(uri, "0" * 32, "FINISHED") is False
    assert record_report(uri, "0" * 32, load_sweep(TINY), report, "| table |") is False
    assert close_open_trial_runs(uri, "0" * 32, [record("a", [1])]) == 0
    assert time.monotonic() - start < 60


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 3 MiB tmpfs (needs the right to mount, as root in a container has; skipped otherwise)."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_tune_storage_is_one_sentence_fails_the_parent_run_and_resumes(tmp_path, tiny_filesystem):
    env = {**os.environ, "LANGDML_RAY_TEMP_DIR": ray_temp(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    cmd = [
        sys.executable,
        str(TINY),
        "--results",
        str(tmp_path / "results"),
        "--storage",
        str(tiny_filesystem),
    ]
    try:
        full = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    finally:
        stop_ray(tmp_path)
    # was: EOFError from a truncated error.pkl after 30 lines of traceback, the parent run left RUNNING
    assert full.returncode == 2, full.stdout[-2000:] + full.stderr[-2000:]
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"error: Tune's storage '{tiny_filesystem}' is full (Ray Tune failed writing its state"
    )
    assert last.endswith("free space there and rerun with --resume: finished trials keep their results.")
    client, runs = mlflow_runs(tmp_path)
    parent = next(r for r in runs if not r.data.tags.get("mlflow.parentRunId"))
    assert parent.info.status == "FAILED"

    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_filesystem)], check=True)
    try:
        resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    finally:
        stop_ray(tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    client, runs = mlflow_runs(tmp_path)
    assert len(runs) == 5 and {r.info.status for r in runs} == {
        "FINISHED"
    }  # one parent, 4 trials, no duplicate
    for run in runs:
        if run.data.tags.get("mlflow.parentRunId"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "test/recall_at_1")]
            assert steps == [1, 2]


def test_a_full_disk_under_a_new_mlflow_database_is_one_sentence_before_ray_starts(tiny_filesystem):
    from langdml_core.errors import DiskFullError
    from langdml_core.runner.tracking_store import check_tracking

    (tiny_filesystem / "filler").write_bytes(bytes(3 * 1024 * 1024 - 64 * 1024))  # leave 64 KiB
    database = tiny_filesystem / "results" / "mlflow.db"
    with pytest.raises(DiskFullError) as err:  # the driver's first check, before ray.init
        check_tracking(f"sqlite:///{database}")
    assert str(err.value) == (  # was: an SQLAlchemy traceback after Ray had started
        f"The MLflow database '{database}' cannot be created: no space left on its disk; free space there or "
        "pass --results (or --tracking-uri) elsewhere."
    )
    assert not database.exists() and not list(database.parent.glob(".mlflow.db.*.tmp"))
    (tiny_filesystem / "filler").unlink()
    check_tracking(f"sqlite:///{database}")  # space freed: created whole
    assert database.stat().st_size > 0


def test_resume_clears_the_markers_that_stopped_retries_of_a_failed_trial(tmp_path):
    from langdml_core.runner.state import FAILED_FILE, clear_failure_markers

    for trial in ("lr=1e_30_00000", "lr=0.0001_00001"):
        (tmp_path / trial).mkdir()
    marker = tmp_path / "lr=1e_30_00000" / FAILED_FILE
    marker.write_text('{"error": "Non-finite loss"}')
    (tmp_path / "basic-variant-state.json").write_text("{}")  # files beside the trial folders stay
    assert clear_failure_markers(str(tmp_path)) == [str(marker)]
    assert not marker.exists() and (tmp_path / "basic-variant-state.json").exists()
    assert clear_failure_markers(str(tmp_path / "missing")) == []

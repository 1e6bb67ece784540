"""runner/records.py: one typed trial record; what MLflow gives back is what was written."""

from pathlib import Path

import pytest

from langdml_core.runner.records import ERROR_TAG, PLACEMENT_TAGS, TrialRecord, trial_tags, varied_from_tags
from langdml_core.runner.report import summary_table, trial_rows
from langdml_core.runner.tracking import parent_run, records_from_mlflow
from langdml_core.runner.trial_run import TrialRun


def curve(*values):
    return [{"epoch": e, "test/recall_at_1": v, "test/map_at_r": v / 2} for e, v in enumerate(values, 1)]


ORIGINALS = [
    TrialRecord(
        "lr=0.0001", {"optim.lr": 1e-4}, {"optim.lr": 1e-4, "run.epochs": 2}, history=curve(0.3, 0.4)
    ),
    TrialRecord(
        "lr=1e+30",
        {"optim.lr": 1e30},
        {"optim.lr": 1e30, "run.epochs": 2},
        status="ERROR",
        error="Non-finite loss at epoch 1, step 0",
    ),
]


def test_tags_carry_the_sweep_and_the_swept_values_and_nothing_reserved_reads_back_as_swept():
    tags = trial_tags("tiny", {"optim.lr": 1e-4, "language.guidance": "elg"})
    assert tags == {"langdml.sweep": "tiny", "langdml.optim.lr": "0.0001", "langdml.language.guidance": "elg"}
    tags |= {ERROR_TAG: "Non-finite loss", "langdml.trial": "x", **dict.fromkeys(PLACEMENT_TAGS, "0")}
    assert varied_from_tags(tags) == {"optim.lr": 1e-4, "language.guidance": "elg"}


def test_a_sweep_with_a_failed_trial_reads_back_from_mlflow_as_tune_recorded_it(tmp_path):
    """The trainable's writes (tags, params, epochs, the error tag, placement) -> the same records and table."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id, parent = parent_run(uri, "tiny")
    for record in ORIGINALS:
        run = TrialRun(uri, experiment_id, parent, record.name, tags=trial_tags("tiny", record.varied))
        run.log_params(record.config)
        run.set_tags(dict.fromkeys(PLACEMENT_TAGS, "0"))
        for row in record.history:
            run.log_epoch(row)
        if not record.finished:
            run.set_tags({ERROR_TAG: record.error})
        run.end("FINISHED" if record.finished else "FAILED")

    back = sorted(records_from_mlflow(uri, "tiny"), key=lambda r: r.name)
    assert all(r.run_id for r in back)
    for got, want in zip(back, ORIGINALS, strict=True):
        assert (got.name, got.varied, got.config, got.status, got.error, got.history) == (
            want.name,
            want.varied,
            want.config,
            want.status,
            want.error,
            want.history,
        )
    ours, theirs = trial_rows(back), trial_rows(ORIGINALS)
    assert list(ours.columns) == list(theirs.columns)  # no stray cfg.error column
    assert summary_table(ours) == summary_table(theirs)
    assert "| 0.0001 | 1 | 0 |" in summary_table(ours) and "| 1e+30 | 0 | 1 |" in summary_table(ours)


def test_a_new_sqlite_store_is_created_whole_or_not_at_all(tmp_path, monkeypatch):
    """A driver killed while MLflow migrates a fresh database used to leave a half-migrated file."""
    import mlflow

    from langdml_core.runner import tracking_store

    db = tmp_path / "results" / "mlflow.db"
    real = mlflow.MlflowClient

    def dies_while_migrating(tracking_uri):
        real(tracking_uri=tracking_uri)  # the temp file may exist now
        raise KeyboardInterrupt  # the kill

    monkeypatch.setattr(mlflow, "MlflowClient", dies_while_migrating)
    with pytest.raises(KeyboardInterrupt):
        tracking_store.client(f"sqlite:///{db}")
    assert not db.exists() and not list(db.parent.glob(".mlflow.db.*.tmp"))
    monkeypatch.setattr(mlflow, "MlflowClient", real)
    c = tracking_store.client(f"sqlite:///{db}")
    assert db.is_file() and c.search_experiments(max_results=1)  # the Default experiment of a migrated store


def test_the_parent_run_carries_the_report_the_shared_settings_and_the_sweep_file(tmp_path, monkeypatch):
    from pathlib import Path

    import mlflow

    from langdml_core.runner.sweep_file import load_sweep
    from langdml_core.runner.tracking import DESCRIPTION_LIMIT, parent_run_id, record_report

    monkeypatch.chdir(tmp_path)  # MLflow's own default would put artifacts in ./mlruns here
    sweep = load_sweep(Path(__file__).parent / "fixtures" / "tiny_sweep.py")
    uri = f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}"
    assert parent_run_id(uri, "tiny") is None
    _, run_id = parent_run(uri, "tiny")
    assert parent_run_id(uri, "tiny") == run_id
    report = tmp_path / "results" / "tiny"
    report.mkdir()
    (report / "table.md").write_text("| loss.name | recall_at_1 |\n|---|---|\n| margin | 5.1 |\n")
    (report / "curves.png").write_bytes(b"\x89PNG")
    assert record_report(uri, run_id, sweep, report, (report / "table.md").read_text())
    assert record_report(uri, run_id, sweep, report, "again")  # a resumed sweep or `langdml report` again

    client = mlflow.MlflowClient(uri)
    run = client.get_run(run_id)
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith(
        "again\n\n## The sweep file (tiny_sweep.py)\n\nA tiny sweep for the sweep-service tests"
    )
    assert run.data.params["sweep.trials"] == "4" and run.data.params["sweep.varied"] == "loss.name,run.seed"
    assert run.data.params["optim.batch_size"] == "16" and "loss.name" not in run.data.params
    listed = {a.path for folder in ("report", "sweep") for a in client.list_artifacts(run_id, folder)}
    assert listed == {"report/table.md", "report/curves.png", "sweep/tiny_sweep.py"}
    # artifacts live beside the SQLite store, not in the working directory
    assert run.info.artifact_uri.startswith((tmp_path / "results" / "mlartifacts" / "tiny").as_uri())
    assert not (tmp_path / "mlruns").exists()
    long = "x" * (DESCRIPTION_LIMIT + 500)
    assert record_report(uri, run_id, sweep, report, long)
    assert len(client.get_run(run_id).data.tags["mlflow.note.content"]) <= DESCRIPTION_LIMIT


def test_run_identity_is_by_ids_never_by_names(tmp_path):
    from langdml_core.errors import ConfigError
    from langdml_core.runner.sweep_file import load_sweep

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    old = parent_run(uri, "tiny")
    old_run = TrialRun(uri, *old, "lr=0.0001", tags=trial_tags("tiny", {"optim.lr": 1e-4}))
    old_run.log_params({"optim.lr": 1e-4, "run.epochs": 5})
    for epoch in (1, 2):
        old_run.log_epoch({"epoch": epoch, "test/recall_at_1": 0.1 * epoch})
    old_run.end()

    new = parent_run(uri, "tiny")  # a fresh sweep run: its own parent, the old one untouched
    assert new[0] == old[0] and new[1] != old[1]
    fresh = TrialRun(uri, *new, "lr=0.0001", tags=trial_tags("tiny", {"optim.lr": 1e-4}))
    fresh.log_params({"optim.lr": 1e-4, "run.epochs": 99})
    fresh.log_epoch({"epoch": 1, "test/recall_at_1": 0.7})
    fresh.end()
    assert fresh.run_id != old_run.run_id
    history = old_run.client.get_metric_history(old_run.run_id, "test/recall_at_1")
    assert [(m.step, m.value) for m in history] == [(1, 0.1), (2, 0.2)]
    # a report reads one sweep run: the newest parent's, or the one named by ids
    assert [r.history for r in records_from_mlflow(uri, "tiny")] == [[{"epoch": 1, "test/recall_at_1": 0.7}]]
    assert records_from_mlflow(uri, "tiny", old[1])[0].config["run.epochs"] == 5
    # a resumed sweep reopens its own parent by its ids
    assert parent_run(uri, "tiny", known=old) == old
    assert old_run.client.get_run(old[1]).info.status == "RUNNING"
    # attaching a run logged with other values is refused in one sentence
    with pytest.raises(
        ConfigError, match=r"was logged with run\.epochs=5, but this trial has run\.epochs=99"
    ):
        TrialRun(uri, *old, "lr=0.0001", run_id=old_run.run_id).log_params(
            {"optim.lr": 1e-4, "run.epochs": 99}
        )
    # --smoke is a sweep of its own
    smoke = load_sweep(Path(__file__).parent / "fixtures" / "tiny_sweep.py", smoke=True)
    assert smoke.name == "tiny-smoke"


def test_a_trials_splits_are_its_runs_dataset_inputs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = TrialRun(uri, *parent_run(uri, "tiny"), "seed=0", tags=trial_tags("tiny", {"run.seed": 0}))
    record = {
        "name": "cub200",
        "source": "/data/cub200",
        "splits": {
            "train": {"images": 5864, "classes": 100, "digest": "a" * 64},
            "test": {"images": 5924, "classes": 100, "digest": "b" * 64},
        },
    }
    run.log_params({"run.seed": 0})  # the run exists once something was logged
    run.log_datasets(record)
    run.end()
    inputs = run.client.get_run(run.run_id).inputs.dataset_inputs
    by_context = {i.tags[0].value: i.dataset for i in inputs}
    assert (
        set(by_context) == {"train", "test"}
        and [t.key for i in inputs for t in i.tags] == ["mlflow.data.context"] * 2
    )
    assert by_context["test"].name == "cub200-test" and by_context["test"].digest == "b" * 16
    assert '"num_images": 5924' in by_context["test"].profile and "/data/cub200" in by_context["test"].source


def test_the_protocol_summary_logs_metrics_and_leaves_the_bookkeeping_to_tags(tmp_path):
    from langdml_core.runner.report import protocol_summary

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = TrialRun(uri, *parent_run(uri, "tiny"), "seed=0", tags=trial_tags("tiny", {"run.seed": 0}))
    history = [
        {
            "epoch": e,
            "test/recall_at_1": r,
            "test/knn_k": 1000,
            "test/nmi_seed": 0,
            "test/excluded_queries": 0,
        }
        for e, r in [(1, 0.5), (2, 0.7), (3, 0.6)]
    ]
    for row in history:
        run.log_epoch(row)
    run.log_summary(protocol_summary(history))
    run.end()
    metrics = run.client.get_run(run.run_id).data.metrics
    assert metrics["best_test_epoch/test/recall_at_1"] == 0.7 and metrics["best_test_epoch/epoch"] == 2
    assert metrics["last/test/recall_at_1"] == 0.6 and metrics["last/epoch"] == 3
    assert sorted(k for k in metrics if "knn_k" in k or "nmi_seed" in k or "excluded" in k) == []
    assert run.client.get_run(run.run_id).data.tags["eval.test/knn_k"] == "1000"


def test_a_trial_run_logs_system_metrics_while_it_runs_and_a_resumed_one_continues_their_steps(
    tmp_path, monkeypatch
):
    import time

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id, parent = parent_run(uri, "tiny")

    def sampled(run_id=None, name="a"):
        run = TrialRun(
            uri, experiment_id, parent, name, run_id=run_id, tags=trial_tags("tiny", {}), system_metrics=True
        )
        run.log_epoch({"epoch": 1, "test/recall_at_1": 0.5})
        time.sleep(1.0)
        assert run.end("FINISHED")
        history = run.client.get_metric_history(run.run_id, "system/cpu_utilization_percentage")
        return run.run_id, [int(m.step) for m in history], [m.value for m in history]

    run_id, steps, values = sampled()
    assert len(steps) >= 2 and all(0 <= v <= 100 for v in values)
    memory = TrialRun(uri, experiment_id, parent, "a", run_id=run_id).client.get_run(run_id).data.metrics
    assert memory["system/system_memory_usage_megabytes"] > 0
    _, resumed, _ = sampled(run_id)  # the same run after a retry: its steps continue, none twice
    assert len(resumed) > len(steps) and sorted(resumed) == list(range(len(resumed)))
    # read back as a trial record, the samples are no epochs: one epoch row, as logged
    (record,) = records_from_mlflow(uri, "tiny", parent)
    assert [row["epoch"] for row in record.history] == [1]
    assert not any(k.startswith("system/") for row in record.history for k in row)

    monkeypatch.setenv("LANGDML_SYSTEM_METRICS", "0")
    off, none_logged, _ = sampled(name="b")
    assert none_logged == []
    quiet = TrialRun(uri, experiment_id, parent, "c")  # backfill and the like: not asked for
    quiet.end("FINISHED")
    assert not any(k.startswith("system/") for k in quiet.client.get_run(quiet.run_id).data.metrics)


def test_source_tags_name_the_sweep_file_relative_to_the_repository(tmp_path):
    from pathlib import Path

    from langdml_core.runner.provenance import git_provenance, source_tags

    root = Path(__file__).resolve().parents[1]
    assert source_tags(root / "sweeps" / "demo.py") == {
        "mlflow.source.name": "sweeps/demo.py",
        "mlflow.source.type": "LOCAL",
    }
    outside = tmp_path / "mine.py"
    assert source_tags(outside)["mlflow.source.name"] == str(outside.resolve())
    assert git_provenance(tmp_path) == {}  # not a git folder: no commit claimed


def started_trial_run(tmp_path) -> TrialRun:
    """A trial run of sweep "tiny" in a new SQLite store, its tags and params logged."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = TrialRun(uri, *parent_run(uri, "tiny"), "seed=0", tags=trial_tags("tiny", {"run.seed": 0}))
    run.log_params({"run.seed": 0})
    return run


def test_a_one_shot_write_that_fails_once_is_sent_again_before_the_run_ends(tmp_path, monkeypatch):
    """Two trials finishing together race to create one dataset row and the second insert fails: the
    trial's dataset inputs (and tags, artifacts, summary) are sent again, not lost."""
    from mlflow.exceptions import MlflowException

    run = started_trial_run(tmp_path)
    real, calls = run.client.log_inputs, []

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id")
        return real(*args, **kwargs)

    monkeypatch.setattr(run.client, "log_inputs", racing)
    split = {"images": 4, "classes": 2, "digest": "c" * 64}
    run.log_datasets({"name": "demo", "source": "generated", "splits": {"train": split, "test": split}})
    run.set_tags({"langdml.model_uri": "models:/m-1"})
    assert run.end("FINISHED")
    got = run.client.get_run(run.run_id)
    assert len(calls) == 2 and sorted(i.dataset.name for i in got.inputs.dataset_inputs) == [
        "demo-test",
        "demo-train",
    ]
    assert got.data.tags["langdml.model_uri"] == "models:/m-1" and got.info.status == "FINISHED"


def test_a_write_that_keeps_failing_is_given_up_and_the_rest_still_goes(tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException

    from langdml_core.runner.trial_run import SEND_TRIES

    run = started_trial_run(tmp_path)
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise MlflowException("always")

    monkeypatch.setattr(run.client, "log_inputs", broken)
    run.log_datasets({"name": "demo", "source": "generated", "splits": {}})
    run.log_epoch({"epoch": 1, "test/recall_at_1": 0.5})
    assert run.end("FINISHED")
    assert len(calls) == SEND_TRIES
    got = run.client.get_run(run.run_id)
    assert got.data.metrics["test/recall_at_1"] == 0.5 and got.info.status == "FINISHED"


def test_a_write_that_fails_with_a_bug_is_raised_once_and_the_run_still_ends(tmp_path, monkeypatch):
    import pytest

    run = started_trial_run(tmp_path)

    def bug(*args, **kwargs):
        raise ValueError("not MLflow's fault")

    monkeypatch.setattr(run.client, "log_inputs", bug)
    with pytest.raises(ValueError, match="not MLflow's fault"):
        run.log_datasets({"name": "demo", "source": "generated", "splits": {}})
    assert run.end("FAILED")  # the failed write is not tried again on the way out
    assert run.client.get_run(run.run_id).info.status == "FAILED"

"""A trial's embedding network in MLflow (langdml_core/runner/logged_model.py): logged, loaded back by
MLflow alone, and embedding an image exactly as the trial's own network and evaluation transform do."""

import os

import mlflow
import torch
from conftest import tiny_trial

from langdml_core.backbones import build_model
from langdml_core.config import DataConfig, TrialConfig
from langdml_core.data import build_dataset
from langdml_core.data.transforms import eval_transform
from langdml_core.runner.logged_model import (
    MODEL_URI_TAG,
    embedding_transform,
    load_embedding_model,
    log_embedding_model,
)
from langdml_core.runner.tracking import parent_run
from langdml_core.runner.tracking_store import mlflow_tracking_uri
from langdml_core.runner.trial_run import TrialRun


def test_the_logged_network_loads_back_and_embeds_an_image_as_the_trial_did(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGDML_SYSTEM_METRICS", "0")
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # MLflow's own default experiment would put the model in ./mlruns here
    config = TrialConfig.from_dict(tiny_trial(tmp_path, **{"model.embed_dim": 16}))
    torch.manual_seed(3)
    trained = build_model(config.model).eval()
    with torch.no_grad():  # a "trained" head: not the fresh initialisation a rebuild would give
        trained.head.weight.normal_()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = TrialRun(uri, *parent_run(uri, "tiny"), "seed=0")

    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)  # the caller's own default URI
    model_uri = log_embedding_model(run, config, trained.state_dict(), default_image_size=64)
    run.end("FINISHED")
    assert os.environ["MLFLOW_TRACKING_URI"] == elsewhere  # left as it was: later sweeps would inherit it

    assert run.client.get_run(run.run_id).data.tags[MODEL_URI_TAG] == model_uri
    # filed under the trial's experiment, its files beside the store's other artifacts, READY
    logged = run.client.search_logged_models(experiment_ids=[run.experiment_id])
    assert [m.model_id for m in logged] == [model_uri.removeprefix("models:/")]
    assert logged[0].source_run_id == run.run_id and logged[0].status.name == "READY"
    assert logged[0].params["model.embed_dim"] == "16"
    assert logged[0].artifact_location.startswith((tmp_path / "mlartifacts").as_uri())
    assert list(workdir.iterdir()) == []
    with mlflow_tracking_uri(uri):
        info = mlflow.models.get_model_info(model_uri)
    assert info.metadata["image_size"] == 64 and info.metadata["embed_dim"] == 16
    assert tuple(info.signature.outputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 16)
    loaded, transform = load_embedding_model(model_uri, uri)
    assert os.environ["MLFLOW_TRACKING_URI"] == elsewhere and mlflow.get_tracking_uri() == elsewhere
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    load_embedding_model(model_uri, uri)
    assert "MLFLOW_TRACKING_URI" not in os.environ  # none before, none after
    image = build_dataset(DataConfig(name="demo")).test.load(0)
    norm = trained.data_config
    expected_input = eval_transform(64, norm["mean"], norm["std"], norm["interpolation"])(image)
    assert torch.equal(embedding_transform(info.metadata)(image), expected_input)
    assert torch.equal(transform(image), expected_input)
    with torch.no_grad():
        got, want = loaded(expected_input[None]), trained(expected_input[None])
    assert got.shape == (1, 16) and torch.equal(got, want)
    assert abs(float(got.norm()) - 1) < 1e-5


def test_no_model_is_logged_when_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGDML_LOG_MODEL", "0")
    config = TrialConfig.from_dict(tiny_trial(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = TrialRun(uri, *parent_run(uri, "tiny"), "seed=0")
    assert log_embedding_model(run, config, build_model(config.model).state_dict(), 64) is None
    run.end("FINISHED")
    assert MODEL_URI_TAG not in run.client.get_run(run.run_id).data.tags

"""runner/places.py: one function resolves Tune storage, the MLflow URI and a sweep's Tune experiments."""

from pathlib import Path

import pytest

from langdml_core.runner.places import resolve_places, tune_experiments


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("LANGDML_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return monkeypatch


def test_defaults_live_under_the_results_directory(clean_env, tmp_path):
    places = resolve_places(tmp_path / "res")
    assert places.results == tmp_path / "res"
    assert places.storage == str(tmp_path / "res" / "ray")
    assert places.tracking_uri == f"sqlite:///{tmp_path / 'res' / 'mlflow.db'}"
    assert places.tune_path("demo") == str(tmp_path / "res" / "ray" / "demo")


def test_the_environment_beats_the_defaults_and_flags_beat_the_environment(clean_env, tmp_path):
    clean_env.setenv("LANGDML_STORAGE", "s3://bucket/ray")
    clean_env.setenv("MLFLOW_TRACKING_URI", "http://head:5000")
    from_env = resolve_places(tmp_path)
    assert (from_env.storage, from_env.tracking_uri) == ("s3://bucket/ray", "http://head:5000")
    assert from_env.tune_path("demo") == "s3://bucket/ray/demo"
    flags = resolve_places(tmp_path, storage=str(tmp_path / "s"), tracking_uri="sqlite:///x.db")
    assert (flags.storage, flags.tracking_uri) == (str(tmp_path / "s"), "sqlite:///x.db")


def test_a_relative_storage_becomes_absolute(clean_env, tmp_path):
    clean_env.chdir(tmp_path)
    assert resolve_places("results", storage="state").storage == str(tmp_path / "state")


def test_a_search_has_two_tune_experiments():
    assert tune_experiments("demo") == ["demo"]
    assert tune_experiments("tune_omega", search=True) == ["tune_omega-search", "tune_omega-final"]


def test_the_ui_hint_is_a_command_that_works_here(clean_env, tmp_path, monkeypatch):
    import sys

    from langdml_core.runner.places import ui_command

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the venv not activated: its langdml by path
    script = str(Path(sys.executable).parent / "langdml")  # by its full path from outside the repository
    assert ui_command(resolve_places("results")) == f"{script} ui"  # the default store: nothing to add
    assert ui_command(resolve_places("elsewhere")) == f"{script} ui --results elsewhere"
    secret = resolve_places("results", tracking_uri="http://alice:pw@host:5000")
    assert ui_command(secret) == f"{script} ui --tracking-uri http://***@host:5000"
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # activated: plain `langdml`
    assert ui_command(resolve_places("results")) == "langdml ui"
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.chdir(Path(sys.executable).parents[2])  # the repository root: .venv/bin/langdml
    assert ui_command(resolve_places(tmp_path / "results")).startswith(".venv/bin/langdml ui --results ")

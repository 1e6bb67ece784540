"""What language changed (langdml_core.runner.language_effect): against naive references and a made-up pair."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from langdml_core.evaluate import retrieval_metrics
from langdml_core.runner import language_effect as effect
from langdml_core.runner.records import ERROR, TrialRecord


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_nearest_hits_give_the_evaluators_recall_at_1_ties_included():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 300)
    embeddings = unit(rng.normal(size=(300, 8)))
    embeddings[10] = embeddings[20]  # exact duplicates: ties go to the lower index, as in the evaluator
    embeddings[30] = embeddings[40] = embeddings[50]
    hits = effect.nearest_hits(embeddings, labels)
    expected = retrieval_metrics(torch.from_numpy(embeddings), torch.from_numpy(labels), ks=[1])[
        "recall_at_1"
    ]
    assert hits.mean() == pytest.approx(expected, abs=1e-12)
    naive = []  # one query at a time, the query excluded by index
    for i in range(len(labels)):
        sims = embeddings @ embeddings[i]
        sims[i] = -np.inf
        naive.append(labels[int(np.argmax(sims))] == labels[i])
    assert hits.tolist() == naive


def test_the_bootstrap_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    diff = rng.choice([-1.0, 0.0, 1.0], size=4000, p=[0.1, 0.7, 0.2])
    low, high = effect.bootstrap_interval(diff)
    half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
    assert low < diff.mean() < high
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)
    assert effect.bootstrap_interval(np.zeros(50)) == (0.0, 0.0)
    assert effect.bootstrap_interval(diff) == (low, high)  # seeded: the same interval every time


def record(name, guidance, seed, omega=0.0, status="TERMINATED"):
    varied = {"language.guidance": guidance, "run.seed": seed}
    config = {**varied, "language.omega": omega, "language.encoder": "minilm", "language.prompt": "{}"}
    return TrialRecord(name=name, varied=varied, config=config, status=status)


def test_twins_share_every_swept_value_but_guidance_omega_and_temperature():
    records = [
        record("none/0", "none", 0),
        record("none/1", "none", 1),
        record("elg/0", "elg", 0, omega=0.3),
        record("elg/1", "elg", 1, omega=0.3),
        record("plg/2", "plg", 2),  # no twin with seed 2
        record("plg/1", "plg", 1, status=ERROR),  # failed: no pair
    ]
    pairs = [(g.name, t.name) for g, t in effect.twin_pairs(records)]
    assert pairs == [("elg/0", "none/0"), ("elg/1", "none/1")]


def test_rho_is_spearmans_over_distinct_class_pairs():
    from scipy import stats

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    a, b = a + a.T, b + b.T
    upper = np.triu_indices(6, k=1)
    assert effect.follows_language(a, b) == pytest.approx(stats.spearmanr(a[upper], b[upper]).statistic)
    assert effect.follows_language(a, a) == pytest.approx(1.0)


def made_up_pair(tmp_path, monkeypatch):
    """Class c's images sit around a direction; the guided trial's clusters are tighter, so it retrieves better;
    the language similarity is the true class-direction similarity."""
    rng = np.random.default_rng(3)
    classes, per_class = 12, 20
    centres = unit(rng.normal(size=(classes, 16)))
    labels = np.repeat(np.arange(classes), per_class)
    noise = rng.normal(size=(len(labels), 16))
    guided = unit(centres[labels] + 0.35 * noise)
    twin = unit(centres[labels] + 0.9 * noise)
    texts = [f"class {c}" for c in range(classes)]
    monkeypatch.setattr(effect, "language_similarity", lambda names, config: centres @ centres.T)
    data = {"elg/0": (guided, labels, texts), "none/0": (twin, labels, texts)}
    records = [record("none/0", "none", 0), record("elg/0", "elg", 0)]
    return records, data, labels


def test_the_report_of_a_made_up_pair(tmp_path, monkeypatch):
    records, data, labels = made_up_pair(tmp_path, monkeypatch)
    text = effect.write_language_effect(records, tmp_path, lambda r: data.get(r.name))
    rows, per_setup, neighbours = effect.language_effect(records, lambda r: data.get(r.name))
    (row,) = rows
    r1 = {name: 100 * effect.nearest_hits(emb, labels).mean() for name, (emb, _, _) in data.items()}
    assert row["r1"] == r1["elg/0"] and row["r1_twin"] == r1["none/0"] and row["diff"] > 5
    assert row["low"] < row["diff"] < row["high"] and row["low"] > 0  # tighter clusters: a real gain
    assert row["rho"] > row["rho_twin"]  # the guided embedding follows the (true) language similarity more
    assert f"| elg/0 | {row['r1']:.2f} | {row['r1_twin']:.2f} | {row['diff']:+.2f} [" in text
    assert set(per_setup) == {"guidance=elg"} and len(per_setup["guidance=elg"]) == 12
    assert all(len(near) == 3 and text not in near for text, near in neighbours["guidance=elg"].items())
    assert (tmp_path / "language_effect.md").read_text() == text
    assert (tmp_path / "language_effect.png").stat().st_size > 0


def test_no_embeddings_no_section(tmp_path, monkeypatch):
    records, data, _ = made_up_pair(tmp_path, monkeypatch)
    assert effect.write_language_effect(records, tmp_path, lambda r: None) == ""
    assert not (tmp_path / "language_effect.md").exists()
    shuffled = {**data, "none/0": (data["none/0"][0], data["none/0"][1][::-1], data["none/0"][2])}
    assert (
        effect.write_language_effect(records, tmp_path, lambda r: shuffled.get(r.name)) == ""
    )  # other images


def test_the_loader_reads_a_tune_trial_folder(tmp_path):
    from langdml_core.evaluate import EMBEDDINGS_FILE, save_embeddings

    save_embeddings(tmp_path / EMBEDDINGS_FILE, torch.ones(4, 3), torch.tensor([0, 0, 1, 1]), ["a b", "c"])
    load = effect.embeddings_loader()
    embeddings, labels, texts = load(TrialRecord(name="t", trial_path=str(tmp_path)))
    assert embeddings.shape == (4, 3) and labels.tolist() == [0, 0, 1, 1] and texts == ["a b", "c"]
    assert load(TrialRecord(name="t", trial_path=str(tmp_path / "elsewhere"))) is None


def test_the_loader_reads_a_trial_runs_mlflow_artifact(tmp_path):
    from langdml_core.evaluate import EMBEDDINGS_FILE, save_embeddings
    from langdml_core.runner.tracking_store import client

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = client(uri)
    experiment = c.create_experiment("effect", artifact_location=str(tmp_path / "artifacts"))
    run = c.create_run(experiment).info.run_id
    save_embeddings(tmp_path / EMBEDDINGS_FILE, torch.eye(3), torch.tensor([0, 1, 1]), ["x", "y"])
    c.log_artifact(run, str(tmp_path / EMBEDDINGS_FILE))
    embeddings, labels, texts = effect.embeddings_loader(uri)(TrialRecord(name="t", run_id=run))
    assert embeddings.tolist() == np.eye(3).tolist() and labels.tolist() == [0, 1, 1] and texts == ["x", "y"]
    other = c.create_run(experiment).info.run_id  # a trial from before embeddings were kept
    assert effect.embeddings_loader(uri)(TrialRecord(name="t", run_id=other)) is None

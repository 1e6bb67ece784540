"""What language changed: each guided trial against its unguided twin, from their final test embeddings.

The twin of a guided trial (``language.guidance`` elg or plg) is the finished no-guidance trial with the same
other swept values and seed (omega and temperature aside); both embedded the same test images in the same
order (``test_embeddings.npz``, written by ``train_trial`` and logged to each trial's MLflow run). Per pair:

- Recall@1 of both and their difference, with a paired bootstrap 95% interval over test queries (the same
  resampled queries for both trials; 2,000 resamples, seed 0): how much of the difference is test-sample noise;
- rho: Spearman's correlation over test-class pairs between the image similarity of two classes (cosine of
  their mean embeddings) and the language similarity of their names (the trial's text encoder and prompt on
  the expert class names): how far the learned embedding of unseen classes follows language, and its change;
- per test class, the Recall@1 change, pooled over the setup's seeds, beside the class's nearest classes by
  language: which classes language helped or hurt, and why it might have.

Nearest neighbours are exact (dot product of the embeddings as given, the query excluded by index, ties to the
lower index), as in ``langdml_core.evaluate``, so a trial's Recall@1 here equals its logged test/recall_at_1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from langdml_core.runner.plots import language_effect_plot
from langdml_core.runner.records import TrialRecord

GUIDANCE, OMEGA, TEMPERATURE, SEED = "language.guidance", "language.omega", "language.temperature", "run.seed"
RESAMPLES, MAX_RHO_CLASSES, SHOWN_CLASSES, NEIGHBOURS = 2000, 2000, 5, 3
LANGUAGE_MODEL_KEYS = ("language.encoder", "language.encoder_path", "language.pooling", "language.prompt")

LANGUAGE_EFFECT_TITLE = "What language changed (test embeddings of each guided trial and its twin)"

Embeddings = tuple[np.ndarray, np.ndarray, list[str]]
"""(embeddings (N, D), labels (N,), class texts) of one trial's test split."""


def twin_pairs(records: list[TrialRecord]) -> list[tuple[TrialRecord, TrialRecord]]:
    """(guided, unguided twin) for every finished guided trial that has exactly one finished twin."""
    finished = [r for r in records if r.finished]

    def key(record: TrialRecord) -> tuple:
        return tuple(
            sorted((k, repr(v)) for k, v in record.varied.items() if k not in (GUIDANCE, OMEGA, TEMPERATURE))
        )

    unguided: dict[tuple, list[TrialRecord]] = {}
    for record in finished:
        if record.config.get(GUIDANCE) == "none":
            unguided.setdefault(key(record), []).append(record)
    return [
        (record, unguided[key(record)][0])
        for record in finished
        if record.config.get(GUIDANCE, "none") != "none" and len(unguided.get(key(record), [])) == 1
    ]


def nearest_hits(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per query: is its nearest other item of its class? (N,) bool; the evaluator's exact neighbour
    (:func:`langdml_core.evaluate.knn`: the query excluded by index, ties to the lower index)."""
    from langdml_core.evaluate import knn

    nearest = knn(np.ascontiguousarray(embeddings, dtype=np.float32), 1)[:, 0].numpy()
    return labels[nearest] == labels


def bootstrap_interval(diff: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of ``diff`` over queries resampled with replacement."""
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for i in range(resamples):
        means[i] = diff[rng.integers(0, len(diff), len(diff))].mean()
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def class_similarity(embeddings: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Cosine similarity of the mean embeddings of ``classes`` (C, C)."""
    means = np.stack([embeddings[labels == c].mean(axis=0) for c in classes])
    means /= np.linalg.norm(means, axis=1, keepdims=True).clip(min=1e-12)
    return means @ means.T


def follows_language(image: np.ndarray, language: np.ndarray) -> float:
    """Spearman's rho between two class-similarity matrices over their distinct class pairs."""
    from scipy import stats

    upper = np.triu_indices(len(image), k=1)
    return float(stats.spearmanr(image[upper], language[upper]).statistic)


def language_similarity(texts: list[str], config: dict) -> np.ndarray:
    """Cosine similarity of the class names under the trial's text encoder and prompt (C, C)."""
    import torch

    from langdml_core.language.tables import encode_cached

    prompted = [config.get("language.prompt", "{}").format(text) for text in texts]
    vectors = encode_cached(
        prompted,
        config["language.encoder"],
        config.get("language.encoder_path", ""),
        config.get("language.pooling", "auto"),
        torch.device("cpu"),
    )
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
    return vectors @ vectors.T


def language_effect(
    records: list[TrialRecord], load: Callable[[TrialRecord], Embeddings | None]
) -> tuple[list[dict], dict[str, dict[str, float]], dict[str, dict[str, list[str]]]]:
    """(one row per pair; per guided setup, each test class's Recall@1 change, mean over seeds; per guided
    setup, each class's nearest classes by that setup's language model); empty when no pair has both trials'
    embeddings."""
    rows: list[dict] = []
    changes: dict[str, dict[str, list[float]]] = {}
    neighbours: dict[str, dict[str, list[str]]] = {}
    loaded: dict[str, Embeddings | None] = {}
    languages: dict[tuple, np.ndarray] = {}
    for guided, twin in twin_pairs(records):
        for record in (guided, twin):
            if record.name not in loaded:
                loaded[record.name] = load(record)
        if loaded[guided.name] is None or loaded[twin.name] is None:
            continue
        (g_emb, labels, texts), (t_emb, t_labels, _) = loaded[guided.name], loaded[twin.name]
        if not np.array_equal(labels, t_labels):
            continue  # not the same test images: no paired comparison
        g_hits, t_hits = nearest_hits(g_emb, labels), nearest_hits(t_emb, labels)
        low, high = bootstrap_interval(g_hits.astype(float) - t_hits.astype(float))
        classes = np.unique(labels)
        sample = classes
        if len(classes) > MAX_RHO_CLASSES:  # C x C similarities of SOP's 11,316 classes: a fixed sample
            sample = np.sort(np.random.default_rng(0).choice(classes, MAX_RHO_CLASSES, replace=False))
        model = tuple(guided.config.get(k) for k in LANGUAGE_MODEL_KEYS)
        if model not in languages:
            languages[model] = language_similarity(texts, guided.config)
        language = languages[model]
        lang = language[np.ix_(sample, sample)]
        rows.append(
            {
                "trial": guided.name,
                "twin": twin.name,
                "r1": 100 * g_hits.mean(),
                "r1_twin": 100 * t_hits.mean(),
                "diff": 100 * (g_hits.mean() - t_hits.mean()),
                "low": 100 * low,
                "high": 100 * high,
                "rho": follows_language(class_similarity(g_emb, labels, sample), lang),
                "rho_twin": follows_language(class_similarity(t_emb, labels, sample), lang),
            }
        )
        setup = _setup_name(guided)
        order = np.argsort(-language, axis=1, kind="stable")
        neighbours[setup] = {texts[c]: [texts[j] for j in order[c] if j != c][:NEIGHBOURS] for c in classes}
        for c in classes:
            mask = labels == c
            changes.setdefault(setup, {}).setdefault(texts[c], []).append(
                100 * (g_hits[mask].mean() - t_hits[mask].mean())
            )
    means = {setup: {t: float(np.mean(v)) for t, v in per.items()} for setup, per in changes.items()}
    return rows, means, neighbours


def language_effect_markdown(
    rows: list[dict], per_setup: dict[str, dict[str, float]], neighbours: dict[str, dict[str, list[str]]]
) -> str:
    lines = [
        "Each guided trial against its no-guidance twin (same other swept values and seed) on the same test "
        "images. diff = Recall@1 difference in points with a paired bootstrap 95% interval over test queries "
        f"({RESAMPLES} resamples); rho = Spearman correlation over test-class pairs between image similarity "
        "(class-mean embeddings) and language similarity (the trial's text encoder on the class names).",
        "",
        "| trial | R@1 | twin R@1 | diff [95% CI] | rho | twin rho | rho change |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['trial']} | {row['r1']:.2f} | {row['r1_twin']:.2f} | {row['diff']:+.2f} "
            f"[{row['low']:+.2f}, {row['high']:+.2f}] | {row['rho']:.3f} | {row['rho_twin']:.3f} "
            f"| {row['rho'] - row['rho_twin']:+.3f} |"
        )
    for setup, changes in per_setup.items():
        ranked = sorted(changes.items(), key=lambda item: (-item[1], item[0]))
        shown = ranked[:SHOWN_CLASSES] + [
            item for item in ranked[-SHOWN_CLASSES:] if item not in ranked[:SHOWN_CLASSES]
        ]
        lines += [
            "",
            f"Test classes {setup} helped most and hurt most (Recall@1 change in points, mean over its seeds), "
            f"with each class's {NEIGHBOURS} nearest classes by language:",
            "",
            "| class | R@1 change | nearest by language |",
            "|---|---|---|",
        ]
        lines += [
            f"| {text} | {change:+.2f} | {', '.join(neighbours[setup][text])} |" for text, change in shown
        ]
    return "\n".join(lines) + "\n"


def write_language_effect(
    records: list[TrialRecord], out_dir: Path, load: Callable[[TrialRecord], Embeddings | None]
) -> str:
    """language_effect.md (and .png) in ``out_dir``; the markdown, or "" when no pair could be compared."""
    rows, per_setup, neighbours = language_effect(records, load)
    if not rows:
        return ""
    text = language_effect_markdown(rows, per_setup, neighbours)
    (Path(out_dir) / "language_effect.md").write_text(text)
    language_effect_plot(rows, Path(out_dir) / "language_effect.png")
    return text


def embeddings_loader(tracking_uri: str = "") -> Callable[[TrialRecord], Embeddings | None]:
    """Reads a trial's test embeddings from its Tune trial folder (local storage) or, failing that, from its
    MLflow run's artifact (a record read from MLflow); None when neither has them (a trial from before they
    were kept)."""

    def load(record: TrialRecord) -> Embeddings | None:
        import tempfile

        from langdml_core.evaluate import EMBEDDINGS_FILE, load_embeddings

        path = Path(record.trial_path) / EMBEDDINGS_FILE if record.trial_path else None
        with tempfile.TemporaryDirectory() as folder:
            if (path is None or not path.is_file()) and record.run_id and tracking_uri:
                from langdml_core.runner.tracking_store import client

                try:
                    path = Path(
                        client(tracking_uri).download_artifacts(record.run_id, EMBEDDINGS_FILE, folder)
                    )
                except Exception:  # noqa: BLE001 - no such artifact (an older trial): nothing to compare
                    path = None
            if path is None or not path.is_file():
                return None
            embeddings, labels, texts = load_embeddings(path)
            return embeddings.numpy(), labels.numpy(), texts

    return load


def _setup_name(record: TrialRecord) -> str:
    parts = [f"{k.rsplit('.', 1)[-1]}={v}" for k, v in record.varied.items() if k != SEED]
    return "/".join(parts) or record.config.get(GUIDANCE, "guided")

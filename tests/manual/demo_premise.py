"""Measure the demo's premise: do the names of the UNSEEN test classes relate to how they look?

For each trained trial directory given (config.json + a checkpoint, e.g. the no-guidance demo trials under
results/local/ray/demo/), embeds the demo's test split and compares, over all pairs of the 48 test classes,
the similarity of the class names (MiniLM on "a photo of a <name>") with the similarity of the class-mean
embeddings: Spearman's rho. Also prints rho for the untrained ImageNet features and the attribute overlap
(0-2 shared words) of the names, the structure the data was built with.

    .venv/bin/python tests/manual/demo_premise.py results/local/ray/demo/msim_none_seed=*  (or any trial dirs)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from langdml_core import checkpoint
from langdml_core.backbones import build_model, create_backbone
from langdml_core.config import TrialConfig
from langdml_core.data import build_dataset, eval_loader
from langdml_core.data.transforms import eval_transform
from langdml_core.evaluate import embed
from langdml_core.language.encoders import ENCODERS
from langdml_core.train import speed_options


def class_mean_similarity(model, test, data_config) -> np.ndarray:
    loader = eval_loader(
        test,
        eval_transform(64, data_config["mean"], data_config["std"], data_config["interpolation"]),
        batch_size=256,
    )
    emb, labels = embed(model, loader, torch.device("cpu"))
    emb, labels = emb.numpy(), labels.numpy()
    means = np.stack([emb[labels == c].mean(0) for c in range(test.num_classes)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    return means @ means.T


def trained_state(directory: Path) -> dict:
    """The newest checkpoint of a trial directory: Tune's checkpoint folders (a sweep's trial) or the
    directory's own files (``langdml train --out``)."""
    import pyarrow.fs

    from langdml_core.runner.tune import resume_from_tune

    state = resume_from_tune(None, (pyarrow.fs.LocalFileSystem(), str(directory.absolute())))
    return state or checkpoint.load_latest(directory)


def main(dirs: list[str]) -> None:
    torch.set_num_threads(1)
    test = build_dataset(TrialConfig.from_dict({"data.name": "demo"}).data).test
    text = ENCODERS.create("minilm").encode([f"a photo of a {t}" for t in test.class_texts])
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    names = text @ text.T
    words = [set(t.split()) for t in test.class_texts]
    shared = np.array([[len(a & b) for b in words] for a in words])
    pairs = np.triu_indices(test.num_classes, 1)

    def rho(a, b):
        return spearmanr(a[pairs], b[pairs]).statistic

    print(f"{len(pairs[0])} pairs of test classes; Spearman rho")
    print(f"  names vs shared attributes: {rho(names, shared):.3f}")
    imagenet = create_backbone("tf_efficientnet_lite0", pretrained=True).eval()
    cfg = imagenet.pretrained_cfg
    visual = class_mean_similarity(imagenet, test, {**cfg, "interpolation": "bicubic"})
    print(f"  names vs ImageNet features (untrained): {rho(names, visual):.3f}")
    for directory in map(Path, dirs):
        config = TrialConfig.from_dict(json.loads((directory / "config.json").read_text()))
        model = build_model(config.model).to(memory_format=speed_options(config, torch.device("cpu"))[1])
        model.load_state_dict(trained_state(directory)["model"])
        visual = class_mean_similarity(model.eval(), test, model.data_config)
        print(
            f"  {directory.name}: names vs trained embedding {rho(names, visual):.3f}, "
            f"shared attributes vs trained embedding {rho(shared, visual):.3f}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])

"""Shared test set-up: offline, CPU, one torch thread per xdist worker, a project-local cache."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LANGDML_CACHE", str(ROOT / ".pytest_cache" / "langdml-cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)  # two workers on two cores: more threads only contend


@pytest.fixture(scope="session")
def demo_dataset():
    from langdml_core.config import DataConfig
    from langdml_core.data import build_dataset

    return build_dataset(DataConfig(name="demo"))


def tiny_trial(tmp_path, **overrides):
    """A config dict for a seconds-long CPU trial on the demo data."""
    config = {
        "data.name": "demo",
        "model.backbone": "test_efficientnet",  # timm's tiny test model: seconds, not minutes
        "model.pretrained": False,
        "model.embed_dim": 32,
        "optim.batch_size": 32,
        "optim.lr": 1e-4,
        "run.epochs": 2,
        "run.max_steps_per_epoch": 3,
        "run.progress": False,
        "run.out_dir": str(tmp_path / "run"),
        "eval.batch_size": 256,
    }
    config.update(overrides)
    return config

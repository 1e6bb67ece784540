"""A run directory holds one run: a changed config is refused, a busy directory is refused, a killed write
leaves nothing behind, a full disk is one sentence; bad sizes are refused before any model is built."""

import errno
import json
import shutil

import pytest
import torch
from conftest import tiny_trial
from filelock import FileLock

from langdml_core import checkpoint, train
from langdml_core.errors import ConfigError, DiskFullError, RunDirectoryError
from langdml_core.train import train_trial


def one_epoch(tmp_path, **overrides):
    return tiny_trial(tmp_path, **{"run.epochs": 1, "run.max_steps_per_epoch": 1, **overrides})


def test_a_changed_config_is_refused_and_restart_discards_the_old_run(tmp_path):
    train_trial(one_epoch(tmp_path))
    for change, shown in (
        ({"optim.lr": 0.01}, "optim.lr: 0.0001 -> 0.01"),
        ({"run.seed": 7}, "run.seed: 0 -> 7"),
        ({"loss.name": "margin"}, "loss.name: 'multisimilarity' -> 'margin'"),
    ):
        with pytest.raises(RunDirectoryError, match="different configuration") as info:
            train_trial(one_epoch(tmp_path, **change))
        assert shown in str(info.value) and "--restart" in str(info.value)
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["optim"]["lr"] == 1e-4  # the refused runs left the record alone

    fresh = train_trial(one_epoch(tmp_path, **{"run.seed": 7}), restart=True)
    assert [row["epoch"] for row in fresh["history"]] == [1]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["run"]["seed"] == 7


def test_epochs_may_grow_but_not_shrink_below_what_was_trained(tmp_path):
    train_trial(one_epoch(tmp_path, **{"run.epochs": 2}))
    longer = train_trial(one_epoch(tmp_path, **{"run.epochs": 3, "run.threads": 1}))  # threads may change
    assert [row["epoch"] for row in longer["history"]] == [1, 2, 3]
    with pytest.raises(RunDirectoryError, match="already trained 3 epochs, more than run.epochs=1"):
        train_trial(one_epoch(tmp_path, **{"run.epochs": 1}))


def test_a_directory_in_use_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with FileLock(str(out / ".langdml.lock")):
        with pytest.raises(RunDirectoryError, match="in use by another langdml process"):
            train_trial(one_epoch(tmp_path))
    train_trial(one_epoch(tmp_path))  # free again


def test_orphan_temp_files_of_a_killed_write_are_removed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    orphan = out / ".checkpoint_epoch0001.pt.abc123.tmp"
    orphan.write_bytes(b"half a checkpoint")
    train_trial(one_epoch(tmp_path))
    assert not orphan.exists() and (out / "checkpoint_epoch0001.pt").is_file()


@pytest.mark.parametrize("failure", ["enospc", "torch_zip_writer"])
def test_a_full_disk_is_one_sentence_naming_the_directory(tmp_path, monkeypatch, failure):
    def full(state, path):
        if failure == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    if failure == "torch_zip_writer":  # torch does not say ENOSPC: the free space does
        monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 0))
    with pytest.raises(DiskFullError) as info:
        checkpoint.save(tmp_path, 3, {"x": torch.zeros(1)})
    message = str(info.value)
    assert str(tmp_path) in message and "checkpoint_epoch0003.pt" in message and "\n" not in message
    assert not list(tmp_path.glob(".checkpoint_epoch*.tmp"))


def test_an_unrelated_write_error_is_not_called_a_full_disk(tmp_path, monkeypatch):
    def broken(state, path):
        raise RuntimeError("something else")

    monkeypatch.setattr(checkpoint.torch, "save", broken)
    with pytest.raises(RuntimeError, match="something else"):
        checkpoint.save(tmp_path, 1, {})


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"data.val_classes": 40, "optim.batch_size": 32},
            "needs 16 classes, but the training split has only 8",
        ),
        (
            {"eval.ks": [1, 5000]},
            "eval.ks=[1, 5000] asks for 5000 neighbours, but the test split has 1152 images",
        ),
    ],
)
def test_sizes_that_cannot_work_are_refused_before_any_model_is_built(
    tmp_path, monkeypatch, overrides, message
):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(train, "build_model", no_model)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        train_trial(one_epoch(tmp_path, **overrides))


def test_the_cli_refuses_a_changed_config_in_one_sentence_and_restart_discards(tmp_path):
    import subprocess
    import sys

    base = [sys.executable, "-m", "langdml_core.runner.cli", "train", "--out", str(tmp_path / "run")]
    tiny = ["--set", "data.name=demo", "--set", "model.backbone=test_efficientnet", "--set", "model.pretrained=false",
            "--set", "model.embed_dim=8", "--set", "optim.batch_size=16", "--set", "run.epochs=1",
            "--set", "run.max_steps_per_epoch=1", "--set", "run.threads=1"]  # fmt: skip
    assert subprocess.run(base + tiny, capture_output=True, text=True).returncode == 0
    refused = subprocess.run(base + tiny + ["--set", "optim.lr=0.01"], capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "different configuration (optim.lr: 1e-05 -> 0.01)" in refused.stderr
    restarted = subprocess.run(
        base + tiny + ["--set", "optim.lr=0.01", "--restart"], capture_output=True, text=True
    )
    assert restarted.returncode == 0, restarted.stderr

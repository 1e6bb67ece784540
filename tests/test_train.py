import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import tiny_trial

from langdml_core import train as train_module
from langdml_core.config import TrialConfig
from langdml_core.errors import ConfigError, NonFiniteLossError
from langdml_core.train import train_trial


def strip_timing(history):
    return [
        {k: v for k, v in row.items() if k != "train/seconds" and not k.startswith("time/")}
        for row in history
    ]


def test_trial_writes_per_epoch_metrics_and_config(tmp_path):
    summary = train_trial(tiny_trial(tmp_path))
    out = tmp_path / "run"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["final"] == summary["final"] and len(saved["history"]) == 2
    for row in saved["history"]:
        for k in (1, 2, 4, 8):
            assert 0.0 <= row[f"test/recall_at_{k}"] <= 1.0
        assert math.isfinite(row["train/dml_loss"])
    assert json.loads((out / "config.json").read_text())["run"]["epochs"] == 2
    assert sorted(p.name for p in out.glob("checkpoint_epoch*.pt")) == [
        "checkpoint_epoch0001.pt",
        "checkpoint_epoch0002.pt",
    ]


def test_the_final_test_embeddings_are_kept_and_give_the_final_metrics(tmp_path):
    from langdml_core.data import build_dataset
    from langdml_core.evaluate import EMBEDDINGS_FILE, load_embeddings, retrieval_metrics

    summary = train_trial(tiny_trial(tmp_path))
    embeddings, labels, texts = load_embeddings(tmp_path / "run" / EMBEDDINGS_FILE)
    test = build_dataset(TrialConfig.from_dict(tiny_trial(tmp_path)).data).test
    assert embeddings.shape == (len(test), 32) and texts == test.class_texts
    assert labels.tolist() == test.labels.tolist()  # the eval loader keeps the split's order
    record = json.loads((tmp_path / "run" / "dataset.json").read_text())  # what it trained and tested on
    assert record["name"] == "demo" and record["source"] == "generated"
    assert record["splits"]["test"] == {
        "images": len(test),
        "classes": test.num_classes,
        "digest": test.digest(),
    }
    again = retrieval_metrics(embeddings, labels, ks=[1, 2, 4, 8])  # what a later analysis would compute
    for key in ("recall_at_1", "recall_at_8", "map_at_r", "map_at_1000"):
        assert again[key] == summary["final"][f"test/{key}"], key


def test_resume_after_a_crash_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    straight = train_trial(tiny_trial(tmp_path / "a"))

    def crash_after_first_epoch(row, state):
        if row["epoch"] == 1:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train_trial(tiny_trial(tmp_path / "b"), on_epoch_end=crash_after_first_epoch)
    resumed = train_trial(tiny_trial(tmp_path / "b"))
    assert strip_timing(resumed["history"]) == strip_timing(straight["history"])


def test_weight_average_is_the_naive_exponential_average_of_weights_and_statistics():
    """optim.ema=d: after step t the average is e_t = d * e_{t-1} + (1 - d) * w_t, with e_1 = w_1 (the first
    update copies), for parameters and BatchNorm statistics alike; the trained network is untouched."""
    from langdml_core.train import weight_average

    assert weight_average(torch.nn.Linear(2, 2), 0.0) is None
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    average = weight_average(model, 0.75)
    naive = None
    for _ in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(8, 3))  # moves the running statistics
        current = {
            k: v.detach().clone().double() for k, v in model.state_dict().items() if v.is_floating_point()
        }
        naive = current if naive is None else {k: 0.75 * naive[k] + 0.25 * current[k] for k in naive}
        average.update_parameters(model)
    got = average.module.state_dict()
    for key, value in naive.items():
        torch.testing.assert_close(got[key].double(), value, rtol=1e-6, atol=1e-6)
    assert not torch.equal(got["0.weight"], model.state_dict()["0.weight"])


def test_a_weight_averaged_trial_evaluates_the_average_and_resumes_exactly(tmp_path):
    """With optim.ema the test metrics are the average's (recomputed from the checkpoint's averaged weights),
    the last iterate is kept for training on, and a crash after epoch 1 resumes to the same history."""
    from langdml_core import checkpoint
    from langdml_core.backbones import build_model
    from langdml_core.data import build_dataset, eval_loader
    from langdml_core.data.transforms import eval_transform
    from langdml_core.evaluate import embed, retrieval_metrics

    config = tiny_trial(tmp_path / "a", **{"optim.ema": 0.5, "optim.lr": 1e-2})
    states = []
    straight = train_trial(config, on_epoch_end=lambda row, state: states.append(state))
    plain = train_trial(tiny_trial(tmp_path / "p", **{"optim.lr": 1e-2}))
    assert strip_timing(plain["history"]) != strip_timing(straight["history"])
    final = states[-1]
    assert final["ema_steps"] == 6 and checkpoint.evaluated_weights(final) is final["ema"]
    assert not torch.equal(final["ema"]["head.weight"], final["model"]["head.weight"])

    cfg = TrialConfig.from_dict(config)
    model = build_model(cfg.model)
    model.load_state_dict(final["ema"])
    norm = model.data_config
    test = build_dataset(cfg.data).test
    loader = eval_loader(
        test, eval_transform(64, norm["mean"], norm["std"], norm["interpolation"]), batch_size=256
    )
    again = retrieval_metrics(*embed(model.eval(), loader, torch.device("cpu")), ks=[1, 2, 4, 8])
    assert again["recall_at_1"] == straight["final"]["test/recall_at_1"]

    def crash_after_first_epoch(row, state):
        if row["epoch"] == 1:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train_trial(
            tiny_trial(tmp_path / "b", **{"optim.ema": 0.5, "optim.lr": 1e-2}),
            on_epoch_end=crash_after_first_epoch,
        )
    resumed = train_trial(tiny_trial(tmp_path / "b", **{"optim.ema": 0.5, "optim.lr": 1e-2}))
    assert strip_timing(resumed["history"]) == strip_timing(straight["history"])


def test_the_cosine_schedule_uses_the_naive_learning_rate_at_every_step():
    """optim.schedule=cosine, written out by hand: warm-up steps t < w use lr (t + 1) / w, then lr (1 + cos(pi
    (t - w) / (T - w))) / 2, one value per optimiser step; step keeps x gamma per milestone epoch."""
    from langdml_core.train import build_scheduler

    def lrs_used(overrides, total, per_epoch):
        cfg = TrialConfig.from_dict({"optim.lr": 0.5, **overrides})
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optim.lr)
        scheduler, per_step = build_scheduler(cfg, optimizer, total)
        used = []
        for t in range(total):
            used.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if per_step or (t + 1) % per_epoch == 0:
                scheduler.step()
        return used, per_step

    used, per_step = lrs_used({"optim.schedule": "cosine", "optim.warmup_steps": 2}, total=6, per_epoch=3)
    naive = [0.25, 0.5] + [0.25 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert per_step and used == pytest.approx(naive, abs=1e-12)
    assert used[2] == 0.5 and used[4] == pytest.approx(0.25) and used[5] < 0.1
    used, per_step = lrs_used({"optim.schedule": "cosine"}, total=4, per_epoch=2)
    assert used == pytest.approx([0.25 * (1 + math.cos(math.pi * k / 4)) for k in range(4)], abs=1e-12)
    used, per_step = lrs_used({"optim.milestones": [1], "optim.gamma": 0.1}, total=6, per_epoch=3)
    assert not per_step and used == pytest.approx([0.5] * 3 + [0.05] * 3)
    with pytest.raises(ConfigError, match="optim.warmup_steps=6 leaves nothing to decay: this run has 6 "):
        lrs_used({"optim.schedule": "cosine", "optim.warmup_steps": 6}, total=6, per_epoch=3)


def test_a_cosine_trial_decays_after_every_step_and_resumes_exactly(tmp_path):
    """2 epochs x 3 steps, 1 of warm-up: the checkpoint after epoch 1 holds the scheduler 3 steps in, with the
    lr of step 4 ((1 + cos(pi 2 / 5)) / 2 of optim.lr), the last one 6 steps in, at 0; a crash after epoch 1
    resumes to the same history, which differs from the constant schedule's."""
    overrides = {"optim.schedule": "cosine", "optim.warmup_steps": 1, "optim.lr": 1e-2}
    states = []
    straight = train_trial(
        tiny_trial(tmp_path / "a", **overrides), on_epoch_end=lambda row, state: states.append(state)
    )
    assert [s["scheduler"]["last_epoch"] for s in states] == [3, 6]
    lrs = [s["optimizer"]["param_groups"][0]["lr"] for s in states]
    assert lrs == pytest.approx([1e-2 * (1 + math.cos(math.pi * 2 / 5)) / 2, 0.0], abs=1e-15)
    constant = train_trial(tiny_trial(tmp_path / "c", **{"optim.lr": 1e-2}))
    assert strip_timing(constant["history"]) != strip_timing(straight["history"])

    def crash_after_first_epoch(row, state):
        if row["epoch"] == 1:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train_trial(tiny_trial(tmp_path / "b", **overrides), on_epoch_end=crash_after_first_epoch)
    resumed = train_trial(tiny_trial(tmp_path / "b", **overrides))
    assert strip_timing(resumed["history"]) == strip_timing(straight["history"])


def test_a_finished_run_is_not_run_again_and_changes_no_file(tmp_path, monkeypatch):
    first = train_trial(tiny_trial(tmp_path))
    out = tmp_path / "run"
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    monkeypatch.setattr(train_module, "build_dataset", lambda *a: pytest.fail("the finished run was rebuilt"))
    again = train_trial(tiny_trial(tmp_path))
    assert again == first
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_resume_takes_the_newer_of_tunes_checkpoint_and_the_run_directorys(tmp_path):
    from langdml_core import checkpoint

    states = []
    train_trial(tiny_trial(tmp_path), on_epoch_end=lambda row, state: states.append(state))
    out = tmp_path / "run"
    # Tune recorded epoch 1 only (its driver was killed before epoch 2's report): the directory's epoch 2 wins
    assert checkpoint.newest(states[0], out)["epoch"] == 2
    assert checkpoint.newest(states[1], out) is states[1]  # as new as the directory's: no load
    assert checkpoint.newest(states[0], tmp_path / "elsewhere") is states[0]
    assert checkpoint.newest(None, tmp_path / "elsewhere") is None
    (out / "metrics.json").unlink()  # killed between the checkpoint and metrics.json: written from the state
    summary = train_trial(tiny_trial(tmp_path), resume_state=states[0])
    assert [row["epoch"] for row in summary["history"]] == [1, 2]
    assert json.loads((out / "metrics.json").read_text())["history"] == summary["history"]


def test_validation_split_is_class_disjoint_and_evaluated(tmp_path):
    summary = train_trial(tiny_trial(tmp_path, **{"data.val_classes": 8, "run.epochs": 1}))
    assert "val/recall_at_1" in summary["final"] and "test/recall_at_1" in summary["final"]
    # eval.nmi_clusters=test (default): k-means k = each split's own number of classes
    assert (summary["final"]["test/nmi_k"], summary["final"]["val/nmi_k"]) == (48, 8)


def test_release_sampler_and_nmi_on_training_classes_are_wired_in(tmp_path, monkeypatch):
    from langdml_core.data.sampler import SAMPLERS, ClassRandomBatchSampler

    made = []

    class Spy(ClassRandomBatchSampler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setitem(SAMPLERS, "release", Spy)
    overrides = {
        "data.sampler": "release",
        "data.val_classes": 8,
        "eval.nmi_clusters": "train",
        "eval.precision": "fp32",
        "run.epochs": 1,
    }
    final = train_trial(tiny_trial(tmp_path, **overrides))["final"]
    # the last one built is the loader's (train_trial builds one first to check the batch fits the split)
    assert made and len(made[-1]) == len(made[-1].labels) // 32  # floor(N / B) batches
    # k-means k = the number of training classes (48 demo training classes - 8 held out), on both splits
    assert final["test/nmi_k"] == final["val/nmi_k"] == 40


def test_eval_every_skips_epochs_but_always_evaluates_the_last(tmp_path):
    summary = train_trial(
        tiny_trial(tmp_path, **{"run.epochs": 3, "eval.every": 2, "run.max_steps_per_epoch": 1})
    )
    evaluated = [row["epoch"] for row in summary["history"] if "test/recall_at_1" in row]
    assert evaluated == [2, 3]


def test_non_finite_loss_stops_the_trial_with_epoch_and_step(tmp_path, monkeypatch):
    real_build = train_module.build_loss

    def build_poisoned(*args, **kwargs):
        loss = real_build(*args, **kwargs)
        calls = {"n": 0}
        forward = loss.forward

        def poisoned(embeddings, labels, **kwargs):
            calls["n"] += 1
            terms = forward(embeddings, labels, **kwargs)
            return {k: v * float("nan") for k, v in terms.items()} if calls["n"] == 2 else terms

        loss.forward = poisoned
        return loss

    monkeypatch.setattr(train_module, "build_loss", build_poisoned)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 2.*last finite values: \{'dml_loss'"):
        train_trial(tiny_trial(tmp_path))


def test_frozen_bn_keeps_running_statistics(tmp_path):
    from langdml_core.backbones import build_model
    from langdml_core.config import ModelConfig

    model = build_model(ModelConfig(pretrained=False, embed_dim=8, frozen_bn=True)).train()
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    model(torch.randn(4, 3, 32, 32))
    assert torch.equal(before, bn.running_mean) and not bn.training and bn.weight.requires_grad


def test_frozen_stages_keep_their_pretrained_weights_and_the_rest_trains(tmp_path):
    """model.frozen_stages=N: the stem and the next N-1 of timm's coarse parameter groups do not move in
    training, the later stages and the head do; a frozen stage stays in eval mode even with frozen_bn off."""
    from langdml_core.backbones import build_model
    from langdml_core.config import ModelConfig

    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            backbone="test_efficientnet", pretrained=False, embed_dim=8, frozen_bn=False, frozen_stages=2
        )
    )
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    names = sorted(frozen)
    assert names and all(
        n.startswith(("backbone.conv_stem", "backbone.bn1", "backbone.blocks.0.")) for n in names
    )
    assert any(n.startswith("backbone.blocks.0.") for n in names)  # the stem and the first stage
    moving = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    stem_bn = model.backbone.bn1
    stats = stem_bn.running_mean.clone()
    late_bn = model.backbone.blocks[-1][0].bn1
    assert not stem_bn.training and late_bn.training  # frozen_bn off: only the frozen stages are in eval mode
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    optimizer.step()
    assert torch.equal(stats, stem_bn.running_mean)
    assert all(torch.equal(frozen[n], p) for n, p in model.named_parameters() if n in frozen)
    changed = [n for n, p in model.named_parameters() if n in moving and not torch.equal(moving[n], p)]
    assert any(n.startswith("head.") for n in changed) and any(
        n.startswith("backbone.blocks.1") for n in changed
    )


def test_freezing_every_stage_is_refused_with_the_number_allowed():
    import timm
    from timm.models._manipulate import group_parameters

    from langdml_core.backbones import build_model
    from langdml_core.config import ModelConfig
    from langdml_core.errors import ConfigError

    groups = len(
        group_parameters(
            m := timm.create_model("test_efficientnet", num_classes=0), m.group_matcher(coarse=True)
        )
    )
    with pytest.raises(
        ConfigError,
        match=rf"model.frozen_stages={groups}, .* has {groups} parameter groups.*at most {groups - 1}",
    ):
        build_model(ModelConfig(backbone="test_efficientnet", pretrained=False, frozen_stages=groups))
    build_model(ModelConfig(backbone="test_efficientnet", pretrained=False, frozen_stages=groups - 1))


def test_cli_rejects_typo_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "langdml_core.runner.cli", "train", "--set", "loss.nmae=margin"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "loss.nmae" in lines[0] and "loss.name" in lines[0]


def test_cli_missing_dataset_root_names_path_and_layout(tmp_path):
    missing = tmp_path / "nowhere"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "langdml_core.runner.cli",
            "train",
            "--set",
            "data.name=cub200",
            "--set",
            f"data.root={missing}",
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(missing) in lines[0] and "CUB_200_2011" in lines[0]


@pytest.mark.slow
def test_cli_train_is_reproducible(tmp_path):
    def run(out):
        cmd = [
            sys.executable,
            "-m",
            "langdml_core.runner.cli",
            "train",
            "--set",
            "run.epochs=1",
            "--set",
            "run.max_steps_per_epoch=4",
            "--set",
            "run.progress=false",
            "--out",
            str(out),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "final:" in result.stdout
        return json.loads((out / "metrics.json").read_text())

    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert strip_timing(a["history"]) == strip_timing(b["history"])


def test_elg_trial_logs_the_matching_term_every_epoch(tmp_path):
    summary = train_trial(tiny_trial(tmp_path, **{"language.guidance": "elg", "language.omega": 2.0}))
    assert [row["epoch"] for row in summary["history"]] == [1, 2]
    assert all(row["train/lang_match_loss"] > 0 for row in summary["history"])


def test_missing_local_encoder_checkpoint_is_a_clear_error(tmp_path):
    from langdml_core.errors import WeightsError

    missing = tmp_path / "no-bert-here"
    config = tiny_trial(
        tmp_path,
        **{
            "language.guidance": "elg",
            "language.encoder": "bert-base",
            "language.encoder_path": str(missing),
        },
    )
    with pytest.raises(WeightsError, match=str(missing)):
        train_trial(config)


def test_s2sd_trial_trains_with_backbone_features(tmp_path):
    config = tiny_trial(
        tmp_path,
        **{
            "loss.name": "s2sd",
            "run.epochs": 1,
            "loss.kwargs": {"target_dims": [24, 40], "feat_distill_delay": 0},
        },
    )
    row = train_trial(config)["history"][0]
    for term in ("dml_loss", "s2sd_target_loss", "s2sd_feat_distill_loss"):
        assert row[f"train/{term}"] > 0, term


def test_a_cold_and_a_warm_cache_give_identical_training(tmp_path, monkeypatch):
    """Frozen work that runs only on a cold cache (packaged-weight conversion, the ELG text table, the
    demo data) must not shift the training's random streams (issue 13: a 7-point swing came from this)."""
    monkeypatch.setenv("LANGDML_CACHE", str(tmp_path / "cache"))
    config = tiny_trial(
        tmp_path,
        **{
            "model.backbone": "tf_efficientnet_lite0",  # packaged weights: converted on a cold cache
            "model.pretrained": True,
            "model.embed_dim": 16,
            "optim.batch_size": 16,
            "run.epochs": 1,
            "language.guidance": "elg",  # MiniLM text table: built on a cold cache
            "language.omega": 1.0,
        },
    )
    cold = train_trial({**config, "run.out_dir": str(tmp_path / "cold")})
    assert (tmp_path / "cache" / "weights").is_dir()  # the first run did the conversion
    warm = train_trial({**config, "run.out_dir": str(tmp_path / "warm")})
    assert strip_timing(cold["history"]) == strip_timing(warm["history"])


def test_how_often_the_test_split_is_evaluated_does_not_change_the_training(tmp_path):
    """Iterating a DataLoader draws its base seed from the global torch RNG unless it has a generator of its
    own; the evaluation loaders must not, or eval.every would move the augmentation of every later epoch."""
    config = tiny_trial(tmp_path, **{"run.epochs": 3})
    every_epoch = train_trial({**config, "eval.every": 1, "run.out_dir": str(tmp_path / "every")})["history"]
    last_only = train_trial({**config, "eval.every": 3, "run.out_dir": str(tmp_path / "last")})["history"]
    assert ["test/recall_at_1" in row for row in every_epoch] == [True, True, True]
    assert ["test/recall_at_1" in row for row in last_only] == [False, False, True]

    def trained(history):
        return [
            {k: v for k, v in row.items() if k.startswith("train/") and k != "train/seconds"}
            for row in history
        ]

    assert trained(every_epoch) == trained(last_only)
    assert strip_timing(every_epoch)[-1] == strip_timing(last_only)[-1]  # the same model, evaluated the same


def test_retrieval_examples_show_the_exact_nearest_neighbours(tmp_path):
    from langdml_core.evaluate.examples import EXAMPLES_FILE, example_queries, nearest_neighbours

    embeddings = torch.nn.functional.normalize(
        torch.randn(40, 8, generator=torch.Generator().manual_seed(0)), dim=1
    )
    embeddings[7] = embeddings[3]  # a tie: the lower index first
    embeddings[9] = embeddings[3]
    queries = example_queries(40, 6)
    assert queries == [0, 7, 15, 23, 31, 39]
    found = nearest_neighbours(embeddings, queries, 4)
    for query, row in zip(queries, found, strict=True):
        sims = (embeddings @ embeddings[query]).tolist()
        naive = sorted((i for i in range(40) if i != query), key=lambda i: (-sims[i], i))[:4]
        assert row == naive
    assert found[1][:2] == [3, 9]  # query 7 is a copy of 3 and 9: both first, by index
    train_trial(tiny_trial(tmp_path))
    image = tmp_path / "run" / EXAMPLES_FILE
    assert image.read_bytes()[:3] == b"\xff\xd8\xff" and 10_000 < image.stat().st_size < 300_000


def test_each_stream_seed_moves_its_own_source_and_together_they_replace_run_seed(tmp_path):
    """run.init_seed / run.order_seed / run.augment_seed split a trial's randomness into three streams
    (to measure where seed-to-seed variance comes from): with all three set, run.seed changes nothing; each
    one alone changes the training; unset, each is run.seed (the augmentation continuing the init stream)."""
    config = tiny_trial(tmp_path, **{"run.epochs": 1, "eval.every": 1})
    streams = {"run.init_seed": 0, "run.order_seed": 0, "run.augment_seed": 0}

    def run(name, **keys):
        history = train_trial({**config, **keys, "run.out_dir": str(tmp_path / name)})["history"]
        return strip_timing(history)

    base = run("base", **streams, **{"run.seed": 3})
    assert run("other_run_seed", **streams, **{"run.seed": 9}) == base
    for key in streams:
        assert run(key, **{**streams, key: 1, "run.seed": 3}) != base, key
    # Unset, init and order are run.seed and augmentation continues the init stream: the runs before the keys.
    assert run("default", **{"run.seed": 3}) == run(
        "explicit", **{"run.seed": 5, "run.init_seed": 3, "run.order_seed": 3}
    )


def test_which_batches_and_which_head_follow_their_own_stream(tmp_path, monkeypatch):
    """The sampler draws from run.order_seed only and the embedding head's initial weights from run.init_seed
    only."""
    batches, heads = [], []
    real_loader, real_optimizer = train_module.train_loader, train_module.build_optimizer

    def spy_loader(*args, **kwargs):
        loader = real_loader(*args, **kwargs)
        loader.batch_sampler.set_epoch(1)
        batches.append([list(batch) for batch in loader.batch_sampler])
        return loader

    def spy_optimizer(cfg, model, criterion):  # built right after the head's initialisation
        heads.append(model.head.weight.detach().clone())
        return real_optimizer(cfg, model, criterion)

    monkeypatch.setattr(train_module, "train_loader", spy_loader)
    monkeypatch.setattr(train_module, "build_optimizer", spy_optimizer)
    config = tiny_trial(tmp_path, **{"run.epochs": 1, "run.max_steps_per_epoch": 1, "run.augment_seed": 0})
    for name, (init, order) in {"a": (0, 0), "b": (0, 1), "c": (1, 1)}.items():
        keys = {"run.init_seed": init, "run.order_seed": order, "run.seed": 7}
        train_trial({**config, **keys, "run.out_dir": str(tmp_path / name)})
    assert batches[0] != batches[1] and batches[1] == batches[2]  # order_seed alone picks the batches
    assert torch.equal(heads[0], heads[1]) and not torch.equal(heads[1], heads[2])  # init_seed alone the head

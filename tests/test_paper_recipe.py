"""The paper's recipe (langdml_core/paper.py) and the paper sweeps that use it.

The golden contract: each cell the release published resolves, through the sweep files and the sweep loader,
to the release's own command. The expected values below are transcribed by hand from the release's benchmark
script (commit b07ac5b; restated in the project brief's method notes, section 11), NOT computed from
langdml_core.paper: a wrong value there must fail here.
"""

from pathlib import Path

import pytest

from langdml_core import paper
from langdml_core.errors import ConfigError
from langdml_core.runner.sweep_file import load_sweep

ROOT = Path(__file__).resolve().parents[1]
TABLE1 = load_sweep(ROOT / "sweeps" / "table1.py")
BEST_512 = load_sweep(ROOT / "sweeps" / "best_512.py")

# Release benchmark script, commit b07ac5b: the PLG commands (dataset, dim, loss) ->
# (epochs, batch, omega, S2SD feature-distillation weight). Every S2SD command: delay 0, pool_aggr on,
# similarity distillation 0.
RELEASE_COMMANDS = {
    ("cub200", 128, "multisimilarity"): (200, 90, 7.5, None),
    ("cub200", 128, "s2sd"): (300, 108, 1.5, 125),
    ("cub200", 512, "multisimilarity"): (150, 90, 10, None),
    ("cub200", 512, "s2sd"): (250, 108, 2, 60),
    ("cars196", 128, "multisimilarity"): (250, 108, 6, None),
    ("cars196", 128, "s2sd"): (250, 108, 2.5, 50),
    ("cars196", 512, "multisimilarity"): (250, 108, 5.5, None),
    ("cars196", 512, "s2sd"): (300, 108, 2, 40),
}
# Every release command (same source): Adam lr 1e-5, wd 4e-4, constant lr, ResNet-50 (torchvision ImageNet
# weights) with frozen BN, 2 samples per class drawn by its class_random sampler, its CARS196 split, PLG top-5
# from a ResNet-50 classifier with its Resize(256)/CenterCrop(299) transform and averaged logits, CLIP
# ViT-B/32 text, T = 1, shift 1, fp32 (float16 flag off).
EVERY_COMMAND = {
    "optim.name": "adam",
    "optim.lr": 1e-5,
    "optim.weight_decay": 4e-4,
    "optim.milestones": [],
    "optim.gamma": 1.0,
    "optim.ema": 0.0,  # the last iterate is evaluated
    "model.backbone": "resnet50.tv_in1k",
    "model.pretrained": True,
    "model.frozen_bn": True,
    "model.frozen_stages": 0,  # the whole ResNet-50 trains
    "data.samples_per_class": 2,
    "data.sampler": "release",
    "data.split": "release",
    "language.guidance": "plg",
    "language.topk": 5,
    "language.plg_classifier": "resnet50.tv_in1k",
    "language.plg_transform": "release",
    "language.plg_average": "logits",
    "language.encoder": "clip-ViT-B-32",
    "language.temperature": 1.0,
    "language.shift": 1.0,
    "run.precision": "fp32",
    "eval.precision": "fp32",
}


def trials(sweep, dataset, loss, guidance="plg"):
    found = [
        t
        for t in sweep.trials
        if (t.config["data.name"], t.config["loss.name"], t.config["language.guidance"])
        == (dataset, loss, guidance)
    ]
    assert found, (sweep.name, dataset, loss, guidance)
    return found


@pytest.mark.parametrize("cell", list(RELEASE_COMMANDS), ids=lambda c: "/".join(map(str, c)))
def test_every_published_cell_resolves_to_the_release_command(cell):
    dataset, dim, loss = cell
    epochs, batch, omega, feat_w = RELEASE_COMMANDS[cell]
    sweep = TABLE1 if dim == 128 else BEST_512
    found = trials(sweep, dataset, loss)
    assert [t.config["run.seed"] for t in found] == [0, 1, 2]
    for trial in found:
        c = trial.config
        assert (c["run.epochs"], c["optim.batch_size"], c["model.embed_dim"]) == (epochs, batch, dim)
        assert c["language.omega"] == omega
        assert {k: c[k] for k in EVERY_COMMAND} == EVERY_COMMAND
        if loss == "multisimilarity":
            assert c["loss.kwargs"] == {"formulation": "release"}
        else:
            kwargs = c["loss.kwargs"]
            assert kwargs["base"] == "multisimilarity"
            assert kwargs["base_kwargs"] == {"formulation": "release"}
            assert kwargs["feat_distill_weight"] == feat_w
            assert kwargs["feat_distill_delay"] == 0 and kwargs["pool_aggr"] is True
            assert kwargs["sim_distill_weight"] == 0
        for key in ("run.epochs", "optim.batch_size", "language.omega"):
            assert (
                trial.sources[key]
                == f"release benchmark script (commit b07ac5b), PLG cell {dataset}/{dim}/{loss}"
            )


def test_cub_s2sd_and_cars_msim_plg_seed_0():
    cub = trials(TABLE1, "cub200", "s2sd")[0]
    c = cub.config
    assert c["run.seed"] == 0 and c["run.epochs"] == 300 and c["optim.batch_size"] == 108
    assert c["language.omega"] == 1.5
    kwargs = c["loss.kwargs"]
    assert (kwargs["feat_distill_weight"], kwargs["feat_distill_delay"], kwargs["pool_aggr"]) == (
        125,
        0,
        True,
    )
    assert kwargs["sim_distill_weight"] == 0
    assert c["data.sampler"] == "release" and c["language.plg_transform"] == "release"
    assert c["run.precision"] == c["eval.precision"] == "fp32"
    cars = trials(TABLE1, "cars196", "multisimilarity")[0].config
    assert (cars["run.seed"], cars["run.epochs"], cars["optim.batch_size"]) == (0, 250, 108)
    assert cars["language.omega"] == 6 and cars["data.split"] == "release"


@pytest.mark.parametrize("dataset", ["cub200", "cars196", "sop"])
@pytest.mark.parametrize("loss", ["multisimilarity", "margin", "s2sd"])
def test_none_and_elg_differ_from_plg_only_in_the_guidance(dataset, loss):
    plg = trials(TABLE1, dataset, loss, "plg")
    for guidance in ("none", "elg"):
        other = trials(TABLE1, dataset, loss, guidance)
        assert len(other) == len(plg) == 3
        for a, b in zip(plg, other, strict=True):
            differ = {k for k in a.config if a.config[k] != b.config[k]}
            if guidance == "elg":
                assert differ == {"language.guidance"}  # same omega, expert names instead of pseudo-labels
            else:
                assert differ == {"language.guidance", "language.omega"} and b.config["language.omega"] == 0
            assert b.sources["language.guidance"] == "swept in table1.py"


def test_cells_outside_the_release_are_marked_derived_or_stand_in():
    by_key = {
        t.name: {k: t.sources[k] for k in ("run.epochs", "optim.batch_size", "language.omega")}
        for t in TABLE1.trials
    }
    release = "release benchmark script (commit b07ac5b)"
    assert by_key["cub200/msim/plg/seed=0"]["run.epochs"].startswith(release)
    for name in ("cub200/msim/elg/seed=0", "cars196/s2sd/none/seed=1", "cub200/margin/plg/seed=2"):
        assert by_key[name]["run.epochs"].startswith("derived") and release in by_key[name]["run.epochs"]
    assert by_key["cub200/msim/elg/seed=0"]["language.omega"].startswith("derived")
    assert by_key["cub200/msim/none/seed=0"]["language.omega"].startswith("derived")
    for name in ("cub200/margin/plg/seed=0", "cars196/margin/elg/seed=0"):
        assert by_key[name]["language.omega"].startswith("stand-in")  # no margin omega in the release
    for name, sources in by_key.items():
        if name.startswith("sop/") and "/none/" not in name:
            assert all(s.startswith("stand-in") for s in sources.values()), name
    sop = trials(TABLE1, "sop", "s2sd")[0]
    assert sop.sources["loss.kwargs"].startswith("stand-in: feat_distill_weight <- stand-in")


@pytest.mark.parametrize("dataset", ["cub200", "cars196", "sop"])
def test_margin_cells_divide_as_the_release_code_runs(dataset):
    """The release's criteria/margin.py divides by torch.sum((pos_loss > 0.) + (neg_loss > 0.)), a bool OR:
    the triplets with a non-zero hinge term (tests/test_losses.py checks the expression's value). Every
    margin cell of Table 1 selects that divisor (count="triplets"), not method.md's "non-zero terms"."""
    for trial in trials(TABLE1, dataset, "margin"):
        assert trial.config["loss.kwargs"] == {"formulation": "release", "count": "triplets"}
        assert "bool OR" in trial.sources["loss.kwargs"]


@pytest.mark.parametrize("sweep", [TABLE1, BEST_512], ids=lambda s: s.name)
def test_every_value_has_a_source(sweep):
    for trial in sweep.trials:
        assert set(trial.sources) == set(trial.config)
        assert all(isinstance(s, str) and s.strip() for s in trial.sources.values()), trial.name


def test_every_recipe_value_names_its_kind():
    for dataset in paper.DATASETS:
        for dim in paper.DIMS:
            for loss in paper.LOSSES:
                for guidance in paper.GUIDANCE:
                    recipe = paper.recipe(dataset, dim, loss, guidance)
                    for key, (_value, source) in recipe.items():
                        assert source.startswith(paper.KINDS), (dataset, dim, loss, guidance, key, source)
                    if guidance != "plg" or loss == "margin":  # not in the release
                        assert not recipe["run.epochs"].source.startswith("release")
                        assert not recipe["language.omega"].source.startswith("release")


def test_sweeps_use_the_recipe_of_the_cell_they_ablate():
    # the cell cub200/128/multisimilarity of the release: 200 epochs, batch 90 (and CARS196: 250, 108)
    for name in ("omega", "topk", "prompts", "language_models", "backbones", "mask"):
        sweep = load_sweep(ROOT / "sweeps" / f"{name}.py")
        for trial in sweep.trials:
            c = trial.config
            assert c["loss.name"] == "multisimilarity" and c["model.embed_dim"] == 128, name
            expected = {"cub200": (200, 90), "cars196": (250, 108)}[c["data.name"]]
            assert (c["run.epochs"], c["optim.batch_size"]) == expected, (name, trial.name)
            assert c["data.sampler"] == "release" and c["run.precision"] == "fp32", name
    omega = load_sweep(ROOT / "sweeps" / "omega.py")
    assert {t.config["language.omega"] for t in omega.trials} == {1.0, 2.5, 5.0, 7.5, 10.0}  # swept wins


def test_unknown_cells_are_refused_in_one_sentence():
    with pytest.raises(ConfigError, match="no embed_dim 64"):
        paper.recipe("cub200", 64, "multisimilarity", "plg")
    with pytest.raises(ConfigError, match="no loss 'proxy_anchor'"):
        paper.recipe("cub200", 128, "proxy_anchor", "plg")


def test_recipe_values_are_fresh_per_call():
    a = paper.recipe("cub200", 128, "s2sd", "plg")
    a["loss.kwargs"].value["feat_distill_weight"] = 0
    a["optim.milestones"].value.append(3)
    b = paper.recipe("cub200", 128, "s2sd", "plg")
    assert b["loss.kwargs"].value["feat_distill_weight"] == 125 and b["optim.milestones"].value == []


@pytest.mark.parametrize("sweep", [TABLE1, BEST_512], ids=lambda s: s.name)
def test_paper_trials_read_the_image_cache_with_workers_from_their_cpu_share(sweep):
    for trial in sweep.trials:
        assert trial.config["data.cache_images"] is True and trial.config["data.num_workers"] == -1
        for key in ("data.cache_images", "data.num_workers"):
            assert trial.sources[key].startswith("langdml: "), (trial.name, key)  # not the release's: speed

import inspect
import json

import pytest
from torchvision import transforms as T

from langdml_core.config import SECTIONS, TrialConfig, field_docs, parse_overrides
from langdml_core.errors import ConfigError


def test_defaults_are_the_paper_recipe():
    cfg = TrialConfig()
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay) == ("adam", 1e-5, 4e-4)
    assert (cfg.optim.gamma, cfg.optim.milestones) == (1.0, [])  # constant lr, as released
    assert (cfg.optim.schedule, cfg.optim.warmup_steps) == ("step", 0)
    # the release's RandomResizedCrop(224) keeps torchvision's default scale (0.08, 1)
    assert (
        cfg.data.crop_scale == inspect.signature(T.RandomResizedCrop).parameters["scale"].default[0] == 0.08
    )
    assert (cfg.data.samples_per_class, cfg.model.embed_dim, cfg.model.frozen_bn) == (2, 128, True)
    assert (cfg.language.temperature, cfg.language.shift, cfg.language.topk) == (1.0, 1.0, 5)
    assert cfg.language.direction == "img||lang" and cfg.language.prompt == "a photo of a {}"
    assert cfg.eval.ks == [1, 2, 4, 8]


def test_every_field_has_a_docstring():
    for section, cls in SECTIONS.items():
        docs = field_docs(cls)
        missing = [k for k in TrialConfig().to_dict()[section] if not docs.get(k)]
        assert not missing, f"{section}: {missing}"


def test_unknown_key_names_key_and_suggests_nearest():
    with pytest.raises(ConfigError) as info:
        TrialConfig.from_dict({"loss.nmae": "margin"})
    message = str(info.value)
    assert "loss.nmae" in message and "'loss.name'" in message and "\n" not in message


def test_unknown_section_is_refused():
    with pytest.raises(ConfigError, match="optm"):
        TrialConfig.from_dict({"optm": {"lr": 1}})


def test_release_recipe_options_default_to_the_standard_protocol_and_fp32():
    """Issue 12: each release variant is a named option; the defaults stay the standard ones, and fp32."""
    cfg = TrialConfig()
    assert (cfg.data.sampler, cfg.data.split, cfg.language.plg_transform) == (
        "balanced",
        "official",
        "classifier",
    )
    assert (cfg.eval.nmi_clusters, cfg.eval.precision, cfg.run.precision) == ("test", "fp32", "fp32")
    release = TrialConfig.from_dict(
        {
            "data.sampler": "release",
            "data.split": "release",
            "language.plg_transform": "release",
            "eval.nmi_clusters": "train",
            "eval.precision": "bf16",
            "run.precision": "auto",
        }
    )
    assert release.flat()["data.split"] == "release"  # logged with the config (config.json, tracking)


@pytest.mark.parametrize(
    "key,value,fragment",
    [
        ("run.epochs", "ten", "must be an integer"),
        ("run.epochs", True, "must be an integer"),
        ("model.frozen_bn", "yes", "true or false"),
        ("optim.lr", "fast", "must be a number"),
        ("eval.ks", [0, 1], "positive integers"),
        ("language.guidance", "elgg", "did you mean 'elg'"),
        ("optim.batch_size", 91, "not divisible"),
        ("optim.batch_size", 2, "fewer than 2 classes"),
        ("language.prompt", "a photo", "must contain"),
        ("run.device", "tpu", "expected auto, cpu"),
        ("data.sampler", "class_random", "expected one of: balanced, release"),
        ("data.split", "releas", "did you mean 'release'"),
        ("language.plg_transform", "timm", "expected one of: classifier, release"),
        ("eval.precision", "fp16", "expected one of: fp32, bf16, auto"),
        ("eval.nmi_clusters", "val", "expected one of: test, train"),
        ("data.num_workers", -2, "must be >= 0, or -1 for workers from the trial's CPU share"),
        ("optim.ema", 1.0, r"optim.ema=1.0 must lie in \[0, 1\)"),
        ("optim.schedule", "cosin", "did you mean 'cosine'"),
        ("optim.warmup_steps", -1, r"optim.warmup_steps=-1 must be >= 0, and 0 unless optim.schedule=cosine"),
        ("optim.warmup_steps", 12, r"optim.warmup_steps=12 must be >= 0, and 0 unless .* \(it is step\)"),
        ("data.crop_scale", 0, r"data.crop_scale=0.0 must lie in \(0, 1\]"),
        ("data.crop_scale", 1.5, r"data.crop_scale=1.5 must lie in \(0, 1\]: .* \(release: 0.08\)"),
    ],
)
def test_bad_values_give_one_sentence(key, value, fragment):
    with pytest.raises(ConfigError, match=fragment) as info:
        TrialConfig.from_dict({key: value})
    assert "\n" not in str(info.value)


def test_a_value_that_contains_itself_is_refused_in_one_sentence():
    """YAML anchors build a list that holds itself (`--set optim.milestones='&a [*a]'`); it is refused by name
    instead of recursing until the interpreter dies."""
    for item in ("optim.milestones=&a [*a]", "loss.kwargs=&a {x: *a}", "eval.ks=[1, &a [*a]]"):
        with pytest.raises(ConfigError, match=r"^\S+ contains itself \(a YAML alias") as info:
            TrialConfig.from_dict(parse_overrides([item]))
        assert item.split("=")[0] in str(info.value) and "\n" not in str(info.value)


def test_the_cosine_schedule_refuses_epoch_milestones_in_one_sentence():
    with pytest.raises(ConfigError, match=r"optim.milestones=\[4\] belong to optim.schedule=step") as info:
        TrialConfig.from_dict({"optim.schedule": "cosine", "optim.milestones": [4], "optim.gamma": 0.1})
    assert "\n" not in str(info.value)
    cfg = TrialConfig.from_dict({"optim.schedule": "cosine", "optim.warmup_steps": 12})
    assert (cfg.optim.schedule, cfg.optim.warmup_steps) == ("cosine", 12)


def test_allowed_values_are_declared_once_on_the_config_fields():
    """Modules that act on a choice use the config field's Literal values; a dataset may support fewer."""
    from langdml_core import paper, train
    from langdml_core.config import CHOICES
    from langdml_core.data import base, cars196, cub200, folder, sop
    from langdml_core.language import encoders, guidance

    assert CHOICES["language.direction"] == guidance.DIRECTIONS == ("img||lang", "lang||img")
    assert tuple(train.SCHEDULES) == CHOICES["optim.schedule"] == ("step", "cosine")
    assert encoders.POOLINGS is CHOICES["language.pooling"] and base.SPLITS is CHOICES["data.split"]
    assert paper.GUIDANCE is CHOICES["language.guidance"] and cub200.LAYOUTS is CHOICES["data.layout"]
    assert cars196.LAYOUTS is CHOICES["data.layout"]
    assert {*sop.LAYOUTS, *folder.LAYOUTS} <= set(CHOICES["data.layout"])


def test_nested_dotted_and_mixed_forms_agree():
    a = TrialConfig.from_dict({"loss": {"name": "margin", "kwargs": {"margin": 0.3}}, "optim": {"lr": 1}})
    b = TrialConfig.from_dict({"loss.name": "margin", "loss.kwargs.margin": 0.3, "optim.lr": 1})
    assert a == b and a.optim.lr == 1.0 and isinstance(a.optim.lr, float)


def test_load_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("loss:\n  name: margin\nrun:\n  epochs: 3\n")
    cfg = TrialConfig.load(path, ["run.epochs=5", "eval.ks=[1, 4]", "loss.kwargs.margin=0.1"])
    assert (cfg.loss.name, cfg.run.epochs, cfg.eval.ks, cfg.loss.kwargs) == (
        "margin",
        5,
        [1, 4],
        {"margin": 0.1},
    )
    json_path = tmp_path / "c.json"
    json_path.write_text(json.dumps(cfg.to_dict()))
    assert TrialConfig.load(json_path) == cfg


def test_round_trip_through_flat_dict():
    cfg = TrialConfig.from_dict({"loss.kwargs": {"alpha": 3}, "data.val_classes": 4})
    assert TrialConfig.from_dict(cfg.flat()) == cfg


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="section.key=value"):
        TrialConfig.load(None, ["run.epochs"])


def test_scientific_notation_without_dot_is_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 1e-4\n")
    assert TrialConfig.load(path, ["loss.lr=5e-4"]).optim.lr == 1e-4
    assert TrialConfig.load(path, ["loss.lr=5e-4"]).loss.lr == 5e-4


@pytest.mark.parametrize("key", ["run.seed", "run.init_seed", "run.order_seed", "run.augment_seed"])
def test_every_seed_is_refused_outside_numpys_range_in_one_sentence(key):
    assert TrialConfig.from_dict({key: 2**32 - 1}).flat()[key] == 2**32 - 1
    for bad in (-1, 2**32):
        with pytest.raises(ConfigError) as info:
            TrialConfig.from_dict({key: bad})
        assert str(info.value) == f"{key}={bad} must lie in 0..2**32-1 (numpy's seed range)."


def test_stream_seeds_are_unset_by_default_and_can_be_unset_again():
    flat = TrialConfig.load(overrides=["run.init_seed=3", "run.init_seed=null"]).flat()
    assert (flat["run.init_seed"], flat["run.order_seed"], flat["run.augment_seed"]) == (None, None, None)

"""Search sweeps (sweeps/tune_omega.py): spec validation, listing, and the choice of the best proposal."""

from pathlib import Path

import pytest

from langdml_core.errors import ConfigError
from langdml_core.runner.records import TrialRecord
from langdml_core.runner.search import best_setting
from langdml_core.runner.search_spec import SearchSpec, searched_name
from langdml_core.runner.sweep_file import load_sweep

ROOT = Path(__file__).resolve().parents[1]
TUNE = ROOT / "sweeps" / "tune_omega.py"
SPACE = {"language.omega": ["loguniform", 0.1, 20.0]}


def record(name, omega, curve, status="TERMINATED"):
    history = [{"epoch": e, "val/recall_at_1": v} for e, v in enumerate(curve, 1)]
    return TrialRecord(name, config={"language.omega": omega}, history=history, status=status)


def test_best_is_the_best_last_epoch_among_proposals_that_trained_the_whole_schedule():
    spec = SearchSpec(space=SPACE)
    records = [
        record("a", 1.0, [0.5, 0.6, 0.7]),
        record("b", 2.0, [0.8]),  # stopped by ASHA after one epoch: its early score is not comparable
        record("c", 3.0, [0.4, 0.6, 0.75]),
        record("d", 4.0, [0.3, 0.9, float("nan")]),  # diverged at the end
    ]
    best = best_setting(records, spec, epochs=3)
    assert best["values"] == {"language.omega": 3.0} and best["trial"] == "c"
    assert best["val/recall_at_1"] == 0.75 and best["complete_trials"] == 2 and best["trials"] == 4
    assert best_setting(records, SearchSpec(space=SPACE, mode="min"), epochs=3)["trial"] == "a"
    with pytest.raises(ConfigError, match="No search trial reached epoch 5"):
        best_setting(records, spec, epochs=5)


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"space": SPACE, "samplez": 3}, "unknown get_search\\(\\) key 'samplez'"),
        ({"space": {"language.omega": ["normal", 0, 1]}}, "distribution one of loguniform, uniform"),
        ({"space": {"language.omega": ["loguniform", 2.0, 1.0]}}, "0 < low < high"),
        ({"space": {"language.omegaa": ["loguniform", 0.1, 1.0]}}, "language.omegaa"),
        ({"space": SPACE, "mode": "maximum"}, "'maximum'; expected 'max' or 'min'"),
        ({"space": SPACE, "final": {"run.epoch": 3}}, "run.epoch"),
    ],
)
def test_bad_search_specs_are_refused_in_one_sentence(raw, message):
    with pytest.raises(ConfigError, match=message):
        SearchSpec.from_dict(raw, "x.py")


def test_tune_omega_lists_proposals_then_the_retrain():
    sweep = load_sweep(TUNE)
    assert sweep.search is not None and sweep.declared_trials == len(sweep.trials) == 27
    # the cell's recipe (langdml_core/paper.py): CUB200 multisimilarity, 200 epochs, searched over all of them
    assert sweep.base_config["data.val_classes"] == 20 and sweep.base_config["run.epochs"] == 200
    final = [t for t in sweep.trials if t.name.startswith("final/")]
    assert [t.config["run.seed"] for t in final] == [0, 1, 2]
    assert all(t.config["data.val_classes"] == 0 and t.config["run.epochs"] == 200 for t in final)
    assert final[0].sources["data.val_classes"] == "tune_omega.py get_search()['final']"
    assert final[0].sources["language.omega"] == "searched by tune_omega.py get_search()"
    assert all(t.config["language.omega"].startswith("<loguniform") for t in sweep.trials)
    cars = load_sweep(TUNE, overrides=["data.name=cars196", "loss.name=margin"])
    assert cars.base_config["data.name"] == "cars196" and cars.base_config["optim.batch_size"] == 108
    assert cars.base_config["run.epochs"] == 250 and cars.base_config["loss.kwargs"] == {
        "formulation": "release",
        "count": "triplets",  # the release's margin divisor (tests/test_paper_recipe.py)
    }
    assert searched_name({"language.omega": 3.14159, "language.temperature": 0.5}) == (
        "search/omega=3.142/temperature=0.5"
    )


def test_a_search_tunes_one_cell(tmp_path):
    source = TUNE.read_text().replace(
        '"loss.name": ["multisimilarity"]', '"loss.name": ["multisimilarity", "margin"]'
    )
    (tmp_path / "two_cells.py").write_text(source)
    with pytest.raises(ConfigError, match="grid has 2 setups; a search tunes one setup"):
        load_sweep(tmp_path / "two_cells.py")


def test_ties_go_to_the_first_name_whatever_the_record_order():
    spec = SearchSpec(space=SPACE)
    records = [record("search/omega=2", 2.0, [0.5]), record("search/omega=1", 1.0, [0.5])]
    assert (
        best_setting(records, spec, 1)["trial"]
        == best_setting(records[::-1], spec, 1)["trial"]
        == "search/omega=1"
    )

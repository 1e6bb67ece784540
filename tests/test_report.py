"""The results table: mean +- std over seeds in percent, the paper's number and the difference; the paired
comparison of each guided setup with its no-guidance baseline on the same seeds (against a naive reference)."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
from scipy import stats

from langdml_core.runner import plots
from langdml_core.runner.records import TrialRecord
from langdml_core.runner.report import (
    PAIRED_TITLE,
    headline,
    paired_differences,
    paired_table,
    paper_results,
    reference_check,
    select_by_validation,
    summary_table,
    trial_rows,
    write_plots,
    write_report,
)


def record(seed, curve, status="TERMINATED"):
    history = [{"epoch": e, "test/recall_at_1": r} for e, r in enumerate(curve, 1)]
    varied = {
        "data.name": "cub200",
        "loss.name": "multisimilarity",
        "language.guidance": "none",
        "run.seed": seed,
    }
    return TrialRecord(f"s{seed}", varied, status=status, history=history)


def test_table_reports_percent_over_seeds_with_the_paper_and_the_failures():
    frame = trial_rows([record(0, [0.50, 0.60]), record(1, [0.66, 0.64]), record(2, [0.1], status="ERROR")])
    assert frame["last/test/recall_at_1"].tolist()[:2] == [0.60, 0.64]  # the parquet keeps fractions
    table = summary_table(frame, paper_results())
    header, _, row = table.splitlines()
    cells = dict(
        zip([c.strip() for c in header.split("|")], [c.strip() for c in row.split("|")], strict=True)
    )
    assert cells["seeds"] == "2" and cells["failed"] == "1"
    assert cells["recall_at_1 (last)"] == "62.00 +- 2.00"  # mean and population std of 60 and 64
    assert cells["recall_at_1 (best_test_epoch)"] == "63.00 +- 3.00"  # per trial best: 60 and 66
    paper = paper_results()
    ref = paper[
        (paper["table"] == "table1")
        & (paper["dataset"] == "cub200")
        & (paper["loss"] == "multisimilarity")
        & (paper["guidance"] == "none")
        & (paper["metric"] == "recall@1")
    ]["mean"].iloc[0]
    assert cells["paper R@1"] == f"{ref:.1f}" and cells["diff (best_test_epoch)"] == f"{63.0 - ref:+.1f}"


def test_the_headline_gives_each_setups_last_epoch_recall_first_and_caps_its_length(tmp_path):
    frame = trial_rows([record(0, [0.50, 0.60]), record(1, [0.66, 0.64]), record(2, [0.1], status="ERROR")])
    line = headline(frame)
    assert line == (
        "Test Recall@1, last epoch, mean +- std over seeds: "
        "**cub200, multisimilarity, none** 62.00 +- 2.00 (2 seeds)."
    )
    many = trial_rows(
        [
            TrialRecord(
                f"o{i}", {"language.omega": i, "run.seed": 0}, history=[{"epoch": 1, "test/recall_at_1": 0.5}]
            )
            for i in range(10)
        ]
    )
    assert headline(many, most=3).endswith("**2** 50.00 (1 seed); 7 more setups in the table.")
    sweep = SimpleNamespace(name="tiny", path="sweeps/tiny.py", trials=[], module=SimpleNamespace())
    assert write_report(sweep, [record(0, [0.5])], tmp_path).startswith("# tiny\n\nTest Recall@1")


# Last-epoch test R@1 (fractions) per (loss, guidance), seeds 0, 1, 2; map_at_r is half of it.
LAST = {
    ("multisimilarity", "none"): [0.60, 0.62, 0.64],
    ("multisimilarity", "elg"): [0.62, 0.65, 0.66],  # +2, +3, +2 points
    ("multisimilarity", "plg"): [0.61, 0.62, 0.66],  # +1, 0, +2
    ("margin", "none"): [0.50, 0.55, 0.52],
    ("margin", "elg"): [0.53, 0.56, 0.90],  # seed 2 fails: +3, +1 (the 0.90 must not count)
    ("margin", "plg"): [0.50, 0.55, 0.52],  # 0, 0, 0: no variance, no p
}
FAILED = {("margin", "elg", 2)}
OMEGA = {"none": 0.0, "elg": 7.5, "plg": 5.0}  # guided setups carry their own omega
EARLY = {("multisimilarity", "none", 0): 0.70}  # a first epoch better than the last: best_test_epoch differs


def guided_record(loss, guidance, seed):
    last = LAST[(loss, guidance)][seed]
    first = EARLY.get((loss, guidance, seed), last - 0.01)
    history = [
        {"epoch": e, "test/recall_at_1": r, "test/map_at_r": r / 2} for e, r in enumerate([first, last], 1)
    ]
    varied = {
        "data.name": "cub200",
        "loss.name": loss,
        "language.guidance": guidance,
        "language.omega": OMEGA[guidance],
        "run.seed": seed,
    }
    status = "ERROR" if (loss, guidance, seed) in FAILED else "TERMINATED"
    return TrialRecord(f"{loss}-{guidance}-{seed}", varied, status=status, history=history)


def guided_records():
    return [guided_record(loss, g, s) for (loss, g) in LAST for s in range(3)]


def naive(loss, guidance, protocol="last", scale=1.0):
    """The reference: per seed differences in points, mean, sd (ddof=1), t = mean / (sd / sqrt(n)), p."""
    diffs = []
    for seed in range(3):
        if (loss, guidance, seed) in FAILED or (loss, "none", seed) in FAILED:
            continue
        values = []
        for g in (guidance, "none"):
            last = LAST[(loss, g)][seed]
            first = EARLY.get((loss, g, seed), last - 0.01)
            values.append(scale * (max(first, last) if protocol == "best_test_epoch" else last))
        diffs.append(100 * (values[0] - values[1]))
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    t = mean / (sd / math.sqrt(n)) if sd > 1e-9 else math.nan
    p = 2 * stats.t.sf(abs(t), n - 1) if sd > 1e-9 else math.nan
    return n, mean, sd, t, p


def table_rows(markdown):
    header, _, *rows = markdown.splitlines()
    names = [c.strip() for c in header.strip("|").split("|")]
    return [dict(zip(names, [c.strip() for c in row.strip("|").split("|")], strict=True)) for row in rows]


def test_paired_differences_match_the_naive_reference():
    frame = trial_rows(guided_records())
    paired = paired_differences(frame)
    # 2 losses x 2 guided modes x 2 protocols x 2 metrics
    assert len(paired) == 16
    for _, row in paired.iterrows():
        loss, guidance = row["cfg.loss.name"], row["cfg.language.guidance"]
        scale = 0.5 if row["metric"] == "test/map_at_r" else 1.0
        n, mean, sd, t, p = naive(loss, guidance, row["protocol"], scale)
        assert row["n"] == n and math.isclose(row["mean"], mean, abs_tol=1e-9)
        assert math.isclose(row["std"], sd, abs_tol=1e-9)
        if math.isnan(t):
            assert math.isnan(row["t"]) and math.isnan(row["p"])
        else:
            assert math.isclose(row["t"], t, rel_tol=1e-6) and math.isclose(row["p"], p, rel_tol=1e-6)
    # by hand: multisimilarity + ELG, last epoch: +2, +3, +2 points -> mean 7/3, sd sqrt(1/3), t = 7
    ms_elg = paired[
        (paired["cfg.loss.name"] == "multisimilarity")
        & (paired["cfg.language.guidance"] == "elg")
        & (paired["protocol"] == "last")
        & (paired["metric"] == "test/recall_at_1")
    ].iloc[0]
    assert ms_elg["n"] == 3 and math.isclose(ms_elg["mean"], 7 / 3) and math.isclose(ms_elg["t"], 7.0)
    assert math.isclose(ms_elg["std"], math.sqrt(1 / 3)) and ms_elg["seeds"] == (0, 1, 2)
    # the failed margin + ELG seed 2 is not paired
    margin_elg = paired[(paired["cfg.loss.name"] == "margin") & (paired["cfg.language.guidance"] == "elg")]
    assert set(margin_elg["n"]) == {2} and all(s == (0, 1) for s in margin_elg["seeds"])


def test_paired_table_prints_the_numbers_in_points():
    table = paired_table(paired_differences(trial_rows(guided_records())))
    rows = {(r["loss.name"], r["language.guidance"], r["protocol"]): r for r in table_rows(table)}
    assert set(rows) == {
        (loss, g, p)
        for loss in ("multisimilarity", "margin")
        for g in ("elg", "plg")
        for p in ("last", "best_test_epoch")
    }
    ms_elg = rows[("multisimilarity", "elg", "last")]
    assert ms_elg["recall_at_1 n"] == "3" and ms_elg["recall_at_1 diff"] == "+2.33"
    assert ms_elg["recall_at_1 sd"] == "0.58" and ms_elg["recall_at_1 p"] == f"{2 * stats.t.sf(7.0, 2):.3g}"
    assert ms_elg["map_at_r diff"] == "+1.17" and ms_elg["map_at_r sd"] == "0.29"
    assert ms_elg["language.omega"] == "7.5"  # the guided setup's own omega (its baseline's is 0.0)
    # best epoch: the baseline's seed 0 peaked at 70: -8, +3, +2 -> mean -1, sd sqrt(37)
    best = rows[("multisimilarity", "elg", "best_test_epoch")]
    t = -1 / (math.sqrt(37) / math.sqrt(3))
    assert best["recall_at_1 diff"] == "-1.00" and best["recall_at_1 sd"] == f"{math.sqrt(37):.2f}"
    assert best["recall_at_1 p"] == f"{2 * stats.t.sf(abs(t), 2):.3g}"
    ms_plg = rows[("multisimilarity", "plg", "last")]  # +1, 0, +2: mean 1, sd 1, t = sqrt(3)
    assert ms_plg["recall_at_1 diff"] == "+1.00" and ms_plg["recall_at_1 sd"] == "1.00"
    assert ms_plg["recall_at_1 p"] == f"{2 * stats.t.sf(math.sqrt(3), 2):.3g}"
    margin_elg = rows[("margin", "elg", "last")]  # +3, +1 (seed 2 failed): mean 2, sd sqrt(2), t = 2
    assert margin_elg["recall_at_1 n"] == "2" and margin_elg["recall_at_1 diff"] == "+2.00"
    assert margin_elg["recall_at_1 sd"] == "1.41"
    assert margin_elg["recall_at_1 p"] == f"{2 * stats.t.sf(2.0, 1):.3g}"
    margin_plg = rows[("margin", "plg", "last")]  # identical runs: no variance, no p
    assert margin_plg["recall_at_1 diff"] == "+0.00" and margin_plg["recall_at_1 sd"] == "0.00"
    assert margin_plg["recall_at_1 p"] == "n/a"


def test_a_single_pair_has_no_std_and_no_p():
    records = [guided_record("multisimilarity", g, 0) for g in ("none", "elg")]
    row = table_rows(paired_table(paired_differences(trial_rows(records))))[0]
    assert row["recall_at_1 n"] == "1" and row["recall_at_1 diff"] == "+2.00"
    assert row["recall_at_1 sd"] == "n/a" and row["recall_at_1 p"] == "n/a"


def test_the_baseline_with_the_same_omega_wins_when_several_differ_only_in_omega():
    records = [guided_record("multisimilarity", g, s) for g in ("none", "elg") for s in range(3)]
    for seed in range(3):  # a second baseline at the guided omega, 1 point below the guided runs
        other = guided_record("multisimilarity", "none", seed)
        other.varied["language.omega"] = 7.5
        other.history = [{"epoch": 1, "test/recall_at_1": LAST[("multisimilarity", "elg")][seed] - 0.01}]
        records.append(other)
    paired = paired_differences(trial_rows(records))
    last = paired[(paired["protocol"] == "last") & (paired["metric"] == "test/recall_at_1")].iloc[0]
    assert [round(d, 9) for d in last["diffs"]] == [1.0, 1.0, 1.0]


def test_no_guidance_column_or_no_baseline_means_no_paired_section(tmp_path):
    frame = trial_rows([record(0, [0.50, 0.60]), record(1, [0.66, 0.64])])
    without = frame.drop(columns="cfg.language.guidance")
    assert paired_differences(without).empty and paired_table(paired_differences(without)) == ""
    assert paired_differences(frame).empty  # guidance present, but only "none"
    only_guided = [guided_record("multisimilarity", "elg", s) for s in range(3)]
    assert paired_differences(trial_rows(only_guided)).empty
    sweep = SimpleNamespace(name="plain", path="sweeps/plain.py", trials=[], module=SimpleNamespace())
    text = write_report(sweep, [record(0, [0.50, 0.60]), record(1, [0.66, 0.64])], tmp_path)
    assert PAIRED_TITLE not in text and not (tmp_path / "paired.png").exists()


def test_write_report_adds_the_paired_section_and_plot(tmp_path):
    sweep = SimpleNamespace(name="guided", path="sweeps/guided.py", trials=[], module=SimpleNamespace())
    text = write_report(sweep, guided_records(), tmp_path)
    assert (tmp_path / "table.md").read_text() == text
    main, paired = text.split(f"## {PAIRED_TITLE}")
    assert "| loss.name |" in main  # the main table comes first
    assert "| multisimilarity | elg | 7.5 | last | 3 | +2.33 | 0.58 |" in paired
    assert (tmp_path / "paired.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paired_plot_directly_and_through_write_plots(tmp_path):
    records = guided_records()
    frame = trial_rows(records)
    out = plots.paired_plot(paired_differences(frame), tmp_path / "direct.png")
    assert out == tmp_path / "direct.png" and out.read_bytes()[:4] == b"\x89PNG"
    sweep = SimpleNamespace(module=SimpleNamespace())
    written = write_plots(sweep, records, frame, tmp_path)
    assert tmp_path / "paired.png" in written and (tmp_path / "paired.png").read_bytes()[:4] == b"\x89PNG"
    assert (
        plots.paired_plot(paired_differences(frame.drop(columns="cfg.language.guidance")), tmp_path / "x.png")
        is None
    )


def search_frame():
    """guidance x omega x seeds with validation and test R@1; the test split must not sway the choice."""
    rows = []
    val = {("elg", 0.3): [0.50, 0.52], ("elg", 1.0): [0.55, 0.57], ("elg", 3.0): [0.56, 0.56],
           ("plg", 0.3): [0.40, 0.44], ("plg", 1.0): [0.42, 0.42], ("plg", 3.0): [0.30, 0.31]}  # fmt: skip
    for (guidance, omega), values in val.items():
        for seed, v in enumerate(values):
            rows.append(
                {
                    "cfg.language.guidance": guidance,
                    "cfg.language.omega": omega,
                    "cfg.run.seed": seed,
                    "status": "TERMINATED",
                    "last/val/recall_at_1": v,
                    "last/test/recall_at_1": 0.9 if omega == 0.3 else 0.5,
                }  # fmt: skip
            )
    return pd.DataFrame(rows)


def test_selection_uses_the_validation_split_and_breaks_ties_by_the_smaller_omega():
    text = select_by_validation(search_frame(), by=["language.guidance"], tie_break="language.omega")
    chosen = [line for line in text.splitlines() if "**yes**" in line]
    # elg: omega 1 and 3 both average 0.56 -> the smaller; plg: omega 0.3 averages 0.42, as does omega 1
    assert [c.split("|")[1:3] for c in chosen] == [[" elg ", " 1.0 "], [" plg ", " 0.3 "]]
    assert "56.00 +- 1.41" in chosen[0]  # mean and sample std over the seeds, in percent


def test_reference_check_says_which_setups_lie_inside_two_std():
    reference = pd.DataFrame(
        {
            "cfg.language.guidance": ["none"] * 3 + ["elg"] * 3,
            "cfg.run.seed": [0, 1, 2] * 2,
            "status": "TERMINATED",
            "last/test/recall_at_1": [0.60, 0.62, 0.64, 0.70, 0.70, 0.70],
        }  # fmt: skip
    )
    ours = pd.DataFrame(
        {
            "cfg.language.guidance": ["none", "elg"],
            "cfg.run.seed": [0, 0],
            "status": "TERMINATED",
            "last/test/recall_at_1": [0.65, 0.71],
        }  # fmt: skip
    )
    text = reference_check(ours, reference, "results/demo")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    band = 2 * 100 * float(np.std([0.60, 0.62, 0.64]))
    assert f"62.00 +- {band:.2f}" in rows["none"] and rows["none"].rstrip(" |").endswith(
        "yes"
    )  # 65 within 62 +- 3.27
    assert rows["elg"].rstrip(" |").endswith("NO")  # no spread at all: 71 is outside 70 +- 0
    assert "NOT every setup" in text


def test_a_smoke_run_is_not_compared_with_the_committed_reference(tmp_path):
    reference = tmp_path / "results" / "demo"
    reference.mkdir(parents=True)
    trial_rows([record(0, [0.6]), record(1, [0.62])]).to_parquet(reference / "trials.parquet")
    (tmp_path / "sweeps").mkdir()
    module = SimpleNamespace(REFERENCE="results/demo")

    def report(name):
        sweep = SimpleNamespace(name=name, path=tmp_path / "sweeps" / "demo.py", trials=[], module=module)
        return write_report(sweep, [record(0, [0.61])], tmp_path / "out" / name)

    compared = report("demo")
    assert "## Against the committed reference" in compared
    assert "Reference: `results/demo` (" in compared and str(tmp_path) not in compared  # no machine's path
    assert "## Against the committed reference" not in report("demo-smoke")


def test_an_interrupted_sweep_counts_no_false_failure_and_names_every_trial_it_lacks(tmp_path):
    trials = [SimpleNamespace(name=f"s{seed}") for seed in range(4)]
    sweep = SimpleNamespace(name="cut", path="sweeps/cut.py", trials=trials, module=SimpleNamespace())
    records = [record(0, [0.5, 0.6]), record(1, [0.6], status="INCOMPLETE"), record(2, [0.4], status="ERROR")]
    text = write_report(sweep, records, tmp_path)  # s3 never started
    assert "| cub200 | multisimilarity | none | 1 | 1 |" in text  # 1 finished seed, 1 failed (s1 is not)
    assert text.endswith(
        "## Not finished\n\n2 of 4 trials did not finish (the sweep was interrupted or is still running; "
        "`--resume` finishes it), so the rows above hold fewer seeds: `s1`, `s3`\n"
    )
    done = [record(0, [0.5]), record(1, [0.6]), record(2, [0.4], status="ERROR"), record(3, [0.7])]
    assert "Not finished" not in write_report(sweep, done, tmp_path)


def test_a_key_swept_over_null_and_numbers_is_written_and_tabled(tmp_path):
    """sweeps/demo_variance.py sweeps run.init_seed over [None, 0]: parquet needs one type per column, so such a
    column is written as the MLflow tags spell its values; number-only columns stay numbers."""
    records = [
        TrialRecord(
            f"i{init}/s{seed}",
            {"run.init_seed": init, "optim.lr": lr, "run.seed": seed},
            status="TERMINATED",
            history=[{"epoch": 1, "test/recall_at_1": 0.5 + seed / 10}],
        )
        for init, lr in ((None, 1e-4), (0, 2))
        for seed in (1, 2)
    ]
    sweep = SimpleNamespace(name="mixed", path="sweeps/mixed.py", trials=[], module=SimpleNamespace())
    text = write_report(sweep, records, tmp_path)
    frame = pd.read_parquet(tmp_path / "trials.parquet")
    assert frame["cfg.run.init_seed"].tolist() == ["None", "None", "0", "0"]
    assert frame["cfg.optim.lr"].tolist() == [1e-4, 1e-4, 2.0, 2.0]
    assert "| None | 0.0001 | 2 | 0 | 65.00 +- 5.00 |" in text
    assert "| 0 | 2.0 | 2 | 0 | 65.00 +- 5.00 |" in text

"""The results table: mean +- std over seeds in percent, the paper's number and the difference."""

from langdml_core.report import paper_results, summary_table, trial_rows


def record(seed, curve, status="TERMINATED"):
    history = [{"epoch": e, "test/recall_at_1": r} for e, r in enumerate(curve, 1)]
    varied = {
        "data.name": "cub200",
        "loss.name": "multisimilarity",
        "language.guidance": "none",
        "run.seed": seed,
    }
    return {"name": f"s{seed}", "varied": varied, "status": status, "history": history}


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

"""Pool the demo's seeds: the reference's 0-2 (results/demo) and demo_seeds' 3-7 (results/demo_seeds).

Prints, with the report's own functions, the table of all 8 seeds per setup (mean +- std, ddof 0 as the demo's
table) and each guided setup's paired difference to no guidance over the 8 seeds (paired t-test), then each
setup's std with ddof 0 and 1 for the 8 seeds and (ddof 0) for each folder's seeds.

    .venv/bin/python tests/manual/demo_pooled_seeds.py results/demo results/demo_seeds

Results: results/demo_seeds/pooled.md.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from langdml_core.runner.report import paired_differences, paired_table, summary_table


def main(folders: list[Path]) -> None:
    frames = [pd.read_parquet(f / "trials.parquet").assign(folder=f.name) for f in folders]
    frame = pd.concat(frames, ignore_index=True)
    print(summary_table(frame), end="\n\n")
    print(paired_table(paired_differences(frame)), end="\n\n")
    for guidance, rows in frame.groupby("cfg.language.guidance", sort=False):
        rows = rows.sort_values("cfg.run.seed")
        r1 = 100 * rows["last/test/recall_at_1"].to_numpy()
        blocks = ", ".join(
            f"{name} {np.std(100 * block['last/test/recall_at_1'].to_numpy()):.2f}"
            for name, block in rows.groupby("folder", sort=False)
        )
        print(
            f"{guidance}: {len(r1)} seeds, std {np.std(r1):.2f} (ddof 0), {np.std(r1, ddof=1):.2f} (ddof 1); "
            f"per folder (ddof 0): {blocks}; values {', '.join(f'{v:.2f}' for v in r1)}"
        )


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])

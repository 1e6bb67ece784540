"""Which attribute a demo model gets wrong: per trial, the share of test queries whose nearest neighbour (the
evaluator's exact one) has another colour, pattern or shape, and how those shares move together over trials.

If seeds differed by one confusion (say red vs orange), one kind would carry the spread; if they differ in how
good the network became overall, all three rise and fall together.

    .venv/bin/python tests/manual/demo_error_kinds.py results/ray/demo results/ray/demo_seeds

Reads each trial's test_embeddings.npz (the final test embeddings, with the class names). Results: README,
"What the demo shows".
"""

import sys
from pathlib import Path

import numpy as np

from langdml_core.evaluate import knn, load_embeddings

KINDS = ("colour", "pattern", "shape")  # the words of a demo class name, in order


def error_shares(path: Path) -> tuple[float, np.ndarray]:
    """(Recall@1 in %, % of queries whose neighbour differs in colour / pattern / shape)."""
    embeddings, labels, texts = load_embeddings(path)
    labels = labels.numpy()
    nearest = knn(np.ascontiguousarray(embeddings.numpy(), dtype=np.float32), 1)[:, 0].numpy()
    words = np.array([text.split() for text in texts])  # (classes, 3)
    differs = words[labels] != words[labels[nearest]]  # (queries, 3)
    return 100 * float((labels[nearest] == labels).mean()), 100 * differs.mean(axis=0)


def main(folders: list[Path]) -> None:
    rows = []
    for path in sorted(p for folder in folders for p in folder.glob("*_seed=*/test_embeddings.npz")):
        recall, shares = error_shares(path)
        rows.append((recall, *shares))
        print(
            f"{path.parent.name.rsplit('_', 2)[0]:12s} R@1 {recall:6.2f}  "
            + "  ".join(f"{kind} {share:5.2f}" for kind, share in zip(KINDS, shares, strict=True))
        )
    table = np.array(rows)
    print(
        f"\n{len(rows)} trials; std over trials: "
        + ", ".join(f"{name} {table[:, i].std():.2f}" for i, name in enumerate(("R@1", *KINDS)))
    )
    corr = np.corrcoef(table[:, 1:].T)
    print(
        "Pearson r between the kinds' shares over trials: "
        + ", ".join(f"{KINDS[i]}-{KINDS[j]} {corr[i, j]:.2f}" for i in range(3) for j in range(i + 1, 3))
    )


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])

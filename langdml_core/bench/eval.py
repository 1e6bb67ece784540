"""``langdml bench eval``: langdml's evaluation against pytorch-metric-learning's, and against the floors.

On clustered random embeddings of a given size (every class has at least two members), in one process:

- langdml's :func:`~langdml_core.evaluate.retrieval_metrics` as a trial runs it, with its defaults
  (Recall@1/2/4/8, R-precision, MAP@R, mAP@1000 with k = 1000, NMI by its torch k-means): the headline time;
- langdml's NMI through faiss k-means seeded like faiss's default (1234), i.e. the k-means
  pytorch-metric-learning runs, so that the NMI values can be compared (timed beside, not in the headline);
- pytorch-metric-learning's ``AccuracyCalculator`` on the same metrics it has (precision_at_1,
  r_precision, mean_average_precision_at_r, NMI) with ``k="max_bin_count"`` (never its default k=None,
  which needs an N x N result: tens of GB at SOP size); the query is excluded the same way (reference =
  query set); the shared metrics must agree;
- the floors, same chunking and thread count: the bare chunked similarity product (numpy's BLAS with all
  threads, numpy's BLAS as langdml's single-threaded workers, and torch.mm), and for k-means the bare
  N x clusters x D product, against which one k-means iteration is timed;
- the peak memory (maximum resident set) of a subprocess that runs only langdml's evaluation.

Each timing is repeated ``repeats`` times, interleaved (langdml and AccuracyCalculator alternate which
goes first), and printed as the median with [min, max].
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np
import torch

from langdml_core.bench.timing import summary, timed
from langdml_core.errors import UserError
from langdml_core.evaluate import (
    chunk_rows,
    map_products,
    nearest_centroids,
    nmi_with_iterations,
    retrieval_metrics,
)

# langdml key -> AccuracyCalculator key, and the agreement required
SHARED = {
    "recall_at_1": ("precision_at_1", 1e-4),
    "r_precision": ("r_precision", 1e-4),
    "map_at_r": ("mean_average_precision_at_r", 1e-4),
    "nmi": ("NMI", 1e-6),
}
FAISS_SEED = 1234  # faiss.Kmeans's default seed, which AccuracyCalculator's FaissKMeans uses
TARGET_VS_PML = 0.25  # issue 14: at SOP size, at most a quarter of AccuracyCalculator's time ...
TARGET_MEMORY_GIB = 2.0  # ... under 2 GiB peak
TARGET_RATIO = 1.3  # the kNN pass and a k-means iteration against their matrix-product floors


def make_embeddings(n: int, dim: int, classes: int, seed: int = 0, spread: float = 2.2):
    """(embeddings (n, dim) float32, L2-normalised; labels (n,) int64): noisy copies of random class
    centres. With n >= 2 * classes every class has at least two members; the rest are drawn at random."""
    if n < 2 or dim < 1 or classes < 1:
        raise UserError(f"bench eval needs n >= 2, dim >= 1 and classes >= 1 (got {n}, {dim}, {classes}).")
    rng = np.random.default_rng(seed)
    if n >= 2 * classes:
        labels = np.concatenate([np.repeat(np.arange(classes), 2), rng.integers(0, classes, n - 2 * classes)])
    else:
        labels = rng.integers(0, classes, n)
    labels = rng.permutation(labels).astype(np.int64)
    centres = rng.standard_normal((classes, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    emb = centres[labels]
    emb += rng.standard_normal((n, dim), dtype=np.float32) * np.float32(spread / np.sqrt(dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return np.ascontiguousarray(emb), labels


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


# ------------------------------------------------------------------------------------------- timings


def _langdml(emb: np.ndarray, labels: np.ndarray) -> tuple[float, dict, dict]:
    """langdml's metrics as a trial computes them (every default: the torch k-means NMI)."""
    timings: dict[str, float] = {}
    seconds, metrics = timed(lambda: retrieval_metrics(emb, labels, timings=timings))
    return seconds, metrics, timings


def _faiss_nmi(emb: np.ndarray, labels: np.ndarray) -> tuple[float, float, int]:
    """langdml's NMI through faiss k-means seeded as AccuracyCalculator's: the NMI to compare with its."""
    seconds, (value, iterations) = timed(
        lambda: nmi_with_iterations(emb, labels, nmi_backend="faiss", nmi_seed=FAISS_SEED)
    )
    return seconds, value, iterations


def _pml(emb: np.ndarray, labels: np.ndarray) -> tuple[float, dict]:
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    calculator = AccuracyCalculator(
        include=tuple(key for key, _ in SHARED.values()), k="max_bin_count", device=torch.device("cpu")
    )
    return timed(lambda: calculator.get_accuracy(torch.from_numpy(emb), torch.from_numpy(labels)))


def _floors(emb: torch.Tensor, step: int) -> dict[str, float]:
    """Bare chunked similarity products (no top-k, nothing else), same chunk rows and thread count."""
    from threadpoolctl import threadpool_limits

    n = emb.shape[0]
    data = emb.numpy()
    out = np.empty((step, n), np.float32)
    out_t = torch.from_numpy(out)

    def blas():
        with threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):
            for s in range(0, n, step):
                np.dot(data[s : s + step], data.T, out=out[: min(step, n - s)])

    def torch_mm():
        for s in range(0, n, step):
            torch.mm(emb[s : s + step], emb.T, out=out_t[: min(step, n - s)])

    def workers():
        map_products(emb, emb, lambda *args: None, step)

    return {
        "blas_threads": timed(blas)[0],
        "blas_workers": timed(workers)[0],
        "torch_mm": timed(torch_mm)[0],
    }


def _kmeans_iteration(emb: torch.Tensor, clusters: int, seed: int) -> dict[str, float]:
    """One torch k-means iteration (assign + update) and one faiss k-means iteration, with the floor."""
    from threadpoolctl import threadpool_limits

    n, d = emb.shape
    generator = torch.Generator().manual_seed(seed)
    centroids = emb[torch.randperm(n, generator=generator)[:clusters]].clone()
    x_aug = torch.cat([emb, emb.new_ones((n, 1))], dim=1)

    def iteration():
        with threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):
            assignment = nearest_centroids(x_aug, centroids)
            sums = torch.zeros_like(centroids).index_add_(0, assignment, emb)
            counts = torch.bincount(assignment, minlength=clusters)
            filled = counts > 0
            return sums[filled] / counts[filled, None].float()

    data, cdata = emb.numpy(), centroids.numpy()
    step = chunk_rows(clusters)
    out = np.empty((step, clusters), np.float32)

    def floor_threads():
        with threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):
            for s in range(0, n, step):
                np.dot(data[s : s + step], cdata.T, out=out[: min(step, n - s)])

    def floor_workers():
        map_products(emb, centroids, lambda *args: None)

    figures = {
        "torch_iteration": timed(iteration)[0],
        "floor_blas_threads": timed(floor_threads)[0],
        "floor_blas_workers": timed(floor_workers)[0],
    }
    faiss = _faiss()
    if faiss is not None:
        km = faiss.Kmeans(
            d, clusters, niter=1, seed=FAISS_SEED, max_points_per_centroid=n, min_points_per_centroid=1
        )
        figures["faiss_iteration"] = timed(lambda: km.train(data))[0]
    return figures


_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[4])
import numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
from langdml_core.evaluate import retrieval_metrics
emb, labels = np.load(sys.argv[1]), np.load(sys.argv[2])
def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))
baseline = status("VmHWM")
started = time.perf_counter()
retrieval_metrics(emb, labels, nmi_seed=int(sys.argv[5]))
print(json.dumps({"hwm_kib": status("VmHWM"), "baseline_kib": baseline, "seconds": time.perf_counter() - started}))
"""


def _peak_memory(emb: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Peak resident memory of a child process that loads the data and runs langdml's evaluation only.

    The peak is the child's own VmHWM (/proc/self/status), not getrusage's ru_maxrss: on Linux a child's
    ru_maxrss also counts the high-water mark it inherits at fork, i.e. this (large) parent's RSS.
    """
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # above langdml_core/
    with tempfile.TemporaryDirectory(prefix="langdml-bench-") as tmp:
        emb_path, labels_path = os.path.join(tmp, "emb.npy"), os.path.join(tmp, "labels.npy")
        np.save(emb_path, emb)
        np.save(labels_path, labels)
        args = [emb_path, labels_path, str(torch.get_num_threads()), root, str(FAISS_SEED)]
        done = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the memory subprocess failed:\n{done.stderr[-2000:]}")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    gib = 1024.0**2
    return {
        "peak_gib": child["hwm_kib"] / gib,
        "baseline_gib": child["baseline_kib"] / gib,
        "seconds": child["seconds"],
    }


# ----------------------------------------------------------------------------------------- benchmark


def bench_eval(
    n: int = 60502,
    dim: int = 512,
    classes: int = 11316,
    repeats: int = 3,
    seed: int = 0,
    *,
    memory: bool = True,
    log=print,
) -> dict[str, Any]:
    """Run the benchmark (see the module docstring) and return every figure.

    Returns a dict with ``config``, ``seconds`` (medians/min/max/runs of each timing), ``ratios``
    (per-repeat ratios summarised the same way), ``metrics`` (langdml's and AccuracyCalculator's values of
    the last repeat), ``agreement`` (per shared metric: |difference|, tolerance, ok), ``memory`` and
    ``targets`` ((a)-(d): value, limit, met).
    """
    faiss = _faiss()
    if faiss is None:
        raise UserError(
            "bench eval needs faiss (pip install faiss-cpu): AccuracyCalculator's kNN and k-means use it."
        )
    import sklearn.metrics  # noqa: F401  (imports are not what is timed)
    from pytorch_metric_learning.utils import accuracy_calculator  # noqa: F401

    threads = torch.get_num_threads()
    faiss.omp_set_num_threads(threads)  # the same thread count for everybody
    repeats = max(1, int(repeats))
    emb, labels = make_embeddings(n, dim, classes, seed)
    n_classes = int(np.unique(labels).size)
    emb_t = torch.from_numpy(emb)
    step = chunk_rows(n, threads)
    log(
        f"langdml bench eval: N={n} D={dim} classes={n_classes} (largest {np.bincount(labels).max()}), "
        f"{threads} threads, {repeats} interleaved repeats, chunks of {step} query rows"
    )
    runs: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}

    def record(store, key, value):
        store.setdefault(key, []).append(value)

    ours = theirs = {}
    faiss_nmi, faiss_iterations = float("nan"), 0
    for r in range(repeats):
        order = ("langdml", "pml") if r % 2 == 0 else ("pml", "langdml")
        for who in order:
            if who == "langdml":
                seconds, ours, parts = _langdml(emb, labels)
                record(runs, "langdml", seconds)
                record(runs, "langdml_knn", parts["knn_s"])
                record(runs, "langdml_nmi", parts["nmi_s"])
            else:
                seconds, theirs = _pml(emb, labels)
                record(runs, "pml", seconds)
            log(f"  repeat {r + 1}/{repeats}: {who} {seconds:.1f} s")
        faiss_nmi_s, faiss_nmi, faiss_iterations = _faiss_nmi(emb, labels)
        record(runs, "langdml_nmi_faiss", faiss_nmi_s)
        floors = _floors(emb_t, step)
        for key, value in floors.items():
            record(runs, f"floor_{key}", value)
        kmeans = _kmeans_iteration(emb_t, n_classes, seed + r)
        for key, value in kmeans.items():
            record(runs, f"kmeans_{key}", value)
        best_floor = min(floors["blas_threads"], floors["blas_workers"])
        best_kfloor = min(kmeans["floor_blas_threads"], kmeans["floor_blas_workers"])
        record(ratios, "langdml_over_pml", runs["langdml"][-1] / runs["pml"][-1])
        product_floor = min(best_floor, floors["torch_mm"])  # the fastest float32 product on this machine
        record(ratios, "product_floor_over_pml", product_floor / runs["pml"][-1])
        record(ratios, "knn_over_floor", runs["langdml_knn"][-1] / best_floor)
        record(ratios, "knn_over_torch_floor", runs["langdml_knn"][-1] / floors["torch_mm"])
        record(ratios, "kmeans_iteration_over_floor", kmeans["torch_iteration"] / best_kfloor)
        if "faiss_iteration" in kmeans:
            record(ratios, "faiss_kmeans_iteration_over_floor", kmeans["faiss_iteration"] / best_kfloor)
        log(
            f"  repeat {r + 1}/{repeats}: floor {best_floor:.1f} s, kNN/floor {ratios['knn_over_floor'][-1]:.3f}, "
            f"k-means iteration/floor {ratios['kmeans_iteration_over_floor'][-1]:.3f}"
        )

    agreement = {}
    for key, (their_key, tolerance) in SHARED.items():
        value = faiss_nmi if key == "nmi" else ours[key]  # NMI: the same k-means (faiss, same seed) as theirs
        diff = abs(float(value) - float(theirs[their_key]))
        agreement[key] = {
            "pml_key": their_key,
            "value": float(value),
            "pml_value": float(theirs[their_key]),
            "abs_diff": diff,
            "tolerance": tolerance,
            "ok": diff <= tolerance,
        }
    mem = _peak_memory(emb, labels) if memory else None

    seconds = {key: summary(values) for key, values in runs.items()}
    ratio_summary = {key: summary(values) for key, values in ratios.items()}
    targets = {
        "a_langdml_vs_pml": {"value": ratio_summary["langdml_over_pml"]["median"], "limit": TARGET_VS_PML},
        "b_knn_vs_floor": {"value": ratio_summary["knn_over_floor"]["median"], "limit": TARGET_RATIO},
        "c_kmeans_iteration_vs_floor": {
            "value": ratio_summary["kmeans_iteration_over_floor"]["median"],
            "limit": TARGET_RATIO,
        },
    }
    if mem is not None:
        targets["d_peak_memory_gib"] = {"value": mem["peak_gib"], "limit": TARGET_MEMORY_GIB}
    for target in targets.values():
        target["met"] = target["value"] <= target["limit"]
    return {
        "config": {
            "n": n,
            "dim": dim,
            "classes": n_classes,
            "repeats": repeats,
            "seed": seed,
            "threads": threads,
            "chunk_rows": step,
            "knn_k": ours.get("knn_k"),
        },
        "seconds": seconds,
        "ratios": ratio_summary,
        "metrics": {
            "langdml": dict(ours),
            "pml": {k: float(v) for k, v in theirs.items()},
            "langdml_faiss_kmeans": {"nmi": faiss_nmi, "nmi_iterations_run": faiss_iterations},
        },
        "agreement": agreement,
        "memory": mem,
        "targets": targets,
    }


def format_report(result: dict[str, Any]) -> str:
    """The figures of :func:`bench_eval` as text: medians with [min, max] over the repeats."""
    s, q, cfg = result["seconds"], result["ratios"], result["config"]

    def sec(key):
        v = s[key]
        return f"{v['median']:8.2f} s  [{v['min']:.2f}, {v['max']:.2f}]"

    def rat(key):
        v = q[key]
        return f"{v['median']:8.3f}    [{v['min']:.3f}, {v['max']:.3f}]"

    m = result["metrics"]["langdml"]
    f = result["metrics"]["langdml_faiss_kmeans"]

    def row(label, value):
        return f"  {label:<70s}{value}"

    method = "faiss" if m.get("nmi_faiss") else "torch"
    lines = [
        f"N={cfg['n']} D={cfg['dim']} classes={cfg['classes']}, {cfg['threads']} threads, "
        f"{cfg['repeats']} interleaved repeats; median [min, max]",
        row("langdml retrieval_metrics (R@1/2/4/8, R-prec, MAP@R, mAP@1000, NMI)", sec("langdml")),
        row(f"  kNN pass (one exact chunked pass, k={cfg['knn_k']})", sec("langdml_knn")),
        row(
            f"  NMI ({method} k-means, k={m.get('nmi_k')}, <= {m.get('nmi_iterations')} it., "
            f"{m.get('nmi_iterations_run')} run)",
            sec("langdml_nmi"),
        ),
        row(
            f"[faiss k-means NMI as pml's, seed {FAISS_SEED}: {f['nmi_iterations_run']} it., {f['nmi']:.4f}]",
            sec("langdml_nmi_faiss"),
        ),
        row("pml AccuracyCalculator (P@1, R-prec, MAP@R, NMI; k=max_bin_count)", sec("pml")),
        row("langdml / AccuracyCalculator", rat("langdml_over_pml")),
        row(
            "  the float32 similarity product alone (fastest floor below) / AccuracyCalculator",
            rat("product_floor_over_pml"),
        ),
        f"  similarity matmul floor, {cfg['chunk_rows']} query rows per chunk:",
        row(f"  numpy BLAS, {cfg['threads']} threads", sec("floor_blas_threads")),
        row(
            f"  numpy BLAS, {cfg['threads']} single-threaded workers (langdml's layout)",
            sec("floor_blas_workers"),
        ),
        row(f"  torch.mm, {cfg['threads']} threads", sec("floor_torch_mm")),
        row("kNN pass / best numpy floor", rat("knn_over_floor")),
        row("kNN pass / torch.mm floor", rat("knn_over_torch_floor")),
        row(
            f"k-means iteration, torch path (assign + update, N x {cfg['classes']} x D)",
            sec("kmeans_torch_iteration"),
        ),
        row(f"  matmul floor, numpy BLAS {cfg['threads']} threads", sec("kmeans_floor_blas_threads")),
        row(f"  matmul floor, {cfg['threads']} single-threaded workers", sec("kmeans_floor_blas_workers")),
        row("  iteration / best floor", rat("kmeans_iteration_over_floor")),
    ]
    if "kmeans_faiss_iteration" in s:
        lines += [
            row("faiss k-means iteration (for comparison)", sec("kmeans_faiss_iteration")),
            row("  iteration / best floor", rat("faiss_kmeans_iteration_over_floor")),
        ]
    mem = result["memory"]
    if mem is not None:
        lines.append(
            f"  peak memory (VmHWM) of a subprocess running only langdml's evaluation: {mem['peak_gib']:.2f} GiB "
            f"(after loading the data: {mem['baseline_gib']:.2f} GiB; the evaluation took {mem['seconds']:.1f} s)"
        )
    lines.append("  agreement with AccuracyCalculator (last repeat):")
    for key, a in result["agreement"].items():
        lines.append(
            f"      {key:12s} {a['value']:.6f} vs {a['pml_key']:28s} {a['pml_value']:.6f}  |diff| {a['abs_diff']:.2e} "
            f"(<= {a['tolerance']:g}: {'ok' if a['ok'] else 'DISAGREE'})"
        )
    extra = ", ".join(f"{k}={m[k]:.4f}" for k in ("recall_at_2", "recall_at_4", "recall_at_8", "map_at_1000"))
    lines.append(f"      langdml only: {extra}")
    names = {
        "a_langdml_vs_pml": "(a) langdml time / AccuracyCalculator time",
        "b_knn_vs_floor": "(b) kNN pass / similarity matmul floor",
        "c_kmeans_iteration_vs_floor": "(c) k-means iteration / its matmul floor",
        "d_peak_memory_gib": "(d) peak memory, GiB",
    }
    lines.append("  targets:")
    for key, t in result["targets"].items():
        verdict = "met" if t["met"] else f"MISSED by {100 * (t['value'] / t['limit'] - 1):.1f} %"
        lines.append(f"      {names[key]:45s} {t['value']:.3f} (limit {t['limit']:g}): {verdict}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ CLI


def add_eval_parser(which) -> None:
    ev = which.add_parser(
        "eval",
        help="time the evaluation engine against pytorch-metric-learning and the matmul floors",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("--n", type=int, default=60502, help="number of embeddings (default: SOP's test size)")
    ev.add_argument("--dim", type=int, default=512, help="embedding dimension (default 512)")
    ev.add_argument(
        "--classes", type=int, default=11316, help="number of classes (default: SOP's test classes)"
    )
    ev.add_argument("--repeats", type=int, default=3, help="interleaved repeats of every timing (default 3)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocess")
    ev.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    ev.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    result = bench_eval(args.n, args.dim, args.classes, args.repeats, args.seed, memory=not args.no_memory)
    print(format_report(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2, default=float)
    return 0

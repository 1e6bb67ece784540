"""Measure the k-means backends and thread layouts at SOP size: seconds per Lloyd iteration.

On `langdml bench eval`'s embeddings (default 60,502 x 512, 11,316 clusters, the SOP test split's size), with
torch's thread count (and faiss's OpenMP threads set to it):

- faiss.Kmeans (every point, seed 1234), per iteration from its iteration_stats;
- the plain float32 assignment (one product, argmax) with numpy's BLAS as single-threaded workers;
- the exact screened assignment (langdml_core.evaluate.screen) with the float32 screen, and with the bf16
  screen for several chunk sizes and thread layouts (sequential: products on torch's threads then the screen;
  pipelined: the screen of a chunk beside the next product; workers: single-threaded product + screen each),
  on the initial centroids (k data points, the hardest case for the screen: many near ties) and on the
  centroids after 3 iterations;
- then a whole kmeans_torch run (20 iterations) with the default layout, each iteration timed, and the
  exact pairs per point the screen needed.

    .venv/bin/python tests/manual/kmeans_backends.py [--n 60502] [--dim 512] [--clusters 11316] [--faiss-iterations 5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from langdml_core.bench import FAISS_SEED, make_embeddings
from langdml_core.evaluate import assign_nearest, faiss_or_none
from langdml_core.evaluate.kmeans import lloyd_step
from langdml_core.evaluate.products import blas_threads
from langdml_core.evaluate.screen import Assigner, cpu_has_bf16_dot


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=60502)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=11316)
    parser.add_argument("--faiss-iterations", type=int, default=5)
    parser.add_argument("--seed", type=int, default=FAISS_SEED)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    emb, _ = make_embeddings(args.n, args.dim, args.clusters)
    x = torch.from_numpy(emb)
    n, k = args.n, args.clusters
    init = x[torch.randperm(n, generator=torch.Generator().manual_seed(args.seed))[:k]].clone()
    print(f"N={n} D={args.dim} k={k}, {threads} threads, CPU bf16 dot products: {cpu_has_bf16_dot()}")

    faiss = faiss_or_none()
    if faiss is not None and args.faiss_iterations:
        for omp in sorted({threads, 1}, reverse=True):
            faiss.omp_set_num_threads(omp)
            km = faiss.Kmeans(
                args.dim,
                k,
                niter=args.faiss_iterations,
                seed=args.seed,
                max_points_per_centroid=n,
                min_points_per_centroid=1,
            )
            total, _ = timed(lambda km=km: km.train(emb))
            stats = km.iteration_stats
            ends = [s["time"] for s in stats]
            per = np.diff([0.0, *ends])
            print(
                f"faiss k-means, {omp} OpenMP threads: {total:.2f} s for {len(stats)} iterations; per iteration "
                f"{', '.join(f'{v:.2f}' for v in per)} s (search part {stats[-1]['time_search']:.2f} s cumulative)"
            )
        faiss.omp_set_num_threads(threads)

    x_aug = torch.cat([x, x.new_ones((n, 1))], dim=1)
    with blas_threads():
        seconds, _ = timed(lambda: assign_nearest(x_aug, init, "auto"))
    print(f"plain float32 assignment (argmax), numpy BLAS {threads} single-threaded workers: {seconds:.2f} s")

    # centroids after 3 exact iterations, for the steady state
    assign = Assigner(x, "fp32")
    later = init
    for _ in range(3):
        _, later = lloyd_step(assign, x, later)
    layouts = [("fp32", 2048, "sequential")]
    if cpu_has_bf16_dot():
        layouts += [
            ("bf16", rows, lay)
            for rows in (1024, 2048, 4096)
            for lay in ("sequential", "pipelined", "workers")
        ]
    for screen, rows, layout in layouts:
        for name, centroids in (("initial", init), ("after 3 it.", later)):
            assign = Assigner(x, screen, rows=rows, layout=layout)
            with blas_threads():
                seconds, _ = timed(lambda a=assign, c=centroids: a(c))
            print(
                f"exact assignment, {screen} screen, {rows} rows/chunk, {layout}, "
                f"{name} centroids: {seconds:.2f} s ({assign.exact_pairs / n:.2f} exact pairs per point)"
            )

    assign = Assigner(x)
    centroids = init
    per, pairs, changed, moved = [], [], [], []
    previous = None
    with blas_threads():
        for _ in range(20):
            before = assign.exact_pairs
            seconds, (assignment, new) = timed(lambda c=centroids: lloyd_step(assign, x, c))
            per.append(seconds)
            pairs.append((assign.exact_pairs - before) / n)
            changed.append(n if previous is None else int((assignment != previous).sum()))
            moved.append(int((new != centroids).any(dim=1).sum()))
            previous, centroids = assignment, new
    print(
        f"kmeans_torch default layout ({assign.dtype} screen, {assign.rows} rows, {assign.layout}): "
        f"20 iterations {sum(per):.2f} s; per iteration {', '.join(f'{v:.2f}' for v in per)} s; exact pairs "
        f"per point {', '.join(f'{v:.2f}' for v in pairs)}; points whose cluster changed "
        f"{', '.join(map(str, changed))}; centroids moved {', '.join(map(str, moved))}"
    )


if __name__ == "__main__":
    main()

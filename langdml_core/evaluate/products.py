"""Chunked matrix products and their thread layout, shared by the kNN pass and k-means.

On CPU, torch's thread count of chunks run at once, each a single-threaded product (numpy's BLAS) and its
post-processing in its own thread (numpy releases the GIL), so no thread waits at a barrier and no idle
BLAS thread spins while post-processing runs. On GPU everything stays in torch, one chunk at a time.
"""

from __future__ import annotations

import contextlib
import queue
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

CHUNK_BYTES = 1 << 29
"""Similarities in flight over all chunks when no chunk size is given (512 MiB of float32)."""


def blas_threads(threads: int | None = None):
    """Limit numpy's BLAS to ``threads`` (default: torch's thread count) while evaluating."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads or torch.get_num_threads(), user_api="blas")


@contextlib.contextmanager
def full_fp32():
    """IEEE float32 products on GPU (no TF32) for the duration of an evaluation."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def use_numpy_gemm(device: torch.device, gemm: str) -> bool:
    """Whether products run in numpy's BLAS: on CPU unless ``gemm`` is "torch"."""
    # On CPU the BLAS numpy ships (OpenBLAS) is markedly faster than torch's MKL on AMD processors and
    # as fast elsewhere; both compute the same float32 product.
    return device.type == "cpu" and gemm in ("auto", "numpy")


class Gemm:
    """out = a @ b.T for row chunks a of a fixed b, into a reusable buffer (numpy BLAS or torch)."""

    def __init__(self, b: torch.Tensor, use_numpy: bool):
        self.b = b
        self.use_numpy = use_numpy
        self.b_np = b.numpy() if use_numpy else None
        self._buffer: torch.Tensor | None = None

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        rows, cols = a.shape[0], self.b.shape[0]
        if self._buffer is None or self._buffer.shape[0] < rows:
            self._buffer = torch.empty((rows, cols), dtype=torch.float32, device=self.b.device)
        out = self._buffer[:rows]
        if self.use_numpy:
            np.dot(a.numpy(), self.b_np.T, out=out.numpy())
        else:
            torch.mm(a, self.b.T, out=out)
        return out


def auto_chunk_rows(n_columns: int, chunk_size: int | None, workers: int = 1) -> int:
    """Rows per chunk: ``chunk_size``, or ~512 MiB of float32 products over the chunks in flight, at most
    1024 rows per single-threaded worker (larger blocks run markedly slower on two cores) or 4096."""
    if chunk_size is not None:
        if int(chunk_size) < 1:
            raise ValueError("chunk_size must be >= 1")
        return int(chunk_size)
    workers = max(workers, 1)
    rows = CHUNK_BYTES // (4 * max(n_columns, 1) * workers)
    return int(max(64, min(1024 if workers > 1 else 4096, rows)))


def map_products(
    a: torch.Tensor,
    b: torch.Tensor,
    fn,
    chunk_size: int | None = None,
    gemm: str = "auto",
    engine: str | None = None,
):
    """[fn(start, stop, a[start:stop] @ b.T, scratch) for every row chunk of a], in chunk order.

    engine "numpy" (the default on CPU): products are numpy arrays; with numpy's BLAS, torch's thread
    count of chunks are in flight at once, each with a single-threaded product and its post-processing
    in its own thread. engine "torch" (the default on GPU): torch tensors, one chunk at a time.
    ``scratch``: a reusable bool buffer of the product's size (numpy engine) or None.
    """
    engine = engine or ("numpy" if a.device.type == "cpu" else "torch")
    numpy_gemm = use_numpy_gemm(a.device, gemm)
    workers = torch.get_num_threads() if (engine == "numpy" and numpy_gemm) else 1
    n, m = a.shape[0], b.shape[0]
    step = auto_chunk_rows(m, chunk_size, workers)
    chunks = [(s, min(s + step, n)) for s in range(0, n, step)]
    if engine == "torch" or not numpy_gemm:
        product = Gemm(b, numpy_gemm)
        if engine == "torch":
            return [fn(s, e, product(a[s:e]), None) for s, e in chunks]
        scratch = np.empty(step * m, dtype=bool)
        return [fn(s, e, product(a[s:e]).numpy(), scratch) for s, e in chunks]
    a_np, b_np = a.numpy(), b.numpy()
    buffers: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(workers):
        buffers.put(None)

    def task(bounds):
        start, stop = bounds
        buffer = buffers.get()
        try:
            if buffer is None:
                buffer = (np.empty((step, m), np.float32), np.empty(step * m, bool))
            out = buffer[0][: stop - start]
            np.dot(a_np[start:stop], b_np.T, out=out)
            return fn(start, stop, out, buffer[1])
        finally:
            buffers.put(buffer)

    if workers == 1:
        return [task(bounds) for bounds in chunks]
    with blas_threads(1), ThreadPoolExecutor(workers, thread_name_prefix="langdml-eval") as pool:
        return list(pool.map(task, chunks))

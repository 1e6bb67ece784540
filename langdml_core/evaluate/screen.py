"""Exact nearest-centroid assignment through a low-precision screen.

The nearest centroid of x (squared L2) maximises score(x, c) = x.c - |c|^2 / 2. One matrix product per chunk
of rows scores them against every centroid in the screen's precision (bf16 on CPUs with bf16 dot products:
about 3x the float32 rate on two cores; float32 elsewhere). Every screened score is within a proven bound
E of the true one, so only centroids whose screened score is within 2E of the row's best can be nearest:
a row with one such candidate takes it; a row with several (near ties) scores its candidates exactly
(float64 products of the float32 inputs) and takes the best, ties to the lower centroid index. The result
is the exact nearest centroid whatever the screen's precision; the screen only decides how much work is
done exactly.

The bound, for a screen of unit roundoff u (bf16: 2^-8, float32: 2^-24) accumulating K terms in float32
(gamma_K = K 2^-24 / (1 - K 2^-24)): rounding x and c to the screen changes x.c by at most
(2u + u^2) sum_i |x_i c_i| <= (2u + u^2) |x| |c|; the accumulation adds at most gamma_K times the sum of
the absolute terms; |c|^2 / 2 enters as two bf16 parts (error <= u^2 |c|^2 / 2) or one float32 (<= 2^-24
|c|^2 / 2); a bf16 output adds u |y|. Per row it is taken with |c| <= max |c|, |y| <= |best| + 2E, and a
safety factor of 1.25. In bf16 the products carry a constant offset B = max |c|^2 / 2 + 2E (rounded up to
bf16), so that a row's best and its candidates are > 0, and the bf16 bit patterns, read as int16, order them:
numpy finds the best, the runner-up and the candidates on int16 with the GIL released. A row whose
threshold is not above 0 anyway (no centroid with x.c > |c|^2 / 2 - max |c|^2 / 2) is scored exactly
against every centroid.
"""

from __future__ import annotations

import functools
import math
import queue
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from langdml_core.evaluate.products import full_fp32, map_products

UNIT_ROUNDOFF = {torch.bfloat16: 2.0**-8, torch.float32: 2.0**-24}
SAFETY = 1.25
VERIFY_PAIRS = 8192  # candidate pairs scored exactly at a time (2 x 32 MiB of float64 rows at D = 512)


@functools.cache
def cpu_has_bf16_dot() -> bool:
    """Whether this CPU has native bf16 dot products (AVX512-BF16 or AMX-BF16; Linux /proc/cpuinfo)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def screen_dtype(device: torch.device, screen: str) -> torch.dtype:
    """The screen's precision: "bf16", "fp32", or "auto" (bf16 on CPUs with bf16 dot products, else fp32)."""
    if screen not in ("auto", "bf16", "fp32"):
        raise ValueError(f"screen={screen!r} must be 'auto', 'bf16' or 'fp32'")
    if screen == "auto":
        screen = "bf16" if device.type == "cpu" and cpu_has_bf16_dot() else "fp32"
    if screen == "bf16" and device.type != "cpu":
        raise ValueError("the bf16 screen runs on CPU only (GPUs use the fp32 screen)")
    return torch.bfloat16 if screen == "bf16" else torch.float32


def sparse_nonzero(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.nonzero of a 2-D bool array with few True entries, row-major order, reading it 8 bytes at a time."""
    flat = mask.reshape(-1)
    whole = flat.size // 8 * 8
    words = np.flatnonzero(flat[:whole].view(np.uint64))
    index = (words[:, None] * 8 + np.arange(8)).reshape(-1)
    index = np.concatenate([index[flat[index]], whole + np.flatnonzero(flat[whole:])])
    return np.divmod(index, mask.shape[1])


def _bf16_up(value: float) -> float:
    """The smallest bf16 value >= value (value > 0)."""
    exponent = math.floor(math.log2(value))
    step = 2.0 ** (exponent - 7)
    return math.ceil(value / step) * step


class Assigner:
    """Exact nearest centroid of each row of a fixed x (N, D) float32, for successive centroid sets.

    ``screen``: see :func:`screen_dtype`. ``gemm`` (float32 screen): "auto"/"numpy" on CPU: numpy's BLAS as
    single-threaded workers, the screen in numpy; "torch" (always off CPU): torch products and screen.
    ``rows``: query rows per bf16 chunk; ``layout``: the bf16 thread layout (see :meth:`_bf16`). The defaults
    (4096 rows, "workers") were the fastest at SOP size on two cores (tests/manual/kmeans_backends.py).
    """

    def __init__(
        self,
        x: torch.Tensor,
        screen: str = "auto",
        gemm: str = "auto",
        rows: int = 4096,
        layout: str = "workers",
    ):
        self.x = x.float().contiguous()
        self.n, self.d = self.x.shape
        self.dtype = screen_dtype(self.x.device, screen)
        if layout not in ("sequential", "pipelined", "workers"):
            raise ValueError(f"layout={layout!r} must be 'sequential', 'pipelined' or 'workers'")
        self.gemm, self.rows, self.layout = gemm, rows, layout
        self._lock = threading.Lock()
        self.x_norm = self.x.double().norm(dim=1)
        self.x_max = float(self.x_norm.max()) if self.n else 0.0
        self.u = UNIT_ROUNDOFF[self.dtype]
        if self.dtype == torch.bfloat16:  # [x, 1, 1, 1, 0 ...] against [c, -h_hi, -h_lo, B, 0 ...]
            self.k_terms = self.d + 3
            width = -(-self.k_terms // 16) * 16
            self.x_aug = torch.zeros((self.n, width), dtype=torch.bfloat16)
            self.x_aug[:, : self.d] = self.x
            self.x_aug[:, self.d : self.d + 3] = 1
        else:  # [x, 1] against [c, -h]
            self.k_terms = self.d + 1
            self.x_aug = torch.cat([self.x, self.x.new_ones((self.n, 1))], dim=1).contiguous()
        self.gamma = self.k_terms * 2.0**-24 / (1 - self.k_terms * 2.0**-24)
        self.exact_pairs = 0  # candidate pairs scored exactly over all calls (a measure of the screen)

    # ---------------------------------------------------------------------------------------- bounds

    def bound(self, x_norm: np.ndarray, best: np.ndarray) -> np.ndarray:
        """Per-row bound E (numpy float64) on |screened - exact score + offset| for every centroid whose
        screened score is within 2E of the row's best screened score ``best`` (after :meth:`prepare`)."""
        u, g = self.u, self.gamma
        input_rounding = 0.0 if self.dtype == torch.float32 else 2 * u + u * u
        dot = (input_rounding + g * (1 + u) ** 2) * x_norm * self.c_max
        rest = g * (self.h_max + self.offset) + (u * u if self.dtype == torch.bfloat16 else u) * self.h_max
        e0 = dot + rest + 1e-30
        output = (u if self.dtype == torch.bfloat16 else 2.0**-24) * (np.abs(best) + 2 * e0) * (1 + 2 * u)
        return SAFETY * (e0 + output)

    # ------------------------------------------------------------------------------------- the call

    @torch.no_grad()
    def __call__(self, centroids: torch.Tensor) -> torch.Tensor:
        """(N,) int64: the nearest of ``centroids`` (k, D) to each row of x."""
        c_aug = self.prepare(centroids)
        if self.dtype == torch.bfloat16:
            return self._bf16(c_aug)
        if self.x.device.type == "cpu" and self.gemm != "torch":
            return torch.cat(map_products(self.x_aug, c_aug, self._fp32_chunk, None, self.gemm, "numpy"))
        with full_fp32():  # the bound assumes float32 products (no TF32)
            return torch.cat(map_products(self.x_aug, c_aug, self._torch_chunk, None, "torch", "torch"))

    def prepare(self, centroids: torch.Tensor) -> torch.Tensor:
        """Set the centroids' exact scores and bounds; return their side of the screening product."""
        c = centroids.float().contiguous()
        self.k = c.shape[0]
        self.c64 = c.double()
        self.h64 = 0.5 * (self.c64 * self.c64).sum(1)
        self.c_max = float(self.c64.norm(dim=1).max())
        self.h_max = float(self.h64.max())
        self.offset = 0.0
        if self.dtype != torch.bfloat16:
            return torch.cat([c, -self.h64.float()[:, None]], dim=1).contiguous()
        self.offset = _bf16_up(self.h_max + 2 * float(self.bound(np.array(self.x_max), np.array(0.0))))
        h_hi = self.h64.to(torch.bfloat16)
        h_lo = (self.h64 - h_hi.double()).to(torch.bfloat16)
        c_aug = torch.zeros((self.k, self.x_aug.shape[1]), dtype=torch.bfloat16)
        c_aug[:, : self.d] = c
        c_aug[:, self.d], c_aug[:, self.d + 1], c_aug[:, self.d + 2] = -h_hi, -h_lo, self.offset
        return c_aug

    def _bf16(self, c_aug: torch.Tensor) -> torch.Tensor:
        """bf16 products in torch, each chunk's screen in numpy, in one of three layouts: "sequential"
        (products on torch's threads, then the screen), "pipelined" (the screen of a chunk in a second
        thread while the next chunk's product runs), "workers" (torch's thread count of workers, each a
        single-threaded product and its screen, as the float32 products run)."""
        out = torch.empty(self.n, dtype=torch.int64)
        rows = min(self.rows, self.n)
        workers = {"sequential": 1, "pipelined": 2, "workers": torch.get_num_threads()}[self.layout]
        buffers: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(workers):
            buffers.put(torch.empty((rows, self.k), dtype=torch.bfloat16))
        chunks = [(s, min(s + self.rows, self.n)) for s in range(0, self.n, self.rows)]

        def product(start: int, stop: int) -> torch.Tensor:
            buffer = buffers.get()
            torch.mm(self.x_aug[start:stop], c_aug.T, out=buffer[: stop - start])
            return buffer

        def screen(start: int, stop: int, buffer: torch.Tensor) -> None:
            try:
                keys = buffer[: stop - start].view(torch.int16).numpy()
                out[start:stop] = self._numpy_chunk(start, stop, keys)
            finally:
                buffers.put(buffer)

        if self.layout == "sequential":
            for start, stop in chunks:
                screen(start, stop, product(start, stop))
        elif self.layout == "pipelined":
            with ThreadPoolExecutor(1, thread_name_prefix="langdml-screen") as pool:
                done = [pool.submit(screen, start, stop, product(start, stop)) for start, stop in chunks]
                for future in done:
                    future.result()
        else:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(workers, thread_name_prefix="langdml-screen") as pool:
                    list(pool.map(lambda bounds: screen(*bounds, product(*bounds)), chunks))
            finally:
                torch.set_num_threads(threads)
        return out

    def _fp32_chunk(self, start: int, stop: int, scores: np.ndarray, _scratch) -> torch.Tensor:
        return self._numpy_chunk(start, stop, scores)

    def _numpy_chunk(self, start: int, stop: int, keys: np.ndarray) -> torch.Tensor:
        """Nearest centroids of rows start:stop from their screened scores (int16 bf16 keys or float32)."""
        rows = np.arange(stop - start)
        best = keys.argmax(axis=1)
        top = keys[rows, best]
        bf16 = keys.dtype == np.int16
        top_value = ((top.astype(np.int32) << 16).view(np.float32) if bf16 else top).astype(np.float64)
        threshold = top_value - 2 * self.bound(self.x_norm[start:stop].numpy(), top_value)
        if bf16:  # rounded down to bf16 (truncating a positive float32 does), as int16 keys
            t32 = threshold.astype(np.float32)
            t32 = np.where(t32 > threshold, np.nextafter(t32, np.float32(-np.inf)), t32)
            cut = (np.maximum(t32, 0).view(np.int32) >> 16).astype(np.int16)
            lowest = np.int16(np.iinfo(np.int16).min)
            # int16 keys order the scores >= 0 only: a row whose threshold is not above 0 is done exactly
            fallback = np.flatnonzero(threshold <= 0)
        else:
            cut = threshold.astype(np.float32)
            cut = np.where(cut > threshold, np.nextafter(cut, np.float32(-np.inf)), cut)
            lowest = np.float32(-np.inf)
            fallback = np.empty(0, np.int64)
        keys[rows, best] = lowest
        ambiguous = keys.max(axis=1) >= cut
        result = torch.from_numpy(best.astype(np.int64))
        if fallback.size:
            ambiguous[fallback] = False
            result[torch.from_numpy(fallback)] = self._exact_rows(torch.from_numpy(fallback + start))
        if ambiguous.any():
            cut[~ambiguous] = np.iinfo(np.int16).max if bf16 else np.inf  # no candidates there
            r, cols = sparse_nonzero(keys >= cut[:, None])
            ambiguous = np.flatnonzero(ambiguous)
            r = np.concatenate([r, ambiguous])
            cols = np.concatenate([cols, best[ambiguous]])
            rows_t, cols_t = torch.from_numpy(r + start), torch.from_numpy(cols.astype(np.int64))
            result[torch.from_numpy(ambiguous)] = self._exact_best(rows_t, cols_t)
        return result

    def _torch_chunk(self, start: int, stop: int, scores: torch.Tensor, _scratch) -> torch.Tensor:
        """:meth:`_numpy_chunk` in torch (GPU, float32 screen)."""
        top, best = scores.max(dim=1)
        bound = self.bound(self.x_norm[start:stop].cpu().numpy(), top.double().cpu().numpy())
        threshold = top.double() - 2 * torch.from_numpy(bound).to(scores.device)
        cut = threshold.float()  # rounded down to float32
        cut = torch.where(
            cut.double() > threshold, torch.nextafter(cut, torch.full_like(cut, -torch.inf)), cut
        )
        scores.scatter_(1, best[:, None], -torch.inf)
        ambiguous = torch.nonzero(scores.amax(dim=1) >= cut).squeeze(1)
        if ambiguous.numel():
            r, cols = torch.nonzero(scores[ambiguous] >= cut[ambiguous, None], as_tuple=True)
            r = torch.cat([r, torch.arange(ambiguous.numel(), device=r.device)])
            cols = torch.cat([cols, best[ambiguous]])
            best[ambiguous] = self._exact_best(ambiguous[r] + start, cols)
        return best

    def _exact_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """Nearest centroid of each of ``rows`` against every centroid: a float64 product, then the
        centroids within its rounding (<= 1e-12 relative) of the best are scored as :meth:`_exact_best`
        scores (a blocked product may round equal columns differently)."""
        rows = rows.to(self.x.device)
        with self._lock:
            self.exact_pairs += rows.numel() * self.k
        pair_rows, pair_cols = [], []
        for s in range(0, rows.numel(), 256):
            part = rows[s : s + 256]
            scores = self.x[part].double() @ self.c64.T - self.h64
            scale = self.x_norm[part].to(scores.device)[:, None] * self.c_max + self.h_max
            near = scores >= scores.amax(dim=1, keepdim=True) - 1e-12 * scale
            r, c = torch.nonzero(near, as_tuple=True)
            pair_rows.append(part[r])
            pair_cols.append(c)
        return self._exact_best(torch.cat(pair_rows), torch.cat(pair_cols))

    def _exact_best(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """For each distinct row (ascending), its candidate with the largest exact (float64) score, ties to
        the lower centroid index."""
        with self._lock:
            self.exact_pairs += rows.numel()
        device = self.c64.device
        rows, cols = rows.to(device), cols.to(device)
        scores = torch.empty(rows.numel(), dtype=torch.float64, device=device)
        if device.type == "cpu":  # numpy: no product temporaries
            x, c64, h64 = self.x.numpy(), self.c64.numpy(), self.h64.numpy()
            rows_np, cols_np, out = rows.numpy(), cols.numpy(), scores.numpy()
            for s in range(0, rows.numel(), VERIFY_PAIRS):
                r, c = rows_np[s : s + VERIFY_PAIRS], cols_np[s : s + VERIFY_PAIRS]
                out[s : s + VERIFY_PAIRS] = np.einsum("ij,ij->i", x[r].astype(np.float64), c64[c]) - h64[c]
        else:
            for s in range(0, rows.numel(), VERIFY_PAIRS):
                r, c = rows[s : s + VERIFY_PAIRS], cols[s : s + VERIFY_PAIRS]
                scores[s : s + VERIFY_PAIRS] = (self.x[r].double() * self.c64[c]).sum(1) - self.h64[c]
        _, inverse = torch.unique(rows, return_inverse=True)
        size = int(inverse.max()) + 1
        top = torch.full((size,), -torch.inf, dtype=torch.float64, device=device)
        top.scatter_reduce_(0, inverse, scores, "amax")
        winners = torch.where(scores == top[inverse], cols, self.k)
        pick = torch.full((size,), self.k, dtype=torch.int64, device=device)
        return pick.scatter_reduce_(0, inverse, winners, "amin")

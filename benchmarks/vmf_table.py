"""Speed, memory and accuracy of the vMF-VAE's table of w draws, against the blog's recipe.

Usage:
    python benchmarks/vmf_table.py    # tens of seconds; the blog's recipe needs most of a GB

Measures, for the default table (10^6 draws, d = 4, kappa = 20): the build time (median of 5)
and the peak memory allocated beyond the table itself (tracemalloc), of `build_w_table` and of
the blog's recipe (inverse CDF on a uniform grid of step 1e-7 over (-1, 1)). Then the
Kolmogorov-Smirnov distance between a 10^6-draw table and the exact CDF, for every d in
{2, 3, 4, 16, 128} and kappa in {0, 1, 20, 1000, 1e5}. The exact CDF comes from adaptive
quadrature (scipy.integrate.quad) of the density in t = 1 - w, independent of the table's
angle grid (tests/vmf_exact.py). Ends with one line:
    build_s=... peak_mb=... blog_build_s=... blog_peak_mb=... speedup=... max_ks=...
"""
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.vmf_exact import ks_distance  # noqa: E402

DIMS = (2, 3, 4, 16, 128)
KAPPAS = (0.0, 1.0, 20.0, 1000.0, 1e5)
SIZE = 10**6


def blog_recipe(kappa, dims, size, seed=None, step=1e-7):
    """The blog's table, restated: inverse CDF on a uniform grid of w with spacing `step`."""
    w = np.arange(-1 + step, 1, step)
    log_p = kappa * w + (dims - 3) / 2 * np.log(1 - w**2)
    cdf = np.cumsum(np.exp(log_p - log_p.max()))
    cdf /= cdf[-1]
    return np.interp(np.random.default_rng(seed).random(size), cdf, w)


def measure(build, repeats):
    """(median seconds, peak MB allocated beyond the returned array) of `build()`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        build()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    try:
        table = build()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return statistics.median(times), (peak - table.nbytes) / 1e6


def main():
    from common.run import machine
    from vae_vmf_keras import build_w_table, w_quantile_grid

    print(f"machine: {machine()}", flush=True)

    def ours():
        w_quantile_grid.cache_clear()  # time the whole build, grid included
        return build_w_table(20.0, 4, SIZE, seed=0)

    build_s, peak_mb = measure(ours, repeats=5)
    print(f"ours: {build_s:.4f} s, {peak_mb:.1f} MB beyond the {SIZE * 8 / 1e6:.0f} MB table",
          flush=True)
    blog_s, blog_mb = measure(lambda: blog_recipe(20.0, 4, SIZE, seed=0), repeats=2)
    print(f"blog: {blog_s:.4f} s, {blog_mb:.1f} MB beyond the table", flush=True)
    for dims in (2, 4):
        lo, hi = ks_distance(blog_recipe(0.0, dims, SIZE, seed=0), 0.0, dims)
        print(f"blog recipe d={dims} kappa=0: KS in [{lo:.2e}, {hi:.2e}]", flush=True)

    u = np.sort(np.random.default_rng(0).random(SIZE))
    ranks = np.arange(1, SIZE + 1)
    own = max(np.max(ranks / SIZE - u), np.max(u - (ranks - 1) / SIZE))
    print(f"the seed-0 uniforms behind every table below: KS {own:.2e} from U(0, 1)", flush=True)
    max_ks = 0.0
    for dims in DIMS:
        for kappa in KAPPAS:
            table = build_w_table(kappa, dims, SIZE, seed=0)
            lo, hi = ks_distance(table, kappa, dims)
            max_ks = max(max_ks, hi)
            print(f"d={dims:<4d} kappa={kappa:<8g} KS in [{lo:.2e}, {hi:.2e}]", flush=True)
    print(f"build_s={build_s:.4f} peak_mb={peak_mb:.1f} blog_build_s={blog_s:.3f} "
          f"blog_peak_mb={blog_mb:.0f} speedup={blog_s / build_s:.0f} max_ks={max_ks:.2e}")


if __name__ == "__main__":
    main()

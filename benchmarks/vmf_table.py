"""Speed, memory and accuracy of the vMF-VAE's table of w draws, and the blog's recipe's two
claims (8404): computing the CDF's logarithm and subtracting its maximum before exponentiating
lets it succeed even for kappa in the thousands, and once the CDF is cached, drawing is fast.

Usage:
    python benchmarks/vmf_table.py    # about a minute; the blog's recipe needs most of a GB

Measures, for the default table (10^6 draws, d = 4, kappa = 20): the build time (median of 5)
and the peak memory allocated beyond the table itself (tracemalloc), of `build_w_table` and of
the blog's recipe (inverse CDF on a uniform grid of step 1e-7 over (-1, 1)). Then the blog's
recipe at kappa = 1000 and 1e5 for every d in {2, 3, 4, 16, 128}, with NumPy's overflow and
invalid-value warnings raised as errors: whether it finishes with finite draws, and their
Kolmogorov-Smirnov distance to the exact CDF; and, to show what the subtraction of the maximum
prevents, the same without it. Then the time to draw 10^6 w from the recipe's cached CDF (the
interpolation alone, median of 5). Then the
Kolmogorov-Smirnov distance between a 10^6-draw table and the exact CDF, for every d in
{2, 3, 4, 16, 128} and kappa in {0, 1, 20, 1000, 1e5}. The exact CDF comes from adaptive
quadrature (scipy.integrate.quad) of the density in t = 1 - w, independent of the table's
angle grid (tests/vmf_exact.py). Ends with one line:
    build_s=... peak_mb=... blog_build_s=... blog_peak_mb=... speedup=... max_ks=...
    blog_large_kappa=finite|failed blog_large_kappa_max_ks=... blog_unshifted=overflows|finite
    blog_cached_draw_s=...
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


LARGE_KAPPAS = (1000.0, 1e5)


def blog_cdf(kappa, dims, step=1e-7, shift=True):
    """The blog's recipe, restated: the CDF of w on a uniform grid of spacing `step`, from the
    density's logarithm less its maximum (`shift`; without it, exp overflows for large kappa)."""
    w = np.arange(-1 + step, 1, step)
    log_p = kappa * w + (dims - 3) / 2 * np.log(1 - w**2)
    cdf = np.cumsum(np.exp(log_p - log_p.max() if shift else log_p))
    cdf /= cdf[-1]
    return w, cdf


def blog_draws(cdf, size, seed=None):
    """Draws of w by interpolating uniforms in the cached CDF (the recipe's last step)."""
    w, values = cdf
    return np.interp(np.random.default_rng(seed).random(size), values, w)


def blog_recipe(kappa, dims, size, seed=None, step=1e-7):
    """The blog's table: the CDF, then `size` draws from it."""
    return blog_draws(blog_cdf(kappa, dims, step), size, seed)


def strict(fn, *args):
    """fn(*args) with NumPy's overflow and invalid values raised: its result, or the error."""
    try:
        with np.errstate(over="raise", invalid="raise"):
            return fn(*args)
    except FloatingPointError as e:
        return e


def unshifted_overflows():
    """Whether the recipe without the subtraction of the maximum overflows (d = 4, the first
    large kappa), printed."""
    unshifted = strict(blog_cdf, LARGE_KAPPAS[0], 4, 1e-7, False)
    overflows = isinstance(unshifted, Exception) or not np.all(np.isfinite(unshifted[1]))
    print(f"blog recipe without subtracting the maximum, d=4 kappa={LARGE_KAPPAS[0]:g}: "
          + (f"fails ({unshifted!r:.80})" if overflows else "finite"), flush=True)
    return overflows


def blog_large_kappa():
    """The recipe at every d and large kappa, strict: ("finite", its largest KS upper bound) or
    ("failed:d=D,kappa=K", nan) at the first failure; and whether the unshifted recipe
    overflows (`unshifted_overflows`)."""
    worst = 0.0
    for dims in DIMS:
        for kappa in LARGE_KAPPAS:
            draws = strict(blog_recipe, kappa, dims, SIZE, 0)
            if isinstance(draws, Exception) or not np.all(np.isfinite(draws)):
                print(f"blog recipe d={dims} kappa={kappa:g}: failed ({draws!r:.80})", flush=True)
                return f"failed:d={dims},kappa={kappa:g}", float("nan"), unshifted_overflows()
            lo, hi = ks_distance(draws, kappa, dims)
            worst = max(worst, hi)
            print(f"blog recipe d={dims:<4d} kappa={kappa:<8g} finite, KS in [{lo:.2e}, {hi:.2e}]",
                  flush=True)
    return "finite", worst, unshifted_overflows()


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
    large, large_ks, overflows = blog_large_kappa()
    cached = blog_cdf(20.0, 4)
    draw_s, _ = measure(lambda: blog_draws(cached, SIZE, seed=0), repeats=5)
    print(f"blog recipe, 10^6 draws from the cached CDF (d=4, kappa=20): {draw_s:.4f} s",
          flush=True)

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
          f"blog_peak_mb={blog_mb:.0f} speedup={blog_s / build_s:.0f} max_ks={max_ks:.2e} "
          f"blog_large_kappa={large} blog_large_kappa_max_ks={large_ks:.2e} "
          f"blog_unshifted={'overflows' if overflows else 'finite'} "
          f"blog_cached_draw_s={draw_s:.4f}")


if __name__ == "__main__":
    main()

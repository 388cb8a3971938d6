"""Speed, memory and accuracy of the vMF-VAE's table of w draws, against the blog's recipe.

Usage:
    python benchmarks/vmf_table.py    # about 20 s on 2 CPU cores; the blog's recipe takes 0.7 GB

Measures, for the default table (10^6 draws, d = 4, kappa = 20): the build time (median of 5)
and the peak memory allocated beyond the table itself (tracemalloc), of `build_w_table` and of
the blog's recipe (inverse CDF on a uniform grid of step 1e-7 over (-1, 1)). Then the
Kolmogorov-Smirnov distance between a 10^6-draw table and the exact CDF, for every d in
{2, 3, 4, 16, 128} and kappa in {0, 1, 20, 1000, 1e5}. The exact CDF comes from adaptive
quadrature (scipy.integrate.quad) of the density in t = 1 - w, independent of the table's
angle grid. Ends with one line:
    build_s=... peak_mb=... blog_build_s=... blog_peak_mb=... speedup=... max_ks=...
"""
import math
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import integrate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DIMS = (2, 3, 4, 16, 128)
KAPPAS = (0.0, 1.0, 20.0, 1000.0, 1e5)
SIZE = 10**6


def exact_cdf(kappa, dims, w):
    """P(W <= w_i) at ascending points w for the density ~ exp(kappa w) (1 - w^2)^((d-3)/2).

    Integrates the density of t = 1 - w, ~ exp(-kappa t) (t (2 - t))^a with a = (d - 3)/2, over
    the pieces between consecutive points with scipy's adaptive quadrature. For d = 2 (a = -1/2)
    the pieces touching t = 0 or t = 2 use quad's algebraic weight, which integrates the
    endpoint singularity exactly; for d >= 4 the log-density is shifted by its value at the mode.
    quad's error estimates, summed over the pieces, must stay below 1e-9 of the total mass.
    """
    a = (dims - 3) / 2
    t = np.clip(1.0 - np.asarray(w, np.float64)[::-1], 0.0, 2.0)
    edges = np.concatenate([[0.0], t, [2.0]])
    shift = 0.0
    if a > 0:
        t_mode = 1.0 - kappa / (a + math.hypot(a, kappa))
        shift = -kappa * t_mode + a * math.log(t_mode * (2.0 - t_mode))

    def density(x):
        if a == 0:
            return math.exp(-kappa * x)
        if x <= 0.0 or x >= 2.0:
            return 0.0 if a > 0 else math.inf
        return math.exp(-kappa * x + a * math.log(x * (2.0 - x)) - shift)

    opts = dict(epsabs=0.0, epsrel=1e-11, limit=200, full_output=1)

    def singular_piece(x0, x1):
        left, right = x0 == 0.0, x1 == 2.0   # where the weight (t)^a or (2 - t)^a sits

        def smooth(x):
            rest = (1.0 if left else x ** a) * (1.0 if right else (2 - x) ** a)
            return math.exp(-kappa * x) * rest

        wvar = (a if left else 0.0, a if right else 0.0)
        return integrate.quad(smooth, x0, x1, weight="alg", wvar=wvar, **opts)[:2]

    pieces, errors = np.zeros(len(edges) - 1), np.zeros(len(edges) - 1)
    for j, (x0, x1) in enumerate(zip(edges[:-1], edges[1:])):
        if x1 <= x0:
            continue
        if a < 0 and (x0 == 0.0 or x1 == 2.0):
            pieces[j], errors[j] = singular_piece(x0, x1)
        else:  # the last piece, out to t = 2, gets break points at geometric steps
            points = np.geomspace(x0, x1, 40)[1:-1] if x1 == 2.0 and x0 > 0 else None
            pieces[j], errors[j] = integrate.quad(density, x0, x1, points=points, **opts)[:2]
    below = np.cumsum(pieces)           # P(T <= t_j) up to normalisation
    if not errors.sum() < 1e-9 * below[-1]:
        raise ArithmeticError(f"quadrature error {errors.sum() / below[-1]:.1e} of the mass "
                              f"(kappa={kappa}, dims={dims})")
    return (1.0 - below[:-1] / below[-1])[::-1]


def ks_distance(sample, kappa, dims, checkpoints=10_000):
    """Bounds (lower, upper) on sup |F_n - F| between the sample's empirical CDF and the exact one.

    F is evaluated at `checkpoints` order statistics; at each the empirical CDF jumps from
    (j-1)/n to j/n (the lower bound), and between consecutive ones both CDFs are monotone,
    which bounds the gap there (the upper bound exceeds the lower by at most n/checkpoints/n).
    """
    s = np.sort(np.asarray(sample, np.float64))
    n = len(s)
    ranks = np.unique(np.linspace(1, n, min(checkpoints, n)).round().astype(np.int64))
    f = exact_cdf(kappa, dims, s[ranks - 1])
    lower = float(np.max(np.maximum(np.abs(f - ranks / n), np.abs(f - (ranks - 1) / n))))
    gaps = np.maximum(f[1:] - ranks[:-1] / n, (ranks[1:] - 1) / n - f[:-1])
    upper = max(lower, float(gaps.max(initial=0.0)), float(f[0]), (ranks[0] - 1) / n)
    return lower, upper


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

"""The exact CDF of the vMF-VAE's w, by quadrature: the oracle the sampler tests (and
benchmarks/vmf_table.py) compare the table of w against, independent of its angle grid."""
import math

import numpy as np
from scipy import integrate


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

"""The statistics and rules behind the claims table's verdicts (common/claims/ uses them).

A verdict is one of: supported / not supported (the measurement is on the claim's side / the
other side of the rule beyond its uncertainty); inconclusive (the uncertainty covers both
sides); mixed (the parts of a claim, or the two metrics that judge it, disagree). Each rule's
docstring says what result gives each verdict. Where a verdict rests on a difference between
runs, each arm needs at least MIN_SEEDS seeds; the uncertainty of a difference combines the
seeds' spread and the test images' sampling error (`difference`), paired over the images where
both arms store each image's value. Standard library only (SciPy for Student's t, NumPy for the
per-image values).
"""
import math
import statistics


MIN_SEEDS = 3


SUPPORTED, NOT_SUPPORTED, MIXED, INCONCLUSIVE = ("supported", "not supported", "mixed",
                                                 "inconclusive")


class Missing(Exception):
    """A run the claim needs is not committed (or has too few seeds)."""


class Arm:
    """One arm of a comparison: a value per seed and, where each value is estimated on a sample
    of test images, its standard error over those images (`image_se`, one per seed) and, where
    the runs store them, each image's value (`per_image`, an array per seed, the images in the
    same order in every arm)."""

    def __init__(self, label, values, image_se=None, per_image=None):
        self.label, self.values = label, [float(v) for v in values]
        self.image_se = statistics.mean(image_se) if image_se else 0.0
        self.per_image = per_image

    @property
    def n(self):
        return len(self.values)

    @property
    def mean(self):
        return statistics.mean(self.values)

    @property
    def sd(self):
        return statistics.stdev(self.values) if self.n > 1 else 0.0

    def __str__(self):
        return f"{self.label} {mean_sd(self.values, 2 if abs(self.mean) < 10 else 1)}"


def t_quantile(df):
    from scipy import stats

    return float(stats.t.ppf(0.975, df)) if math.isfinite(df) else 1.959964


def paired(a, b):
    """Whether `difference` pairs the arms over the test images: both store each image's value,
    one array per seed, all on the same number of images (the first N of the test set)."""
    if a.per_image is None or b.per_image is None:
        return False
    if len(a.per_image) != a.n or len(b.per_image) != b.n:
        return False
    return len({len(v) for v in [*a.per_image, *b.per_image]}) == 1


PAIRING = {"paired": "paired over the same images",
           "unpaired": "unpaired, from each run's standard error",
           "none": "not counted (not every run stores it)"}


def pairing(pairs):
    """How the test images' error entered the differences of `pairs` [(a, b)], for a row."""
    kinds = ["paired" if paired(a, b) else "unpaired" if a.image_se or b.image_se else "none"
             for a, b in pairs]
    if len(set(kinds)) == 1:
        return PAIRING[kinds[0]]
    return "; ".join(f"{PAIRING[k]} in {kinds.count(k)} of {len(kinds)} differences"
                     for k in dict.fromkeys(kinds))


def interaction(values):
    """The seed-by-image mean square of a (seeds, images) array: the two-way residual
    sum_si (f_si − f̄_·i − f̄_s· + f̄)² / ((n − 1)(N − 1)), an estimate of how much a run's
    per-image values vary around what seed and image explain alone."""
    n, size = values.shape
    if n < 2:
        return 0.0  # one seed: no seeds' spread to hold it either
    residual = values - values.mean(0) - values.mean(1, keepdims=True) + values.mean()
    return float((residual ** 2).sum() / ((n - 1) * (size - 1)))


def images_variance(a, b):
    """The test images' part of the variance of mean(b) − mean(a).

    Paired (`paired`): with f(i) image i's value averaged over an arm's seeds,
    (var_i(f_b(i) − f_a(i)) − I_a/n_a − I_b/n_b) / N, at least 0, I being an arm's
    seed-by-image `interaction`: the part common to both arms (how hard an image is) cancels,
    and what seeds and images vary together is taken out, since the seeds' spread in
    `difference` already holds it. Otherwise unpaired, se_a² + se_b² (each arm's mean standard
    error over images): for runs scored on the same images the paired variance is
    se_a² + se_b² − 2·cov, so the unpaired one overstates it when the two runs' per-image values
    rise and fall together (NICE's runs do: the noise row prints how closely) and understates it
    when they move oppositely.
    """
    if not paired(a, b):
        return a.image_se ** 2 + b.image_se ** 2
    spread, wobble = paired_parts(a, b)
    return max(0.0, spread - wobble)


def paired_parts(a, b):
    """(var_i(f_b(i) − f_a(i)) / N, (I_a/n_a + I_b/n_b) / N) of two paired arms
    (`images_variance`)."""
    import numpy as np

    fa, fb = (np.asarray(x.per_image, np.float64) for x in (a, b))
    size = fa.shape[1]
    spread = float(np.var(fb.mean(0) - fa.mean(0), ddof=1))
    return spread / size, (interaction(fa) / a.n + interaction(fb) / b.n) / size


def difference(a, b):
    """(d, h): d = mean(b) − mean(a), h the half-width of its 95% interval.

    The variance adds the seeds' part, sd_a²/n_a + sd_b²/n_b, and the test images' part
    (`images_variance`: paired where both arms store per-image values, else unpaired). The
    quantile is Student's t at the Welch–Satterthwaite degrees of freedom of the seeds' part
    alone (normal if that part is zero): conservative, since the images' part, estimated from
    thousands of images, would raise them.
    """
    if a.n < 2 or b.n < 2:
        raise Missing(f"{MIN_SEEDS} seeds of both arms ({a.label}: {a.n}, {b.label}: {b.n})")
    va, vb = a.sd ** 2 / a.n, b.sd ** 2 / b.n
    seeds = va + vb
    df = seeds ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1)) if seeds > 0 else math.inf
    return b.mean - a.mean, t_quantile(df) * math.sqrt(seeds + images_variance(a, b))


def interval(d, h, digits=1):
    return f"{num(d, digits)} [{num(d - h, digits)}, {num(d + h, digits)}]"


def lower(a, b, what="", digits=1):
    """Claim: a is lower than b (a better loss, fewer pixels, ...).

    supported: the 95% interval of mean(b) − mean(a) lies wholly above 0;
    not supported: it lies wholly below 0 (b is the lower);
    inconclusive: it covers 0.
    """
    d, h = difference(a, b)
    verdict = SUPPORTED if d - h > 0 else NOT_SUPPORTED if d + h < 0 else INCONCLUSIVE
    return (f"{what}{b.label} − {a.label} = {interval(d, h, digits)}", verdict)


def same(a, b, margin, what="", digits=1):
    """Claim: a and b are about the same, within ±margin (practical equivalence).

    supported: the 95% interval of mean(b) − mean(a) lies inside [−margin, margin];
    not supported: it lies wholly outside that band;
    inconclusive: it crosses an edge of the band.
    """
    d, h = difference(a, b)
    inside = -margin <= d - h and d + h <= margin
    outside = d - h > margin or d + h < -margin
    verdict = SUPPORTED if inside else NOT_SUPPORTED if outside else INCONCLUSIVE
    return f"{what}{b.label} − {a.label} = {interval(d, h, digits)}", verdict


def each_seed(values, passes):
    """A claim about every run: supported if every seed passes, not supported if none does,
    inconclusive if the seeds disagree."""
    ok = [passes(v) for v in values]
    return SUPPORTED if all(ok) else NOT_SUPPORTED if not any(ok) else INCONCLUSIVE


PARTS_RULE = ("the parts combined: supported if every part is, not supported if one is and "
              "none is supported, mixed if some are supported and some not, inconclusive "
              "otherwise")


def combine(verdicts):
    """One verdict from the parts' (PARTS_RULE): supported if every part is; not supported if
    one or more are and none is supported, since a claim that needs every part fails on one
    decisive failure whatever the undecided parts show; mixed if some parts are supported and
    some not (a mixed part counts as both); inconclusive otherwise, where no part fails and one
    or more are undecided."""
    found = set(verdicts)
    if len(found) == 1:
        return verdicts[0]
    held = bool(found & {SUPPORTED, MIXED})
    failed = bool(found & {NOT_SUPPORTED, MIXED})
    if failed:
        return MIXED if held else NOT_SUPPORTED
    return INCONCLUSIVE


def judged(parts):
    """[(text, verdict)] → ("text (verdict); ...", combined verdict)."""
    return "; ".join(f"{t} ({v})" for t, v in parts), combine([v for _, v in parts])


def num(v, digits=1):
    """`v` to `digits` decimals with a typographic minus; a value that rounds to zero prints
    without a sign."""
    text = f"{v:.{digits}f}"
    if float(text) == 0:
        text = text.lstrip("-")
    return text.replace("-", "−")


def mean_sd(values, digits=1):
    if len(values) == 1:
        return f"{num(values[0], digits)} (1 seed)"
    return (f"{num(statistics.mean(values), digits)} ± {num(statistics.stdev(values), digits)} "
            f"({len(values)} seeds)")


LOWER_RULE = ("supported if the 95% interval of the difference lies wholly on the claimed "
              "side of 0, not supported if wholly on the other, inconclusive if it covers 0")


def apart(low, high):
    """Claim: every value of `high` exceeds every value of `low` (a rank rule for arms whose
    spread a mean cannot summarise, such as diverging runs). With 3 seeds against 3, that order
    arises by chance with probability 1/20 if the arms do not differ.

    supported: min(high) > max(low); not supported: min(low) > max(high) (the reverse order);
    inconclusive: the two overlap.
    """
    if min(high.values) > max(low.values):
        return SUPPORTED
    return NOT_SUPPORTED if min(low.values) > max(high.values) else INCONCLUSIVE

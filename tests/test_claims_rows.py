"""Each claims row's rule driven to every verdict its rule text names, from fake committed runs
(the fixtures and helpers are test_claims.py's). Only verdicts and a planted number are
asserted: the rows' wording is not pinned here. The `repo` fixture is conftest.py's."""
import json

import pytest

from common.claims import flow, gumbel
from common.rules import INCONCLUSIVE, MIXED, NOT_SUPPORTED, SUPPORTED
from test_claims import iw, nice_study, publish, row, seed_study, verdict

pytestmark = pytest.mark.quick

S, NS, MX, INC = SUPPORTED, NOT_SUPPORTED, MIXED, INCONCLUSIVE


def shifted(values, by):
    return [v + by for v in values]


# ---------------------------------------------------------------- 6705, Gumbel-Softmax


@pytest.mark.parametrize("tau_max, final_tau, expected", [
    ([12092.4, 9000.0, 15000.0], [38.6, 25.0, 40.0], S),
    ([5.0, 3.0, 8.0], [2.0, 1.0, 4.0], NS),
    ([12092.4, 9000.0, 15000.0], [9.9, 8.0, 2.0], NS),  # large at τ = 1 only: the smaller counts
    ([12092.4, 9000.0, 15000.0], [38.6, 8.0, 40.0], INC)])
def test_reinforce_variance_row(repo, tau_max, final_tau, expected):
    """Every seed's smaller variance ratio at least 10: supported; none: not; else inconclusive."""
    seed_study(repo, gumbel.GS_RUNS["annealed"], grad_var_ratio_tau_max=tau_max,
               grad_var_ratio_final_tau=final_tau, final_tau=[0.0124] * 3,
               gradient_draws=[1000] * 3, gradient_images=[100] * 3)
    line = row(gumbel.reinforce_variance)
    assert verdict(line) == expected, line


def gs_study(repo, folder, elbo, nll):
    seed_study(repo, folder, test_neg_elbo=elbo, test_nll=nll, test_neg_elbo_stderr=[1.0] * 3,
               test_nll_stderr=[1.0] * 3, test_relaxed_neg_elbo=shifted(elbo, 1.0))


ANNEALED_ELBO, ANNEALED_NLL = [133.0, 134.0, 135.0], [114.0, 115.0, 116.0]


@pytest.mark.parametrize("elbo, nll, expected", [
    ([388.0, 389.0, 390.0], [189.0, 190.0, 191.0], S),  # softmax worse on both
    ([120.0, 121.0, 122.0], [100.0, 101.0, 102.0], NS),  # softmax better on both
    ([388.0, 389.0, 390.0], [100.0, 101.0, 102.0], MX),
    ([134.0, 133.0, 135.0], [115.0, 116.0, 114.0], INC),  # the same on both
    ([134.0, 133.0, 135.0], [100.0, 101.0, 102.0], NS)])  # one part fails, the other undecided
def test_gumbel_not_softmax_row(repo, elbo, nll, expected):
    """Gumbel-Softmax lower than a plain softmax on −ELBO and NLL: each a `lower`, then combined."""
    gs_study(repo, gumbel.GS_RUNS["annealed"], ANNEALED_ELBO, ANNEALED_NLL)
    gs_study(repo, gumbel.GS_RUNS["plain softmax, annealed"], elbo, nll)
    line = row(gumbel.gumbel_not_softmax)
    assert verdict(line) == expected, line


SAME, WORSE, BETTER = (0.0, 0.0), (10.0, 10.0), (-10.0, -10.0)  # (−ELBO, NLL) against annealed


@pytest.mark.parametrize("tau1, tau01, tau1_30, expected", [
    (WORSE, WORSE, WORSE, S),
    (BETTER, BETTER, BETTER, NS),
    ((0.0, -10.0), SAME, SAME, NS),  # one part fails, the other five undecided
    (SAME, SAME, SAME, INC),
    (WORSE, WORSE, BETTER, MX)])
def test_annealing_needed_row(repo, tau1, tau01, tau1_30, expected):
    """Annealing lower on −ELBO and NLL than τ = 1 and τ = 0.1 at 10 epochs and τ = 1 at 30: six
    `lower` parts, combined."""
    for folder in (gumbel.GS_RUNS["annealed"], gumbel.GS_30["annealed"]):
        gs_study(repo, folder, ANNEALED_ELBO, ANNEALED_NLL)
    for folder, (d_elbo, d_nll) in ((gumbel.GS_RUNS["τ = 1 fixed"], tau1),
                                    (gumbel.GS_RUNS["τ = 0.1 fixed"], tau01),
                                    (gumbel.GS_30["τ = 1 fixed"], tau1_30)):
        gs_study(repo, folder, shifted([134.0, 135.0, 133.0], d_elbo),
                 shifted([115.0, 116.0, 114.0], d_nll))
    line = row(gumbel.annealing_needed)
    assert verdict(line) == expected, line


# ---------------------------------------------------------------- 5776, NICE

BLOG_BELOW, BLOG_BACKGROUND = [0.385, 0.386, 0.387], [0.050, 0.051, 0.052]


@pytest.mark.parametrize("below, background, gaussian, expected", [
    (-0.1, 0.01, None, S),  # the others clip fewer pixels and are lighter
    (0.1, -0.01, None, NS),
    (-0.1, -0.01, None, MX),  # fewer clipped, but darker
    (0.0, 0.0, None, INC),
    (-0.1, 0.01, (0.1, 0.01), MX),  # every kind but the Gaussian clips fewer
    (0.0, 0.0, (0.1, 0.0), NS)])  # one kind clips more, the rest undecided
def test_negative_noise_clips_row(repo, below, background, gaussian, expected):
    """The blog's noise more pixels below 0 and a lower background than every other kind: six
    `lower` parts, combined."""
    seed_study(repo, flow.TEN, sample_below_zero=BLOG_BELOW, sample_background=BLOG_BACKGROUND)
    for name, folder in flow.NOISE_RUNS.items():
        d_below, d_background = gaussian if name == "Gaussian" and gaussian else (below, background)
        seed_study(repo, folder, sample_below_zero=shifted(BLOG_BELOW[::-1], d_below),
                   sample_background=shifted(BLOG_BACKGROUND[::-1], d_background))
    line = row(flow.negative_noise_clips)
    assert verdict(line) == expected, line


@pytest.mark.parametrize("eq7_above, eq7_below, expected", [
    ([0.0029, 0.0030, 0.0031], [0.499, 0.500, 0.501], S),  # the committed runs' direction
    ([0.0200, 0.0210, 0.0220], [0.299, 0.300, 0.301], NS),
    ([0.0029, 0.0030, 0.0031], [0.299, 0.300, 0.301], MX),  # more above 1, more below 0
    ([0.0131, 0.0129, 0.0130], [0.387, 0.385, 0.386], INC)])
def test_forward_direction_row(repo, eq7_above, eq7_below, expected):
    """Eq. 9 (the blog's) more pixels above 1 and fewer below 0 than eq. 7: two `lower` parts,
    combined."""
    seed_study(repo, flow.TEN, [[0.0] * 9 + [b] for b in (-1879.0, -1867.0, -1875.0)],
               sample_above_one=[0.0129, 0.0130, 0.0131], sample_below_zero=[0.385, 0.386, 0.387])
    seed_study(repo, flow.EQ7, [[0.0] * 9 + [b] for b in (-1472.7, -1472.3, -1472.2)],
               sample_above_one=eq7_above, sample_below_zero=eq7_below)
    line = row(flow.forward_direction)
    assert verdict(line) == expected, line
    assert "1472.4" in line  # eq. 7's best loss, read from the history


REVERSED_LOSS, REVERSED_IW = [-1880.0, -1875.0, -1870.0], [3184.0, 3185.0, 3186.0]


@pytest.mark.parametrize("loss, bound, iw_below, expected", [
    ([-1720.0, -1725.0, -1722.0], [3340.0, 3345.0, 3342.0], [3340.0, 3345.0, 3342.0], S),
    ([-2000.0, -2005.0, -2002.0], [3100.0, 3105.0, 3102.0], [3100.0, 3105.0, 3102.0], NS),
    ([-1720.0, -1725.0, -1722.0], [3100.0, 3105.0, 3102.0], [3100.0, 3105.0, 3102.0], MX),
    ([-1875.0, -1870.0, -1880.0], [3201.0, 3202.0, 3200.0], [3185.0, 3186.0, 3184.0], INC),
    # the not-shuffled seeds predate the importance-weighted bound: the plain bound instead
    ([-1720.0, -1725.0, -1722.0], [3100.0, 3105.0, 3102.0], None, MX),
    ([-1720.0, -1725.0, -1722.0], [3340.0, 3345.0, 3342.0], None, S)])
def test_shuffle_matters_row(repo, loss, bound, iw_below, expected):
    """Reversing lower on the loss and the bound (at every placement where stored): `lower`
    parts, combined."""
    nice_study(repo, flow.TEN, REVERSED_LOSS, [3200.0, 3201.0, 3202.0], iw(REVERSED_IW))
    nice_study(repo, flow.NO_SHUFFLE, loss, bound, iw(iw_below) if iw_below else None)
    line = row(flow.shuffle_matters)
    assert verdict(line) == expected, line


@pytest.mark.parametrize("default, ten, expected", [
    ([0.064, 0.07, 0.08], [0.108, 0.1, 0.12], S),
    ([1.1, 0.9, 0.6], [0.5, 0.7, 2.0], NS),  # 0.5 is not under half
    ([0.064, 0.07, 0.08], [0.108, 0.6, 0.12], INC),
    ([None, None, 0.6], [0.108, 0.1, 0.12], INC),  # default seeds without the metric are left out
    ([None, None, None], [0.108, 0.1, 0.12], S)])
def test_scale_marks_black_row(repo, default, ten, expected):
    """Every run's black-pixel scale under half the others': supported; none: not; else
    inconclusive."""
    for folder, ratios in (("nice", default), (flow.TEN, ten)):
        for seed, ratio in enumerate(ratios):
            sub = folder if seed == 0 else f"{folder}/seeds/{seed}"
            scale = {} if ratio is None else {"scale_black_pixels": 67,
                                              "scale_black_mean": ratio * 0.25,
                                              "scale_other_mean": 0.25}  # exact ratios
            publish(repo, sub, best_epoch=18, **scale)
        runs = {str(s): f"results/{folder}" + (f"/seeds/{s}" if s else "") for s in range(3)}
        (repo / "results" / folder / "seeds.json").write_text(json.dumps({"runs": runs}))
    line = row(flow.scale_marks_black)
    assert verdict(line) == expected, line


@pytest.mark.parametrize("noisy, noiseless, expected", [
    ([18, 15, 20], [19, 18, 19], S),  # 20 counts as within 20
    ([25, 28, 30], [22, 21, 29], NS),
    ([18, 15, 14], [25, 28, 30], MX),
    ([18, 15, 14], [19, 25, 19], INC),
    ([25, 28, 30], [19, 25, 19], NS)])  # one setting fails, the other undecided
def test_best_within_20_row(repo, noisy, noiseless, expected):
    """Each setting: every seed's best epoch at most 20 supported, none not, else inconclusive;
    the two combined."""
    seed_study(repo, "nice", best_epoch=noisy)
    seed_study(repo, flow.NOISELESS, best_epoch=noiseless)
    line = row(flow.best_within_20)
    assert verdict(line) == expected, line


def history_to(best):
    """30 epochs whose best in the first 20 is `best`; afterwards exactly −2200, which the row
    must not see."""
    return [-1000.0] * 19 + [best] + [-2200.0] * 10


ABOUT, FAR = [-2200.0, -2205.0, -2195.0], [-1954.3, -1941.1, -1953.0]


@pytest.mark.parametrize("noisy, noiseless, expected", [
    (ABOUT, [-2217.0, -2197.0, -2206.7], S),  # the committed noiseless seeds: inside
    (FAR, [-1800.0, -1810.0, -1790.0], NS),
    (FAR, [-2217.0, -2197.0, -2206.7], MX),  # the committed runs
    ([-2150.0, -2160.0, -2170.0], ABOUT, INC),  # the interval crosses −2156
    ([-2150.0, -2160.0, -2170.0], FAR, NS)])
def test_reaches_2200_row(repo, noisy, noiseless, expected):
    """Each setting: the 95% interval of the mean best loss in 20 epochs inside [−2244, −2156]
    supported, wholly outside not, else inconclusive; the two combined."""
    seed_study(repo, "nice", [history_to(b) for b in noisy])
    seed_study(repo, flow.NOISELESS, [history_to(b) for b in noiseless])
    line = row(flow.reaches_2200)
    assert verdict(line) == expected, line


@pytest.mark.parametrize("noisy_rise, noiseless_rise, expected", [
    ([18.9, 23.1, 25.6], [758280.2, 655.8, 766616.4], S),
    ([758280.2, 655.8, 766616.4], [18.9, 23.1, 25.6], NS),
    ([18.9, 23.1, 700.0], [758280.2, 655.8, 766616.4], INC),  # one noisy seed overtakes
    ([18.9, 23.1, 655.8], [758280.2, 655.8, 766616.4], INC)])  # a tie is no order
def test_noise_prevents_overfitting_row(repo, noisy_rise, noiseless_rise, expected):
    """Every noiseless seed's final test loss further above its best than every noisy seed's
    (`apart`): supported; the reverse order: not; overlapping: inconclusive."""
    for folder, rises, bits in (("nice", noisy_rise, 5.76), (flow.NOISELESS, noiseless_rise, 22.5)):
        seed_study(repo, folder, [[-1900.0, -2000.0, -2000.0 + r] for r in rises],
                   test_dequantised_bits_per_dim=[bits] * 3)
    line = row(flow.noise_prevents_overfitting)
    assert verdict(line) == expected, line
    assert "655.8" in line


@pytest.mark.parametrize("count, expected", [
    (19_158_352, S), (15_000_000, S), (24_999_999, S), (14_999_999, NS), (26_000_000, NS),
    (400_000, NS)])
def test_parameter_count_row(repo, count, expected):
    """The trained weights 2×10⁷ to one significant figure, [1.5×10⁷, 2.5×10⁷): supported, else
    not."""
    publish(repo, "nice", trainable_params=count)
    line = row(flow.parameter_count)
    assert verdict(line) == expected, line
    assert f"{count:,}" in line


@pytest.mark.parametrize("train_black, test_black, expected", [
    ([(0, 0), (5, 5)], [(0, 0)], S), ([(0, 0)], [(5, 5)], NS), ([], [], NS)])
def test_black_everywhere_row(repo, monkeypatch, train_black, test_black, expected):
    """A pixel 0 in every image of both sets: supported; black in one set only, or in none:
    not supported."""
    import numpy as np

    def images(black, n):
        x = np.ones((n, 28, 28), np.uint8)
        for i, j in black:
            x[:, i, j] = 0
        x[0, 27, 27] = 0  # black in one image only: not counted
        return x

    publish(repo, "nice", scale_black_pixels=len(train_black))
    data = ((images(train_black, 4), None), (images(test_black, 3), None))
    text, _, got, _ = flow.black_everywhere(load=lambda: data)
    assert got == expected, text
    assert (f"{len(train_black)} are 0 in all 4 training images, {len(test_black)} in all 3 test "
            f"images, {len(set(train_black) & set(test_black))} in both") in text

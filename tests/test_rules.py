"""The statistics and rules of the claims' verdicts (common/rules.py): each rule driven to
every verdict it can give, and what it needs (two seeds a side for a difference)."""
import pytest

from common.rules import (INCONCLUSIVE, MIXED, NOT_SUPPORTED, SUPPORTED, Arm, Missing, apart,
                          combine, each_seed, images_variance, lower, num, paired, pairing,
                          same)

pytestmark = pytest.mark.quick


@pytest.mark.parametrize("b, expected", [([10.0, 10.5, 11.0], SUPPORTED),
                                         ([7.0, 7.5, 8.0], NOT_SUPPORTED),
                                         ([8.0, 9.5, 11.0], INCONCLUSIVE)])
def test_lower_says_which_side_of_zero_the_interval_lies(b, expected):
    a = Arm("a", [9.0, 9.2, 9.4])
    assert lower(a, Arm("b", b))[1] == expected


def test_the_images_standard_error_widens_the_interval():
    a, b = Arm("a", [9.0, 9.1, 9.2]), Arm("b", [9.6, 9.7, 9.8])
    assert lower(a, b)[1] == SUPPORTED
    assert lower(Arm("a", a.values, [0.5] * 3), Arm("b", b.values, [0.5] * 3))[1] == INCONCLUSIVE


@pytest.mark.parametrize("b, expected", [([100.5, 100.0, 100.2], SUPPORTED),     # inside ±2
                                         ([110.0, 110.5, 111.0], NOT_SUPPORTED),  # wholly out
                                         ([101.0, 102.0, 103.0], INCONCLUSIVE)])  # across +2
def test_same_is_practical_equivalence_within_the_margin(b, expected):
    a = Arm("a", [100.0, 100.2, 100.4])
    assert same(a, Arm("b", b), margin=2.0)[1] == expected


def test_a_significant_but_small_difference_is_still_the_same():
    """A significance test would call these different; equivalence within ±2 calls them the same."""
    a, b = Arm("a", [100.0, 100.01, 100.02]), Arm("b", [101.0, 101.01, 101.02])
    assert lower(a, b)[1] == SUPPORTED and same(a, b, margin=2.0)[1] == SUPPORTED


def test_one_seed_is_not_enough_for_a_difference():
    with pytest.raises(Missing):
        lower(Arm("a", [1.0]), Arm("b", [2.0, 2.1, 2.2]))


@pytest.mark.parametrize("parts, expected", [
    ([SUPPORTED, SUPPORTED], SUPPORTED), ([NOT_SUPPORTED] * 3, NOT_SUPPORTED),
    ([SUPPORTED, NOT_SUPPORTED], MIXED), ([SUPPORTED, INCONCLUSIVE], INCONCLUSIVE),
    ([SUPPORTED, INCONCLUSIVE, NOT_SUPPORTED], MIXED), ([INCONCLUSIVE], INCONCLUSIVE),
    # one decisive failure and no part supported: the claim fails, whatever is undecided
    ([NOT_SUPPORTED, INCONCLUSIVE, INCONCLUSIVE], NOT_SUPPORTED),
    ([MIXED, INCONCLUSIVE], MIXED), ([MIXED, SUPPORTED], MIXED), ([MIXED, NOT_SUPPORTED], MIXED)])
def test_combine(parts, expected):
    """Each verdict that PARTS_RULE names, from the parts that give it."""
    assert combine(parts) == expected


@pytest.mark.parametrize("values, expected", [([12, 30, 11], SUPPORTED), ([9, 3, 1], NOT_SUPPORTED),
                                              ([12, 9, 40], INCONCLUSIVE)])
def test_each_seed(values, expected):
    assert each_seed(values, lambda r: r >= 10) == expected


@pytest.mark.parametrize("high, expected", [([50, 9e5, 300], SUPPORTED), ([1, 2, 3], NOT_SUPPORTED),
                                            ([15, 9e5, 300], INCONCLUSIVE)])
def test_apart_is_a_rank_rule(high, expected):
    assert apart(Arm("low", [10, 20, 12]), Arm("high", high)) == expected


def test_a_paired_images_error_counts_only_what_differs_image_by_image():
    """Two arms scored on the same images: each image's value varies a lot (a wide unpaired
    error) but the arms' difference image by image hardly at all. Paired, the difference is
    clear; unpaired, it is not. Values that move oppositely widen the paired interval."""
    import numpy as np
    hard = np.random.default_rng(0).normal(0, 50, 10_000)  # how hard each image is
    se = float(hard.std(ddof=1) / 100)  # 0.5, the images' standard error of each run's mean
    per_a = [hard + 100 + v for v in (0.0, 0.1, 0.2)]
    per_b = [hard + 100.6 + v for v in (0.0, 0.1, 0.2)]
    a = Arm("a", [p.mean() for p in per_a], [se] * 3)
    b = Arm("b", [p.mean() for p in per_b], [se] * 3)
    assert not paired(a, b) and lower(a, b)[1] == INCONCLUSIVE
    a_p = Arm("a", a.values, [se] * 3, per_a)
    b_p = Arm("b", b.values, [se] * 3, per_b)
    assert paired(a_p, b_p) and images_variance(a_p, b_p) < 1e-20
    assert lower(a_p, b_p)[1] == SUPPORTED
    opposite = Arm("b", b.values, [se] * 3, [200.6 - p for p in per_a])
    assert images_variance(a_p, opposite) > images_variance(a, b)
    fewer = Arm("c", b.values, [se] * 3, [p[:10] for p in per_b])  # not the same images
    assert not paired(a_p, fewer) and images_variance(a_p, fewer) == images_variance(a, b)
    assert pairing([(a_p, b_p), (a_p, opposite)]) == "paired over the same images"
    assert pairing([(a_p, b_p), (a, b)]) == (
        "paired over the same images in 1 of 2 differences; unpaired, from each run's "
        "standard error in 1 of 2 differences")
    assert pairing([(a, b)]).startswith("unpaired")
    assert pairing([(Arm("a", a.values), Arm("b", b.values))]).startswith("not counted")


def test_the_paired_images_part_is_the_images_own_not_the_seeds_again():
    """Per-image values = how hard the image is (shared by both arms, sd 50) + how the arms
    differ on it (sd 2) + the seed's offset + a seed-by-image wobble (sd 3). The images' part
    of the difference's variance is var(how the arms differ) / N = 4 / N; the wobble is in the
    seeds' spread already, and counted again it would give (4 + 9 (1/3 + 1/3)) / N."""
    import numpy as np
    rng = np.random.default_rng(1)
    size = 10_000
    hard, differ = rng.normal(0, 50, size), rng.normal(0, 2, size)

    def study(label, shift):
        runs = [hard + shift + rng.normal(0, 0.1) + rng.normal(0, 3, size) for _ in range(3)]
        return Arm(label, [r.mean() for r in runs], None, runs)

    a, b = study("a", 0.0), study("b", differ)
    assert images_variance(a, b) * size == pytest.approx(4.0, rel=0.15)


def test_num_prints_no_sign_on_a_value_that_rounds_to_zero():
    assert num(-0.04) == "0.0" and num(0.04) == "0.0"
    assert num(-0.05, 2) == "−0.05" and num(-1.26, 1) == "−1.3"

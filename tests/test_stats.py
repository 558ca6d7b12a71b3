"""The interval functions on inputs with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tmpretrain.stats import (
    between_seed_sd,
    clustered_rate,
    design_effect,
    format_interval,
    hierarchical_bootstrap,
    holm,
    nanmean_or_nan,
    nested_mean_interval,
    paired_difference,
    paired_ratio_difference,
    paired_recall_difference,
    ratio_interval,
    recall_interval,
    seeds_needed,
    verdict,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # Published values (Newcombe 1998, Table I, method 3; and the closed form at the edges).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (7, 10, 0.3968, 0.8922),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_wilson_matches_published_values(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)


def test_design_effect_is_one_without_clustering_and_the_cluster_size_when_clusters_are_uniform():
    # Each track's rollouts all agree: k tracks of m rollouts carry the information of k episodes (k - 1 with the
    # small-sample correction of the between-cluster variance, k / (k - 1)).
    uniform = [[1, 1, 1, 1]] * 6 + [[0, 0, 0, 0]] * 6
    assert design_effect(uniform) == pytest.approx(4 * 12 / 11, rel=1e-9)
    rate, low, high = clustered_rate(uniform)
    assert rate == 0.5 and (low, high) == pytest.approx(wilson_interval(5.5, 11), abs=1e-9)
    # Every track the same mix: no between-track variance, the binomial interval of all episodes.
    mixed = [[1, 0, 1, 0]] * 12
    assert design_effect(mixed) == 1.0
    assert clustered_rate(mixed)[1:] == pytest.approx(wilson_interval(24, 48))
    assert design_effect([[1, 0, 1]]) == 1.0  # one cluster: nothing to estimate between clusters


def test_bootstrap_of_iid_means_matches_the_normal_interval():
    rng = np.random.default_rng(1)
    x = rng.normal(10.0, 2.0, size=400)
    est, low, high = hierarchical_bootstrap([[v] for v in x], seed=3)
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert est == pytest.approx(x.mean())
    assert low == pytest.approx(x.mean() - 1.96 * se, abs=0.3 * se)
    assert high == pytest.approx(x.mean() + 1.96 * se, abs=0.3 * se)


def test_bootstrap_resamples_clusters_so_rollouts_do_not_shrink_the_interval():
    """Tracks differ, rollouts of a track agree: 40 rollouts of 20 tracks say no more than 20 tracks."""
    rng = np.random.default_rng(2)
    tracks = rng.normal(0.5, 0.2, size=20)
    one = hierarchical_bootstrap([[t] for t in tracks], seed=0)
    many = hierarchical_bootstrap([[t] * 40 for t in tracks], seed=0)
    assert many[0] == pytest.approx(one[0])
    assert many[2] - many[1] == pytest.approx(one[2] - one[1], rel=0.15)
    flat = hierarchical_bootstrap([[t] for t in np.repeat(tracks, 40)], seed=0)  # the mistake: episodes as iid
    assert flat[2] - flat[1] < 0.3 * (many[2] - many[1])


def test_bootstrap_is_seeded_and_handles_undefined_units():
    values = [[1.0, np.nan], [np.nan], [3.0, 5.0]]
    a = hierarchical_bootstrap(values, nanmean_or_nan, seed=[0, 3])
    assert a == hierarchical_bootstrap(values, nanmean_or_nan, seed=[0, 3])
    assert a[0] == 3.0 and 1.0 <= a[1] <= a[2] <= 5.0
    assert hierarchical_bootstrap([[5.0, 5.0], [5.0]]) == (5.0, 5.0, 5.0)
    assert math.isnan(hierarchical_bootstrap([[np.nan]], nanmean_or_nan)[0])


def test_format_interval():
    assert format_interval(0.625, 0.48, 0.741) == "0.62 [0.48, 0.74]"
    assert format_interval(None, None, None) == "-" and format_interval(22.04, None, None, ".1f") == "22.0"


def test_holm_matches_the_textbook_example():
    # Holm (1979)-style worked example: sorted p 0.01, 0.02, 0.03, 0.04 over m = 4 -> 0.04, 0.06, 0.06, 0.06.
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])  # step-down: never below a smaller p's
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1


def test_paired_difference_cancels_shared_track_effects_and_finds_a_real_gap():
    rng = np.random.default_rng(4)
    tracks = rng.normal(0.0, 0.3, size=(1, 30, 1))  # hard and easy tracks, the same for both arms
    a = 0.6 + tracks + rng.normal(0, 0.02, size=(4, 30, 3))
    b = 0.5 + tracks + rng.normal(0, 0.02, size=(4, 30, 3))
    d = paired_difference(a, b, seed=1)
    assert d["difference"] == pytest.approx(0.1, abs=0.01)
    assert d["low"] > 0.08 and d["high"] < 0.12 and d["p"] <= 1 / 2000 + 1e-12
    # Unpaired (b on other tracks), the track spread swamps the gap: the interval is many times wider.
    b_other = 0.5 + rng.normal(0.0, 0.3, size=(1, 30, 1)) + rng.normal(0, 0.02, size=(4, 30, 3))
    unpaired = paired_difference(a, b_other, seed=1)
    assert unpaired["high"] - unpaired["low"] > 4 * (d["high"] - d["low"])


def test_paired_difference_of_the_same_arm_is_zero_and_not_significant():
    rng = np.random.default_rng(5)
    a = rng.normal(0.5, 0.1, size=(4, 20, 2))
    b = a[rng.permutation(4)] + rng.normal(0, 0.05, size=(4, 20, 2))
    d = paired_difference(a, b, seed=2)
    assert d["low"] < 0 < d["high"] and d["p"] > 0.05
    with pytest.raises(ValueError, match="same tracks"):
        paired_difference(a, b[:, :10], seed=2)


@pytest.mark.parametrize(
    ("claim", "low", "high", "p", "word"),
    [
        ("better", 0.02, 0.05, 0.01, "supported"),
        ("better", -0.05, -0.02, 0.01, "contradicted"),
        ("better", -0.004, 0.006, 0.6, "equivalent within the margin"),
        ("better", -0.02, 0.04, 0.4, "inconclusive"),
        ("tie", -0.004, 0.006, 0.6, "equivalent within the margin"),
        ("tie", 0.003, 0.009, 0.001, "equivalent within the margin"),  # different, but by less than the margin
        ("tie", 0.02, 0.05, 0.01, "contradicted"),
        ("tie", -0.02, 0.04, 0.4, "inconclusive"),  # no evidence of a difference is not evidence of a tie
        ("not_better", -0.004, 0.006, 0.6, "equivalent within the margin"),
        ("not_better", -0.05, -0.02, 0.01, "supported"),  # the second arm is significantly better
        ("not_better", -0.05, 0.005, 0.2, "supported"),  # not better by more than the margin
        ("not_better", 0.02, 0.05, 0.01, "contradicted"),
        ("not_better", -0.02, 0.04, 0.4, "inconclusive"),
    ],
)
def test_verdict_words(claim, low, high, p, word):
    assert verdict(claim, low, high, p, margin=0.01) == word


def test_seeds_needed_is_the_normal_approximation():
    # 2 * ((1.959964 + 0.841621) * 1 / 1)^2 = 15.7 -> 16 seeds per arm for a one-sd difference at 80 % power.
    assert seeds_needed(1.0, 1.0) == 16
    assert seeds_needed(0.5, 1.0) == 63
    assert seeds_needed(10.0, 1.0) == 2 and seeds_needed(0.0, 1.0) == math.inf


def test_verdict_rejects_an_unknown_claim():
    with pytest.raises(ValueError, match="not_better"):
        verdict("worse", 0.0, 0.1, 0.5, margin=0.01)


def test_paired_ratio_difference_pools_counts_and_pairs_the_units():
    # Known answer: 2 seeds x 3 replays; a: 60 + 60 + 30 correct of 100 + 100 + 100 per seed = 0.5; b: 0.4.
    den = np.full((2, 3), 100.0)
    num_a = np.array([[60.0, 60.0, 30.0], [60.0, 60.0, 30.0]])
    num_b = num_a - 10.0
    d = paired_ratio_difference(num_a, den, num_b, den, seed=3)
    assert d["difference"] == pytest.approx(0.1)
    # Every replay and seed is exactly 0.1 apart: every resample is 0.1 (the replays' difficulty cancels).
    assert d["low"] == pytest.approx(0.1) and d["high"] == pytest.approx(0.1) and d["p"] == pytest.approx(1 / 2000)
    same = paired_ratio_difference(num_a, den, num_a[::-1], den, seed=3)
    assert same["difference"] == 0.0 and same["p"] == 1.0
    with pytest.raises(ValueError, match="same units"):
        paired_ratio_difference(num_a, den, num_b[:, :2], den[:, :2])


def test_one_arm_intervals_cover_their_estimate_and_shrink_to_it_without_spread():
    x = np.full((3, 5, 2), 0.7)
    assert nested_mean_interval(x) == pytest.approx((0.7, 0.7, 0.7))
    rng = np.random.default_rng(6)
    noisy = rng.normal(0.5, 0.1, size=(4, 20, 3))
    mean, low, high = nested_mean_interval(noisy, seed=1)
    assert low < mean < high and mean == pytest.approx(float(noisy.mean()))
    num, den = np.array([[30.0, 50.0], [40.0, 60.0]]), np.full((2, 2), 100.0)
    ratio, low, high = ratio_interval(num, den, seed=1)
    assert ratio == pytest.approx(0.45) and 0.3 <= low <= ratio <= high <= 0.6


def test_between_seed_sd_pools_the_arms_around_their_own_means():
    # Arm a: 1, 3 (squares 2, 1 dof); arm b: 10, 12, 14 (squares 8, 2 dof): sqrt(10 / 3).
    assert between_seed_sd([1.0, 3.0], [10.0, 12.0, 14.0]) == pytest.approx(math.sqrt(10 / 3))
    assert math.isnan(between_seed_sd([1.0], [2.0]))


def test_mean_recall_of_pooled_confusion_matrices():
    # Known answer, 3 classes, classes 0 and 1 averaged: pooled over 2 seeds x 2 units, class 0 has 8 of 10
    # right, class 1 has 3 of 6, class 2 (not averaged) 0 of 4: 0.5 * (0.8 + 0.5) = 0.65.
    unit = np.array([[2.0, 0.5, 0.0], [0.5, 0.75, 0.25], [0.5, 0.5, 0.0]])
    conf = np.stack([np.stack([unit, unit]), np.stack([unit, unit])])  # (2, 2, 3, 3): every unit alike
    value, low, high = recall_interval(conf, [0, 1], seed=1)
    assert value == pytest.approx(0.65) and low == pytest.approx(0.65) and high == pytest.approx(0.65)
    empty = conf.copy()
    empty[..., 1, :] = 0.0  # class 1 without support counts as 0 (as the original study did)
    assert recall_interval(empty, [0, 1], seed=1)[0] == pytest.approx(0.4)
    d = paired_recall_difference(conf, empty, [0, 1], seed=2)
    assert d["difference"] == pytest.approx(0.25) and d["low"] == pytest.approx(0.25) and d["p"] == 1 / 2000
    with pytest.raises(ValueError, match="same units"):
        paired_recall_difference(conf, conf[:, :1], [0, 1])

"""Intervals for the numbers this project reports: rates (Wilson) and means (bootstrap), with nested samples.

Closed-loop results are episodes nested in tracks: several rollouts of one track are not independent draws (a hard
track is hard for every rollout), so treating them as such would give intervals that are too narrow.

- `wilson_interval(successes, n)`: the Wilson score interval of a binomial rate (Wilson 1927); it stays inside
  [0, 1] and keeps its coverage at small n and at rates near 0 or 1, where the normal interval fails.
- `clustered_rate(values)`: a rate over clusters (tracks) of 0/1 outcomes (rollouts), with the Wilson interval at
  the effective sample size n / design effect (Kish 1965; the effective-n Wilson of Korn & Graubard 1998), the
  design effect being the ratio of the cluster-based variance of the rate to the binomial one (at least 1).
- `hierarchical_bootstrap(values, statistic)`: a percentile interval that resamples clusters with replacement,
  then units within each drawn cluster (the two-stage bootstrap of Davison & Hinkley 1997, sec. 3.8).

Comparing two arms (the study's verdicts): `paired_difference` (a hierarchical bootstrap over training seeds and the
shared tracks, rollouts nested, with a p-value), `paired_ratio_difference` (the same for pooled ratios such as an
accuracy over test replays: seeds and the shared replays resampled), `paired_recall_difference` (mean per-class
recall, e.g. main-actions accuracy, from confusion matrices, resampled the same way), `holm` (family-wise
adjustment across conclusions), `verdict` (one word per claim: supported, contradicted, equivalent within the
margin, inconclusive), `seeds_needed` and `between_seed_sd`. One arm alone: `nested_mean_interval`,
`ratio_interval` and `recall_interval`.

Everything random takes a seed: the same inputs give the same interval.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile
N_BOOT = 2000


def wilson_interval(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of `successes` out of `n` (both may be fractional: effective counts)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def design_effect(values: Sequence[Sequence[float]]) -> float:
    """Variance of the overall mean of clustered 0/1 outcomes estimated from the clusters (ratio estimator),
    over its binomial variance; at least 1, and 1 where either variance is zero or there is one cluster."""
    sizes = np.array([len(v) for v in values], dtype=float)
    sums = np.array([float(np.sum(v)) for v in values])
    n, k = sizes.sum(), len(values)
    if k < 2 or n <= 0:
        return 1.0
    p = sums.sum() / n
    binomial = p * (1 - p) / n
    if binomial <= 0:
        return 1.0
    residuals = sums - p * sizes
    clustered = k / (k - 1) * float(np.sum(residuals**2)) / n**2
    return max(1.0, clustered / binomial)


def clustered_rate(values: Sequence[Sequence[float]], z: float = Z95) -> tuple[float, float, float]:
    """(rate, low, high) of 0/1 outcomes grouped by cluster: the pooled rate and the Wilson interval at the
    effective sample size."""
    flat = [float(x) for v in values for x in v]
    if not flat:
        return (math.nan, math.nan, math.nan)
    n = len(flat)
    rate = sum(flat) / n
    n_eff = n / design_effect(values)
    low, high = wilson_interval(rate * n_eff, n_eff, z)
    return (rate, low, high)


def hierarchical_bootstrap(
    values: Sequence[Sequence[float]],
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = N_BOOT,
    seed: int | Sequence[int] = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(estimate, low, high): `statistic` of all units, and its percentile interval from resampling clusters, then
    units within each drawn cluster, with replacement. Units may be NaN (e.g. no lap time for an unfinished lap):
    `statistic` decides what they mean; resamples where it returns NaN are left out of the interval."""
    clusters = [np.asarray(v, dtype=float) for v in values if len(v)]
    if not clusters:
        return (math.nan, math.nan, math.nan)
    data = np.concatenate(clusters)
    estimate = float(statistic(data))
    sizes = np.array([len(c) for c in clusters])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rng = np.random.default_rng(seed)
    k = len(clusters)
    draws = np.empty(n_boot)
    for b in range(n_boot):
        picked = rng.integers(k, size=k)
        n_units = np.repeat(sizes[picked], sizes[picked])  # each drawn cluster's size, once per unit drawn from it
        units = np.repeat(offsets[picked], sizes[picked]) + (rng.random(len(n_units)) * n_units).astype(np.int64)
        draws[b] = statistic(data[units])
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return (estimate, math.nan, math.nan)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return (estimate, float(low), float(high))


def nanmean_or_nan(x: np.ndarray) -> float:
    """The mean of the finite entries; NaN where there are none (a statistic for `hierarchical_bootstrap`)."""
    finite = x[np.isfinite(x)]
    return float(finite.mean()) if len(finite) else math.nan


def format_interval(value: float | None, low: float | None, high: float | None, spec: str = ".2f") -> str:
    """'0.62 [0.48, 0.74]'; '-' for a missing value, and the value alone where it has no interval."""
    if value is None:
        return "-"
    if low is None or high is None:
        return format(value, spec)
    return f"{value:{spec}} [{low:{spec}}, {high:{spec}}]"


# ---------------------------------------------------------------------------------- comparing two arms (paired)


def paired_difference(
    a: np.ndarray, b: np.ndarray, n_boot: int = N_BOOT, seed: int | Sequence[int] = 0, level: float = 0.95
) -> dict:
    """mean(a) - mean(b) for two arms evaluated on the same tracks, with a hierarchical bootstrap.

    `a`, `b`: arrays (training seeds, tracks, rollouts), NaN where a value is missing (a rollout not run, no lap
    time). Each resample draws each arm's training seeds independently (seeds of two arms are separate runs), one
    set of tracks for both arms (the tracks are shared, so track difficulty cancels: the pairing), then rollouts
    within every (seed, track). Returns {"difference", "low", "high", "p"}: the percentile interval and the
    two-sided bootstrap p-value of no difference (twice the smaller tail share of resampled differences beyond
    0; at least 1 / n_boot)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 3 or b.ndim != 3 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (seeds, tracks, rollouts) arrays on the same tracks, got {a.shape} and {b.shape}")
    estimate = float(np.nanmean(a) - np.nanmean(b))
    rng = np.random.default_rng(seed)
    n_tracks = a.shape[1]
    draws = np.empty(n_boot)
    for i in range(n_boot):
        tracks = rng.integers(n_tracks, size=n_tracks)
        draws[i] = _resampled_mean(a, tracks, rng) - _resampled_mean(b, tracks, rng)
    draws = draws[np.isfinite(draws)]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    p = min(1.0, max(2 * min(np.mean(draws <= 0), np.mean(draws >= 0)), 1.0 / n_boot))
    return {"difference": estimate, "low": float(low), "high": float(high), "p": float(p)}


def _resampled_mean(x: np.ndarray, tracks: np.ndarray, rng: np.random.Generator) -> float:
    seeds = rng.integers(x.shape[0], size=x.shape[0])
    cells = x[seeds][:, tracks]  # (seeds, tracks, rollouts)
    rollouts = rng.integers(x.shape[2], size=cells.shape)
    return float(np.nanmean(np.take_along_axis(cells, rollouts, axis=2)))


def _percentile_and_p(draws: np.ndarray, n_boot: int, level: float) -> tuple[float, float, float]:
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return (math.nan, math.nan, math.nan)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    p = min(1.0, max(2 * min(np.mean(draws <= 0), np.mean(draws >= 0)), 1.0 / n_boot))
    return (float(low), float(high), float(p))


def _counts(rng: np.random.Generator, n_boot: int, n: int) -> np.ndarray:
    """(n_boot, n): how often each of n items is drawn in each of n_boot resamples of size n with replacement."""
    picks = rng.integers(n, size=(n_boot, n))
    out = np.zeros((n_boot, n))
    np.add.at(out, (np.arange(n_boot)[:, None], picks), 1.0)
    return out


def _resampled_ratios(num: np.ndarray, den: np.ndarray, units: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per resample: sum(num) / sum(den) over this arm's resampled seeds and the given unit counts (n_boot, units)."""
    seeds = _counts(rng, len(units), num.shape[0])
    top = np.einsum("bs,su,bu->b", seeds, num, units)
    bottom = np.einsum("bs,su,bu->b", seeds, den, units)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), np.nan)


def paired_ratio_difference(
    num_a: np.ndarray,
    den_a: np.ndarray,
    num_b: np.ndarray,
    den_b: np.ndarray,
    n_boot: int = N_BOOT,
    seed: int | Sequence[int] = 0,
    level: float = 0.95,
) -> dict:
    """sum(num_a) / sum(den_a) - sum(num_b) / sum(den_b) for two arms measured on the same units (e.g. correct
    predictions over frames, per test replay), with a hierarchical bootstrap.

    Arrays (training seeds, units): each resample draws each arm's seeds independently and one set of units for both
    (the pairing); the frames of a unit are not resampled: the unit is the cluster. Returns {"difference", "low",
    "high", "p"} as `paired_difference`."""
    arrays = [np.asarray(x, dtype=float) for x in (num_a, den_a, num_b, den_b)]
    if any(x.ndim != 2 for x in arrays) or len({x.shape[1] for x in arrays}) != 1:
        raise ValueError(f"expected (seeds, units) arrays on the same units, got {[x.shape for x in arrays]}")
    num_a, den_a, num_b, den_b = arrays
    estimate = float(num_a.sum() / den_a.sum() - num_b.sum() / den_b.sum())
    rng = np.random.default_rng(seed)
    units = _counts(rng, n_boot, num_a.shape[1])
    draws = _resampled_ratios(num_a, den_a, units, rng) - _resampled_ratios(num_b, den_b, units, rng)
    low, high, p = _percentile_and_p(draws, n_boot, level)
    return {"difference": estimate, "low": low, "high": high, "p": p}


def nested_mean_interval(
    x: np.ndarray, n_boot: int = N_BOOT, seed: int | Sequence[int] = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean, low, high) of one arm's (training seeds, tracks, rollouts) array, NaN where missing: seeds, tracks and
    rollouts within them resampled as in `paired_difference`."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 3:
        raise ValueError(f"expected a (seeds, tracks, rollouts) array, got {x.shape}")
    rng = np.random.default_rng(seed)
    n_seeds, n_tracks, n_rollouts = x.shape
    seeds = rng.integers(n_seeds, size=(n_boot, n_seeds, 1, 1))
    tracks = rng.integers(n_tracks, size=(n_boot, 1, n_tracks, 1))
    rollouts = rng.integers(n_rollouts, size=(n_boot, n_seeds, n_tracks, n_rollouts))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample of nothing but NaN: left out below
        draws = np.nanmean(x[seeds, tracks, rollouts], axis=(1, 2, 3))
    low, high, _ = _percentile_and_p(draws, n_boot, level)
    return (float(np.nanmean(x)), low, high)


def ratio_interval(
    num: np.ndarray, den: np.ndarray, n_boot: int = N_BOOT, seed: int | Sequence[int] = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(ratio, low, high) of one arm's pooled sum(num) / sum(den) over (training seeds, units) arrays: seeds and
    units resampled as in `paired_ratio_difference`."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if num.ndim != 2 or num.shape != den.shape:
        raise ValueError(f"expected two (seeds, units) arrays of one shape, got {num.shape} and {den.shape}")
    rng = np.random.default_rng(seed)
    draws = _resampled_ratios(num, den, _counts(rng, n_boot, num.shape[1]), rng)
    low, high, _ = _percentile_and_p(draws, n_boot, level)
    return (float(num.sum() / den.sum()), low, high)


def _resampled_mean_recall(conf: np.ndarray, classes: list[int], units: np.ndarray, rng) -> np.ndarray:
    """Per resample: the mean recall over `classes` of the confusion matrices (seeds, units, C, C) pooled over this
    arm's resampled seeds and the given unit counts; a class without support counts as 0."""
    seeds = _counts(rng, len(units), conf.shape[0])
    return mean_recall(np.einsum("bs,suij,bu->bij", seeds, conf, units), classes)


def mean_recall(pooled: np.ndarray, classes: list[int]) -> np.ndarray:
    """The mean recall over `classes` of confusion matrices (..., C, C), rows true; 0 for a class without support."""
    correct = np.diagonal(pooled, axis1=-2, axis2=-1)[..., classes]
    support = pooled.sum(axis=-1)[..., classes]
    recall = np.divide(correct, support, out=np.zeros_like(correct, dtype=float), where=support > 0)
    return recall.mean(axis=-1)


def paired_recall_difference(
    conf_a: np.ndarray,
    conf_b: np.ndarray,
    classes: Sequence[int],
    n_boot: int = N_BOOT,
    seed: int | Sequence[int] = 0,
    level: float = 0.95,
) -> dict:
    """The difference of mean per-class recall over `classes` (e.g. main-actions accuracy) of two arms' confusion
    matrices (training seeds, units, C, C), pooled over seeds and units, with the bootstrap of
    `paired_ratio_difference` (seeds per arm, the shared units once for both)."""
    conf_a, conf_b, classes = np.asarray(conf_a, dtype=float), np.asarray(conf_b, dtype=float), list(classes)
    if conf_a.ndim != 4 or conf_b.ndim != 4 or conf_a.shape[1:] != conf_b.shape[1:]:
        raise ValueError(f"expected (seeds, units, C, C) arrays on the same units, got {conf_a.shape}, {conf_b.shape}")
    estimate = float(mean_recall(conf_a.sum(axis=(0, 1)), classes) - mean_recall(conf_b.sum(axis=(0, 1)), classes))
    rng = np.random.default_rng(seed)
    units = _counts(rng, n_boot, conf_a.shape[1])
    draws = _resampled_mean_recall(conf_a, classes, units, rng) - _resampled_mean_recall(conf_b, classes, units, rng)
    low, high, p = _percentile_and_p(draws, n_boot, level)
    return {"difference": estimate, "low": low, "high": high, "p": p}


def recall_interval(
    conf: np.ndarray, classes: Sequence[int], n_boot: int = N_BOOT, seed: int | Sequence[int] = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(mean recall over `classes`, low, high) of one arm's confusion matrices (training seeds, units, C, C)."""
    conf, classes = np.asarray(conf, dtype=float), list(classes)
    rng = np.random.default_rng(seed)
    draws = _resampled_mean_recall(conf, classes, _counts(rng, n_boot, conf.shape[1]), rng)
    low, high, _ = _percentile_and_p(draws, n_boot, level)
    return (float(mean_recall(conf.sum(axis=(0, 1)), classes)), low, high)


def between_seed_sd(*arms: Sequence[float]) -> float:
    """The pooled within-arm standard deviation of per-seed values (each arm's own mean removed; n - 1 per arm):
    the seed-to-seed spread `seeds_needed` takes. NaN where no arm has two seeds."""
    squares, dof = 0.0, 0
    for arm in arms:
        v = np.asarray([a for a in arm if math.isfinite(a)], dtype=float)
        if len(v) > 1:
            squares += float(((v - v.mean()) ** 2).sum())
            dof += len(v) - 1
    return math.sqrt(squares / dof) if dof else math.nan


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (1979) of p-values for a family of tests: each adjusted value is compared with
    the level directly; it controls the family-wise error rate, and is uniformly more powerful than Bonferroni."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


VERDICTS = ("supported", "contradicted", "equivalent within the margin", "inconclusive")


def verdict(claim: str, low: float, high: float, p_adjusted: float, margin: float, alpha: float = 0.05) -> str:
    """One word for a claim about a difference (first arm minus second, oriented so that positive means the first
    arm is better), from its interval and adjusted p-value.

    claim "better" (the first arm is better): supported where the difference is significant after adjustment and
    positive, contradicted where significant and negative; otherwise equivalent when the whole interval lies within
    +-margin, else inconclusive. claim "tie": equivalent when the interval lies within +-margin (the
    interval-inclusion form of two one-sided tests), contradicted where a difference is significant, otherwise
    inconclusive. claim "not_better" (the first arm is not better by more than the margin): equivalent when the
    interval lies within +-margin, supported when its upper end lies below the margin (non-inferiority of the
    second arm, e.g. it is significantly better), contradicted where the first arm is significantly better, otherwise
    inconclusive. Absence of evidence is never reported as evidence: a tie needs the interval inside the margin."""
    significant = p_adjusted < alpha
    within = -margin < low and high < margin
    if claim == "better":
        if significant:
            return "supported" if low > 0 else "contradicted"
        return "equivalent within the margin" if within else "inconclusive"
    if claim == "tie":
        if within:
            return "equivalent within the margin"
        return "contradicted" if significant else "inconclusive"
    if claim == "not_better":
        if within:
            return "equivalent within the margin"
        if significant and low > 0:
            return "contradicted"
        return "supported" if high < margin else "inconclusive"
    raise ValueError(f"claim must be 'better', 'tie' or 'not_better', got {claim!r}")


def decision_distance(claim: str, difference: float, margin: float) -> float:
    """How far an inconclusive comparison is from the verdict that more seeds could reach soonest (what
    `seeds_needed` sizes): `difference` oriented so that positive means the first arm is better. A 'better'
    claim is decided by a significant difference either way (|d|). 'not better' is supported once the interval's
    upper end is below the margin (margin - d away) and contradicted by a significant gain (d away, for d > 0); a tie
    is equivalent once the interval is inside +-margin (margin - |d| away) and contradicted by a significant
    difference (|d| away). The larger distance is the sooner decision; 0 where none is reachable."""
    if claim == "better":
        return abs(difference)
    if claim == "not_better":
        return max(margin - difference, difference, 0.0)
    if claim == "tie":
        return max(margin - abs(difference), abs(difference))
    raise ValueError(f"claim must be 'better', 'tie' or 'not_better', got {claim!r}")


def seeds_needed(difference: float, sd: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Training seeds per arm for a two-sided two-sample test at `alpha` to detect `difference` with `power`, given
    the between-seed standard deviation `sd` of an arm's mean (normal approximation: 2 ((z_a + z_b) sd / d)^2);
    infinite for a difference of 0."""
    from statistics import NormalDist

    if difference == 0:
        return math.inf
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return max(2, math.ceil(2 * (z * sd / abs(difference)) ** 2))

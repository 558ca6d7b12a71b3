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

Everything random takes a seed: the same inputs give the same interval.
"""

from __future__ import annotations

import math
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

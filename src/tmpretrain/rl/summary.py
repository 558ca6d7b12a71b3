"""The study's answers from its learning curves, across seeds with 95 % bootstrap intervals (stats.py).

A run's record is its evaluations: {"step": env steps, "tracks": one row per held-out track (greedy.TRACK_FIELDS)}.
Per arm, at the first and the last evaluation: completion and clean completion rates, progress and lap-time ratio,
the interval resampling seeds, then tracks within them (hierarchical_bootstrap: tracks are nested in runs). Per run
and then across seeds: the env steps to reach 0.5 and 0.9 clean completion (censored at the budget: a run that
never gets there counts the budget, and `<name>_censored` says how many did not), and the area under the learning
curves of clean completion and progress (their mean over the budget, 0..1). Each arm's difference to `scratch`
(`vs_scratch`), and the remedy's to plain `bc` (`vs_bc`), is paired: the same seed, the same track, so the
interval is that of the differences.
"""

from __future__ import annotations

import math

import numpy as np

from ..stats import hierarchical_bootstrap, nanmean_or_nan

POINTS = {  # metric -> the track row's field
    "completion_rate": "finished",
    "clean_completion_rate": "clean",
    "progress": "progress",
    "lap_time_ratio": "lap_time_ratio",
}
THRESHOLDS = (0.5, 0.9)  # of clean completion
BASELINE = "scratch"
REMEDY_BASELINES = {"bc_dqfd": "bc"}  # an arm that handles a trap, and the plain arm it is measured against


def _r(x: float, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def _track_values(evaluation: dict, field: str) -> dict[int, float]:
    return {row["track"]: np.nan if row[field] is None else float(row[field]) for row in evaluation["tracks"]}


def clean_rate(evaluation: dict) -> float:
    return float(np.mean([row["clean"] for row in evaluation["tracks"]]))


def steps_to(evaluations: list[dict], threshold: float, budget: int) -> tuple[int, bool]:
    """(env steps of the first evaluation whose clean completion reaches `threshold`, censored): the budget and
    True where none does."""
    for evaluation in evaluations:
        if clean_rate(evaluation) >= threshold:
            return evaluation["step"], False
    return budget, True


def area_under_curve(evaluations: list[dict], field: str) -> float:
    """The mean of a per-track metric over the run (trapezoids over env steps, divided by the last step)."""
    steps = np.array([e["step"] for e in evaluations], dtype=float)
    values = np.array([np.nanmean(list(_track_values(e, field).values())) for e in evaluations])
    if len(steps) < 2 or steps[-1] <= 0:
        return float(values[-1])
    return float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(steps)) / steps[-1])


def run_scalars(evaluations: list[dict], budget: int) -> dict[str, float]:
    """One run's summary numbers (steps to the clean-completion thresholds, areas under the curves)."""
    out: dict[str, float] = {}
    for threshold in THRESHOLDS:
        steps, censored = steps_to(evaluations, threshold, budget)
        out[f"steps_to_clean_{threshold}"], out[f"steps_to_clean_{threshold}_censored"] = steps, float(censored)
    out["auc_clean_completion"] = area_under_curve(evaluations, "clean")
    out["auc_progress"] = area_under_curve(evaluations, "progress")
    return out


def _interval(clusters: list[list[float]], seed: list[int], digits: int = 4) -> dict[str, float | None]:
    estimate, low, high = hierarchical_bootstrap(clusters, nanmean_or_nan, seed=seed)
    return {"value": _r(estimate, digits), "low": _r(low, digits), "high": _r(high, digits)}


def _flatten(name: str, interval: dict) -> dict:
    return {name: interval["value"], f"{name}_low": interval["low"], f"{name}_high": interval["high"]}


def _arm_summary(runs: list[dict], budget: int, paired: list[dict] | None = None) -> dict:
    """`runs` (one record per seed); with `paired` (another arm's records, the same seeds), differences to them.
    Each figure's bootstrap has its own seed, the same in every arm (the interval depends on the data alone)."""
    out: dict = {}
    for moment, pick in (("start", 0), ("end", -1)):
        section = {}
        for i, (name, field) in enumerate(POINTS.items()):
            clusters = []
            for k, run in enumerate(runs):
                ours = _track_values(run["evaluations"][pick], field)
                if paired is None:
                    clusters.append(list(ours.values()))
                else:
                    theirs = _track_values(paired[k]["evaluations"][pick], field)
                    clusters.append([ours[t] - theirs[t] for t in ours])
            section.update(_flatten(name, _interval(clusters, [pick % 2, i])))
        out[moment] = section
    scalars = [run_scalars(run["evaluations"], budget) for run in runs]
    baseline = [run_scalars(run["evaluations"], budget) for run in paired] if paired else None
    for i, name in enumerate(scalars[0]):
        if name.endswith("_censored"):
            if paired is None:
                out[name] = int(sum(s[name] for s in scalars))
            continue
        values = [[s[name] - (baseline[k][name] if baseline else 0.0)] for k, s in enumerate(scalars)]
        digits = 0 if name.startswith("steps") else 4
        out.update(_flatten(name, _interval(values, [2, i], digits)))
    return out


def summarize(records: dict[str, list[dict]], budget: int) -> dict:
    """records: arm -> one record per seed, in the same seed order for every arm (the pairing)."""
    arms = {arm: _arm_summary(runs, budget) for arm, runs in records.items()}
    versus = {
        arm: _arm_summary(runs, budget, paired=records[BASELINE])
        for arm, runs in records.items()
        if arm != BASELINE and BASELINE in records
    }
    remedies = {
        arm: _arm_summary(records[arm], budget, paired=records[plain])
        for arm, plain in REMEDY_BASELINES.items()
        if arm in records and plain in records
    }
    return {"arms": arms, "vs_scratch": versus, "vs_bc": remedies}

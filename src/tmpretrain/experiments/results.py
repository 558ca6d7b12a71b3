"""The results page: every preset's named DVC experiments on accuracy and on driving, and each of the original
study's conclusions judged on them: a paired difference with a 95 % interval from a hierarchical bootstrap over
training seeds and tracks (or test replays), a Holm-adjusted p-value, an equivalence margin, and one verdict word.

    tmpretrain results                    collect the presets' experiments from `dvc exp show`, merge them into
                                          docs/experiments/results.json, then write results.md and the figure
    tmpretrain results --from FILE.json   write the page again from a collected snapshot (no experiments needed)

The snapshot (results.json, `SCHEMA`) keeps, per experiment: its name, its commit (`dvc exp apply NAME` restores
it), the baseline commit it ran on, its params, the two metrics files, and the rows the verdicts are computed from,
read from the experiment's commit:

    "tracks":       [{"group": "policy" | "policy_greedy", "track", "rollout", "progress", "finished"}, ...]
                    (reports/eval/tracks.json: every closed-loop episode of the exported policy); null where the
                    commit has none (a run before the protocol)
    "test_replays": [{"replay", "track", "frames", "correct", "ce_sum", "weight_sum", "confusion"}, ...]
                    (reports/bc/test_replays.json at the exported offset: per test replay, labelled frames, correct
                    predictions, cross-entropy and class-weight sums, the confusion matrix); null where absent

A collection is merged into the existing snapshot: experiments no longer in `dvc exp show` (an earlier sitting, a
garbage-collected queue) are kept, a newer run of the same name replaces its older one. The page and the figure are
a pure function of the snapshot, so a test can check that results.md is what the snapshot says.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from .. import stats
from ..actions import MAIN_ACTIONS
from ..yamlio import parse_yaml
from . import BC_METRICS, EVAL_METRICS, RL_METRICS, PresetError, lookup, runnable
from .study import REPEAT_NAME

RESULTS_DIR = Path("docs/experiments")
SNAPSHOT_FILE = RESULTS_DIR / "results.json"
PAGE_FILE = RESULTS_DIR / "results.md"
FIGURE_FILE = RESULTS_DIR / "results_accuracy_vs_driving.svg"
SEEDS_FAMILY = "seeds"  # seed repeats of a preset: `tmpretrain study`'s `<preset>_seed<s>`
SCHEMA = 2
TRACKS_FILE = "reports/eval/tracks.json"
LOCK_FILE = "dvc.lock"
TEST_REPLAYS_FILE = "reports/bc/test_replays.json"
ROWS_MAX_BYTES = 32 * 2**20  # a bounded read of an experiment's rows from its commit
DRIVING_GROUPS = ("policy", "policy_greedy")
# The params that tell one seed repeat of a preset from another: BC's and, where it exists, Level 0's.
SEED_KEYS = ("bc.seed", "vis.seed")
MIN_SEEDS = 4  # training seeds a side below which a conclusion is not judged
ALPHA = 0.05
# Equivalence margins: a difference inside +-margin is too small to matter (accuracy in points of 1, i.e. 0.01).
MARGINS = {"accuracy": 0.01, "loss": 0.01, "driving": 0.03}


# ---------------------------------------------------------------------------------------------- snapshot


def read_at(rev: str, path: str, max_bytes: int = ROWS_MAX_BYTES, cwd: Path | str | None = None) -> dict | None:
    """The JSON file `path` (or dvc.lock, YAML) as committed in `rev` (git cat-file, at most max_bytes); None where
    the commit has no such file, it is larger, or it does not parse."""
    spec = f"{rev}:{path}"
    try:
        size = subprocess.run(["git", "cat-file", "-s", spec], capture_output=True, text=True, timeout=60, cwd=cwd)
        if size.returncode or int(size.stdout.strip() or 0) > max_bytes:
            return None
        blob = subprocess.run(["git", "cat-file", "blob", spec], capture_output=True, timeout=120, cwd=cwd)
        if blob.returncode:
            return None
        return parse_yaml(blob.stdout.decode("utf-8")) if path == LOCK_FILE else json.loads(blob.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired):  # YamlError is a ValueError
        return None


def stages_not_run(lock: dict | None) -> dict[str, str]:
    """{output path: stage} of the stages of an experiment's dvc.lock that did not run on its inputs: a stage whose
    recorded input is not what the stage producing it recorded as output (an experiment run up to `evaluate` keeps
    the baseline's rl metrics in its commit), and every stage downstream of one. Empty without a lock."""
    stages = (lock or {}).get("stages") or {}
    made_by = {o["path"]: name for name, st in stages.items() for o in st.get("outs") or []}
    outs = {o["path"]: o.get("md5") for st in stages.values() for o in st.get("outs") or []}
    stale: set[str] = set()
    changed = True
    while changed:  # until no stage is added: staleness flows downstream
        changed = False
        for name, st in stages.items():
            deps = [d for d in st.get("deps") or [] if d["path"] in made_by and made_by[d["path"]] != name]
            if name not in stale and any(d.get("md5") != outs[d["path"]] or made_by[d["path"]] in stale for d in deps):
                stale.add(name)
                changed = True
    return {path: name for path, name in made_by.items() if name in stale}


def why_missing(rev: str, path: str, cwd: Path | str | None = None) -> str:
    """Why `read_at` found no rows: the commit is not in this repository (DVC experiment refs not fetched), or the
    commit has no such file (a run before it was written), or it could not be read."""
    commit = subprocess.run(["git", "cat-file", "-e", f"{rev}^{{commit}}"], capture_output=True, cwd=cwd)
    if commit.returncode:
        return "commit not in this repository"
    found = subprocess.run(["git", "cat-file", "-e", f"{rev}:{path}"], capture_output=True, cwd=cwd)
    return "not in the commit" if found.returncode else "unreadable (too large or not JSON)"


def rows_of(rev: str, read=read_at, why=why_missing, not_run: dict[str, str] | None = None) -> dict:
    """An experiment's rows from its commit, and for each one absent the reason (`missing_rows`); none from a file
    whose stage did not run in the experiment (`not_run`: `stages_not_run`)."""
    not_run = not_run or {}
    tracks = None if TRACKS_FILE in not_run else driving_rows(read(rev, TRACKS_FILE))
    replays = None if TEST_REPLAYS_FILE in not_run else replay_rows(read(rev, TEST_REPLAYS_FILE))
    missing = {
        path: f"stage {not_run[path]} did not run in this experiment" if path in not_run else why(rev, path)
        for path, rows in ((TRACKS_FILE, tracks), (TEST_REPLAYS_FILE, replays))
        if rows is None
    }
    return {"tracks": tracks, "test_replays": replays, **({"missing_rows": missing} if missing else {})}


def driving_rows(tracks: dict | None) -> list[dict] | None:
    """The exported policy's episodes of reports/eval/tracks.json, sampled and greedy: what driving verdicts use."""
    if not isinstance(tracks, dict) or not isinstance(tracks.get("rows"), list):
        return None
    return [
        {
            "group": r["group"],
            "track": r["track"],
            "rollout": r.get("rollout", 0),
            "progress": r.get("progress"),
            "finished": bool(r.get("finished")),
        }
        for r in tracks["rows"]
        if r.get("group") in DRIVING_GROUPS
    ]


def replay_rows(report: dict | None) -> list[dict] | None:
    """reports/bc/test_replays.json reduced to the exported offset: per test replay, its counts."""
    if not isinstance(report, dict) or not isinstance(report.get("replays"), list):
        return None
    head = report["offsets_ms"].index(report["export_offset_ms"])
    return [
        {
            "replay": r["replay"],
            "track": r["track"],
            **{k: r[k][head] for k in ("frames", "correct", "ce_sum", "weight_sum")},
            "confusion": r["confusion"],
        }
        for r in report["replays"]
    ]


def collect(rows: list[dict], presets: dict, read=read_at, previous: dict | None = None, why=why_missing) -> dict:
    """The presets' experiments among `experiment_rows(exp_show(["-A"]))`, in presets.yaml's order: the newest
    finished experiment of each preset's name, on whichever commit, with its rows read from that commit by
    `read(rev, path)`; merged into `previous` (an earlier snapshot), whose experiments this collection does not
    hold are kept. Presets that have run in neither are listed as missing."""
    by_name: dict[str, dict] = {}
    for row in rows:
        if row.get("state", "success") != "success":
            continue
        if row["name"] not in by_name or (row.get("timestamp") or "") > (by_name[row["name"]].get("timestamp") or ""):
            by_name[row["name"]] = row
    kept = {e["name"]: e for e in (previous or {}).get("experiments", [])}
    experiments, missing = [], []
    for name, family, desc in _names(presets, [*by_name, *kept]):
        row = by_name.get(name)
        if row is None or not row["metrics"].get(BC_METRICS):
            if name in kept:
                experiments.append(kept[name])
            elif family != SEEDS_FAMILY:
                missing.append(name)
            continue
        not_run = stages_not_run(read(row["rev"], LOCK_FILE))  # its commit holds earlier runs' files of these
        metrics = {
            p: {} if p in not_run else row["metrics"].get(p) or {} for p in (BC_METRICS, EVAL_METRICS, RL_METRICS)
        }
        experiments.append(
            {
                "name": name,
                "family": family,
                "desc": desc,
                "rev": row["rev"],
                "baseline": row.get("baseline"),
                "timestamp": row.get("timestamp"),
                "params": row["params"],
                "metrics": metrics,
                **({"stages_not_run": sorted(set(not_run.values()))} if not_run else {}),
                **rows_of(row["rev"], read, why, not_run),
            }
        )
    if not experiments:
        raise PresetError("none of the presets has run yet (tmpretrain study)")
    return {"schema": SCHEMA, "experiments": experiments, "missing": missing}


def _names(presets: dict, seen: list[str]) -> list[tuple[str, str, str]]:
    """(name, family, desc) of each preset in presets.yaml's order, each followed by its seed repeats among `seen`
    (`tmpretrain study`'s `<preset>_seed<s>`, in seed order)."""
    repeats: dict[str, list[tuple[int, str]]] = {}
    for name in dict.fromkeys(seen):
        match = REPEAT_NAME.fullmatch(name)
        if match and match["preset"] in presets["presets"] and name not in presets["presets"]:
            repeats.setdefault(match["preset"], []).append((int(match["seed"]), name))
    out = []
    for preset in runnable(presets):
        spec = presets["presets"][preset]
        out.append((preset, spec.get("family", ""), spec.get("desc", "")))
        for seed, name in sorted(repeats.get(preset, [])):
            out.append((name, SEEDS_FAMILY, f"{preset} at training seed {seed}"))
    return out


# ---------------------------------------------------------------------------------------------- numbers


def value(exp: dict, metric: str) -> float:
    """A headline number of one experiment: test/* and val/* of the exported epoch, policy*/* of evaluate."""
    if metric.startswith("policy"):
        found = lookup(exp["metrics"].get(EVAL_METRICS) or {}, metric)
    else:
        bc = exp["metrics"].get(BC_METRICS) or {}
        found = lookup(bc, f"best/{metric}")
        found = lookup(bc, metric) if found is None else found
    return float(found) if isinstance(found, int | float) else math.nan


def base_preset(exp: dict) -> str:
    """The preset a seed repeat repeats (v2_seed1 -> v2); the name itself otherwise."""
    name = exp["name"]
    return name.rsplit("_seed", 1)[0] if exp["family"] == SEEDS_FAMILY else name


def seed_of(exp: dict) -> tuple:
    """The experiment's training seeds (bc.seed, and vis.seed where params have it)."""
    return tuple(exp["params"].get(k) for k in SEED_KEYS if k in exp["params"])


def _without_seeds(exp: dict) -> dict:
    return {k: v for k, v in exp["params"].items() if k not in SEED_KEYS}


def by_preset(snapshot: dict) -> dict[str, list[dict]]:
    """Every run of each preset that differs from the preset's own run only by its seeds (`SEED_KEYS`): the
    preset's own first, then its seed repeats; one run per seed (the first listed)."""
    out: dict[str, list[dict]] = {}
    for exp in snapshot["experiments"]:
        runs = out.setdefault(base_preset(exp), [])
        if runs and (_without_seeds(exp) != _without_seeds(runs[0]) or seed_of(exp) in {seed_of(r) for r in runs}):
            continue  # not a seed repeat (`not_seed_repeats` names it)
        runs.append(exp)
    return out


def not_seed_repeats(snapshot: dict) -> list[str]:
    """Experiments of the seeds family left out of their preset: other params than the seeds differ, or the seed
    is already there."""
    grouped = {e["name"] for runs in by_preset(snapshot).values() for e in runs}
    return [e["name"] for e in snapshot["experiments"] if e["name"] not in grouped]


def has_rows(exp: dict) -> bool:
    return bool(exp.get("tracks")) and bool(exp.get("test_replays"))


@dataclass(frozen=True)
class Metric:
    """A number a conclusion is judged on. `source`: "replays" (test counts: field "acc" = correct / frames,
    "loss" = ce_sum / weight_sum at the exported offset, "main_actions" = the mean recall of the six main actions
    from the confusion matrices) or "tracks" (driving rows of `group`: "progress", or
    "finished" as 0/1); `family`: its margin in MARGINS and its Holm family."""

    key: str
    label: str
    higher_is_better: bool
    source: str
    field: str
    family: str
    group: str = ""

    @property
    def margin(self) -> float:
        return MARGINS[self.family]


METRICS = (
    Metric("test/acc", "test accuracy", True, "replays", "acc", "accuracy"),
    Metric("test/main_actions_acc", "test main-actions accuracy", True, "replays", "main_actions", "accuracy"),
    Metric("test/loss", "test loss", False, "replays", "loss", "loss"),
    Metric("policy/progress", "progress (sampled)", True, "tracks", "progress", "driving", "policy"),
    Metric("policy/completion_rate", "completion (sampled)", True, "tracks", "finished", "driving", "policy"),
    Metric("policy_greedy/progress", "progress (greedy)", True, "tracks", "progress", "driving", "policy_greedy"),
)
ACCURACY, MAIN_ACCURACY, LOSS, PROGRESS, COMPLETION, GREEDY = METRICS


def _replay_parts(exp: dict, field: str) -> dict:
    """Per test replay: (numerator, denominator) of the pooled ratio, or ("main_actions") its confusion matrix."""
    if field == "main_actions":
        return {r["replay"]: r["confusion"] for r in exp.get("test_replays") or []}
    num, den = ("correct", "frames") if field == "acc" else ("ce_sum", "weight_sum")
    return {r["replay"]: (float(r[num]), float(r[den])) for r in exp.get("test_replays") or []}


def _track_values(exp: dict, metric: Metric) -> dict:
    out: dict = {}
    for r in exp.get("tracks") or []:
        if r["group"] == metric.group:
            v = r[metric.field]
            out.setdefault(r["track"], []).append(math.nan if v is None else float(v))
    return out


def units_of(runs: list[dict], metric: Metric) -> list:
    """The tracks (driving) or test replays (per frame) every run has: what two arms are paired on."""
    sets = [
        set(_replay_parts(r, metric.field) if metric.source == "replays" else _track_values(r, metric)) for r in runs
    ]
    return sorted(set.intersection(*sets), key=str) if sets else []


def arm_arrays(runs: list[dict], metric: Metric, units: list) -> tuple[np.ndarray, ...]:
    """("replays") numerator and denominator arrays (seeds, replays), or ("main_actions") one array of confusion
    matrices (seeds, replays, C, C); ("tracks") one (seeds, tracks, rollouts) array, NaN-padded where a run has fewer
    rollouts of a track."""
    if metric.field == "main_actions":
        parts = [_replay_parts(r, metric.field) for r in runs]
        return (np.array([[p[u] for u in units] for p in parts], dtype=float),)
    if metric.source == "replays":
        parts = [_replay_parts(r, metric.field) for r in runs]
        num = np.array([[p[u][0] for u in units] for p in parts], dtype=float)
        den = np.array([[p[u][1] for u in units] for p in parts], dtype=float)
        return num, den
    values = [_track_values(r, metric) for r in runs]
    width = max((len(v[u]) for v in values for u in units), default=1)
    x = np.full((len(runs), len(units), width), np.nan)
    for i, v in enumerate(values):
        for j, u in enumerate(units):
            x[i, j, : len(v[u])] = v[u]
    return (x,)


def per_seed(runs: list[dict], metric: Metric) -> list[float]:
    """The metric of each run (seed): from its rows where it has them, else as recorded in its metrics."""
    out = []
    for r in runs:
        if has_rows(r):
            arrays = arm_arrays([r], metric, units_of([r], metric))
            if metric.field == "main_actions":
                out.append(float(stats.mean_recall(arrays[0].sum(axis=(0, 1)), list(MAIN_ACTIONS))))
            elif metric.source == "replays":
                out.append(float(arrays[0].sum() / arrays[1].sum()))
            else:
                out.append(float(np.nanmean(arrays[0])))
        else:
            out.append(value(r, metric.key))
    return [v for v in out if not math.isnan(v)]


def _seed(*names: str) -> list[int]:
    return [zlib.crc32(n.encode()) for n in names]


def arm_summary(runs: list[dict], metric: Metric) -> tuple[float, float | None, float | None]:
    """(value, low, high) of one arm over its seeds: the bootstrap interval where every run has rows; else the mean
    of the recorded values, without interval."""
    if runs and all(has_rows(r) for r in runs):
        units = units_of(runs, metric)
        if units:
            arrays = arm_arrays(runs, metric, units)
            seed = _seed(metric.key, *(r["name"] for r in runs))
            if metric.field == "main_actions":
                return stats.recall_interval(arrays[0], list(MAIN_ACTIONS), seed=seed)
            fn = stats.ratio_interval if metric.source == "replays" else stats.nested_mean_interval
            return fn(*arrays, seed=seed)
    values = per_seed(runs, metric)
    return (statistics.fmean(values) if values else math.nan, None, None)


# ---------------------------------------------------------------------------------------------- conclusions


@dataclass(frozen=True)
class Conclusion:
    """One of the original study's conclusions as a comparison of two presets: `claim` "better" means a beats b,
    "tie" that they are level, "not_better" that a does not beat b."""

    title: str
    seed_says: str
    a: str
    b: str
    claim: str
    overfit: tuple[str, ...] = ()  # presets whose val-loss rise after the exported epoch the section shows


CONCLUSIONS = (
    Conclusion(
        "Training length and early stopping",
        "~20-25 epochs is enough; training to 50 epochs does not improve val loss or accuracy and overfits, so "
        "early stopping on val loss (patience 5-10) is recommended.",
        "v1.1",
        "v1",
        "not_better",
        overfit=("v1.1", "v1"),
    ),
    Conclusion(
        "Normalisation at BC input",
        "IQN-style normalisation at BC input (v1.2) helps generalisation: ~15 % lower val loss and better "
        "main-actions accuracy than [0, 1] inputs (v1.1), even on a backbone pretrained on [0, 1].",
        "v1.2",
        "v1.1",
        "better",
    ),
    Conclusion(
        "The full IQN chain",
        "Normalising Level 0 as well (v2) ties with normalising BC only (v1.2) on val loss and accuracy.",
        "v2",
        "v1.2",
        "tie",
    ),
    Conclusion(
        "Current vs next tick",
        "bc_target current_tick is more accurate than next_tick (val acc 0.62 vs 0.55).",
        "v2",
        "v2_next_tick",
        "better",
    ),
    Conclusion(
        "Multi-offset heads",
        "Four Linear heads at -10/0/+10/+100 ms keep the 0 ms accuracy of a single head (0.612 vs 0.616).",
        "v2_multi_offset",
        "v2",
        "tie",
    ),
    Conclusion(
        "Linear heads vs A_head",
        "Linear heads (v2_multi_offset) validate better than the untuned A_head, which overfits (best epoch 14, "
        "then val loss rises).",
        "v2_multi_offset",
        "v2_multi_offset_ahead",
        "better",
        overfit=("v2_multi_offset_ahead", "v2_multi_offset"),
    ),
    Conclusion(
        "A_head tuning",
        "lr 0.0002, weight decay 0.01 and early stopping improve the A_head (val acc 0.591).",
        "v2_multi_offset_ahead_tuned",
        "v2_multi_offset_ahead",
        "better",
    ),
    Conclusion(
        "A_head dropout",
        "Dropout 0.2 on the head input improves the regularised A_head (val acc 0.595 vs 0.592).",
        "v2_multi_offset_ahead_dropout",
        "v2_multi_offset_ahead_reg",
        "better",
    ),
    Conclusion(
        "A_head inner dropout",
        "Adding dropout 0.1 inside the A_head gives the best A_head run (val acc 0.597), recommended for RL merge.",
        "v2_multi_offset_ahead_dropout_inner",
        "v2_multi_offset_ahead_dropout",
        "better",
    ),
    Conclusion(
        "n_stack",
        "Three stacked frames (n_stack=3) give a small improvement in val loss and main-actions accuracy over "
        "one frame, at a much higher memory cost.",
        "v2_next_tick_stack3",
        "v2_next_tick",
        "better",
        overfit=("v2_next_tick_stack3", "v2_next_tick"),
    ),
)


NO_ROWS = "no rows (runs before the protocol)"


@dataclass(frozen=True)
class Judgement:
    """One conclusion on one metric. a, b: (value, low, high) of each arm over its seeds (no interval without rows);
    difference, low, high: a - b and its paired 95 % interval; p: the bootstrap p-value of no difference, p_adjusted:
    Holm's over the conclusions judged on this metric; verdict: one of stats.VERDICTS; reason: why it was not judged
    ("" where it was); seeds_needed: seeds a side a decision would need (for an inconclusive verdict)."""

    metric: Metric
    seeds_a: int
    seeds_b: int
    units: int
    rollouts: int
    a: tuple
    b: tuple
    difference: float
    low: float | None
    high: float | None
    p: float | None
    p_adjusted: float | None
    verdict: str
    reason: str
    seeds_needed: float | None

    @property
    def text(self) -> str:
        """The verdict word, with why a conclusion was not judged and what a decision would need."""
        if self.verdict != "inconclusive":
            return self.verdict
        needed = ""
        if self.seeds_needed is not None:
            needed = (
                "; no number of seeds decides it at the observed difference"
                if math.isinf(self.seeds_needed)
                else f"; a decision needs ~{int(self.seeds_needed)} seeds a side"
            )
        if self.reason.startswith("n seeds"):
            return f"inconclusive: {self.reason} ({self.seeds_a} vs {self.seeds_b}{needed})"
        if self.reason:
            return f"inconclusive: {self.reason}"
        return f"inconclusive ({needed[2:]})" if needed else "inconclusive"


def _compare(conclusion: Conclusion, metric: Metric, runs_a: list[dict], runs_b: list[dict]) -> dict:
    out = {
        "seeds_a": len(runs_a),
        "seeds_b": len(runs_b),
        "units": 0,
        "rollouts": 0,
        "a": arm_summary(runs_a, metric),
        "b": arm_summary(runs_b, metric),
        "low": None,
        "high": None,
        "p": None,
        "p_adjusted": None,
        "reason": "",
    }
    out["difference"] = out["a"][0] - out["b"][0]
    if not all(has_rows(r) for r in runs_a + runs_b):
        return out | {"reason": NO_ROWS}
    units = units_of(runs_a + runs_b, metric)
    if not units:
        return out | {"reason": "the two arms share no track or test replay"}
    xa, xb = arm_arrays(runs_a, metric, units), arm_arrays(runs_b, metric, units)
    seed = _seed(conclusion.title, metric.key)
    if metric.field == "main_actions":
        d = stats.paired_recall_difference(xa[0], xb[0], list(MAIN_ACTIONS), seed=seed)
    elif metric.source == "replays":
        d = stats.paired_ratio_difference(*xa, *xb, seed=seed)
    else:
        d = stats.paired_difference(xa[0], xb[0], seed=seed)
        out["rollouts"] = max(xa[0].shape[2], xb[0].shape[2])
    out |= {"units": len(units), "difference": d["difference"], "low": d["low"], "high": d["high"], "p": d["p"]}
    if min(len(runs_a), len(runs_b)) < MIN_SEEDS:
        out["reason"] = f"n seeds < {MIN_SEEDS}"
    return out


def judge(snapshot: dict) -> dict[str, dict[Metric, Judgement] | None]:
    """Every conclusion on every metric (None for a conclusion whose presets have not both run). Holm's adjustment
    runs per metric, over the conclusions judged on it (rows on both sides and at least MIN_SEEDS seeds a side)."""
    runs = by_preset(snapshot)
    raw: dict[str, dict[Metric, dict] | None] = {}
    for c in CONCLUSIONS:
        a, b = runs.get(c.a), runs.get(c.b)
        raw[c.title] = {m: _compare(c, m, a, b) for m in METRICS} if a and b else None
    for m in METRICS:
        judged = [r[m] for r in raw.values() if r and not r[m]["reason"]]
        for x, adjusted in zip(judged, stats.holm([x["p"] for x in judged]), strict=True):
            x["p_adjusted"] = adjusted
    out: dict[str, dict[Metric, Judgement] | None] = {}
    for c in CONCLUSIONS:
        if raw[c.title] is None:
            out[c.title] = None
            continue
        out[c.title] = {}
        for m, x in raw[c.title].items():
            sign = 1.0 if m.higher_is_better else -1.0  # positive: a is better
            if x["reason"]:
                word = "inconclusive"
            else:
                low, high = sorted((sign * x["low"], sign * x["high"]))
                word = stats.verdict(c.claim, low, high, x["p_adjusted"], m.margin, ALPHA)
            needed = None
            if word == "inconclusive" and x["reason"] != NO_ROWS:
                sd = stats.between_seed_sd(per_seed(runs[c.a], m), per_seed(runs[c.b], m))
                target = stats.decision_distance(c.claim, sign * x["difference"], m.margin)
                if math.isfinite(sd):
                    needed = max(MIN_SEEDS, stats.seeds_needed(target, sd))  # never fewer than a judgement takes
            out[c.title][m] = Judgement(metric=m, verdict=word, seeds_needed=needed, **x)
    return out


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def _signed(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:+.3f}"


def _cell(summary: tuple) -> str:
    """'0.581 [0.552, 0.610]'; a recorded value without interval as '0.581 (no interval)'."""
    v, low, high = summary
    if v is None or math.isnan(v):
        return "n/a"
    if low is None or high is None or math.isnan(low):
        return f"{v:.3f} (no interval)"
    return stats.format_interval(v, low, high, ".3f")


def _difference_cell(j: Judgement) -> str:
    if j.low is None:
        return f"{_signed(j.difference)} (no interval)"
    return f"{j.difference:+.3f} [{j.low:+.3f}, {j.high:+.3f}]"


def _names_with_seeds(runs: list[dict]) -> str:
    return ", ".join(f"`{r['name']}`" for r in runs)


def _units_text(j: Judgement) -> str:
    if not j.units:
        return "no paired rows"
    if j.metric.source == "replays":
        return f"{j.units} test replays"
    return f"{j.units} tracks x {j.rollouts} rollout{'s' * (j.rollouts > 1)}"


def summary_table(judgements: dict) -> list[str]:
    lines = [
        "| conclusion | compared | claim | seeds | " + " | ".join(m.label for m in METRICS) + " |",
        "|---|---|---|---|" + "---|" * len(METRICS),
    ]
    for c in CONCLUSIONS:
        result = judgements[c.title]
        if result is None:
            cells, seeds = ["not run"] * len(METRICS), "-"
        else:
            cells = [result[m].text for m in METRICS]
            first = result[METRICS[0]]
            seeds = f"{first.seeds_a} vs {first.seeds_b}"
        lines.append(f"| {c.title} | {c.a} vs {c.b} | {c.claim} | {seeds} | " + " | ".join(cells) + " |")
    return lines + [""]


def summary_lines(judgements: dict) -> list[str]:
    """What the intervals support, counted: nothing is said that a verdict does not."""
    all_j = [j for r in judgements.values() if r for j in r.values()]
    counts = {w: sum(j.verdict == w for j in all_j) for w in stats.VERDICTS}
    no_rows = sum(j.reason == NO_ROWS for j in all_j)
    few = sum(j.reason.startswith("n seeds") for j in all_j)
    lines = [
        f"Of {len(all_j)} checks ({sum(r is not None for r in judgements.values())} conclusions run x "
        f"{len(METRICS)} metrics): " + ", ".join(f"{n} {w}" for w, n in counts.items()) + ". "
        f"Not judged: {no_rows} for lack of per-track and per-replay rows, {few} on fewer than {MIN_SEEDS} seeds "
        "a side.",
        "",
    ]
    decided = [
        (c, j)
        for c in CONCLUSIONS
        if judgements[c.title]
        for j in judgements[c.title].values()
        if j.verdict != "inconclusive"
    ]
    for c, j in decided:
        lines.append(
            f"- {c.title} ({c.a} vs {c.b}, claim {c.claim}), {j.metric.label}: **{j.verdict}**, difference "
            f"{_difference_cell(j)}, Holm p {j.p_adjusted:.3g}."
        )
    return lines + ([""] if decided else [])


def conclusion_section(conclusion: Conclusion, snapshot: dict, result: dict[Metric, Judgement] | None) -> list[str]:
    runs = by_preset(snapshot)
    lines = [
        f"### {conclusion.title}: {conclusion.a} vs {conclusion.b}",
        "",
        f"Original study: {conclusion.seed_says}",
        "",
    ]
    if result is None:
        absent = [n for n in (conclusion.a, conclusion.b) if n not in runs]
        return lines + [f"Not checked: {', '.join(absent)} has not run.", ""]
    a, b = runs[conclusion.a], runs[conclusion.b]
    lines += [
        f"Compared: {_names_with_seeds(a)} ({len(a)} seed{'s' * (len(a) > 1)}) against {_names_with_seeds(b)} "
        f"({len(b)} seed{'s' * (len(b) > 1)}); claim: {conclusion.a} is {CLAIM_WORDS[conclusion.claim]} "
        f"{conclusion.b}.",
        "",
        f"| metric | {conclusion.a} | {conclusion.b} | difference [95 % CI] | paired on | p (Holm) | margin "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, j in result.items():
        p = "n/a" if j.p_adjusted is None else f"{j.p_adjusted:.3g}"
        if j.p_adjusted is None and j.p is not None:
            p = f"{j.p:.3g} (not adjusted: not judged)"
        lines.append(
            f"| {m.label} | {_cell(j.a)} | {_cell(j.b)} | {_difference_cell(j)} | {_units_text(j)} | {p} "
            f"| +-{m.margin:g} | {j.text} |"
        )
    lines += [
        "",
        "Verdicts: " + "; ".join(f"{m.label} **{j.text}**" for m, j in result.items()) + ".",
    ]
    for name in conclusion.overfit:
        lines.append(overfit_line(runs.get(name, [])))
    return lines + [""]


CLAIM_WORDS = {"better": "better than", "tie": "level with", "not_better": "not better than"}


def overfit_line(runs: list[dict]) -> str:
    """Where the exported (lowest val loss) epoch lies and how far val loss rose by the last epoch."""
    if not runs:
        return ""
    exp = runs[0]
    bc = exp["metrics"].get(BC_METRICS) or {}
    best, last = lookup(bc, "best/val/loss"), lookup(bc, "val/loss")
    if not isinstance(best, int | float) or not isinstance(last, int | float):
        return f"- `{exp['name']}`: no val-loss record."
    return (
        f"- `{exp['name']}`: lowest val loss {_fmt(best)} at epoch {lookup(bc, 'best/epoch')} (0-based) of "
        f"{bc.get('epochs_run')} run; val loss at the last epoch {_fmt(last)} ({_signed(last - best)})."
    )


# ---------------------------------------------------------------------------------------------- page


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (Pearson's on the ranks, ties averaged); NaN with fewer than three points."""
    return float(pd.Series(xs).rank().corr(pd.Series(ys).rank())) if len(xs) >= 3 else math.nan


def spearman_interval(xs: list[float], ys: list[float], seed: list[int]) -> tuple[float, float, float]:
    """Spearman's rho of the points and its 95 % percentile interval from resampling the points (presets) with
    replacement; resamples without a defined rho (fewer than three distinct points, constant ranks) left out."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)

    def rho(drawn: np.ndarray) -> float:
        idx = drawn.astype(int)
        return spearman(list(x[idx]), list(y[idx])) if len(set(idx)) >= 3 else math.nan

    return stats.hierarchical_bootstrap([[i] for i in range(len(x))], statistic=rho, seed=seed)


def presets_table(snapshot: dict) -> list[str]:
    """Each preset over its seeds: the bootstrap interval where its runs have rows, else the recorded mean."""
    lines = [
        "| preset | experiments | seeds | " + " | ".join(m.label for m in METRICS) + " |",
        "|---|---|---|" + "---|" * len(METRICS),
    ]
    for preset, runs in by_preset(snapshot).items():
        cells = [_cell(arm_summary(runs, m)) for m in METRICS]
        lines.append(f"| {preset} | {_names_with_seeds(runs)} | {len(runs)} | " + " | ".join(cells) + " |")
    return lines + [""]


# The downstream-RL comparisons of stage `rl` (reports/rl/metrics.json, docs/rl.md): the area under each arm's
# greedy-progress curve minus scratch's (or, for the remedy, minus plain bc's), paired by RL seed and track in a run.
RL_COMPARISONS = (
    ("vs_scratch", "vis", "vis - scratch"),
    ("vs_scratch", "bc", "bc - scratch"),
    ("vs_scratch", "bc_dqfd", "bc_dqfd - scratch"),
    ("vs_bc", "bc_dqfd", "bc_dqfd - bc"),
)


def rl_cell(runs: list[dict], group: str, arm: str) -> str:
    """One preset's downstream-RL gain on AUC progress: over several training seeds, their mean with a bootstrap
    interval over those seeds (each run's own value, itself paired over its RL seeds and tracks); one run, its own
    interval. 'skipped' where the export cannot seed the arm (`rl_skips` says why), '-' where no run has the rl
    stage's metrics."""
    rl = [r["metrics"].get(RL_METRICS) or {} for r in runs]
    found = [m[group][arm] for m in rl if arm in (m.get(group) or {})]
    if not found:
        return "skipped" if any(arm in (m.get("skipped") or {}) for m in rl) else "-"
    if len(found) == 1:
        d = found[0]
        return stats.format_interval(d["auc_progress"], d.get("auc_progress_low"), d.get("auc_progress_high"), "+.3f")
    values = [[d["auc_progress"]] for d in found]
    mean, low, high = stats.hierarchical_bootstrap(values, seed=_seed("rl", group, arm, *(r["name"] for r in runs)))
    return stats.format_interval(mean, low, high, "+.3f")


def rl_skips(runs: list[dict]) -> list[str]:
    """Why the rl stage skipped arms of these runs: each reason once, by arm name (the snapshot's JSON need not
    keep the stage's order)."""
    skipped = [sorted(((r["metrics"].get(RL_METRICS) or {}).get("skipped") or {}).items()) for r in runs]
    reasons = [reason for arms in skipped for _, reason in arms]
    return list(dict.fromkeys(reasons))


def rl_table(snapshot: dict) -> list[str]:
    """Per preset: does its export help the agent's RL (stage `rl` of each of its runs, at the default budget)?"""
    lines = [
        "| preset | runs with rl | env steps | "
        + " | ".join(f"AUC progress, {label}" for _, _, label in RL_COMPARISONS)
        + " |",
        "|---|---|---|" + "---|" * len(RL_COMPARISONS),
    ]
    skips: dict[str, list[str]] = {}
    for preset, runs in by_preset(snapshot).items():
        with_rl = [r for r in runs if r["metrics"].get(RL_METRICS)]
        budgets = sorted({str(r["metrics"][RL_METRICS].get("budget_env_steps")) for r in with_rl})
        cells = [rl_cell(with_rl, group, arm) for group, arm, _ in RL_COMPARISONS]
        lines.append(
            f"| {preset} | {len(with_rl)} of {len(runs)} | {', '.join(budgets) or '-'} | " + " | ".join(cells) + " |"
        )
        for reason in rl_skips(with_rl):
            skips.setdefault(reason, []).append(preset)
    lines.append("")
    for reason, presets in skips.items():
        lines.append(f"- skipped in {', '.join(presets)}: {reason}")
    not_run = [e["name"] for e in snapshot["experiments"] if "rl" in (e.get("stages_not_run") or [])]
    if not_run:
        lines.append(f"- stage rl not run (experiments run up to an earlier stage): {', '.join(not_run)}")
    return lines + ([""] if skips or not_run else [])


def experiments_table(snapshot: dict) -> list[str]:
    """Each experiment alone: its commit, seeds, exported epoch and numbers (intervals over its tracks or test
    replays where it has rows)."""
    lines = [
        "| experiment | rev | seeds | epoch | " + " | ".join(m.label for m in METRICS) + " |",
        "|---|---|---|---|" + "---|" * len(METRICS),
    ]
    for e in snapshot["experiments"]:
        bc = e["metrics"].get(BC_METRICS) or {}
        seeds = ", ".join(f"{k}={e['params'][k]}" for k in SEED_KEYS if k in e["params"])
        epoch = f"{lookup(bc, 'best/epoch')}/{bc.get('epochs_run')}"
        cells = [_cell(arm_summary([e], m)) for m in METRICS]
        lines.append(f"| {e['name']} | {e['rev'][:7]} | {seeds} | {epoch} | " + " | ".join(cells) + " |")
    return lines + [""]


def figure_points(snapshot: dict) -> list[dict]:
    """One point per preset (mean over its seeds) with its intervals: the presets whose runs all have rows (the
    current protocol)."""
    points = []
    family = {e["name"]: e["family"] for e in snapshot["experiments"]}
    for preset, runs in by_preset(snapshot).items():
        if not all(has_rows(r) for r in runs):
            continue  # driven under an earlier protocol: not on the same axes (render_page names it)
        acc, prog = arm_summary(runs, ACCURACY), arm_summary(runs, PROGRESS)
        if math.isnan(acc[0]) or math.isnan(prog[0]):
            continue
        points.append(
            {
                "preset": preset,
                "family": family.get(preset, runs[0]["family"]),
                "seeds": len(runs),
                "test_acc": acc[0],
                "test_acc_low": acc[1],
                "test_acc_high": acc[2],
                "progress": prog[0],
                "progress_low": prog[1],
                "progress_high": prog[2],
            }
        )
    return points


def figure_spec(snapshot: dict) -> dict:
    """Vega-Lite: test accuracy against driving progress, one point per preset (mean over its seeds), with 95 %
    error bars on both axes where the runs have rows."""
    scale = {"zero": False, "padding": 24}  # room for the labels at the edges
    x = {"field": "test_acc", "type": "quantitative", "title": "test accuracy (test tracks)", "scale": scale}
    y = {"field": "progress", "type": "quantitative", "title": "driving progress, sampled (held-out tracks)"}
    y["scale"] = scale
    color = {"field": "family", "type": "nominal", "title": "family", "scale": {"scheme": "tableau10"}}
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Test accuracy vs driving: one point per preset (mean over its seeds), 95 % intervals as bars",
        "width": 640,
        "height": 420,
        "data": {"values": figure_points(snapshot)},
        "layer": [
            {
                "mark": {"type": "rule", "opacity": 0.6},
                "transform": [{"filter": "isValid(datum.test_acc_low)"}],
                "encoding": {
                    "x": {**x, "field": "test_acc_low"},
                    "x2": {"field": "test_acc_high"},
                    "y": y,
                    "color": color,
                },
            },
            {
                "mark": {"type": "rule", "opacity": 0.6},
                "transform": [{"filter": "isValid(datum.progress_low)"}],
                "encoding": {
                    "y": {**y, "field": "progress_low"},
                    "y2": {"field": "progress_high"},
                    "x": x,
                    "color": color,
                },
            },
            {
                "mark": {"type": "point", "filled": True, "size": 70},
                "encoding": {
                    "x": x,
                    "y": y,
                    "color": color,
                    "tooltip": [{"field": f} for f in ("preset", "seeds", "test_acc", "progress")],
                },
            },
            {
                "mark": {"type": "text", "align": "left", "dx": 6, "dy": -6, "fontSize": 9},
                "encoding": {"x": x, "y": y, "text": {"field": "preset"}},
            },
        ],
    }


SITTING_GAP_MIN = 30  # twice the longest run here (Level 0 at 50 epochs, BC and rl: ~15 min): a pause between sittings


def cost_lines(experiments: list[dict]) -> list[str]:
    """Wall time between consecutive finishes of a one-worker queue: what one experiment costs here. A gap longer
    than SITTING_GAP_MIN is a pause between sittings, not a run, and is left out."""
    stamps = sorted(datetime.fromisoformat(e["timestamp"]) for e in experiments if e.get("timestamp"))
    gaps = [(b - a).total_seconds() / 60 for a, b in zip(stamps, stamps[1:], strict=False)]
    runs = [g for g in gaps if g <= SITTING_GAP_MIN]
    if not runs:
        return []
    return [
        f"Cost: the {len(stamps)} experiments finished between {stamps[0]:%Y-%m-%d %H:%M} and "
        f"{stamps[-1]:%Y-%m-%d %H:%M} (commit times) in {len(gaps) - len(runs) + 1} sittings; one after another, an "
        f"experiment took {min(runs):.1f}-{max(runs):.1f} min (median {statistics.median(runs):.1f}), Level 0 "
        f"included where the run-cache did not have it: {sum(runs) / 60:.1f} h of this machine for the "
        f"{len(runs)} timed ones (the first of each sitting has no predecessor to time it by; gaps over "
        f"{SITTING_GAP_MIN} min are pauses, left out).",
        "",
    ]


def _protocol_note(experiments: list[dict]) -> list[str]:
    """Warnings where the snapshot's runs predate the protocol: no rows to judge on, driving before track limits."""
    lines = []
    old = [e for e in experiments if not has_rows(e)]
    if old:
        reasons: dict[str, list[str]] = {}
        for e in old:
            for path, why in sorted((e.get("missing_rows") or {"rows": "not collected"}).items()):
                reasons.setdefault(f"{path}: {why}", []).append(e["name"])
        lines += [
            f"> **Runs that predate the verdict protocol.** {len(old)} of the {len(experiments)} experiments lack "
            f"the per-track driving rows ({TRACKS_FILE}) or the per-replay test counts ({TEST_REPLAYS_FILE}) that "
            "the verdicts are computed from: their numbers below are the recorded ones, without intervals, and no "
            f"conclusion is judged on them (inconclusive: {NO_ROWS}). Run the presets again, with at least "
            f"{MIN_SEEDS} seeds each, and `tmpretrain results` to judge them.",
            ">",
            *(f"> - {reason} ({len(names)}): {', '.join(names)}." for reason, names in sorted(reasons.items())),
            "",
        ]
    earlier = [e["name"] for e in experiments if math.isnan(value(e, "policy/completion_rate_low"))]
    if earlier:
        which = (
            "These experiments"
            if len(earlier) == len(experiments)
            else f"{len(earlier)} experiments ({', '.join(earlier)})"
        )
        lines += [
            f"> **Driving figures of an earlier protocol.** {which} drove before the track limits "
            "(progress credited along the centre line, laps without checkpoint gates, 10 tracks, one sampled "
            "rollout each). They are not comparable with the current `evaluate` (docs/evaluation.md), nor with "
            "the runs that have intervals.",
            "",
        ]
    return lines


def method_lines() -> list[str]:
    margins = ", ".join(f"{m.label} +-{m.margin:g}" for m in METRICS)
    return [
        "How a conclusion is judged (`tmpretrain.stats`, `tmpretrain.experiments.results`):",
        "",
        f"- Each preset runs with several training seeds (`{'`, `'.join(SEED_KEYS)}`; family `seeds` in presets.yaml; "
        "experiments of a preset that differ in nothing else are its seeds).",
        "- The difference (first preset minus second) of the metric pooled over seeds, with a 95 % percentile "
        f"interval from a hierarchical bootstrap ({stats.N_BOOT} resamples): each arm's training seeds resampled, "
        "one resample of the shared held-out tracks for both arms (rollouts resampled within each track), or of the "
        "shared test replays for test accuracy and loss (correct predictions and frames pooled: the frames of a "
        "replay are not independent, the replay is the unit). Test loss is the cross-entropy at the exported offset; "
        "test main-actions accuracy the mean recall of the six main actions from the pooled confusion matrices.",
        "- A two-sided bootstrap p-value of no difference, Holm-adjusted per metric across the conclusions judged on "
        f"that metric (family-wise error {ALPHA:g}).",
        f"- Equivalence margins (`MARGINS`): {margins}.",
        "- Verdict words, one meaning each: **supported** (the claim's direction, significant after adjustment; for "
        "'not better': the interval's upper end below the margin), **contradicted** (a significant difference "
        "against the claim), **equivalent within the margin** (the whole interval inside +-margin), "
        "**inconclusive** (none of these; with the seeds a side a decision would need at 80 % power, from the "
        "between-seed spread).",
        f"- A conclusion with fewer than {MIN_SEEDS} seeds a side, or without rows, is not judged: inconclusive, "
        "with the reason.",
        "",
    ]


def render_page(snapshot: dict, figure_name: str = FIGURE_FILE.name) -> str:
    experiments = snapshot["experiments"]
    judgements = judge(snapshot)
    baselines = sorted({(e.get("baseline") or "")[:7] for e in experiments})
    points = figure_points(snapshot)
    rho = spearman_interval(
        [p["test_acc"] for p in points], [p["progress"] for p in points], _seed("rho", *(p["preset"] for p in points))
    )
    left_out = [preset for preset in by_preset(snapshot) if preset not in {p["preset"] for p in points}]
    lines = [
        "# Results on the embedded data",
        "",
        "<!-- Generated by `tmpretrain results` from the named DVC experiments (docs/experiments/results.json); "
        "do not edit by hand. -->",
        "",
        "Every preset of presets.yaml run as named DVC experiments on the embedded default data through "
        "`evaluate`: per-frame numbers of the exported epoch on the test tracks (which nothing chose on), then the "
        "exported policy driving held-out tracks (docs/evaluation.md), sampled and greedy. Baseline commit: "
        + ", ".join(f"`{b}`" for b in baselines)
        + ". `dvc exp apply NAME` restores an experiment's params, metrics and models; the `rev` column is its "
        "commit.",
        "",
        "```bash",
        "tmpretrain study     # every preset at 4 training seeds, one at a time; again to resume",
        "tmpretrain study --target evaluate   # the same up to evaluate: the verdicts' inputs, without stage rl",
        "tmpretrain results                             # this page, results.json and the figure",
        "```",
        "",
        *_protocol_note(experiments),
        "## Summary",
        "",
        *summary_lines(judgements),
        *summary_table(judgements),
        *method_lines(),
        "## All presets",
        "",
        "Each preset over its seeds: the value with its 95 % interval (seeds and tracks or test replays resampled); "
        "'no interval' where its runs have no rows (the recorded value, mean over seeds).",
        "",
        *presets_table(snapshot),
    ]
    if snapshot.get("missing"):
        lines += [f"Not run yet: {', '.join(snapshot['missing'])}.", ""]
    if not_seed_repeats(snapshot):
        lines += [f"Left out (not a seed repeat of their preset): {', '.join(not_seed_repeats(snapshot))}.", ""]
    lines += [
        "### Per experiment",
        "",
        "Each run alone; intervals over its tracks (rollouts nested) or test replays where it has rows. epoch: the "
        "exported epoch (0-based) / epochs run.",
        "",
        *experiments_table(snapshot),
        *cost_lines(experiments),
        "## Downstream RL per preset",
        "",
        "Which export to merge, answered by the agent's own RL (stage `rl`, docs/rl.md) rather than by per-frame "
        "accuracy: each run trains the IQN agent in the simulator from scratch and from the run's exports, and the "
        "area under the greedy-progress curve on held-out tracks (0..1, the mean over the budget) of an arm minus "
        "scratch's, paired by RL seed and track. Over a preset's training seeds: their mean with a 95 % bootstrap "
        "interval over those seeds; one run: its own interval. At the default budget no arm learns to finish a lap: "
        "this is the early question (does the init carry over, does RL keep it); docs/rl.md has the longer study.",
        "",
        *rl_table(snapshot),
        "## Per-frame accuracy vs driving",
        "",
        f"![test accuracy against driving progress]({figure_name})",
        "",
        (
            f"Across the {len(points)} presets whose runs all have rows (the current protocol), the rank correlation "
            f"between test accuracy and driving progress (Spearman) is {stats.format_interval(*rho, '.2f')} (95 % "
            "interval from resampling the presets; descriptive: no verdict rests on it)."
            if len(points) >= 3
            else f"No rank correlation: {len(points)} presets have rows of the current protocol (it needs 3)."
        )
        + (f" Left out, driven under an earlier protocol: {', '.join(left_out)}." if left_out else ""),
        "",
        "## The original study's conclusions, checked",
        "",
    ]
    for conclusion in CONCLUSIONS:
        lines += conclusion_section(conclusion, snapshot, judgements[conclusion.title])
    lines += [
        "## What each preset changes",
        "",
        "| experiment | family | what it runs |",
        "|---|---|---|",
        *(f"| {e['name']} | {e['family']} | {e['desc']} |" for e in experiments),
        "",
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_results(snapshot: dict, out_dir: Path | str = RESULTS_DIR, write_snapshot: bool = True) -> list[Path]:
    """results.md and the figure (and results.json with write_snapshot) under out_dir."""
    import vl_convert as vlc

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if write_snapshot:
        path = out_dir / SNAPSHOT_FILE.name
        path.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    figure = out_dir / FIGURE_FILE.name
    figure.write_text(vlc.vegalite_to_svg(figure_spec(snapshot)), encoding="utf-8")
    page = out_dir / PAGE_FILE.name
    page.write_text(render_page(snapshot, figure.name), encoding="utf-8")
    return [*written, figure, page]


def load_snapshot(path: Path | str) -> dict:
    try:
        snapshot = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PresetError(f"{path}: not a results snapshot ({exc})") from None
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("experiments"), list):
        raise PresetError(f"{path}: not a results snapshot (no `experiments` list)")
    return snapshot

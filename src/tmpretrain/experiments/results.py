"""The results page: every preset's named DVC experiment on accuracy and on driving, and each of the seed
write-up's conclusions checked against them, seed-to-seed noise included.

    tmpretrain results                    collect the presets' experiments from `dvc exp show`, then write
                                          docs/experiments/results.json, results.md and the accuracy-vs-driving SVG
    tmpretrain results --from FILE.json   write the page again from a collected snapshot (no experiments needed)

The snapshot (results.json) keeps, per experiment: its name, its commit (`dvc exp apply NAME` restores it), the
baseline commit it ran on, its params and the two metrics files; the page and the figure are a pure function of
it, so a test can check that results.md is what the snapshot says.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from . import BC_METRICS, EVAL_METRICS, RL_METRICS, PresetError, comparison_table, format_table, lookup, runnable

RESULTS_DIR = Path("docs/experiments")
SNAPSHOT_FILE = RESULTS_DIR / "results.json"
PAGE_FILE = RESULTS_DIR / "results.md"
FIGURE_FILE = RESULTS_DIR / "results_accuracy_vs_driving.svg"
SEEDS_FAMILY = "seeds"


# ---------------------------------------------------------------------------------------------- snapshot


def collect(rows: list[dict], presets: dict) -> dict:
    """The presets' experiments among `experiment_rows(exp_show(["-A"]))`, in presets.yaml's order: the newest
    finished experiment of each preset's name, on whichever commit. Presets that have not run are listed as
    missing."""
    by_name: dict[str, dict] = {}
    for row in rows:
        if row.get("state", "success") != "success":
            continue
        if row["name"] not in by_name or (row.get("timestamp") or "") > (by_name[row["name"]].get("timestamp") or ""):
            by_name[row["name"]] = row
    experiments, missing = [], []
    for name in runnable(presets):
        row = by_name.get(name)
        if row is None or not row["metrics"].get(BC_METRICS):
            missing.append(name)
            continue
        spec = presets["presets"][name]
        experiments.append(
            {
                "name": name,
                "family": spec.get("family", ""),
                "desc": spec.get("desc", ""),
                "rev": row["rev"],
                "baseline": row.get("baseline"),
                "timestamp": row.get("timestamp"),
                "params": row["params"],
                "metrics": {path: row["metrics"].get(path) or {} for path in (BC_METRICS, EVAL_METRICS, RL_METRICS)},
            }
        )
    if not experiments:
        raise PresetError("none of the presets has run yet (tmpretrain queue all && dvc queue start -j 1)")
    return {"experiments": experiments, "missing": missing}


def _rows(snapshot: dict) -> list[dict]:
    """The snapshot's experiments as comparison_table rows, without params (the preset list says what each
    changes; a column per differing key would not fit)."""
    return [
        {"name": e["name"], "rev": e["rev"], "params": {}, "metrics": e["metrics"]} for e in snapshot["experiments"]
    ]


# ---------------------------------------------------------------------------------------------- numbers


def value(exp: dict, metric: str) -> float:
    """A headline number of one experiment: test/* and val/* of the exported epoch, policy/* of evaluate."""
    if metric.startswith("policy/"):
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


def by_preset(snapshot: dict) -> dict[str, list[dict]]:
    """Every run of each preset: the preset's own first, then its seed repeats."""
    out: dict[str, list[dict]] = {}
    for exp in snapshot["experiments"]:
        out.setdefault(base_preset(exp), []).append(exp)
    return out


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool


# The numbers each conclusion is checked on: per-frame on the test tracks, and closed-loop on the held-out ones.
PER_FRAME = (
    Metric("test/loss", "test loss", False),
    Metric("test/acc", "test acc", True),
    Metric("test/main_actions_acc", "test main-actions acc", True),
)
DRIVING = (
    Metric("policy/progress", "driving progress", True),
    Metric("policy/completion_rate", "tracks finished", True),
)
ACCURACY_VERDICT, DRIVING_VERDICT = PER_FRAME[1], DRIVING[0]


def measured(runs: list[dict], metric: Metric) -> list[float]:
    """The metric of each run that has it."""
    return [v for v in (value(r, metric.key) for r in runs) if not math.isnan(v)]


def seed_spread(snapshot: dict, metric: Metric) -> tuple[float, list[str]]:
    """The largest seed-to-seed range of `metric` over the presets run with several seeds, and those presets:
    a difference between presets smaller than this is not shown to be more than noise."""
    spread, presets = 0.0, []
    for preset, runs in by_preset(snapshot).items():
        values = measured(runs, metric)
        if len(values) > 1:
            presets.append(preset)
            spread = max(spread, max(values) - min(values))
    return spread, presets


def mean_over_seeds(runs: list[dict], metric: Metric) -> float:
    values = measured(runs, metric)
    return statistics.fmean(values) if values else math.nan


# ---------------------------------------------------------------------------------------------- conclusions


@dataclass(frozen=True)
class Conclusion:
    """One of the seed write-up's conclusions as a comparison of two presets: `claim` "better" means a beats b,
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


def verdict(conclusion: Conclusion, delta: float, spread: float) -> str:
    """Whether the claim holds for one metric, given a - b oriented so that positive means a is better."""
    if math.isnan(delta):
        return "not measured"
    if abs(delta) <= spread:
        return "holds (within seed noise)" if conclusion.claim != "better" else "within seed noise"
    a_better = delta > 0
    if conclusion.claim == "better":
        return "holds" if a_better else f"reversed: {conclusion.b} is better"
    if conclusion.claim == "not_better":
        return "does not hold" if a_better else "holds"
    return f"does not hold: {conclusion.a if a_better else conclusion.b} is better"


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}"


def _signed(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:+.3f}"


def _names_with_seeds(runs: list[dict]) -> str:
    return ", ".join(f"`{r['name']}`" for r in runs)


@dataclass(frozen=True)
class Comparison:
    mean_a: float
    mean_b: float
    spread: float
    verdict: str


def compare(conclusion: Conclusion, snapshot: dict) -> dict[Metric, Comparison] | None:
    """Each metric of the conclusion's two presets, averaged over their seeds, against the seed noise; None
    when one of them has not run."""
    runs = by_preset(snapshot)
    a, b = runs.get(conclusion.a), runs.get(conclusion.b)
    if not a or not b:
        return None
    out = {}
    for metric in PER_FRAME + DRIVING:
        ma, mb = mean_over_seeds(a, metric), mean_over_seeds(b, metric)
        spread, _ = seed_spread(snapshot, metric)
        delta = (ma - mb) * (1 if metric.higher_is_better else -1)
        out[metric] = Comparison(ma, mb, spread, verdict(conclusion, delta, spread))
    return out


def summary_table(snapshot: dict) -> list[str]:
    lines = ["| conclusion | compared | per-frame accuracy | driving |", "|---|---|---|---|"]
    for conclusion in CONCLUSIONS:
        result = compare(conclusion, snapshot)
        acc, drive = (
            (result[ACCURACY_VERDICT].verdict, result[DRIVING_VERDICT].verdict) if result else ("not run", "not run")
        )
        lines.append(f"| {conclusion.title} | {conclusion.a} vs {conclusion.b} | {acc} | {drive} |")
    return lines + [""]


def conclusion_section(conclusion: Conclusion, snapshot: dict) -> list[str]:
    runs = by_preset(snapshot)
    lines = [
        f"### {conclusion.title}: {conclusion.a} vs {conclusion.b}",
        "",
        f"Seed write-up: {conclusion.seed_says}",
        "",
    ]
    result = compare(conclusion, snapshot)
    if result is None:
        absent = [n for n in (conclusion.a, conclusion.b) if n not in runs]
        return lines + [f"Not checked: {', '.join(absent)} has not run.", ""]
    lines += [
        f"| metric | {conclusion.a} | {conclusion.b} | difference | seed noise | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for metric, c in result.items():
        lines.append(
            f"| {metric.label} | {_fmt(c.mean_a)} | {_fmt(c.mean_b)} | {_signed(c.mean_a - c.mean_b)} "
            f"| {_fmt(c.spread)} | {c.verdict} |"
        )
    a, b = runs[conclusion.a], runs[conclusion.b]
    lines += [
        "",
        f"On per-frame accuracy: **{result[ACCURACY_VERDICT].verdict}**; on driving: "
        f"**{result[DRIVING_VERDICT].verdict}**. Experiments: {_names_with_seeds(a)} ({len(a)} "
        f"seed{'s' * (len(a) > 1)}) and {_names_with_seeds(b)} ({len(b)} seed{'s' * (len(b) > 1)}); each column "
        "is the mean over them.",
    ]
    for name in conclusion.overfit:
        lines.append(overfit_line(runs.get(name, [])))
    return lines + [""]


def overfit_line(runs: list[dict]) -> str:
    """Where the exported (lowest val loss) epoch lies and how far val loss rose by the last epoch."""
    if not runs:
        return ""
    exp = runs[0]
    bc = exp["metrics"][BC_METRICS]
    best, last = lookup(bc, "best/val/loss"), lookup(bc, "val/loss")
    return (
        f"- `{exp['name']}`: lowest val loss {_fmt(best)} at epoch {lookup(bc, 'best/epoch')} (0-based) of "
        f"{bc.get('epochs_run')} run; val loss at the last epoch {_fmt(last)} ({_signed(last - best)})."
    )


# ---------------------------------------------------------------------------------------------- page


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (Pearson's on the ranks, ties averaged); NaN with fewer than three points."""
    return float(pd.Series(xs).rank().corr(pd.Series(ys).rank())) if len(xs) >= 3 else math.nan


def seeds_table(snapshot: dict) -> list[str]:
    groups = {p: r for p, r in by_preset(snapshot).items() if len(r) > 1}
    if not groups:
        return ["No preset has run with more than one seed yet: no difference below can be told from noise.", ""]
    metrics = (PER_FRAME[0], PER_FRAME[1], DRIVING[0], DRIVING[1])
    lines = [
        "| preset | experiments | " + " | ".join(f"{m.label} (min-max)" for m in metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for preset, runs in groups.items():
        cells = []
        for m in metrics:
            vals = measured(runs, m)
            cells.append(f"{_fmt(min(vals))}-{_fmt(max(vals))}" if vals else "n/a")
        lines.append(f"| {preset} | {_names_with_seeds(runs)} | " + " | ".join(cells) + " |")
    noise = ", ".join(f"{m.label} {_fmt(seed_spread(snapshot, m)[0])}" for m in metrics)
    return lines + ["", f"Seed noise used below (the largest range in this table): {noise}.", ""]


def figure_spec(snapshot: dict) -> dict:
    """Vega-Lite: test accuracy against driving progress, one point per experiment, seed repeats joined."""
    family = {e["name"]: e["family"] for e in snapshot["experiments"]}
    points = [
        {
            "experiment": e["name"],
            "preset": base_preset(e),
            "family": family.get(base_preset(e), e["family"]),
            "test_acc": value(e, "test/acc"),
            "progress": value(e, "policy/progress"),
            "completion": value(e, "policy/completion_rate"),
        }
        for e in snapshot["experiments"]
        if not (math.isnan(value(e, "test/acc")) or math.isnan(value(e, "policy/progress")))
    ]
    scale = {"zero": False, "padding": 24}  # room for the labels at the edges
    enc = {
        "x": {"field": "test_acc", "type": "quantitative", "title": "per-frame accuracy (test tracks)", "scale": scale},
        "y": {
            "field": "progress",
            "type": "quantitative",
            "title": "driving progress (held-out tracks)",
            "scale": scale,
        },
        "color": {"field": "family", "type": "nominal", "title": "family", "scale": {"scheme": "tableau10"}},
    }
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Per-frame accuracy vs driving: one point per experiment, a preset's seed repeats joined",
        "width": 640,
        "height": 420,
        "data": {"values": points},
        "layer": [
            {"mark": {"type": "line", "opacity": 0.5}, "encoding": {**enc, "detail": {"field": "preset"}}},
            {
                "mark": {"type": "point", "filled": True, "size": 70},
                "encoding": {
                    **enc,
                    "tooltip": [{"field": f} for f in ("experiment", "test_acc", "progress", "completion")],
                },
            },
            {
                "mark": {"type": "text", "align": "left", "dx": 6, "dy": -6, "fontSize": 9},
                "transform": [{"filter": "indexof(datum.experiment, '_seed') < 0"}],
                "encoding": {"x": enc["x"], "y": enc["y"], "text": {"field": "experiment"}},
            },
        ],
    }


def best_lines(experiments: list[dict]) -> str:
    """The most accurate preset and the best driver, each with the other number."""
    scored = [e for e in experiments if not math.isnan(value(e, "test/acc") + value(e, "policy/progress"))]
    if len(scored) < 2:
        return ""
    top_acc = max(scored, key=lambda e: value(e, "test/acc"))
    top_drive = max(scored, key=lambda e: value(e, "policy/progress"))
    return (
        f" The most accurate preset, `{top_acc['name']}` (test acc {_fmt(value(top_acc, 'test/acc'))}), drives "
        f"{_fmt(value(top_acc, 'policy/progress'))} of a lap on average; the best driver, `{top_drive['name']}` "
        f"(progress {_fmt(value(top_drive, 'policy/progress'))}, {_fmt(value(top_drive, 'policy/completion_rate'))} "
        f"of the tracks finished), has test acc {_fmt(value(top_drive, 'test/acc'))}."
    )


def cost_lines(experiments: list[dict]) -> list[str]:
    """Wall time between consecutive finishes of a one-worker queue: what one experiment costs here."""
    stamps = sorted(datetime.fromisoformat(e["timestamp"]) for e in experiments if e.get("timestamp"))
    gaps = [(b - a).total_seconds() / 60 for a, b in zip(stamps, stamps[1:], strict=False)]
    if not gaps:
        return []
    return [
        f"Cost: the {len(stamps)} experiments finished between {stamps[0]:%Y-%m-%d %H:%M} and {stamps[-1]:%H:%M} "
        f"(commit times); one after another, an experiment took {min(gaps):.1f}-{max(gaps):.1f} min "
        f"(median {statistics.median(gaps):.1f}), Level 0 included where the run-cache did not have it.",
        "",
    ]


def _protocol_note(experiments: list[dict]) -> list[str]:
    """A warning where the snapshot's driving figures predate the track limits (they carry no interval)."""
    if any(not math.isnan(value(e, "policy/completion_rate_low")) for e in experiments):
        return []
    return [
        "> **Driving figures of an earlier protocol.** These experiments drove before the track limits "
        "(progress credited along the centre line, laps without checkpoint gates, 10 tracks, one sampled "
        "rollout each) and their figures carry no interval. They are not comparable with the current "
        "`evaluate` (docs/evaluation.md), and the driving verdicts below stand only until the presets are run "
        "again under it.",
        "",
    ]


def render_page(snapshot: dict, figure_name: str = FIGURE_FILE.name) -> str:
    experiments = snapshot["experiments"]
    own = [e for e in experiments if e["family"] != SEEDS_FAMILY]
    df, short = comparison_table(_rows({"experiments": own}))
    df.insert(0, "rev", [e["rev"][:7] for e in own])
    short["rev"] = "rev"
    baselines = sorted({(e.get("baseline") or "")[:7] for e in experiments})
    acc = [value(e, "test/acc") for e in own]
    prog = [value(e, "policy/progress") for e in own]
    pairs = [(x, y) for x, y in zip(acc, prog, strict=True) if not (math.isnan(x) or math.isnan(y))]
    rho = spearman([x for x, _ in pairs], [y for _, y in pairs])
    lines = [
        "# Results on the embedded data",
        "",
        "<!-- Generated by `tmpretrain results` from the named DVC experiments (docs/experiments/results.json); "
        "do not edit by hand. -->",
        "",
        "Every preset of presets.yaml run as a named DVC experiment on the embedded default data through "
        "`evaluate`: per-frame numbers of the exported epoch on the val tracks (which chose it) and on the test "
        "tracks (which nothing chose on), then the exported policy driving held-out tracks "
        "(docs/evaluation.md). Baseline commit: "
        + ", ".join(f"`{b}`" for b in baselines)
        + ". `dvc exp apply NAME` restores an experiment's params, metrics and models; the `rev` column is its "
        "commit.",
        "",
        "```bash",
        "tmpretrain queue all && dvc queue start -j 1   # the presets, then their seed repeats (one at a time)",
        "tmpretrain results                             # this page, results.json and the figure",
        "```",
        "",
        *_protocol_note(own),
        "## All presets",
        "",
        format_table(df, short, "md").rstrip("\n"),
        "",
        "epoch: the exported epoch (0-based) / epochs run. val: the exported epoch on the val tracks; -10ms ... "
        "+100ms: its val accuracy per offset; test: the same weights on the test tracks; completion, progress, "
        "lap time ratio: the exported policy on the held-out evaluation tracks.",
        "",
    ]
    if snapshot.get("missing"):
        lines += [f"Not run yet: {', '.join(snapshot['missing'])}.", ""]
    lines += cost_lines(experiments)
    lines += [
        "## Per-frame accuracy vs driving",
        "",
        f"![test accuracy against driving progress]({figure_name})",
        "",
        f"Across the {len(pairs)} presets, the rank correlation between test accuracy and driving progress is "
        f"{_fmt(rho, 2)} (Spearman).{best_lines(own)}",
        "",
        "## Seed-to-seed noise",
        "",
        "The same preset with another `bc.seed` (family `seeds` in presets.yaml; data and Level 0 unchanged):",
        "",
        *seeds_table(snapshot),
        "## The seed write-up's conclusions, checked",
        "",
        "Each conclusion as a comparison of two presets, on per-frame numbers (test tracks) and on driving "
        "(held-out tracks). A difference no larger than the seed noise above is reported as such.",
        "",
    ]
    lines += summary_table(snapshot)
    for conclusion in CONCLUSIONS:
        lines += conclusion_section(conclusion, snapshot)
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

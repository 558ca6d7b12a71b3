"""The study's answers from learning curves, by hand: steps to a threshold (censored), areas under the curves,
intervals across seeds, differences to scratch paired by seed and track; the experiments table's RL column."""

from __future__ import annotations

import json

import pytest
import yaml

from support.projects import ROOT, fake_exp_show
from tmpretrain.experiments import RL_METRICS, comparison_table, experiment_rows, format_table
from tmpretrain.params import RL_ARMS
from tmpretrain.rl.arms import ARMS
from tmpretrain.rl.study import markdown_table
from tmpretrain.rl.summary import area_under_curve, run_scalars, steps_to, summarize


def evaluation(step: int, clean: list[bool], progress: list[float]) -> dict:
    tracks = [
        {"track": t, "finished": c, "clean": c, "progress": p, "lap_time_ratio": 1.1 if c else None}
        for t, (c, p) in enumerate(zip(clean, progress, strict=True))
    ]
    return {"step": step, "tracks": tracks}


# clean completion 0, 0.5, 1.0 at steps 0, 100, 300
RISING = [
    evaluation(0, [False, False], [0.1, 0.3]),
    evaluation(100, [True, False], [1.0, 0.6]),
    evaluation(300, [True, True], [1.0, 1.0]),
]
FLAT = [evaluation(s, [False, False], [0.2, 0.2]) for s in (0, 100, 300)]


def test_steps_to_a_threshold_are_censored_at_the_budget():
    assert steps_to(RISING, 0.5, 300) == (100, False)
    assert steps_to(RISING, 0.9, 300) == (300, False)
    assert steps_to(FLAT, 0.5, 300) == (300, True)


def test_area_under_the_curve_is_the_mean_over_the_budget():
    # trapezoids: (0 + 0.5) / 2 * 100 + (0.5 + 1) / 2 * 200 = 175, over 300 steps
    assert area_under_curve(RISING, "clean") == pytest.approx(175 / 300)
    assert area_under_curve(FLAT, "progress") == pytest.approx(0.2)
    assert run_scalars(FLAT, 300)["steps_to_clean_0.5_censored"] == 1.0


def test_summary_across_seeds_and_paired_differences():
    metrics = summarize(
        {"scratch": [{"evaluations": FLAT}] * 2, "bc": [{"evaluations": RISING}, {"evaluations": FLAT}]}, 300
    )
    bc, diff = metrics["arms"]["bc"], metrics["vs_scratch"]["bc"]
    assert bc["end"]["clean_completion_rate"] == 0.5  # one seed finished both tracks, the other none
    assert bc["end"]["clean_completion_rate_low"] == 0.0 and bc["end"]["clean_completion_rate_high"] == 1.0
    assert bc["steps_to_clean_0.5"] == 200 and bc["steps_to_clean_0.5_censored"] == 1  # (100 + 300) / 2
    assert diff["auc_clean_completion"] == pytest.approx(175 / 300 / 2, abs=1e-4)
    assert diff["end"]["progress"] == pytest.approx(0.4)  # seed 0: 1.0 - 0.2 per track; seed 1: 0
    assert diff["start"]["progress"] == pytest.approx((-0.1 + 0.1) / 2, abs=1e-9)
    assert list(metrics["vs_scratch"]) == ["bc"] and metrics["vs_bc"] == {}  # no bc_dqfd arm here
    remedy = summarize(
        {"scratch": [{"evaluations": FLAT}], "bc": [{"evaluations": FLAT}], "bc_dqfd": [{"evaluations": RISING}]}, 300
    )
    assert remedy["vs_bc"]["bc_dqfd"] == remedy["vs_scratch"]["bc_dqfd"]  # bc drove as scratch did


def test_every_arm_the_params_allow_is_defined():
    assert tuple(ARMS) == RL_ARMS


def test_the_experiments_table_has_a_downstream_rl_column():
    runs = {"scratch": FLAT, "bc": RISING, "bc_dqfd": RISING}
    rl = summarize({arm: [{"evaluations": evaluations}] for arm, evaluations in runs.items()}, 300)
    base = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    show = fake_exp_show({"a": base}, {RL_METRICS: rl})
    df, short = comparison_table(experiment_rows(show), ["a"])
    assert df.loc["a", "rl/bc_minus_scratch/auc_progress"] == rl["vs_scratch"]["bc"]["auc_progress"] > 0
    assert "rl bc-scratch" in format_table(df, short)


def test_drift_rl_md_tables_are_the_metrics_they_cite():
    """docs/rl.md's per-arm tables are `markdown_table` of the metrics files they come from: the default budget's
    reports/rl/metrics.json (what `dvc repro` writes) and the full study's docs/rl/study/metrics.json."""
    page = (ROOT / "docs/rl.md").read_text(encoding="utf-8")
    for path in ("reports/rl/metrics.json", "docs/rl/study/metrics.json"):
        table = "\n".join(markdown_table(json.loads((ROOT / path).read_text(encoding="utf-8"))))
        assert table in page, f"docs/rl.md lacks the table of {path}: paste `markdown_table` of it"

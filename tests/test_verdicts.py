"""The verdicts of the results page, recomputed from a small hand-built snapshot with per-track and per-replay rows
whose answers are known: a clear supported case, a contradicted one, an equivalent one, an inconclusive one, and
conclusions on too few seeds."""

from __future__ import annotations

import math
import re
import zlib

import numpy as np
import pytest

from tmpretrain import stats
from tmpretrain.experiments.results import (
    ACCURACY,
    COMPLETION,
    CONCLUSIONS,
    GREEDY,
    LOSS,
    MAIN_ACCURACY,
    MARGINS,
    METRICS,
    MIN_SEEDS,
    PROGRESS,
    figure_spec,
    judge,
    render_page,
)

REPLAY_EFFECT = (-0.06, 0.04, 0.0, 0.03, -0.02, 0.01)  # hard and easy test replays, the same for every preset
TRACK_EFFECT = (-0.2, 0.1, 0.0, 0.15, -0.1, 0.05, -0.05, 0.08)  # the same for every preset
FRAMES = 400


def _run(name: str, family: str, seed: int, acc: float, progress: float, seed_sd: float, rng) -> dict:
    """One experiment: test replays at accuracy `acc` (+ replay effect + this seed's offset), driving rows at
    `progress` (+ track effect + the training seed's offset), two rollouts a track."""
    shift = rng.normal(0.0, seed_sd)
    replays = []
    for i, effect in enumerate(REPLAY_EFFECT):
        correct = int(round(FRAMES * min(1.0, max(0.0, acc + effect + shift))))
        replays.append(
            {
                "replay": f"track{i // 3}/r{i}.replay",
                "track": f"track{i // 3}",
                "frames": FRAMES,
                "correct": correct,
                "ce_sum": FRAMES * (2.0 - correct / FRAMES),  # loss falls as accuracy rises
                "weight_sum": float(FRAMES),
                "confusion": [[correct, FRAMES - correct] + [0] * 10] + [[0] * 12] * 11,  # all labels "accel"
            }
        )
    tracks = []
    for t, effect in enumerate(TRACK_EFFECT):
        for r in range(2):
            p = min(1.0, max(0.0, progress + effect + shift + rng.normal(0.0, 0.005)))
            tracks.append({"group": "policy", "track": t, "rollout": r, "progress": p, "finished": p > 0.75})
            tracks.append({"group": "policy_greedy", "track": t, "rollout": r, "progress": p, "finished": p > 0.75})
    return {
        "name": name,
        "family": family,
        "desc": f"{name} (hand-built)",
        "rev": f"{zlib.crc32(name.encode()):040x}",
        "baseline": "c" * 40,
        "timestamp": None,
        "params": {"bc.seed": seed, "vis.seed": 0, "preset": name.rsplit("_seed", 1)[0]},
        "metrics": {},
        "tracks": tracks,
        "test_replays": replays,
    }


# preset: (accuracy, progress, between-seed sd, seeds)
ARMS = {
    "v1.1": (0.55, 0.60, 0.003, 4),
    "v1.2": (0.65, 0.80, 0.003, 4),  # v1.2 vs v1.1 "better": supported on everything
    "v2": (0.56, 0.60, 0.002, 4),
    "v2_next_tick": (0.66, 0.60, 0.002, 4),  # v2 vs v2_next_tick "better": contradicted on accuracy
    "v2_multi_offset": (0.56, 0.60, 0.002, 4),  # vs v2 "tie": equivalent within the margin
    "v2_multi_offset_ahead": (0.55, 0.60, 0.04, 4),  # v2_multi_offset vs it "better": inconclusive (noisy seeds)
    "v2_multi_offset_ahead_tuned": (0.70, 0.90, 0.002, 2),  # vs v2_multi_offset_ahead: 2 seeds, not judged
}


def _snapshot() -> dict:
    rng = np.random.default_rng(7)
    experiments = []
    for preset, (acc, progress, sd, n) in ARMS.items():
        for seed in range(n):
            name, family = (preset, "hand") if seed == 0 else (f"{preset}_seed{seed}", "seeds")
            experiments.append(_run(name, family, seed, acc, progress, sd, rng))
    return {"schema": 2, "experiments": experiments, "missing": []}


@pytest.fixture(scope="module")
def judged():
    snap = _snapshot()
    return snap, judge(snap)


def test_a_clear_gap_in_the_claimed_direction_is_supported(judged):
    _, j = judged
    result = j["Normalisation at BC input"]
    assert result[ACCURACY].verdict == "supported"
    assert result[ACCURACY].difference == pytest.approx(0.10, abs=0.005)
    assert result[ACCURACY].low > 0.09 and result[ACCURACY].high < 0.11
    assert result[LOSS].verdict == "supported"  # lower loss is better: the difference is oriented
    # main-actions accuracy: accel's recall, the five other main actions without support count as 0
    assert result[MAIN_ACCURACY].verdict == "supported"
    assert result[MAIN_ACCURACY].difference == pytest.approx(result[ACCURACY].difference / 6)
    assert result[LOSS].difference == pytest.approx(-0.10, abs=0.005)
    assert result[PROGRESS].verdict == "supported" and result[GREEDY].verdict == "supported"
    assert result[ACCURACY].units == len(REPLAY_EFFECT) and result[PROGRESS].units == len(TRACK_EFFECT)
    assert result[PROGRESS].rollouts == 2 and result[ACCURACY].seeds_a == result[ACCURACY].seeds_b == 4


def test_a_clear_gap_against_the_claim_is_contradicted(judged):
    _, j = judged
    result = j["Current vs next tick"]
    assert result[ACCURACY].verdict == "contradicted" and result[ACCURACY].high < 0
    # the same driving for both: equivalent within the driving margin, not "supported"
    assert result[PROGRESS].verdict == "equivalent within the margin"


def test_a_tie_inside_the_margin_is_equivalent(judged):
    _, j = judged
    result = j["Multi-offset heads"]
    acc = result[ACCURACY]
    assert acc.verdict == "equivalent within the margin"
    assert -MARGINS["accuracy"] < acc.low and acc.high < MARGINS["accuracy"]


def test_noisy_seeds_are_inconclusive_with_the_seeds_a_decision_needs(judged):
    snap, j = judged
    acc = j["Linear heads vs A_head"][ACCURACY]
    assert acc.verdict == "inconclusive" and acc.reason == "" and acc.low < 0 < acc.high
    # seeds_needed from the between-seed spread of both arms' per-seed accuracies
    per_seed = {}
    for e in snap["experiments"]:
        r = e["test_replays"]
        per_seed.setdefault(e["params"]["preset"], []).append(
            sum(x["correct"] for x in r) / sum(x["frames"] for x in r)
        )
    sd = stats.between_seed_sd(per_seed["v2_multi_offset"], per_seed["v2_multi_offset_ahead"])
    assert acc.seeds_needed == max(MIN_SEEDS, stats.seeds_needed(acc.difference, sd)) and acc.seeds_needed > MIN_SEEDS
    assert acc.text == f"inconclusive (a decision needs ~{int(acc.seeds_needed)} seeds a side)"


def test_fewer_than_four_seeds_a_side_is_not_judged(judged):
    _, j = judged
    acc = j["A_head tuning"][ACCURACY]
    assert acc.verdict == "inconclusive" and acc.reason == f"n seeds < {MIN_SEEDS}"
    assert acc.low > 0.1  # a large gap, yet not judged on two seeds
    assert acc.p_adjusted is None and acc.text.startswith(f"inconclusive: n seeds < {MIN_SEEDS} (2 vs 4")
    assert j["n_stack"] is None  # neither preset has run


def test_holm_runs_per_metric_over_the_judged_conclusions(judged):
    _, j = judged
    for m in METRICS:
        judged_m = [r[m] for r in j.values() if r and not r[m].reason]
        assert [x.p_adjusted for x in judged_m] == pytest.approx(stats.holm([x.p for x in judged_m]))
        for x in judged_m:  # each word follows from the interval, the adjusted p and the margin
            sign = 1 if m.higher_is_better else -1
            low, high = sorted((sign * x.low, sign * x.high))
            claim = next(c.claim for c in CONCLUSIONS if j[c.title] and j[c.title][m] is x)
            assert x.verdict == stats.verdict(claim, low, high, x.p_adjusted, m.margin)


def test_the_page_shows_intervals_and_the_words_and_the_figure_error_bars(judged):
    snap, j = judged
    page = render_page(snap)
    assert "| Normalisation at BC input | v1.2 vs v1.1 | better | 4 vs 4 | supported |" in page
    assert "| Current vs next tick | v2 vs v2_next_tick | better | 4 vs 4 | contradicted |" in page
    acc = j["Normalisation at BC input"][ACCURACY]
    assert f"{acc.difference:+.3f} [{acc.low:+.3f}, {acc.high:+.3f}]" in page
    assert "6 test replays" in page and "8 tracks x 2 rollouts" in page
    assert "(no interval)" not in page and "Runs that predate" not in page
    assert "+-0.01" in page and "+-0.03" in page and "Holm-adjusted per metric" in page
    points = figure_spec(snap)["data"]["values"]
    assert len(points) == len(ARMS)
    assert re.search(r"driving progress \(Spearman\) is -?[01]\.\d\d \[-?[01]\.\d\d, -?[01]\.\d\d\] \(95 %", page)
    for p in points:
        assert p["test_acc_low"] <= p["test_acc"] <= p["test_acc_high"]
        assert p["progress_low"] <= p["progress"] <= p["progress_high"]
    assert not math.isnan(j["Normalisation at BC input"][COMPLETION].difference)


def test_decision_distance_is_to_the_verdict_more_seeds_reach_first():
    # 'better': significance either way
    assert stats.decision_distance("better", 0.02, 0.01) == stats.decision_distance("better", -0.02, 0.01) == 0.02
    assert stats.decision_distance("better", 0.0, 0.01) == 0.0
    # 'not better' at +0.018 against a margin of 0.01: only a contradiction (a significant gain) is reachable
    assert stats.decision_distance("not_better", 0.018, 0.01) == 0.018
    # 'not better' with the first arm worse: support (upper end below the margin) is margin + |d| away
    assert stats.decision_distance("not_better", -0.05, 0.01) == pytest.approx(0.06)
    # just inside the margin: contradiction (0.009 away) is sooner than support (0.001 away)
    assert stats.decision_distance("not_better", 0.009, 0.01) == 0.009
    # a tie: equivalence inside the margin, else a significant difference
    assert stats.decision_distance("tie", 0.002, 0.01) == pytest.approx(0.008)
    assert stats.decision_distance("tie", -0.03, 0.01) == 0.03
    with pytest.raises(ValueError, match="claim"):
        stats.decision_distance("worse", 0.1, 0.01)

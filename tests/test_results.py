"""The results page: which experiment stands for each preset, its rows read from the experiment's commit and
merged across sittings, and that docs/experiments/results.md is exactly what its snapshot of named DVC experiments
says. The verdicts themselves: tests/test_verdicts.py."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from tmpretrain.cli import main
from tmpretrain.experiments import BC_METRICS, EVAL_METRICS, RL_METRICS, PresetError, experiment_rows, load_presets
from tmpretrain.experiments.results import (
    CONCLUSIONS,
    FIGURE_FILE,
    LOCK_FILE,
    NO_ROWS,
    PAGE_FILE,
    SNAPSHOT_FILE,
    TEST_REPLAYS_FILE,
    TRACKS_FILE,
    by_preset,
    collect,
    cost_lines,
    figure_spec,
    judge,
    load_snapshot,
    not_seed_repeats,
    read_at,
    render_page,
    rl_table,
    spearman_interval,
    stages_not_run,
    value,
    why_missing,
    write_results,
)

ROOT = Path(__file__).resolve().parents[1]
PRESETS = load_presets(ROOT / "presets.yaml")


def _metrics(test_acc: float, progress: float, epoch: int = 20) -> dict:
    bc = {
        "val": {"loss": 1.3, "acc": 0.5},
        "test": {"loss": 1.2, "acc": test_acc, "main_actions_acc": test_acc - 0.2},
        "best": {"epoch": epoch, "val/loss": 1.25, "val/acc": 0.52, "val/main_actions_acc": 0.3},
        "epochs_run": 50,
    }
    drive = {"policy": {"completion_rate": round(progress - 0.2, 3), "progress": progress, "lap_time_ratio": 1.3}}
    return {BC_METRICS: bc, EVAL_METRICS: drive}


def _exp_show(runs: dict[str, tuple[dict, str, str]]) -> list:
    """`dvc exp show --json` with one experiment per entry (name: (metrics, executor state, timestamp))."""
    exps = []
    for k, (name, (metrics, state, stamp)) in enumerate(runs.items()):
        data = {"timestamp": stamp, "params": {"params.yaml": {"data": {"bc": {"seed": 0}}}}}
        data["metrics"] = {path: {"data": d} for path, d in metrics.items()}
        rev = {"rev": f"{k:040x}", "name": name.split("#")[0], "data": data}
        exps.append({"name": rev["name"], "revs": [rev], "executor": {"state": state} if state else None})
    return [{"rev": "b" * 40, "name": "main", "data": {}, "experiments": exps}]


def test_collect_takes_each_presets_newest_finished_experiment():
    show = _exp_show(
        {
            "v2": (_metrics(0.60, 0.8), None, "2026-11-30T10:00:00"),
            "v2#older": (_metrics(0.10, 0.1), None, "2026-11-29T10:00:00"),
            "v2_next_tick": (_metrics(0.99, 0.99), "running", None),  # shows the baseline's numbers
            "v1": (_metrics(0.55, 0.7), "queued", "2026-11-30T11:00:00"),
            "v1.1": (_metrics(0.50, 0.6), "success", "2026-11-30T09:00:00"),
            "not_a_preset": (_metrics(0.5, 0.5), None, "2026-11-30T09:00:00"),
        }
    )
    snap = collect(experiment_rows(show), PRESETS, read=_none, why=lambda rev, path: "not in the commit")
    names = [e["name"] for e in snap["experiments"]]
    assert names == ["v1.1", "v2"]  # presets.yaml's order
    for e in snap["experiments"]:  # no rows committed: said so, with why
        assert e["tracks"] is None and e["test_replays"] is None
        assert e["missing_rows"] == {TRACKS_FILE: "not in the commit", TEST_REPLAYS_FILE: "not in the commit"}
    assert value(snap["experiments"][1], "test/acc") == 0.60 and snap["experiments"][1]["baseline"] == "b" * 40
    assert {"v1", "v2_next_tick", "v1.2"} <= set(snap["missing"])
    with pytest.raises(PresetError, match="none of the presets has run"):
        collect(experiment_rows(_exp_show({"v1": (_metrics(0.5, 0.5), "running", None)})), PRESETS)


def _none(rev, path):
    return None


TRACKS = {
    "note": None,
    "rows": [
        {"group": g, "track": t, "rollout": r, "progress": 0.5, "finished": t == 0, "clean": True, "lap_time_s": 1}
        for g in ("policy", "policy_greedy", "expert")
        for t in range(2)
        for r in range(2)
    ],
}
REPLAYS = {
    "offsets_ms": [-10, 0],
    "offset_weights": [0.5, 1.0],
    "export_offset_ms": 0,
    "actions": [],
    "main_actions": [],
    "replays": [
        {
            "replay": "t0/a.replay",
            "track": "t0",
            "frames": [9, 10],
            "correct": [1, 6],
            "ce_sum": [9.0, 12.0],
            "weight_sum": [9.0, 10.0],
            "confusion": [[6, 4], [0, 0]],
        }
    ],
}


def test_collect_reads_each_experiments_rows_from_its_commit_and_keeps_earlier_runs():
    read = []

    def reader(rev, path):
        read.append((rev, path))
        return {TRACKS_FILE: TRACKS, TEST_REPLAYS_FILE: REPLAYS}.get(path)  # no dvc.lock: every stage taken as run

    show = _exp_show({"v2": (_metrics(0.60, 0.8), None, "2026-11-30T10:00:00")})
    earlier = {
        "experiments": [
            {"name": "v1", "family": "training-length", "rev": "e" * 40, "tracks": None, "test_replays": None},
            {"name": "v2", "family": "iqn-chain", "rev": "f" * 40, "tracks": None, "test_replays": None},
        ]
    }
    snap = collect(experiment_rows(show), PRESETS, read=reader, previous=earlier)
    v1, v2 = snap["experiments"]
    assert v1 == earlier["experiments"][0]  # an earlier sitting's run is kept as it was
    assert v2["rev"] == f"{0:040x}" and {p for _, p in read} == {LOCK_FILE, TRACKS_FILE, TEST_REPLAYS_FILE}  # rerun
    assert {r["group"] for r in v2["tracks"]} == {"policy", "policy_greedy"} and len(v2["tracks"]) == 8
    assert v2["tracks"][0] == {"group": "policy", "track": 0, "rollout": 0, "progress": 0.5, "finished": True}
    # the exported offset's counts of each test replay
    assert v2["test_replays"] == [
        {
            "replay": "t0/a.replay",
            "track": "t0",
            "frames": 10,
            "correct": 6,
            "ce_sum": 12.0,
            "weight_sum": 10.0,
            "confusion": [[6, 4], [0, 0]],
        }
    ]
    assert snap["schema"] == 2 and "v1" not in snap["missing"] and "v1.1" in snap["missing"]


def test_a_stage_that_did_not_run_in_an_experiment_gives_it_no_numbers():
    """`dvc exp run ... evaluate` commits the baseline's reports/rl/metrics.json unchanged beside the experiment's
    own models: its dvc.lock tells, since rl's recorded inputs are not what pretrain_bc recorded as outputs."""
    lock = read_at("HEAD", LOCK_FILE, cwd=ROOT)
    assert stages_not_run(lock) == {} and stages_not_run(None) == {}  # the committed pipeline ran whole

    def rerun(*stages):  # the lock after these stages ran on new inputs: new outputs, and their users saw them
        new = copy.deepcopy(lock)
        made = {o["path"] for st in stages for o in new["stages"][st]["outs"]}
        for st in stages:
            for entry in new["stages"][st]["outs"] + [d for d in new["stages"][st]["deps"] if d["path"] in made]:
                entry["md5"] = "0" * 32
        return new

    partial = rerun("pretrain_vis", "pretrain_bc", "evaluate")  # dvc exp run ... evaluate
    assert set(stages_not_run(partial).values()) == {"rl", "report"}
    assert stages_not_run(partial)[RL_METRICS] == "rl"
    upstream = rerun("pretrain_vis")  # pretrain_bc not run: it and everything downstream of it
    assert set(stages_not_run(upstream).values()) == {"pretrain_bc", "evaluate", "rl", "report"}

    metrics = {**_metrics(0.6, 0.8), RL_METRICS: _rl(0.3)}
    show = _exp_show({"v2": (metrics, None, "2026-11-30T10:00:00")})
    snap = collect(experiment_rows(show), PRESETS, read=lambda rev, path: partial if path == LOCK_FILE else None)
    v2 = snap["experiments"][0]
    assert v2["metrics"][RL_METRICS] == {} and v2["stages_not_run"] == ["report", "rl"]
    assert value(v2, "test/acc") == 0.6 and value(v2, "policy/progress") == 0.8  # the stages that ran
    assert "- stage rl not run (experiments run up to an earlier stage): v2" in rl_table(snap)
    snap = collect(experiment_rows(show), PRESETS, read=lambda rev, path: upstream if path == LOCK_FILE else None)
    assert snap["experiments"][0]["missing_rows"][TRACKS_FILE] == "stage evaluate did not run in this experiment"


def test_read_at_reads_a_committed_json_file_bounded():
    head = read_at("HEAD", "docs/experiments/results.json", cwd=ROOT)
    assert isinstance(head, dict) and "experiments" in head
    assert read_at("HEAD", "docs/experiments/results.json", max_bytes=10, cwd=ROOT) is None
    assert read_at("HEAD", "no/such/file.json", cwd=ROOT) is None
    assert read_at("HEAD", "dvc.yaml", cwd=ROOT) is None  # not JSON
    assert why_missing("HEAD", "no/such/file.json", cwd=ROOT) == "not in the commit"
    assert why_missing("HEAD", "dvc.yaml", cwd=ROOT) == "unreadable (too large or not JSON)"
    assert why_missing("0" * 40, "dvc.yaml", cwd=ROOT) == "commit not in this repository"


def test_seed_repeats_group_only_when_nothing_but_the_seeds_differs():
    base = {"name": "v2", "family": "iqn-chain", "params": {"bc.seed": 0, "vis.seed": 0, "bc.lr": 1e-3}}
    same = {"name": "v2_seed1", "family": "seeds", "params": {"bc.seed": 1, "vis.seed": 0, "bc.lr": 1e-3}}
    vis = {"name": "v2_seed2", "family": "seeds", "params": {"bc.seed": 0, "vis.seed": 5, "bc.lr": 1e-3}}
    other = {"name": "v2_seed3", "family": "seeds", "params": {"bc.seed": 3, "vis.seed": 0, "bc.lr": 1e-4}}
    again = {"name": "v2_seed4", "family": "seeds", "params": {"bc.seed": 1, "vis.seed": 0, "bc.lr": 1e-3}}
    snap = {"experiments": [base, same, vis, other, again]}
    assert [e["name"] for e in by_preset(snap)["v2"]] == ["v2", "v2_seed1", "v2_seed2"]
    assert not_seed_repeats(snap) == ["v2_seed3", "v2_seed4"]


def _snapshot() -> dict:
    """Every runnable preset with made-up but distinct numbers; v2 run with three seeds (the study's repeats)."""
    names = []
    for name in (n for n in PRESETS["presets"] if not n.startswith("_")):
        names += [name, "v2_seed1", "v2_seed2"] if name == "v2" else [name]
    experiments = []
    for k, name in enumerate(names):
        spec = PRESETS["presets"].get(name, {"family": "seeds", "desc": "a seed repeat"})
        acc, progress = 0.50 + k / 100, 0.9 - k / 50
        if name == "v2_seed1":
            acc, progress = 0.60, 0.50  # v2 itself: acc 0.53, progress 0.84
        experiments.append(
            {
                "name": name,
                "family": spec.get("family", ""),
                "desc": spec.get("desc", ""),
                "rev": f"{k:040x}",
                "baseline": "c" * 40,
                "params": {"bc.seed": int(name.rsplit("_seed", 1)[1]) if "_seed" in name else 0, "vis.seed": 0},
                "metrics": _metrics(acc, progress),
            }
        )
    return {"experiments": experiments, "missing": []}


def test_page_has_every_preset_and_checks_every_conclusion():
    snap = _snapshot()
    page = render_page(snap)
    table = [line for line in page.splitlines() if line.startswith("| v")]
    for e in snap["experiments"]:
        row = next(line for line in table if line.startswith(f"| {e['name']} | {e['rev'][:7]} "))
        assert f"{value(e, 'test/acc'):.3f} (no interval)" in row
        assert f"{value(e, 'policy/progress'):.3f} (no interval)" in row
    for c in CONCLUSIONS:
        assert f"### {c.title}: {c.a} vs {c.b}" in page
        assert f"| {c.title} | {c.a} vs {c.b} | {c.claim} | " in page  # the summary row
    assert page.count("Verdicts: ") == len(CONCLUSIONS)
    # v2 (3 seeds) is one preset over its seeds; each conclusion names the experiments behind each number
    assert "`v2`, `v2_seed1`, `v2_seed2` (3 seeds)" in page
    assert f"inconclusive: {NO_ROWS}" in page and "Runs that predate the verdict protocol" in page
    # runs without rows drove under an earlier protocol: not put on the same axes as the current one
    assert FIGURE_FILE.name in page and "No rank correlation: 0 presets have rows of the current protocol" in page
    assert f"Left out, driven under an earlier protocol: {', '.join(by_preset(snap))}." in page
    assert figure_spec(snap)["data"]["values"] == []


def test_the_rank_correlation_has_an_interval_from_resampling_the_presets():
    xs = [0.50, 0.52, 0.55, 0.57, 0.60]
    assert spearman_interval(xs, [0.1, 0.2, 0.3, 0.4, 0.5], [1]) == pytest.approx((1, 1, 1))  # monotone resamples
    assert spearman_interval(xs, [0.5, 0.4, 0.3, 0.2, 0.1], [1]) == pytest.approx((-1, -1, -1))
    rho, low, high = spearman_interval(xs, [0.1, 0.3, 0.2, 0.5, 0.4], [1])
    assert rho == pytest.approx(0.8) and -1 <= low < rho < high <= 1  # one swap each: the interval is wide


def test_the_cost_counts_runs_not_the_pauses_between_sittings():
    stamps = ["2026-12-01T10:00", "2026-12-01T10:06", "2026-12-01T10:20", "2026-12-02T09:00", "2026-12-02T09:05"]
    line = cost_lines([{"timestamp": t} for t in stamps])[0]
    assert "in 2 sittings" in line and "took 5.0-14.0 min (median 6.0)" in line
    assert "0.4 h of this machine for the 3 timed ones" in line


def _rl(bc_gain: float | None, low: float = 0.0, high: float = 0.0, skipped: str = "") -> dict:
    """reports/rl/metrics.json of one run: bc's AUC progress minus scratch's with its within-run interval, or the
    bc arms skipped with a reason."""
    if bc_gain is None:
        return {"budget_env_steps": 3000, "vs_scratch": {}, "vs_bc": {}, "skipped": {"bc": skipped, "bc_dqfd": skipped}}
    gain = {"auc_progress": bc_gain, "auc_progress_low": low, "auc_progress_high": high}
    return {"budget_env_steps": 3000, "vs_scratch": {"bc": gain}, "vs_bc": {}, "skipped": {}}


def test_the_rl_column_pools_a_presets_seeds_and_names_what_was_skipped():
    snap = _snapshot()
    runs = {e["name"]: e for e in snap["experiments"]}
    for name, gain in (("v2", 0.10), ("v2_seed1", 0.20), ("v2_seed2", 0.30)):
        runs[name]["metrics"][RL_METRICS] = _rl(gain)
    runs["v1"]["metrics"][RL_METRICS] = _rl(0.05, low=0.01, high=0.09)
    runs["v1.1"]["metrics"][RL_METRICS] = _rl(None, skipped="the encoder was trained on '01' frames")
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in rl_table(snap) if line.startswith("| v")}
    # three seeds: the mean of their gains, the interval from resampling the seeds (it lies within their range)
    v2 = rows["v2"][4]
    mean, low, high = (float(x) for x in v2.replace("[", "").replace("]", "").replace(",", "").split())
    assert mean == pytest.approx(0.2) and 0.1 <= low < 0.2 < high <= 0.3
    assert rows["v2"][1] == "3 of 3" and rows["v2"][2] == "3000"
    assert rows["v1"][4] == "+0.050 [+0.010, +0.090]"  # one run: its own interval (RL seeds and tracks)
    assert rows["v1.1"][4] == "skipped" and rows["v1.2"][4] == "-"
    assert "- skipped in v1.1: the encoder was trained on '01' frames" in rl_table(snap)
    assert "## Downstream RL per preset" in render_page(snap)


def test_a_preset_that_has_not_run_is_named_not_guessed():
    snap = _snapshot()
    snap["experiments"] = [e for e in snap["experiments"] if not e["name"].startswith("v2_next_tick")]
    snap["missing"] = ["v2_next_tick", "v2_next_tick_stack3"]
    page = render_page(snap)
    assert "Not run yet: v2_next_tick, v2_next_tick_stack3." in page
    assert "Not checked: v2_next_tick has not run." in page


def test_cli_writes_the_page_from_a_snapshot(tmp_path, capsys):
    snap_file = tmp_path / "snap.json"
    snap_file.write_text(json.dumps(_snapshot()), encoding="utf-8")
    assert (
        main(["--presets", str(ROOT / "presets.yaml"), "results", "--from", str(snap_file), "-o", str(tmp_path)]) == 0
    )
    assert (tmp_path / PAGE_FILE.name).read_text(encoding="utf-8") == render_page(_snapshot())
    svg = (tmp_path / FIGURE_FILE.name).read_text(encoding="utf-8")
    assert svg.startswith("<svg")  # without points here: no run has rows (test_verdicts draws them)
    assert not (tmp_path / SNAPSHOT_FILE.name).exists()  # --from never rewrites the sources
    bad = tmp_path / "bad.json"
    bad.write_text("[]", encoding="utf-8")
    assert main(["results", "--from", str(bad), "-o", str(tmp_path)]) == 1
    assert "not a results snapshot" in capsys.readouterr().err


def test_drift_results_md_is_what_its_snapshot_says():
    """The committed page is generated, not typed: regenerating it from the committed snapshot changes nothing,
    every number in it comes from a named experiment with its commit, and its verdicts follow from the snapshot's
    rows: where the runs have none (they predate the protocol), every conclusion is inconclusive for that reason."""
    snapshot = load_snapshot(ROOT / SNAPSHOT_FILE)
    page = (ROOT / PAGE_FILE).read_text(encoding="utf-8")
    assert page == render_page(snapshot)
    assert (ROOT / FIGURE_FILE).is_file()
    names = [e["name"] for e in snapshot["experiments"]]
    assert len(set(names)) == len(names) and all(len(e["rev"]) == 40 for e in snapshot["experiments"])
    twelve = [n for n in names if not n.rsplit("_seed", 1)[-1].isdigit()]
    assert len(twelve) == 12 and not snapshot["missing"]
    for e in snapshot["experiments"]:
        for key in ("test/acc", "test/loss", "policy/progress", "policy/completion_rate"):
            assert not math.isnan(value(e, key)), (e["name"], key)
    judgements = judge(snapshot)
    summary = {line.split(" | ")[0][2:]: line for line in page.splitlines() if line.startswith("| ")}
    for c in CONCLUSIONS:
        result = judgements[c.title]
        cells = summary[c.title].strip("| ").split(" | ")[4:]
        assert cells == [j.text for j in result.values()], c.title
        for j in result.values():
            rows = all(
                e.get("tracks") and e.get("test_replays") for e in by_preset(snapshot)[c.a] + by_preset(snapshot)[c.b]
            )
            assert rows or (j.verdict == "inconclusive" and j.reason == NO_ROWS)


def test_written_files_round_trip(tmp_path):
    snap = copy.deepcopy(_snapshot())
    written = write_results(snap, tmp_path)
    assert [p.name for p in written] == [SNAPSHOT_FILE.name, FIGURE_FILE.name, PAGE_FILE.name]
    assert load_snapshot(tmp_path / SNAPSHOT_FILE.name) == snap

"""The results page: which experiment stands for each preset, how seed noise decides a conclusion, and that
docs/experiments/results.md is exactly what its snapshot of named DVC experiments says."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from tmpretrain.cli import main
from tmpretrain.experiments import BC_METRICS, EVAL_METRICS, PresetError, experiment_rows, load_presets
from tmpretrain.experiments.results import (
    CONCLUSIONS,
    DRIVING,
    FIGURE_FILE,
    PAGE_FILE,
    PER_FRAME,
    SNAPSHOT_FILE,
    Conclusion,
    collect,
    figure_spec,
    load_snapshot,
    render_page,
    seed_spread,
    value,
    verdict,
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
    snap = collect(experiment_rows(show), PRESETS)
    names = [e["name"] for e in snap["experiments"]]
    assert names == ["v1.1", "v2"]  # presets.yaml's order
    assert value(snap["experiments"][1], "test/acc") == 0.60 and snap["experiments"][1]["baseline"] == "b" * 40
    assert {"v1", "v2_next_tick", "v1.2"} <= set(snap["missing"])
    with pytest.raises(PresetError, match="none of the presets has run"):
        collect(experiment_rows(_exp_show({"v1": (_metrics(0.5, 0.5), "running", None)})), PRESETS)


def test_verdicts_count_a_difference_only_beyond_seed_noise():
    better = Conclusion("t", "s", "a", "b", "better")
    tie = Conclusion("t", "s", "a", "b", "tie")
    not_better = Conclusion("t", "s", "a", "b", "not_better")
    assert verdict(better, 0.05, 0.02) == "holds"
    assert verdict(better, 0.01, 0.02) == "within seed noise"
    assert verdict(better, -0.05, 0.02) == "reversed: b is better"
    assert verdict(tie, 0.01, 0.02) == "holds (within seed noise)"
    assert verdict(tie, -0.05, 0.02) == "does not hold: b is better"
    assert verdict(not_better, 0.05, 0.02) == "does not hold"
    assert verdict(not_better, -0.05, 0.02) == "holds"
    assert verdict(better, math.nan, 0.02) == "not measured"


def _snapshot() -> dict:
    """Every runnable preset with made-up but distinct numbers; v2 run with three seeds."""
    experiments = []
    for k, name in enumerate(n for n in PRESETS["presets"] if not n.startswith("_")):
        spec = PRESETS["presets"][name]
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
                "params": {},
                "metrics": _metrics(acc, progress),
            }
        )
    return {"experiments": experiments, "missing": []}


def test_seed_noise_is_the_largest_range_over_repeated_presets():
    snap = _snapshot()
    acc = next(m for m in PER_FRAME if m.key == "test/acc")
    spread, presets = seed_spread(snap, acc)
    assert "v2" in presets and "v1.1" in presets and "v2_multi_offset_ahead_tuned" not in presets
    by = {e["name"]: e for e in snap["experiments"]}
    ranges = [
        abs(value(by[f"{p}_seed1"], "test/acc") - value(by[p], "test/acc")) for p in presets if f"{p}_seed1" in by
    ]
    assert spread == pytest.approx(max(ranges + [0.60 - 0.53, 0.53 - value(by["v2_seed2"], "test/acc")]))


def test_page_has_every_preset_and_checks_every_conclusion():
    snap = _snapshot()
    page = render_page(snap)
    table = [line for line in page.splitlines() if line.startswith("| v")]
    for e in snap["experiments"]:
        if e["family"] != "seeds":
            row = next(line for line in table if line.startswith(f"| {e['name']} "))
            assert e["rev"][:7] in row and f"{value(e, 'test/acc'):.3f}" in row
            assert f"{value(e, 'policy/progress'):.3f}" in row
    for c in CONCLUSIONS:
        assert f"### {c.title}: {c.a} vs {c.b}" in page
        assert f"| {c.title} | {c.a} vs {c.b} | " in page  # the summary row
    assert page.count("On per-frame accuracy: **") == len(CONCLUSIONS)
    # v2 (3 seeds: 0.53, 0.60, v2_seed2's) is averaged; the verdict names the experiments behind each number
    assert "`v2`, `v2_seed1`, `v2_seed2` (3 seeds)" in page
    assert FIGURE_FILE.name in page and "rank correlation" in page
    spec = figure_spec(snap)
    assert len(spec["data"]["values"]) == len(snap["experiments"])


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
    assert svg.startswith("<svg") and "v2_multi_offset_ahead_dropout_inner" in svg
    assert not (tmp_path / SNAPSHOT_FILE.name).exists()  # --from never rewrites the sources
    bad = tmp_path / "bad.json"
    bad.write_text("[]", encoding="utf-8")
    assert main(["results", "--from", str(bad), "-o", str(tmp_path)]) == 1
    assert "not a results snapshot" in capsys.readouterr().err


def test_results_md_is_what_its_snapshot_says():
    """The committed page is generated, not typed: regenerating it from the committed snapshot changes nothing,
    and every number in it comes from a named experiment with its commit."""
    snapshot = load_snapshot(ROOT / SNAPSHOT_FILE)
    assert (ROOT / PAGE_FILE).read_text(encoding="utf-8") == render_page(snapshot)
    assert (ROOT / FIGURE_FILE).is_file()
    names = [e["name"] for e in snapshot["experiments"]]
    assert len(set(names)) == len(names) and all(len(e["rev"]) == 40 for e in snapshot["experiments"])
    twelve = [n for n in names if not n.rsplit("_seed", 1)[-1].isdigit()]
    assert len(twelve) == 12 and not snapshot["missing"]
    for e in snapshot["experiments"]:
        for metric in PER_FRAME + DRIVING:
            assert not math.isnan(value(e, metric.key)), (e["name"], metric.key)


def test_written_files_round_trip(tmp_path):
    snap = copy.deepcopy(_snapshot())
    written = write_results(snap, tmp_path)
    assert [p.name for p in written] == [SNAPSHOT_FILE.name, FIGURE_FILE.name, PAGE_FILE.name]
    assert load_snapshot(tmp_path / SNAPSHOT_FILE.name) == snap

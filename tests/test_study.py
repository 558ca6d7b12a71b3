"""`tmpretrain study`: every preset at several training seeds, resumable. Which runs it asks for, which it counts
as done (a finished run of exactly today's params, or one queued or running), and that the params it expects are
those DVC records for the run it queues."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from support.projects import PRESETS, dvc, make_project, project_env
from tmpretrain.experiments import check_overrides, experiment_rows, load_presets, resolve, runnable
from tmpretrain.experiments.results import base_preset
from tmpretrain.experiments.study import REPEAT_NAME, pending, repeat_name, study_overrides


def test_each_preset_at_each_seed_reseeds_both_levels():
    data = load_presets(PRESETS)
    runs = study_overrides(data, ["all"], 4)
    assert [name for name, _ in runs[:4]] == ["v1", "v1_seed1", "v1_seed2", "v1_seed3"]
    assert len(runs) == 4 * len(runnable(data))
    for name, overrides in runs:
        match = REPEAT_NAME.fullmatch(name)
        preset, seed = (match["preset"], int(match["seed"])) if match else (name, 0)
        assert repeat_name(preset, seed) == name and base_preset({"name": name, "family": "seeds"}) == preset
        keys = [o.partition("=")[0] for o in overrides]
        assert len(keys) == len(set(keys)), name  # each key once: Hydra refuses a key given twice
        assert f"bc.seed={seed}" in overrides and f"vis.seed={seed}" in overrides
        # the preset's recipe otherwise unchanged
        assert [o for o in overrides if not o.startswith(("bc.seed=", "vis.seed="))] == [
            o for o in resolve(data, preset) if not o.startswith(("bc.seed=", "vis.seed="))
        ]


def _row(name: str, state: str, params: dict) -> dict:
    return {"name": name, "state": state, "params": params, "metrics": {}}


def test_pending_counts_only_todays_recipe_and_what_is_under_way():
    runs = [
        (f"p_seed{s}" if s else "p", [f"bc.seed={s}"], {"bc.seed": s, "eval.rollouts_per_track": 4}) for s in range(4)
    ]
    rows = [
        _row("p", "success", {"bc.seed": 0, "eval.rollouts_per_track": 4}),  # done
        _row("p_seed1", "success", {"bc.seed": 1}),  # an older protocol's run of the name: again
        _row("p_seed2", "queued", {}),  # under way
        _row("p_seed3", "failed", {"bc.seed": 3, "eval.rollouts_per_track": 4}),  # failed: again
    ]
    assert [name for name, *_ in pending(runs, rows)] == ["p_seed1", "p_seed3"]
    assert pending(runs, []) == runs


def test_dry_run_prints_every_run_and_one_worker(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "tmpretrain.cli", "--presets", str(PRESETS), "study", "v2", "--seeds", "2", "--dry-run"],
        capture_output=True,
        text=True,
        check=True,
        cwd=PRESETS.parent,  # the study checks each run's params against params.yaml there
    ).stdout
    lines = out.splitlines()
    assert lines[0] == "study: 2 runs (2 seeds), 0 finished or queued, 2 to queue"
    assert lines[1].startswith("$ dvc exp run --queue -n v2 -S ") and lines[2].startswith(
        "$ dvc exp run --queue -n v2_seed1 "
    )
    assert "-S bc.seed=1 -S vis.seed=1" in lines[2] and lines[3] == "$ dvc queue start -j 1"


def test_a_target_stage_ends_each_run_there_and_a_misspelt_one_is_refused_before_anything_is_queued():
    def study(*args):
        cmd = [sys.executable, "-m", "tmpretrain.cli", "--presets", str(PRESETS), "study", "v2", "--seeds", "2"]
        return subprocess.run([*cmd, *args, "--dry-run"], capture_output=True, text=True, cwd=PRESETS.parent)

    runs = [line for line in study("--target", "evaluate").stdout.splitlines() if line.startswith("$ dvc exp run")]
    assert len(runs) == 2 and all(
        line.endswith(" -S vis.seed=0 evaluate") or line.endswith(" -S vis.seed=1 evaluate") for line in runs
    )
    refused = study("--target", "evalute")
    assert refused.returncode != 0 and "'evalute' is not a stage of dvc.yaml" in refused.stderr
    assert "dvc exp run" not in refused.stdout


@pytest.mark.slow
def test_the_params_it_expects_are_those_dvc_records_for_the_queued_run(tmp_path):
    """What `pending` compares a finished run with (check_overrides' params) is what `dvc exp show` lists for
    that run, value for value and type for type: queued here (nothing trains), then removed from the queue."""
    project = make_project(tmp_path / "proj")
    overrides = [
        "bc.seed=3",
        "vis.seed=3",
        "bc.lr=0.0002",
        "vis.image_normalization='01'",
        "bc.time_offsets_ms=[-10,0]",
        "bc.offset_weights=[0.5,1.0]",
    ]
    cwd = os.getcwd()
    os.chdir(project)
    try:
        expected = check_overrides(overrides)
    finally:
        os.chdir(cwd)
    dvc(project, "exp", "run", "--queue", "-n", "q", *[a for o in overrides for a in ("-S", o)])
    show = json.loads(
        subprocess.run(
            ["dvc", "exp", "show", "--json", "-A"],
            cwd=project,
            env=project_env(tmp_path / "dvc-site"),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    (queued,) = [r for r in experiment_rows(show) if r["name"] == "q"]
    assert queued["state"] == "queued"
    assert json.dumps(queued["params"], sort_keys=True) == json.dumps(expected, sort_keys=True)
    assert pending([("q", overrides, expected)], [{**queued, "state": "success"}]) == []
    dvc(project, "queue", "remove", "--all")

"""The `rl` stage end to end on tiny params, as `dvc repro` runs it: `python -m tmpretrain.stages.rl` in a project
directory with real agent_exports. Its outputs (metrics with intervals, curves, weights the agent loads strictly), the
same bytes for the same params whatever the worker count, and a killed run that continues from its finished runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from iqn_reference import IQNNetwork as ReferenceIQN
from support.setups import STAGE_TIMEOUT, stage_env

ARMS = ["scratch", "vis", "bc", "bc_dqfd"]
# 2 s episodes of 100 ms decisions, 2 training envs in lockstep, evaluations at 0, 30 and 60 env steps on 1 track.
RL = {
    "arms": ARMS,
    "seeds": [0, 1],
    "env_steps": 60,
    "eval_every": 30,
    "train_tracks": 2,
    "eval_tracks": 1,
    "workers": 1,
    "demo_steps": 30,
    "demo_pretrain_updates": 2,
    "batch_size": 8,
    "learning_starts": 20,
    "samples_per_transition": 2.0,
}
EVAL = {"time_limit_s": 2.0}
OUTPUTS = ("models/rl", "reports/rl")


def project(root: Path, exports: dict[str, Path], **rl) -> Path:
    """A project directory over the exports' frame store, with their models/vis and models/bc."""
    root.mkdir(parents=True)
    for level in ("vis", "bc"):
        shutil.copytree(exports[level], root / "models" / level)
    params = {"data": {"cache_dir": str(exports["vis"].parent / "cache")}, "eval": EVAL, "rl": {**RL, **rl}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def stage(root: Path) -> str:
    run = subprocess.run(
        [sys.executable, "-m", "tmpretrain.stages.rl"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=STAGE_TIMEOUT,
        env=stage_env(),
    )
    assert run.returncode == 0, f"rl failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "Traceback" not in run.stderr
    return run.stdout


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for d in OUTPUTS
        for p in sorted((root / d).rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def reference(agent_exports, tmp_path_factory) -> tuple[Path, str]:
    root = project(tmp_path_factory.mktemp("rl") / "reference", agent_exports)
    return root, stage(root)


def test_outputs_metrics_with_intervals_curves_and_one_log_line_per_evaluation(reference):
    root, log = reference
    metrics = json.loads((root / "reports/rl/metrics.json").read_text())
    assert metrics["budget_env_steps"] == 60 and metrics["seeds"] == [0, 1] and metrics["eval_tracks"] == 1
    assert list(metrics["arms"]) == ARMS and list(metrics["vs_scratch"]) == ARMS[1:]
    assert list(metrics["vs_bc"]) == ["bc_dqfd"]
    for section in [*metrics["arms"].values(), *metrics["vs_scratch"].values(), *metrics["vs_bc"].values()]:
        for moment in ("start", "end"):
            for name in ("completion_rate", "clean_completion_rate", "progress", "lap_time_ratio"):
                value, low, high = (section[moment][f"{name}{s}"] for s in ("", "_low", "_high"))
                assert value is None or low <= value <= high, (moment, name)
        for name in ("steps_to_clean_0.5", "steps_to_clean_0.9", "auc_clean_completion", "auc_progress"):
            assert section[f"{name}_low"] <= section[name] <= section[f"{name}_high"], name
    for arm in metrics["arms"].values():
        assert arm["steps_to_clean_0.9_censored"] in (0, 1, 2)
        assert arm["steps_to_clean_0.9_censored"] == 0 or arm["steps_to_clean_0.9"] > 0
    # the paired difference of scratch's own numbers would be 0: an arm's difference is its value minus scratch's
    scratch, vis = metrics["arms"]["scratch"], metrics["arms"]["vis"]
    assert metrics["vs_scratch"]["vis"]["auc_progress"] == pytest.approx(
        vis["auc_progress"] - scratch["auc_progress"], abs=2e-4
    )
    curves = json.loads((root / "reports/rl/curves.json").read_text())
    assert [(c["arm"], c["seed"], c["step"]) for c in curves] == [
        (arm, seed, step) for arm in ARMS for seed in (0, 1) for step in (0, 30, 60)
    ]
    tsv = root / "reports/rl/live/bc_seed1/plots/metrics/eval/progress.tsv"
    assert [line.split("\t")[0] for line in tsv.read_text().splitlines()] == ["step", "0", "30", "60"]
    assert len([line for line in log.splitlines() if ": step " in line]) == len(curves)
    assert (root / "reports/rl/learning_curves.svg").read_text().startswith("<svg")


def test_saved_weights_load_strictly_into_the_agents_network(reference):
    root, _ = reference
    saved = sorted(p.name for p in (root / "models/rl").iterdir())
    assert saved == sorted(f"{arm}_seed{seed}.pt" for arm in ARMS for seed in (0, 1))
    for name in saved:
        ReferenceIQN(64, 64, 128).load_state_dict(torch.load(root / "models/rl" / name), strict=True)


def test_same_params_give_the_same_bytes_with_two_workers(reference, agent_exports, tmp_path):
    root, _ = reference
    again = project(tmp_path / "again", agent_exports, workers=2)
    stage(again)
    assert tree(again) == tree(root)


def test_a_killed_stage_continues_from_its_finished_runs(reference, agent_exports, tmp_path):
    root, _ = reference
    killed = project(tmp_path / "killed", agent_exports)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tmpretrain.stages.rl"],
        cwd=killed,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=stage_env(),
    )
    try:
        for line in proc.stdout:  # the second run starting: the first one is checkpointed
            if line.startswith("rl: scratch seed 1: step 0/"):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=STAGE_TIMEOUT)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    params = yaml.safe_load((killed / "params.yaml").read_text())
    params["rl"]["workers"] = 2  # speed only: the finished run is still the same run
    (killed / "params.yaml").write_text(yaml.safe_dump(params))
    log = stage(killed)
    assert "rl: resuming: 1 of 8 runs finished earlier" in log
    assert "rl: scratch seed 0: step" not in log  # not trained again
    assert tree(killed) == tree(root)


def test_an_export_that_cannot_seed_the_agent_skips_its_arms_and_says_why(agent_exports, tmp_path):
    """A Linear-head BC run has no A_head to transfer: the bc arms are skipped with the reason, the others run (as
    evaluate skips a policy it cannot rebuild), so every preset's pipeline still completes."""
    root = project(
        tmp_path / "linear", {**agent_exports, "bc": agent_exports["bc_linear"]}, arms=["scratch", "bc"], seeds=[0]
    )
    out = stage(root)
    metrics = json.loads((root / "reports" / "rl" / "metrics.json").read_text())
    assert list(metrics["arms"]) == ["scratch"] and list(metrics["skipped"]) == ["bc"]
    assert "needs actions_head.pt" in metrics["skipped"]["bc"] and "bc       skipped:" in out
    assert sorted(p.name for p in (root / "models" / "rl").iterdir()) == ["scratch_seed0.pt"]

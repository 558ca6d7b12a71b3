"""The report reads a run's DVCLive outputs, adds baselines from the frame store and writes one offline HTML."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import data_params, make_tree
from tmpretrain.actions import ACTION_NAMES
from tmpretrain.cache import FrameStore, build_cache
from tmpretrain.metrics import majority_baseline
from tmpretrain.reports import (
    WORKSPACE,
    best_epoch,
    checkpoint_table,
    compute_baselines,
    headline_table,
    load_run,
    per_action_table,
    per_offset_table,
    render_html,
    write_report,
)
from tmpretrain.windows import build_samples

OFFSETS = [-10, 0, 10, 100]


def _write_run(root: Path, val_loss: list[float]) -> None:
    """A workspace as pretrain_bc leaves it: params.yaml, reports/bc/metrics.json, per-epoch TSVs, confusion."""
    params = {
        "data": {"cache_dir": "data/cache"},
        "vis": {"image_normalization": "iqn"},
        "bc": {"target": "current_tick", "time_offsets_ms": OFFSETS, "export_offset_ms": 0, "n_stack": 1},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    curves_dir = root / "reports/bc/plots/metrics"
    n = len(val_loss)
    series = {
        "train/loss": [v + 0.1 for v in val_loss],
        "val/loss": val_loss,
        "train/acc": [0.5 + 0.01 * e for e in range(n)],
        "val/acc": [0.4 + 0.02 * e for e in range(n)],
        "val/main_actions_acc": [0.3 + 0.01 * e for e in range(n)],
    }
    for d in OFFSETS:
        lab = "0ms" if d == 0 else f"{d:+d}ms"
        series[f"val/acc_offset/{lab}"] = [0.35 + 0.01 * e for e in range(n)]
    for i, a in enumerate(ACTION_NAMES):
        series[f"val/acc_action/{a}"] = [0.05 * i + 0.001 * e for e in range(n)]
    for name, values in series.items():
        path = curves_dir / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        last = name.rsplit("/", 1)[-1]
        path.write_text(f"step\t{last}\n" + "".join(f"{e}\t{v}\n" for e, v in enumerate(values)), encoding="utf-8")
    best = int(np.argmin(val_loss))
    metrics = {
        "val": {
            "loss": val_loss[-1],
            "acc": series["val/acc"][-1],
            "main_actions_acc": series["val/main_actions_acc"][-1],
            "support": {a: 10 * i for i, a in enumerate(ACTION_NAMES)},  # as EpochLogger writes it
        },
        "best": {
            "epoch": best,
            "metric": "val/loss",
            "mode": "min",
            "value": val_loss[best],
            "val/acc": series["val/acc"][best],
            "val/main_actions_acc": series["val/main_actions_acc"][best],
        },
        "epochs_run": n,
    }
    (root / "reports/bc/metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    confusion = root / "reports/bc/plots/sklearn/confusion_matrix.json"
    confusion.parent.mkdir(parents=True)
    rows = [{"actual": "accel", "predicted": "accel"}] * 3 + [{"actual": "coast", "predicted": "accel"}]
    confusion.write_text(json.dumps(rows), encoding="utf-8")


@pytest.fixture
def workspace(tmp_path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    tree = make_tree(tmp_path / "replays", n_tracks=3, replays_per_track=2, n_frames=30)
    build_cache(data_params(tmp_path, tree, cache_dir=str(root / "data/cache")), progress=False)
    _write_run(root, [1.0, 0.8, 0.7, 0.75, 0.9, 0.95, 1.0])
    return root


def test_baselines_match_the_metric_functions(workspace):
    store = FrameStore.open(workspace / "data/cache")
    base = compute_baselines(store, OFFSETS, "current_tick")
    samples = build_samples(store, "val", 1, OFFSETS, "current_tick")
    assert base["0ms"]["majority"] == pytest.approx(majority_baseline(samples.labels[:, 1]))
    assert math.isnan(base["0ms"]["offset0_label"])
    for lab in ("-10ms", "+10ms", "+100ms"):
        assert 0.0 <= base[lab]["offset0_label"] <= 1.0
        assert 0.0 <= base[lab]["previous_action"] <= 1.0
    # with 10 ms action runs 20-60 ms long, the 0 ms label predicts +10 ms better than +100 ms
    assert base["+10ms"]["offset0_label"] > base["+100ms"]["offset0_label"]


def test_tables_hold_the_run_numbers(workspace):
    run = load_run(WORKSPACE, workspace)
    assert list(run.curves.index) == list(range(7))
    assert best_epoch(run.curves) == 2 and best_epoch(run.curves, "val/acc", "max") == 6
    head = headline_table([run])
    assert head.loc[WORKSPACE, "val/loss (last)"] == 1.0
    assert head.loc[WORKSPACE, "best/epoch"] == 2
    assert 0 < head.loc[WORKSPACE, "baseline majority"] <= 1
    cp = checkpoint_table([run], interval=5)
    assert [e for _, e in cp.index] == [0, 5, 6]
    pa = per_action_table([run])
    assert pa.loc["coast", (WORKSPACE, "best (2)")] == pytest.approx(0.15 + 0.002)
    assert pa.loc["coast", (WORKSPACE, "val support")] == 30
    po = per_offset_table([run])
    assert po.loc[(WORKSPACE, "+100ms"), "val acc (last)"] == pytest.approx(0.41)
    assert run.confusion.loc["coast", "accel"] == 1 and run.confusion.loc["accel", "accel"] == 3


def test_report_html_is_self_contained_and_deterministic(workspace):
    out1 = write_report([WORKSPACE], workspace / "r1.html", root=workspace)
    out2 = write_report([WORKSPACE], workspace / "r2.html", root=workspace)
    text = out1.read_text(encoding="utf-8")
    assert text == out2.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", text), "the report must not load scripts from the network"
    assert text.count("Plotly.newPlot") >= 4 and len(text) > 1_000_000  # plotly.js inlined once
    assert "0.7000" in text and "left+accel+brake" in text and "baseline 0ms label" in text


def test_two_runs_side_by_side(workspace):
    run = load_run(WORKSPACE, workspace)
    other = load_run(WORKSPACE, workspace, label="copy")
    html_text = render_html([run, other], interval=2, best_metric="val/acc", best_mode="max")
    assert "copy" in html_text and "best epoch by val/acc (max)" in html_text

"""The report reads a run's DVCLive outputs, adds baselines from the frame store and writes one offline HTML."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import data_params, make_tree
from support.setups import dvc_env, uncached_workspace
from tmpretrain.actions import ACTION_NAMES
from tmpretrain.frame_store import FrameStore, build_frame_store
from tmpretrain.metrics import majority_baseline
from tmpretrain.reports import (
    WORKSPACE,
    ReportError,
    best_epoch,
    checkpoint_table,
    compute_baselines,
    epoch_table,
    headline_table,
    level0_table,
    load_run,
    offset_action_table,
    per_action_table,
    per_offset_table,
    render_html,
    write_report,
)
from tmpretrain.reports.dvcplots import inlined_scripts
from tmpretrain.reports.figures import fig_level0, fig_loss
from tmpretrain.stages.report import main as report_stage
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
        for j, d in enumerate(OFFSETS):
            lab = "0ms" if d == 0 else f"{d:+d}ms"
            series[f"val/offset/{lab}/acc_action/{a}"] = [0.01 * i + 0.1 * j + 0.001 * e for e in range(n)]
    _write_tsvs(curves_dir, series)
    vis_loss = [0.05, 0.03, 0.02, 0.025]
    _write_tsvs(root / "reports/vis/plots/metrics", {"train/loss": [v + 0.01 for v in vis_loss], "val/loss": vis_loss})
    vis_metrics = {"best": {"epoch": 2, "metric": "val/loss", "mode": "min", "val/loss": 0.02}, "epochs_run": 4}
    (root / "reports/vis/metrics.json").write_text(json.dumps(vis_metrics), encoding="utf-8")
    _write_metrics(root, series, val_loss)


def _write_tsvs(curves_dir: Path, series: dict[str, list[float]]) -> None:
    """DVCLive's layout: one TSV per metric, `step` and the metric's last path component as columns."""
    for name, values in series.items():
        path = curves_dir / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        last = name.rsplit("/", 1)[-1]
        path.write_text(f"step\t{last}\n" + "".join(f"{e}\t{v}\n" for e, v in enumerate(values)), encoding="utf-8")


def _write_metrics(root: Path, series: dict[str, list[float]], val_loss: list[float]) -> None:
    n = len(val_loss)
    best = int(np.argmin(val_loss))
    metrics = {
        "val": {
            "loss": val_loss[-1],
            "acc": series["val/acc"][-1],
            "main_actions_acc": series["val/main_actions_acc"][-1],
            "support": {a: 10 * i for i, a in enumerate(ACTION_NAMES)},  # as EpochSelector writes it
        },
        "best": {
            "epoch": best,
            "metric": "val/loss",
            "mode": "min",
            "value": val_loss[best],
            "val/loss": val_loss[best],
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
    build_frame_store(data_params(tmp_path, tree, cache_dir=str(root / "data/cache")), progress=False)
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
    assert head.loc[WORKSPACE, "exported epoch"] == 2 and head.loc[WORKSPACE, "val/loss"] == 0.7
    assert 0 < head.loc[WORKSPACE, "baseline majority"] <= 1
    assert "test/acc" not in head  # shown only once pretrain_bc scores a test split
    cp = checkpoint_table([run], interval=5)
    assert [e for _, e in cp.index] == [0, 5, 6]
    pa = per_action_table([run])
    assert pa.loc["coast", (WORKSPACE, "best (2)")] == pytest.approx(0.15 + 0.002)
    assert pa.loc["coast", (WORKSPACE, "val support")] == 30
    po = per_offset_table([run])
    assert po.loc[(WORKSPACE, "+100ms"), "val acc (last)"] == pytest.approx(0.41)
    assert run.confusion.loc["coast", "accel"] == 1 and run.confusion.loc["accel", "accel"] == 3


def test_every_epoch_and_offset_by_action_at_the_exported_epoch(workspace):
    run = load_run(WORKSPACE, workspace)
    epochs = epoch_table(run)
    assert list(epochs.index) == list(range(7)) and list(epochs["exported"]) == ["", "", "*", "", "", "", ""]
    assert epochs.loc[4, "val/loss"] == 0.9 and epochs.loc[6, "val/acc_offset/+100ms"] == pytest.approx(0.41)
    grid = offset_action_table(run)
    assert list(grid.index) == ["-10ms", "0ms", "+10ms", "+100ms"]
    # accel has no val support in this run (support 10 * index 0): left out; coast is index 3, n = 30
    assert "accel (n=0)" not in grid and "coast (n=30)" in grid
    assert grid.loc["+10ms", "coast (n=30)"] == pytest.approx(0.03 + 0.2 + 0.002)  # epoch 2, the exported one


def test_level0_section_and_markers(workspace):
    png = b"\x89PNG\r\n\x1a\n tiny"  # the report inlines whatever pretrain_vis saved there
    (workspace / "reports/vis/samples").mkdir(parents=True)
    (workspace / "reports/vis/samples/reconstructions.png").write_bytes(png)
    run = load_run(WORKSPACE, workspace)
    assert run.vis_exported_epoch == 2 and list(run.vis_curves.index) == [0, 1, 2, 3]
    level0 = level0_table([run])
    assert level0.loc[WORKSPACE, "exported epoch"] == 2 and level0.loc[WORKSPACE, "val/loss"] == 0.02
    stars = [t for t in fig_level0([run]).data if t.mode == "markers"]
    assert [(list(t.x), t.marker.symbol) for t in stars] == [([2], "star"), ([2], "star")]
    fig = fig_loss([run])
    assert sorted({t.x[0] for t in fig.data if t.mode == "markers"}) == [2]  # every curve starred at epoch 2
    assert {s.x0 for s in fig.layout.shapes if s.type == "line" and s.x0 == s.x1} == {2}  # exported-epoch lines
    majority = run.baselines["0ms"]["majority"]
    assert any(s.y0 == s.y1 == majority for s in fig.layout.shapes)  # baseline line on the accuracy panel
    text = render_html([run])
    assert "Level 0 (pretrain_vis)" in text and f"data:image/png;base64,{base64.b64encode(png).decode()}" in text
    assert "<details><summary>workspace: 7 epochs" in text


def test_report_html_is_self_contained_and_deterministic(workspace):
    out1 = write_report([WORKSPACE], workspace / "r1.html", root=workspace, labels=["v2 (workspace)"])
    out2 = write_report([WORKSPACE], workspace / "r2.html", root=workspace, labels=["v2 (workspace)"])
    text = out1.read_text(encoding="utf-8")
    assert text == out2.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", text), "the report must not load scripts from the network"
    assert text.count("Plotly.newPlot") >= 5 and len(text) > 1_000_000  # plotly.js inlined once
    assert "<h1>BC report: v2 (workspace)</h1>" in text
    assert "0.7000" in text and "left+accel+brake" in text and "baseline 0ms label" in text
    assert "overflow-x: auto" in text  # wide tables scroll in their box


def test_report_stage_names_the_experiment(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("DVC_EXP_NAME", "v2_next_tick")  # what `dvc exp run -n v2_next_tick` sets
    report_stage()
    assert "<h1>BC report: v2_next_tick</h1>" in (workspace / "reports/report.html").read_text(encoding="utf-8")


def test_two_runs_side_by_side(workspace):
    run = load_run(WORKSPACE, workspace)
    other = load_run(WORKSPACE, workspace, label="copy")
    html_text = render_html([run, other], interval=2, best_metric="val/acc", best_mode="max")
    assert "copy" in html_text and "best epoch by val/acc (max)" in html_text
    assert "<title>BC report: workspace, copy</title>" in html_text


# ------------------------------------------------------------------------------ plots that draw offline

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium (apt-get install chromium)")


_dvc_env = dvc_env


def _plots_project(root: Path, n_epochs: int = 6) -> tuple[Path, int]:
    """A DVC repository with this project's plot definitions, templates and config, and curves for every file
    they plot (val loss lowest at epoch 3). Returns it and the number of plots."""
    root.mkdir()
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=root, check=True, env=_dvc_env())
    shutil.copy2(ROOT / ".dvc/config", root / ".dvc/config")
    shutil.copytree(ROOT / ".dvc/plots", root / ".dvc/plots")
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["plots"]
    (root / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}, sort_keys=False), encoding="utf-8")
    loss = [1.4, 1.2, 1.1, 1.0, 1.05, 1.1][:n_epochs]
    files = {path: field for plot in plots for spec in plot.values() for path, field in spec["y"].items()}
    for k, (path, field) in enumerate(sorted(files.items())):
        values = [0.3 + 0.05 * e + 0.01 * k for e in range(n_epochs)]
        if path.endswith("/loss.tsv"):
            values = [v + 0.1 for v in loss] if "/train/" in path else loss
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"step\t{field}\n" + "".join(f"{e}\t{v}\n" for e, v in enumerate(values)), encoding="utf-8")
    return root, len(plots)


def _drawn_pixels(png: Path) -> int:
    """Saturated pixels of a screenshot: curves are coloured, text, axes and an empty page are grey."""
    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 80).sum())


def _screenshot_offline(page: Path, png: Path) -> None:
    """Headless Chromium with every host name unresolvable: what a machine without internet shows."""
    cmd = [
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={png.parent / 'chromium-profile'}",
        "--window-size=1200,1600",
        "--virtual-time-budget=10000",
        f"--screenshot={png}",
        page.resolve().as_uri(),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def test_offline_template_carries_the_recorded_libraries():
    page = (ROOT / ".dvc/plots/offline.html").read_text(encoding="utf-8")
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC adds its CDN <script src> only at {scripts}
    assert not re.search(r"<script[^>]*\bsrc=", page) and "sourceMappingURL" not in page
    readme = (ROOT / ".dvc/plots/README.md").read_text(encoding="utf-8")
    recorded = re.findall(r"^\| (vega[\w-]*) \| ([\d.]+) \| \S+ \| BSD-3-Clause \| ([0-9a-f]{64}) \|$", readme, re.M)
    assert [name for name, _, _ in recorded] == ["vega", "vega-lite", "vega-embed"]
    inlined = inlined_scripts(page)
    assert [hashlib.sha256(s.encode()).hexdigest() for s in inlined] == [sha for _, _, sha in recorded]
    for name, version, _ in recorded:
        assert f"/*! {name}@{version} " in page
    config = (ROOT / ".dvc/config").read_text(encoding="utf-8")
    assert re.search(r"^\s*html_template = plots/offline\.html$", config, re.M)


def test_dvc_plots_html_embeds_vega_and_loads_nothing(tmp_path):
    project, n_plots = _plots_project(tmp_path / "proj")
    proc = subprocess.run(
        ["dvc", "plots", "show", "-o", "out"], cwd=project, env=_dvc_env(), capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    page = (project / "out/index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", page) and "cdn.jsdelivr" not in page
    assert "/*! vega@5." in page and "/*! vega-lite@5." in page and "/*! vega-embed@6." in page
    assert page.count("vegaEmbed('#") == n_plots
    specs = [json.loads(s) for s in re.findall(r"var spec = (\{.*?\});\n", page, flags=re.S)]
    loss = next(s for s in specs if s["title"]["text"] == "Loss by epoch")
    axis = loss["encoding"]["x"]["axis"]  # whole epochs: vega still ticks 0.5 on 2-epoch runs, unlabelled here
    assert axis["tickMinStep"] == 1 and axis["format"] == "d" and axis["labelExpr"].startswith("datum.value % 1 ?")
    assert loss["encoding"]["color"]["title"] == "experiment"


@needs_chromium
def test_dvc_plots_and_report_draw_without_network(tmp_path, workspace):
    project, _ = _plots_project(tmp_path / "proj")
    subprocess.run(["dvc", "plots", "show", "-o", "out"], cwd=project, env=_dvc_env(), check=True, capture_output=True)
    _screenshot_offline(project / "out/index.html", tmp_path / "plots.png")
    report = write_report([WORKSPACE], tmp_path / "report.html", root=workspace)
    _screenshot_offline(report, tmp_path / "report.png")
    # A blank page (vega or plotly not loaded) has no coloured pixels; drawn curves have thousands.
    assert _drawn_pixels(tmp_path / "plots.png") > 2000
    assert _drawn_pixels(tmp_path / "report.png") > 2000


def test_a_revision_whose_outputs_are_not_in_the_cache_is_one_line_naming_them(workspace, capsys):
    # A fresh clone: the commit's dvc.lock names the curves, but nobody ran `dvc pull` (was: a 70-line traceback).
    uncached_workspace(workspace, drop_cache=False)  # support.setups, shared with the fault table
    load_run("HEAD", workspace, baselines=False)  # in the cache: read as usual
    shutil.rmtree(workspace / ".dvc/cache")
    with pytest.raises(ReportError) as refused:
        load_run("HEAD", workspace, baselines=False)
    assert str(refused.value) == (
        "HEAD: reports/bc/plots/metrics not in this clone's DVC cache; get it with `dvc pull` with HEAD checked out, "
        "or `dvc fetch --all-commits`"
    )

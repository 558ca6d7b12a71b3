"""The seed's analysis of BC runs over any set of DVC experiments or revisions, as one offline HTML file.

    python -m tmpretrain.reports report [REV ...] [-o reports/compare.html] [--interval 5] [--best val/loss:min]
    python -m tmpretrain.reports plots REV [REV ...] [-o reports/plots] [--format svg|png]

REV is `workspace` (the default), an experiment name (`dvc exp show`), a branch, a tag or a commit. Everything is
read through DVC at that revision: params.yaml, reports/bc/metrics.json (the numbers `dvc exp show` shows),
the per-epoch curves under reports/bc/plots/metrics and the confusion matrix; baselines are computed from the
labels of that revision's frame store (data/cache).

The report holds: the headline table (last epoch and the exported `best` block, as in `dvc exp show`) with
baselines beside each accuracy (majority class; repeat the previous frame's action; the 0 ms label used as the
prediction for offset d); metrics at epoch checkpoints every N epochs; the best epoch by a chosen metric with val
loss / val acc / main-actions acc there; per-action accuracy by name at the last and best epochs; the per-offset
block; and interactive plotly figures (plotly.js inlined: the file opens offline).

`plots` renders `dvc plots diff --json` (the curated overlays of dvc.yaml) to SVG/PNG with vl-convert, plus an
index.html that shows them without a network (the HTML of `dvc plots diff` loads vega from a CDN).
"""

from __future__ import annotations

import argparse
import html
import io
import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import yaml
from plotly.subplots import make_subplots

from .actions import ACTION_NAMES, MAIN_ACTIONS
from .cache import FrameStore
from .errors import PretrainError
from .metrics import majority_baseline, offset0_baseline, offset_label, previous_action_baseline
from .params import flatten
from .windows import build_samples

BC_DIR = "reports/bc"
CURVES_DIR = f"{BC_DIR}/plots/metrics"
CONFUSION_FILE = f"{BC_DIR}/plots/sklearn/confusion_matrix.json"
VIS_METRICS = "reports/vis/metrics.json"
WORKSPACE = "workspace"
MAIN_ACTION_NAMES = [ACTION_NAMES[i] for i in MAIN_ACTIONS]


class ReportError(PretrainError):
    pass


# --------------------------------------------------------------------------------------------- reading


_REPOS: dict = {}


def _repo(root: Path):
    """One open DVC repo per root for the whole process (closing it invalidates filesystems built on it)."""
    from dvc.repo import Repo

    key = str(Path(root).resolve())
    if key not in _REPOS:
        _REPOS[key] = Repo(key)
    return _REPOS[key]


class _Reader:
    """Reads repository files at one revision: the working tree for `workspace`, DVC's view otherwise."""

    def __init__(self, rev: str, root: Path):
        self.rev = rev
        self.root = root
        self.sha = None
        self.fs = None
        if rev != WORKSPACE:
            from dvc.api import DVCFileSystem
            from dvc.scm import RevError, resolve_rev

            repo = _repo(root)
            try:
                self.sha = resolve_rev(repo.scm, rev)
            except RevError as exc:
                raise ReportError(f"{rev!r} is neither an experiment nor a git revision: {exc}") from None
            self.fs = DVCFileSystem(str(Path(root).resolve()), rev=self.sha)

    def exists(self, path: str) -> bool:
        return (self.root / path).exists() if self.fs is None else self.fs.exists(path)

    def read_text(self, path: str) -> str:
        if self.fs is None:
            return (self.root / path).read_text(encoding="utf-8")
        return self.fs.read_text(path, encoding="utf-8")

    def read_bytes(self, path: str) -> bytes:
        return (self.root / path).read_bytes() if self.fs is None else self.fs.read_bytes(path)

    def find(self, directory: str, suffix: str) -> list[str]:
        """Files under `directory` ending in `suffix`, as paths relative to the repository root."""
        if self.fs is None:
            base = self.root / directory
            return (
                sorted(p.relative_to(self.root).as_posix() for p in base.rglob(f"*{suffix}")) if base.is_dir() else []
            )
        if not self.fs.exists(directory):
            return []
        return sorted(p.lstrip("/") for p in self.fs.find(directory) if p.endswith(suffix))


@dataclass
class Run:
    """One revision's BC results."""

    label: str
    rev: str
    sha: str | None
    params: dict
    metrics: dict
    vis_metrics: dict
    curves: pd.DataFrame  # index: epoch; columns: metric names ("val/loss", "val/acc_action/coast", ...)
    confusion: pd.DataFrame | None
    baselines: dict = field(default_factory=dict)

    @property
    def offsets(self) -> list[int]:
        return [int(d) for d in self.params["bc"]["time_offsets_ms"]]

    @property
    def export_offset(self) -> int:
        return int(self.params["bc"].get("export_offset_ms", 0))


def _read_curves(reader: _Reader) -> pd.DataFrame:
    columns = {}
    for path in reader.find(CURVES_DIR, ".tsv"):
        name = path[len(CURVES_DIR) + 1 : -len(".tsv")]
        df = pd.read_csv(io.StringIO(reader.read_text(path)), sep="\t")
        value_col = [c for c in df.columns if c not in ("step", "timestamp")][-1]
        columns[name] = pd.Series(df[value_col].to_numpy(dtype=float), index=df["step"].to_numpy(dtype=int))
    if not columns:
        raise ReportError(f"{reader.rev}: no per-epoch curves under {CURVES_DIR} (has pretrain_bc run there?)")
    curves = pd.DataFrame(columns).sort_index()
    curves.index.name = "epoch"
    return curves


def _read_confusion(reader: _Reader) -> pd.DataFrame | None:
    if not reader.exists(CONFUSION_FILE):
        return None
    rows = json.loads(reader.read_text(CONFUSION_FILE))
    if isinstance(rows, dict):  # {"<path>": [...]} in some dvclive versions
        rows = next(iter(rows.values()))
    df = pd.DataFrame(rows)
    if df.empty:
        return None
    cm = pd.crosstab(df["actual"], df["predicted"])
    return cm.reindex(index=list(ACTION_NAMES), columns=list(ACTION_NAMES), fill_value=0)


def _label_store(reader: _Reader) -> FrameStore:
    """The frame store's index and timelines at this revision, without reading any frames."""
    params = reader.params if hasattr(reader, "params") else {}
    cache_dir = str((params.get("data") or {}).get("cache_dir", "data/cache"))
    if reader.fs is None:
        src = reader.root / cache_dir
        meta = json.loads((src / "cache_meta.json").read_text(encoding="utf-8"))
        index_bytes, timelines_bytes = (src / "index.npz").read_bytes(), (src / "timelines.npy").read_bytes()
    else:
        meta = json.loads(reader.read_text(f"{cache_dir}/cache_meta.json"))
        index_bytes = reader.read_bytes(f"{cache_dir}/index.npz")
        timelines_bytes = reader.read_bytes(f"{cache_dir}/timelines.npy")
    with np.load(io.BytesIO(index_bytes)) as index:
        arrays = {k: index[k] for k in index.files}
    return FrameStore(
        path=Path(cache_dir),
        meta=meta,
        frames=np.broadcast_to(np.zeros((1, 1, 1), dtype=np.uint8), (int(meta["n_frames"]), 1, 1)),
        timelines=np.load(io.BytesIO(timelines_bytes)),
        floats=None,
        **arrays,
    )


def compute_baselines(store: FrameStore, offsets: list[int], target: str) -> dict:
    """Val-split baselines per offset label: majority class, repeat the previous frame's action, and (for d != 0)
    the 0 ms label used as the prediction for offset d."""
    all_offsets = sorted(set(offsets) | {0})
    samples = build_samples(store, "val", 1, all_offsets, target)
    labels, zero = samples.labels, samples.labels[:, all_offsets.index(0)]
    out = {}
    for d in offsets:
        col = labels[:, all_offsets.index(d)]
        out[offset_label(d)] = {
            "majority": majority_baseline(col),
            "previous_action": previous_action_baseline(col, samples.replay),
            "offset0_label": offset0_baseline(zero, col) if d != 0 else math.nan,
        }
    return out


_BASELINE_CACHE: dict = {}


def load_run(rev: str, root: Path | str = ".", label: str | None = None, baselines: bool = True) -> Run:
    root = Path(root)
    reader = _Reader(rev, root)
    try:
        params = yaml.safe_load(reader.read_text("params.yaml"))
        metrics = json.loads(reader.read_text(f"{BC_DIR}/metrics.json"))
    except FileNotFoundError as exc:
        raise ReportError(f"{rev}: {exc.filename or exc} not found; has pretrain_bc run there?") from None
    vis_metrics = json.loads(reader.read_text(VIS_METRICS)) if reader.exists(VIS_METRICS) else {}
    reader.params = params
    run = Run(
        label or rev,
        rev,
        reader.sha,
        params,
        metrics,
        vis_metrics,
        _read_curves(reader),
        _read_confusion(reader),
    )
    if baselines:
        cache_dir = str(params["data"]["cache_dir"])
        try:
            meta = json.loads(reader.read_text(f"{cache_dir}/cache_meta.json"))
            key = (
                meta["source"]["content_hash"],
                json.dumps(meta.get("preprocessing"), sort_keys=True),
                json.dumps(meta.get("split"), sort_keys=True),
                tuple(run.offsets),
                params["bc"]["target"],
            )
            if key not in _BASELINE_CACHE:
                _BASELINE_CACHE[key] = compute_baselines(_label_store(reader), run.offsets, params["bc"]["target"])
            run.baselines = _BASELINE_CACHE[key]
        except (FileNotFoundError, KeyError, OSError) as exc:
            print(f"warning: {rev}: no baselines ({cache_dir} unreadable: {exc})", file=sys.stderr)
    return run


def load_runs(revs: list[str], root: Path | str = ".", baselines: bool = True) -> list[Run]:
    revs = revs or [WORKSPACE]
    return [load_run(rev, root, baselines=baselines) for rev in revs]


# ------------------------------------------------------------------------------------------- analysis


def _get(d: dict, dotted: str):
    """metrics.json is nested by `/`: val/acc_offset/0ms -> d["val"]["acc_offset"]["0ms"]."""
    cur = d
    for part in dotted.split("/"):
        if not isinstance(cur, dict) or part not in cur:
            return math.nan
        cur = cur[part]
    return cur


def best_epoch(curves: pd.DataFrame, metric: str = "val/loss", mode: str = "min") -> int:
    if metric not in curves:
        raise ReportError(f"metric {metric!r} is not among the curves ({', '.join(sorted(curves)[:8])}, ...)")
    series = curves[metric].dropna()
    return int(series.idxmin() if mode == "min" else series.idxmax())


def headline_table(runs: list[Run]) -> pd.DataFrame:
    """The numbers `dvc exp show` shows (reports/bc/metrics.json), with baselines beside the accuracies."""
    rows = []
    for run in runs:
        m = run.metrics
        base = run.baselines.get(offset_label(run.export_offset), {})
        row = {
            "experiment": run.label,
            "epochs_run": m.get("epochs_run"),
            "val/loss (last)": _get(m, "val/loss"),
            "val/acc (last)": _get(m, "val/acc"),
            "val/main_actions_acc (last)": _get(m, "val/main_actions_acc"),
            "best/epoch": _get(m, "best/epoch"),
            "best/metric": _get(m, "best/metric"),
            "best/value": _get(m, "best/value"),
            "best val/acc": (m.get("best") or {}).get("val/acc", math.nan),
            "best val/main_actions_acc": (m.get("best") or {}).get("val/main_actions_acc", math.nan),
            "baseline majority": base.get("majority", math.nan),
            "baseline previous action": base.get("previous_action", math.nan),
        }
        for d in run.offsets:
            row[f"val/acc_offset/{offset_label(d)} (last)"] = _get(m, f"val/acc_offset/{offset_label(d)}")
        rows.append(row)
    return pd.DataFrame(rows).set_index("experiment")


def checkpoint_table(runs: list[Run], interval: int = 5, metrics: list[str] | None = None) -> pd.DataFrame:
    """Metrics at epochs 0, N, 2N, ... and each run's last epoch (the seed's `--interval`)."""
    metrics = metrics or ["train/loss", "val/loss", "train/acc", "val/acc", "val/main_actions_acc"]
    rows = []
    for run in runs:
        last = int(run.curves.index.max())
        epochs = sorted(set(range(0, last + 1, max(1, interval))) | {last})
        for e in epochs:
            rows.append(
                {"experiment": run.label, "epoch": e, **{k: run.curves.get(k, pd.Series()).get(e) for k in metrics}}
            )
    return pd.DataFrame(rows).set_index(["experiment", "epoch"])


def best_table(runs: list[Run], metric: str = "val/loss", mode: str = "min") -> pd.DataFrame:
    rows = []
    for run in runs:
        e = best_epoch(run.curves, metric, mode)
        c = run.curves.loc[e]
        rows.append(
            {
                "experiment": run.label,
                f"best epoch by {metric} ({mode})": e,
                "val/loss": c.get("val/loss"),
                "val/acc": c.get("val/acc"),
                "val/main_actions_acc": c.get("val/main_actions_acc"),
                "epochs run": len(run.curves),
            }
        )
    return pd.DataFrame(rows).set_index("experiment")


def per_action_table(runs: list[Run], metric: str = "val/loss", mode: str = "min") -> pd.DataFrame:
    """Val accuracy of the exported head per action name, at the last and the best epoch, with val support."""
    out = {}
    for run in runs:
        last, best = int(run.curves.index.max()), best_epoch(run.curves, metric, mode)
        for tag, e in ((f"last ({last})", last), (f"best ({best})", best)):
            out[(run.label, tag)] = [run.curves.get(f"val/acc_action/{a}", pd.Series()).get(e) for a in ACTION_NAMES]
        out[(run.label, "val support")] = [_get(run.metrics, f"val/support/{a}") for a in ACTION_NAMES]
    df = pd.DataFrame(out, index=list(ACTION_NAMES))
    df.index.name = "action"
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    return df


def per_offset_table(runs: list[Run], metric: str = "val/loss", mode: str = "min") -> pd.DataFrame:
    rows = []
    for run in runs:
        last, best = int(run.curves.index.max()), best_epoch(run.curves, metric, mode)
        for d in run.offsets:
            lab = offset_label(d)
            base = run.baselines.get(lab, {})
            rows.append(
                {
                    "experiment": run.label,
                    "offset": lab,
                    "val acc (last)": run.curves.get(f"val/acc_offset/{lab}", pd.Series()).get(last),
                    "val acc (best)": run.curves.get(f"val/acc_offset/{lab}", pd.Series()).get(best),
                    "baseline majority": base.get("majority", math.nan),
                    "baseline previous action": base.get("previous_action", math.nan),
                    "baseline 0ms label": base.get("offset0_label", math.nan),
                }
            )
    return pd.DataFrame(rows).set_index(["experiment", "offset"])


def params_table(runs: list[Run]) -> pd.DataFrame:
    """The params that differ between the runs (all of bc and vis.image_normalization for a single run)."""

    rows = {
        run.label: {
            k: json.dumps(v) if isinstance(v, list) else v
            for k, v in flatten({g: run.params.get(g, {}) for g in ("data", "vis", "bc")}).items()
        }
        for run in runs
    }
    df = pd.DataFrame(rows)
    if len(runs) > 1:
        df = df[df.astype(str).nunique(axis=1) > 1]
    else:
        df = df[
            [k.startswith(("bc.", "vis.image_normalization", "vis.epochs")) and ".trainer." not in k for k in df.index]
        ]
    df.index.name = "param"
    return df


# ------------------------------------------------------------------------------------------- figures

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]


def _color(i: int) -> str:
    return _COLORS[i % len(_COLORS)]


def fig_loss(runs: list[Run]) -> go.Figure:
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("loss (solid: val, dotted: train)", "val accuracy (solid: all, dashed: main actions)"),
    )
    traces = (  # (column, line dash, legend name, subplot column)
        ("val/loss", None, "val loss", 1),
        ("train/loss", "dot", "train loss", 1),
        ("val/acc", None, "val/acc", 2),
        ("val/main_actions_acc", "dash", "val/main_actions_acc", 2),
    )
    for i, run in enumerate(runs):
        for col, dash, name, subplot in traces:
            if col in run.curves:
                fig.add_scatter(
                    x=run.curves.index,
                    y=run.curves[col],
                    name=f"{run.label} {name}",
                    line={"color": _color(i), "dash": dash},
                    row=1,
                    col=subplot,
                    legendgroup=run.label,
                )
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(height=420, title="Loss and accuracy by epoch")
    return fig


def fig_per_action(runs: list[Run]) -> go.Figure:
    fig = make_subplots(rows=3, cols=4, subplot_titles=list(ACTION_NAMES), shared_xaxes=True, vertical_spacing=0.08)
    for i, run in enumerate(runs):
        for k, a in enumerate(ACTION_NAMES):
            col = f"val/acc_action/{a}"
            if col in run.curves:
                fig.add_scatter(
                    x=run.curves.index,
                    y=run.curves[col],
                    name=run.label,
                    legendgroup=run.label,
                    showlegend=k == 0,
                    line={"color": _color(i)},
                    row=k // 4 + 1,
                    col=k % 4 + 1,
                )
    fig.update_yaxes(range=[0, 1])
    fig.update_layout(height=700, title="Val accuracy per action (exported offset head) by epoch")
    return fig


def fig_per_offset(runs: list[Run]) -> go.Figure:
    fig = go.Figure()
    dashes = ["dot", None, "dash", "dashdot", "longdash", "longdashdot"]
    for i, run in enumerate(runs):
        for j, d in enumerate(run.offsets):
            col = f"val/acc_offset/{offset_label(d)}"
            if col in run.curves:
                fig.add_scatter(
                    x=run.curves.index,
                    y=run.curves[col],
                    name=f"{run.label} {offset_label(d)}",
                    line={"color": _color(i), "dash": dashes[j % len(dashes)]},
                )
    fig.update_layout(
        height=420, title="Val accuracy per offset head by epoch", xaxis_title="epoch", yaxis_title="val accuracy"
    )
    return fig


def fig_confusion(runs: list[Run]) -> go.Figure | None:
    have = [r for r in runs if r.confusion is not None]
    if not have:
        return None
    cols = min(3, len(have))
    rows = math.ceil(len(have) / cols)
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=[f"{r.label} (epoch {_get(r.metrics, 'best/epoch')})" for r in have]
    )
    for k, run in enumerate(have):
        cm = run.confusion
        norm = cm.div(cm.sum(axis=1).replace(0, np.nan), axis=0)
        fig.add_heatmap(
            z=norm.to_numpy(),
            x=list(cm.columns),
            y=list(cm.index),
            customdata=cm.to_numpy(),
            colorscale="Blues",
            zmin=0,
            zmax=1,
            showscale=k == 0,
            hovertemplate="actual %{y}<br>predicted %{x}<br>share of row %{z:.3f}<br>"
            "count %{customdata}<extra></extra>",
            row=k // cols + 1,
            col=k % cols + 1,
        )
    fig.update_yaxes(autorange="reversed", title_text="actual")
    fig.update_xaxes(title_text="predicted")
    fig.update_layout(
        height=480 * rows, title="Val confusion of the exported head at the exported epoch (rows normalised)"
    )
    return fig


# ---------------------------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f3f3f3; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
p.note { color: #555; max-width: 70em; }
"""


def _table_html(df: pd.DataFrame) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.4f}"
        return v

    return df.map(fmt).to_html(escape=True, na_rep="")


def render_html(runs: list[Run], interval: int = 5, best_metric: str = "val/loss", best_mode: str = "min") -> str:
    labels = ", ".join(r.label for r in runs)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>BC report: {html.escape(labels)}</title><style>{_CSS}</style></head><body>",
        f"<h1>BC report: {html.escape(labels)}</h1>",
        "<p class='note'>Sources: "
        + "; ".join(f"<b>{html.escape(r.label)}</b> = {html.escape(r.sha or r.rev)}" for r in runs)
        + ". Every number comes from that revision's reports/bc (the values <code>dvc exp show</code> lists); "
        "baselines from its frame store's val split. The loss of a multi-offset run is the weighted mean "
        "sum(w_d CE_d) / sum(w_d) of the per-offset losses, so it is on the scale of one CE, but it mixes offsets "
        "of different difficulty: compare accuracies across offset sets.</p>",
        "<h2>Headline (as in dvc exp show)</h2>",
        "<p class='note'>(last) = last epoch run; best/* = the exported epoch chosen by bc.selection; "
        "baselines at the exported offset.</p>",
        _table_html(headline_table(runs)),
        "<h2>Params that differ</h2>",
        _table_html(params_table(runs)),
        f"<h2>Metrics every {interval} epochs</h2>",
        _table_html(checkpoint_table(runs, interval)),
        f"<h2>Best epoch by {html.escape(best_metric)} ({best_mode})</h2>",
        _table_html(best_table(runs, best_metric, best_mode)),
        "<h2>Per-action val accuracy (exported head)</h2>",
        f"<p class='note'>Main actions (averaged in val/main_actions_acc): {', '.join(MAIN_ACTION_NAMES)}. "
        "Actions without val support read 0.</p>",
        _table_html(per_action_table(runs, best_metric, best_mode)),
        "<h2>Per-offset val accuracy</h2>",
        "<p class='note'>baseline 0ms label: the action at offset 0 used as the prediction for offset d; "
        "previous action: each frame's label predicted by the previous frame's label of the same replay.</p>",
        _table_html(per_offset_table(runs, best_metric, best_mode)),
        "<h2>Plots</h2>",
    ]
    figs = [fig_loss(runs), fig_per_action(runs), fig_per_offset(runs), fig_confusion(runs)]
    first = True
    for k, fig in enumerate(f for f in figs if f is not None):
        fig.update_layout(template="plotly_white")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=first, div_id=f"fig{k}"))
        first = False
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    revs: list[str], out: Path | str, root: Path | str = ".", interval: int = 5, best: str = "val/loss:min"
) -> Path:
    metric, _, mode = best.partition(":")
    runs = load_runs(revs, root)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(runs, interval, metric, mode or "min"), encoding="utf-8")
    return out


# ---------------------------------------------------------------------------------- offline dvc plots


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_") or "plot"


def _static(node) -> None:
    """Drop the widgets (smoothing slider) of DVC's templates: their params stay, as constants."""
    if isinstance(node, dict):
        node.pop("bind", None)
        for value in node.values():
            _static(value)
    elif isinstance(node, list):
        for value in node:
            _static(value)


def render_dvc_plots(revs: list[str], out_dir: Path | str, fmt: str = "svg", root: Path | str = ".") -> list[Path]:
    """`dvc plots diff --json REVS` rendered offline to one SVG/PNG per plot, plus an index.html."""
    import vl_convert as vlc

    cmd = ["dvc", "plots", "diff", "--json", *revs] if revs else ["dvc", "plots", "show", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
    if proc.returncode:
        raise ReportError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    data = json.loads(proc.stdout).get("data", {})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, body = [], []
    for plot_id, entries in data.items():
        for k, entry in enumerate(entries):
            if entry.get("type") != "vega":
                continue
            spec = entry["content"]
            _static(spec)
            name = _slug(plot_id) + (f"_{k}" if k else "")
            if fmt == "png":
                path = out_dir / f"{name}.png"
                path.write_bytes(vlc.vegalite_to_png(spec, scale=2))
                body.append(f"<h3>{html.escape(plot_id)}</h3><img src='{path.name}'>")
            else:
                path = out_dir / f"{name}.svg"
                svg = vlc.vegalite_to_svg(spec)
                path.write_text(svg, encoding="utf-8")
                body.append(f"<h3>{html.escape(plot_id)}</h3>{svg}")
            written.append(path)
    title = "dvc plots diff " + " ".join(revs or ["workspace"])
    (out_dir / "index.html").write_text(
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family:sans-serif'><h1>{html.escape(title)}</h1>{''.join(body)}</body></html>",
        encoding="utf-8",
    )
    return written


# ------------------------------------------------------------------------------------------------ CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tmpretrain.reports", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("report", help="the seed's analysis as one offline HTML file")
    p.add_argument("revs", nargs="*", help="experiments / revisions (default: workspace)")
    p.add_argument("-o", "--output", default="reports/compare.html")
    p.add_argument("--interval", type=int, default=5, help="checkpoint table every N epochs")
    p.add_argument("--best", default="val/loss:min", help="metric:min|max that picks the best epoch")
    p = sub.add_parser("plots", help="render `dvc plots diff --json` to SVG/PNG offline")
    p.add_argument("revs", nargs="*", help="experiments / revisions (default: the workspace)")
    p.add_argument("-o", "--output", default="reports/plots")
    p.add_argument("--format", choices=("svg", "png"), default="svg")
    args = parser.parse_args(argv)
    try:
        if args.command == "report":
            out = write_report(args.revs, args.output, interval=args.interval, best=args.best)
            print(f"report: {out}")
        else:
            paths = render_dvc_plots(args.revs, args.output, args.format)
            print(f"plots: {len(paths)} files and index.html in {args.output}")
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The report's interactive plotly figures. One colour per run; the exported epoch is a star on the curve and a
dotted vertical line; baselines are grey horizontal lines; epochs are integer ticks."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..actions import ACTION_NAMES
from ..metrics import offset_label
from .runs import Run
from .tables import metric

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
_OFFSET_DASHES = ["dot", None, "dash", "dashdot", "longdash", "longdashdot"]


def _color(i: int) -> str:
    return _COLORS[i % len(_COLORS)]


def _epoch_axes(fig: go.Figure, last_epoch: int) -> None:
    """Whole-number epoch ticks, about ten of them (plotly would otherwise tick 0.5, 1.5, ... on short runs)."""
    step = next(s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if last_epoch / s <= 12)
    fig.update_xaxes(tickmode="linear", tick0=0, dtick=step, title_text="epoch")


def _last_epoch(runs: list[Run], vis: bool = False) -> int:
    frames = [r.vis_curves if vis else r.curves for r in runs]
    return max((int(f.index.max()) for f in frames if not f.empty), default=1)


def _curve(fig, run: Run, i: int, column: str, name: str, dash=None, vis=False, showlegend=True, **where) -> None:
    """One run's curve, and a star at its exported epoch (the weights that were exported)."""
    curves = run.vis_curves if vis else run.curves
    if column not in curves:
        return
    series = curves[column].dropna()
    fig.add_scatter(
        x=series.index,
        y=series,
        name=name,
        legendgroup=run.label,
        showlegend=showlegend,
        line={"color": _color(i), "dash": dash},
        mode="lines",
        **where,
    )
    epoch = run.vis_exported_epoch if vis else run.exported_epoch
    if epoch is not None and epoch in series.index:
        fig.add_scatter(
            x=[epoch],
            y=[series[epoch]],
            name=f"{run.label} exported epoch {epoch}",
            legendgroup=run.label,
            showlegend=False,
            mode="markers",
            marker={"symbol": "star", "size": 11, "color": _color(i), "line": {"width": 1, "color": "black"}},
            hovertemplate=f"{run.label}: exported epoch {epoch}<br>{column} %{{y:.4f}}<extra></extra>",
            **where,
        )


def _exported_line(fig, run: Run, i: int, vis: bool = False, **where) -> None:
    epoch = run.vis_exported_epoch if vis else run.exported_epoch
    if epoch is not None:
        fig.add_vline(x=epoch, line={"color": _color(i), "dash": "dot", "width": 1}, opacity=0.6, **where)


def _baseline_lines(fig, runs: list[Run], **where) -> None:
    """Majority and previous-action baselines at the exported offset (once per distinct value)."""
    seen = set()
    for run in runs:
        base = run.baselines.get(offset_label(run.export_offset), {})
        for key, text in (("majority", "majority baseline"), ("previous_action", "previous-action baseline")):
            value = base.get(key)
            if value is None or math.isnan(value) or (key, round(value, 6)) in seen:
                continue
            seen.add((key, round(value, 6)))
            fig.add_hline(
                y=value,
                line={"color": "grey", "dash": "dash" if key == "majority" else "dot", "width": 1},
                annotation_text=f"{text} {value:.3f}",
                annotation_position="bottom right",
                annotation_font={"size": 10, "color": "grey"},
                **where,
            )


def fig_loss(runs: list[Run]) -> go.Figure:
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            "Loss (solid: val, dotted: train)",
            "Val accuracy at the exported offset (solid: all actions, dashed: main actions)",
        ),
    )
    traces = (  # (column, line dash, legend suffix, subplot column)
        ("val/loss", None, "val loss", 1),
        ("train/loss", "dot", "train loss", 1),
        ("val/acc", None, "val accuracy", 2),
        ("val/main_actions_acc", "dash", "val main-actions accuracy", 2),
    )
    for i, run in enumerate(runs):
        for column, dash, name, subplot in traces:
            _curve(fig, run, i, column, f"{run.label} {name}", dash, row=1, col=subplot)
        for subplot in (1, 2):
            _exported_line(fig, run, i, row=1, col=subplot)
    _baseline_lines(fig, runs, row=1, col=2)
    _epoch_axes(fig, _last_epoch(runs))
    fig.update_layout(height=440, title="Loss and accuracy by epoch (star and dotted line: the exported epoch)")
    return fig


def fig_per_action(runs: list[Run]) -> go.Figure:
    fig = make_subplots(rows=3, cols=4, subplot_titles=list(ACTION_NAMES), shared_xaxes=True, vertical_spacing=0.08)
    for i, run in enumerate(runs):
        for k, a in enumerate(ACTION_NAMES):
            where = {"row": k // 4 + 1, "col": k % 4 + 1}
            _curve(fig, run, i, f"val/acc_action/{a}", run.label, showlegend=k == 0, **where)
    _epoch_axes(fig, _last_epoch(runs))
    fig.update_xaxes(title_text=None)
    fig.update_yaxes(range=[0, 1])
    fig.update_layout(height=720, title="Val accuracy per action by epoch (exported offset head; star: exported epoch)")
    return fig


def fig_per_offset(runs: list[Run]) -> go.Figure:
    fig = go.Figure()
    for i, run in enumerate(runs):
        for j, d in enumerate(run.offsets):
            name = f"{run.label} {offset_label(d)}"
            _curve(fig, run, i, f"val/acc_offset/{offset_label(d)}", name, _OFFSET_DASHES[j % len(_OFFSET_DASHES)])
        _exported_line(fig, run, i)
    _epoch_axes(fig, _last_epoch(runs))
    fig.update_layout(
        height=440, title="Val accuracy per offset head by epoch (star: exported epoch)", yaxis_title="val accuracy"
    )
    return fig


def fig_level0(runs: list[Run]) -> go.Figure | None:
    """Level 0 (pretrain_vis) train and val loss per run; the star marks the epoch exported to models/vis."""
    have = [(i, r) for i, r in enumerate(runs) if not r.vis_curves.empty]
    if not have:
        return None
    fig = go.Figure()
    for i, run in have:
        _curve(fig, run, i, "val/loss", f"{run.label} val loss", vis=True)
        _curve(fig, run, i, "train/loss", f"{run.label} train loss", "dot", vis=True)
        _exported_line(fig, run, i, vis=True)
    _epoch_axes(fig, _last_epoch([r for _, r in have], vis=True))
    fig.update_layout(
        height=400,
        title="Level 0 loss by epoch (solid: val, dotted: train; star: exported epoch)",
        yaxis_title="loss",
    )
    return fig


def fig_confusion(runs: list[Run]) -> go.Figure | None:
    have = [r for r in runs if r.confusion is not None]
    if not have:
        return None
    cols = min(3, len(have))
    rows = math.ceil(len(have) / cols)
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=[f"{r.label} (epoch {metric(r.metrics, 'best/epoch')})" for r in have]
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

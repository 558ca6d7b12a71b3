"""The report as one self-contained HTML file: tables, plotly figures (plotly.js inlined once), images inlined."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import pandas as pd

from ..actions import ACTION_NAMES, MAIN_ACTIONS
from .figures import fig_confusion, fig_level0, fig_loss, fig_per_action, fig_per_offset
from .runs import WORKSPACE, Run, load_run
from .tables import (
    best_table,
    checkpoint_table,
    epoch_table,
    headline_table,
    level0_table,
    offset_action_table,
    params_table,
    per_action_table,
    per_offset_table,
)

MAIN_ACTION_NAMES = [ACTION_NAMES[i] for i in MAIN_ACTIONS]

# Wide tables scroll inside their box instead of widening the page; headers wrap, numbers do not.
_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 100%; }
.table { overflow-x: auto; max-width: 100%; margin: 0.5em 0 1.5em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
td { white-space: nowrap; }
th { background: #f3f3f3; white-space: normal; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
p.note { color: #555; max-width: 70em; }
details { margin: 0.3em 0; }
summary { cursor: pointer; }
img.recon { max-width: 100%; image-rendering: pixelated; border: 1px solid #ccc; }
"""


def table_html(df: pd.DataFrame) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.4f}"
        return v

    return "<div class='table'>" + df.map(fmt).to_html(escape=True, na_rep="") + "</div>"


def _note(text: str) -> str:
    return f"<p class='note'>{text}</p>"


class _Figures:
    """Plotly figures as divs with fixed ids (same input, same bytes); plotly.js itself is in the page's head, so
    that other sections' plotly divs (the evaluation's map) work wherever they stand."""

    def __init__(self):
        self.count = 0

    def __call__(self, fig) -> str:
        if fig is None:
            return ""
        fig.update_layout(template="plotly_white")
        out = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig{self.count}")
        self.count += 1
        return out


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return f"<script>window.PlotlyConfig = {{MathJaxConfig: 'local'}};</script><script>{get_plotlyjs()}</script>"


def _level0_section(runs: list[Run], figure: _Figures) -> list[str]:
    parts = ["<h2>Level 0 (pretrain_vis)</h2>"]
    if not any(r.vis_metrics or not r.vis_curves.empty for r in runs):
        return parts + [_note("No Level 0 results at these revisions (reports/vis).")]
    parts += [
        _note("The encoder of models/vis that pretrain_bc starts from (bc.encoder_init: vis)."),
        table_html(level0_table(runs)),
        figure(fig_level0(runs)),
    ]
    for run in runs:
        if run.reconstructions_png:
            data = base64.b64encode(run.reconstructions_png).decode("ascii")
            parts.append(
                f"<h3>{html.escape(run.label)}: val frames (top) and their reconstructions (bottom)</h3>"
                f"<img class='recon' alt='reconstructions' src='data:image/png;base64,{data}'>"
            )
    if not any(r.reconstructions_png for r in runs):
        parts.append(_note("No reconstruction grid at these revisions (reports/vis/reconstructions.png)."))
    return parts


def render_html(
    runs: list[Run],
    interval: int = 5,
    best_metric: str = "val/loss",
    best_mode: str = "min",
    evaluation_html: str | None = None,
) -> str:
    labels = ", ".join(r.label for r in runs)
    figure = _Figures()
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>BC report: {html.escape(labels)}</title><style>{_CSS}</style>",
        _plotly_js(),
        "</head><body>",
        f"<h1>BC report: {html.escape(labels)}</h1>",
        _note(
            "Sources: "
            + "; ".join(f"<b>{html.escape(r.label)}</b> = {html.escape(r.sha or r.rev)}" for r in runs)
            + ". Every number comes from that revision's reports/bc and reports/vis (the values <code>dvc exp "
            "show</code> lists); baselines from its frame store's val split. The loss of a multi-offset run is the "
            "weighted mean sum(w_d CE_d) / sum(w_d) of the per-offset losses, so it is on the scale of one CE, but "
            "it mixes offsets of different difficulty: compare accuracies across offset sets."
        ),
        "<h2>Headline</h2>",
        _note(
            "Metrics of the <b>exported epoch</b> (chosen by bc.selection; the weights in models/bc), then the "
            "last epoch run (last). Baselines at the exported offset: majority = always the most frequent val "
            "label; previous action = each frame's label predicted by the previous frame's label."
        ),
        table_html(headline_table(runs)),
    ]
    params = table_html(params_table(runs))
    if len(runs) > 1:
        parts += ["<h2>Params that differ</h2>", params]
    else:
        parts += ["<h2>Params</h2>", f"<details><summary>bc and Level 0 params</summary>{params}</details>"]
    if evaluation_html:
        parts.append(evaluation_html)
    parts += [
        "<h2>Loss and accuracy</h2>",
        figure(fig_loss(runs)),
        "<h2>Per-offset val accuracy</h2>",
        _note(
            "baseline 0ms label: the action at offset 0 used as the prediction for offset d; previous action: "
            "each frame's label predicted by the previous frame's label of the same replay."
        ),
        table_html(per_offset_table(runs, best_metric, best_mode)),
        figure(fig_per_offset(runs)),
        "<h2>Per-offset &times; per-action val accuracy at the exported epoch</h2>",
        _note("n = val support of the action at the exported offset; actions without val support are left out."),
    ]
    for run in runs:
        parts += [f"<h3>{html.escape(run.label)}</h3>", table_html(offset_action_table(run))]
    parts += [
        "<h2>Per-action val accuracy (exported head)</h2>",
        _note(
            f"Main actions (averaged in val/main_actions_acc): {', '.join(MAIN_ACTION_NAMES)}. Actions without "
            "val support read 0."
        ),
        table_html(per_action_table(runs, best_metric, best_mode)),
        figure(fig_per_action(runs)),
        f"<h2>Best epoch by {html.escape(best_metric)} ({best_mode})</h2>",
        table_html(best_table(runs, best_metric, best_mode)),
        f"<h2>Metrics every {interval} epochs</h2>",
        table_html(checkpoint_table(runs, interval)),
        "<h2>Every epoch</h2>",
    ]
    for run in runs:
        parts.append(
            f"<details><summary>{html.escape(run.label)}: {len(run.curves)} epochs "
            "(* = exported epoch)</summary>" + table_html(epoch_table(run)) + "</details>"
        )
    parts += ["<h2>Confusion</h2>", figure(fig_confusion(runs)) or _note("No confusion matrix at these revisions.")]
    parts += _level0_section(runs, figure)
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def evaluation_section(eval_dir: Path) -> str | None:
    """The closed-loop evaluation section, when the evaluate stage has run and its report module is there."""
    if not (eval_dir / "metrics.json").is_file():
        return None
    try:
        from ..eval_media import report_section
    except ImportError:
        return None
    return report_section(eval_dir)


def write_report(
    revs: list[str],
    out: Path | str,
    root: Path | str = ".",
    interval: int = 5,
    best: str = "val/loss:min",
    labels: list[str] | None = None,
    eval_dir: Path | str | None = None,
) -> Path:
    """The report of `revs` (default: the workspace) to `out`; `labels` name the runs (default: the revs)."""
    revs = revs or [WORKSPACE]
    labels = labels or revs
    metric, _, mode = best.partition(":")
    runs = [load_run(rev, root, label=label) for rev, label in zip(revs, labels, strict=True)]
    evaluation = evaluation_section(Path(root) / eval_dir) if eval_dir is not None else None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(runs, interval, metric, mode or "min", evaluation), encoding="utf-8")
    return out

"""The original study's analysis of BC runs over any set of DVC experiments or revisions, and offline `dvc plots`.

    tmpretrain report [REV ...] [-o reports/compare.html] [--interval 5] [--best val/loss:min]
    tmpretrain plots [REV ...] [-o reports/plots] [--format html|svg|png]

REV is `workspace` (the default), an experiment name (`dvc exp show`), a branch, a tag or a commit. Everything is
read through DVC at that revision (runs.py): params.yaml, reports/bc/metrics.json (the numbers `dvc exp show`
shows), the per-epoch curves under reports/bc/plots/metrics, the confusion matrix, the Level 0 metrics and curves
under reports/vis; baselines are computed from the labels of that revision's frame store (data/cache).

The report (page.py) holds: the headline table of the exported epoch with baselines beside each accuracy (majority
class; repeat the previous frame's action; the 0 ms label used as the prediction for offset d), the params that
differ, per-offset and per-offset x per-action accuracy, per-action accuracy at the last and best epochs, the
best epoch by a chosen metric, metrics every N epochs, every epoch (collapsible), the confusion matrix, a Level 0
section, the closed-loop evaluation when reports/eval exists, and interactive plotly figures (tables.py,
figures.py) with the exported epoch and the baselines marked. plotly.js is inlined: the file opens offline.

`plots` (dvcplots.py) writes `dvc plots diff` as HTML that draws without a network (.dvc/config points DVC at
a template carrying vega inline), or renders the same plots to SVG/PNG with vl-convert. It is not imported here,
so that `python -m tmpretrain.reports.dvcplots` (which rebuilds that template) runs without a runpy warning.
"""

from .page import render_html, write_report
from .runs import WORKSPACE, ReportError, Run, compute_baselines, load_run, load_runs
from .tables import (
    best_epoch,
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

__all__ = [
    "WORKSPACE",
    "ReportError",
    "Run",
    "best_epoch",
    "best_table",
    "checkpoint_table",
    "compute_baselines",
    "epoch_table",
    "headline_table",
    "level0_table",
    "load_run",
    "load_runs",
    "offset_action_table",
    "params_table",
    "per_action_table",
    "per_offset_table",
    "render_html",
    "write_report",
]

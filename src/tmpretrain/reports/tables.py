"""The report's tables: each a DataFrame built from loaded Runs (no I/O here)."""

from __future__ import annotations

import json
import math

import pandas as pd

from ..actions import ACTION_NAMES
from ..metrics import offset_label
from ..params import flatten
from .runs import ReportError, Run

# Per-epoch columns of the full table, in order; per-offset accuracies follow them.
EPOCH_COLUMNS = ["train/loss", "val/loss", "train/acc", "val/acc", "val/main_actions_acc"]


def metric(d: dict, dotted: str):
    """metrics.json is nested by `/`: val/acc_offset/0ms -> d["val"]["acc_offset"]["0ms"]; NaN when absent."""
    cur = d
    for part in dotted.split("/"):
        if not isinstance(cur, dict) or part not in cur:
            return math.nan
        cur = cur[part]
    return cur


def best_epoch(curves: pd.DataFrame, metric_name: str = "val/loss", mode: str = "min") -> int:
    if metric_name not in curves:
        raise ReportError(f"metric {metric_name!r} is not among the curves ({', '.join(sorted(curves)[:8])}, ...)")
    series = curves[metric_name].dropna()
    return int(series.idxmin() if mode == "min" else series.idxmax())


def _at(run: Run, column: str, epoch: int | None):
    return run.curves.get(column, pd.Series(dtype=float)).get(epoch, math.nan) if epoch is not None else math.nan


def headline_table(runs: list[Run]) -> pd.DataFrame:
    """The numbers `dvc exp show` shows (reports/bc/metrics.json), with baselines beside the accuracies."""
    rows = []
    for run in runs:
        m = run.metrics
        best = m.get("best") or {}
        base = run.baselines.get(offset_label(run.export_offset), {})
        row = {
            "experiment": run.label,
            "epochs_run": m.get("epochs_run"),
            "exported epoch": best.get("epoch", math.nan),
            "selected by": f"{best.get('metric', '?')} ({best.get('mode', '?')})" if best else "",
            "val/loss": best.get("val/loss", math.nan),
            "val/acc": best.get("val/acc", math.nan),
            "val/main_actions_acc": best.get("val/main_actions_acc", math.nan),
            "baseline majority": base.get("majority", math.nan),
            "baseline previous action": base.get("previous_action", math.nan),
            "val/loss (last)": metric(m, "val/loss"),
            "val/acc (last)": metric(m, "val/acc"),
            "val/main_actions_acc (last)": metric(m, "val/main_actions_acc"),
        }
        for key in ("test/loss", "test/acc", "test/main_actions_acc"):  # once pretrain_bc scores a test split
            value = best.get(key, metric(m, key))
            if not (isinstance(value, float) and math.isnan(value)):
                row[key] = value
        rows.append(row)
    return pd.DataFrame(rows).set_index("experiment")


def epoch_table(run: Run) -> pd.DataFrame:
    """Every epoch of one run: losses, accuracies, per-offset accuracies; `exported` marks the exported epoch."""
    columns = [c for c in EPOCH_COLUMNS if c in run.curves]
    columns += [f"val/acc_offset/{offset_label(d)}" for d in run.offsets if len(run.offsets) > 1]
    df = run.curves.reindex(columns=columns)
    df.insert(0, "exported", ["*" if e == run.exported_epoch else "" for e in df.index])
    return df


def checkpoint_table(runs: list[Run], interval: int = 5, metrics: list[str] | None = None) -> pd.DataFrame:
    """Metrics at epochs 0, N, 2N, ... and each run's last epoch (the original study's `--interval`)."""
    metrics = metrics or EPOCH_COLUMNS
    rows = []
    for run in runs:
        last = int(run.curves.index.max())
        for e in sorted(set(range(0, last + 1, max(1, interval))) | {last}):
            rows.append({"experiment": run.label, "epoch": e, **{k: _at(run, k, e) for k in metrics}})
    return pd.DataFrame(rows).set_index(["experiment", "epoch"])


def best_table(runs: list[Run], metric_name: str = "val/loss", mode: str = "min") -> pd.DataFrame:
    rows = []
    for run in runs:
        e = best_epoch(run.curves, metric_name, mode)
        rows.append(
            {
                "experiment": run.label,
                f"best epoch by {metric_name} ({mode})": e,
                **{k: _at(run, k, e) for k in ("val/loss", "val/acc", "val/main_actions_acc")},
                "epochs run": len(run.curves),
            }
        )
    return pd.DataFrame(rows).set_index("experiment")


def per_action_table(runs: list[Run], metric_name: str = "val/loss", mode: str = "min") -> pd.DataFrame:
    """Val accuracy of the exported head per action name, at the last and the best epoch, with val support."""
    out = {}
    for run in runs:
        last, best = int(run.curves.index.max()), best_epoch(run.curves, metric_name, mode)
        for tag, e in ((f"last ({last})", last), (f"best ({best})", best)):
            out[(run.label, tag)] = [_at(run, f"val/acc_action/{a}", e) for a in ACTION_NAMES]
        out[(run.label, "val support")] = [metric(run.metrics, f"val/support/{a}") for a in ACTION_NAMES]
    df = pd.DataFrame(out, index=list(ACTION_NAMES))
    df.index.name = "action"
    df.columns = pd.MultiIndex.from_tuples(df.columns)
    return df


def offset_action_table(run: Run) -> pd.DataFrame:
    """Val accuracy per offset head (rows) and action (columns, with their val support n at the exported offset)
    at the exported epoch. Actions without val support are left out: their accuracy reads 0 by convention."""
    epoch = run.exported_epoch if run.exported_epoch is not None else int(run.curves.index.max())
    support = {a: metric(run.metrics, f"val/support/{a}") for a in ACTION_NAMES}
    columns = {}
    for a in ACTION_NAMES:
        n = support[a]
        if isinstance(n, int | float) and not math.isnan(n) and n == 0:
            continue
        label = a if isinstance(n, float) and math.isnan(n) else f"{a} (n={int(n)})"
        columns[label] = [_at(run, f"val/offset/{offset_label(d)}/acc_action/{a}", epoch) for d in run.offsets]
    df = pd.DataFrame(columns, index=[offset_label(d) for d in run.offsets])
    df.index.name = f"offset \\ action (epoch {epoch})"
    return df


def per_offset_table(runs: list[Run], metric_name: str = "val/loss", mode: str = "min") -> pd.DataFrame:
    rows = []
    for run in runs:
        last, best = int(run.curves.index.max()), best_epoch(run.curves, metric_name, mode)
        for d in run.offsets:
            lab = offset_label(d)
            base = run.baselines.get(lab, {})
            rows.append(
                {
                    "experiment": run.label,
                    "offset": lab,
                    "val acc (last)": _at(run, f"val/acc_offset/{lab}", last),
                    "val acc (best)": _at(run, f"val/acc_offset/{lab}", best),
                    "baseline majority": base.get("majority", math.nan),
                    "baseline previous action": base.get("previous_action", math.nan),
                    "baseline 0ms label": base.get("offset0_label", math.nan),
                }
            )
    return pd.DataFrame(rows).set_index(["experiment", "offset"])


def level0_table(runs: list[Run]) -> pd.DataFrame:
    """Level 0 (pretrain_vis) per run: task, normalisation, exported epoch and its losses."""
    rows = []
    for run in runs:
        vis = run.params.get("vis") or {}
        best = run.vis_metrics.get("best") or {}
        row = {
            "experiment": run.label,
            "task": vis.get("task"),
            "image_normalization": vis.get("image_normalization"),
            "epochs_run": run.vis_metrics.get("epochs_run"),
            "exported epoch": best.get("epoch", math.nan),
        }
        row.update({k: v for k, v in best.items() if k.startswith(("train/", "val/"))})
        rows.append(row)
    return pd.DataFrame(rows).set_index("experiment")


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

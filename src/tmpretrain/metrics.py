"""Classification metrics and their names: the training code, the DVC metrics and the reports all use these.

Metric names (exactly):
  {split}/loss, {split}/acc (export-offset head), {split}/acc_offset/<offset label>   (split: train, val)
  val/acc_action/<action name>, val/main_actions_acc, val/balanced_acc, val/macro_f1  (export-offset head)
  val/offset/<offset label>/acc_action/<action name>                                  (only with > 1 offset)
  val/support/<action name>                                                           (support_counts)
  test/loss, test/acc, test/acc_offset/<label>, test/main_actions_acc, test/balanced_acc, test/macro_f1
                                       (the exported epoch only, on the test tracks: never seen by selection)
Offset labels: -10 -> "-10ms", 0 -> "0ms", 10 -> "+10ms". Action names come from tmpretrain.actions.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .actions import ACTION_NAMES, MAIN_ACTIONS, N_ACTIONS


def offset_label(d_ms: int) -> str:
    """-10 -> "-10ms", 0 -> "0ms", 10 -> "+10ms"."""
    d_ms = int(d_ms)
    return "0ms" if d_ms == 0 else f"{d_ms:+d}ms"


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, n: int = N_ACTIONS) -> torch.Tensor:
    """(n, n) int64 counts, rows = true label, columns = prediction; entries with label < 0 are ignored."""
    preds, labels = torch.as_tensor(preds).reshape(-1).long(), torch.as_tensor(labels).reshape(-1).long()
    if preds.shape != labels.shape:
        raise ValueError(f"preds and labels differ in size: {tuple(preds.shape)} vs {tuple(labels.shape)}")
    keep = labels >= 0
    preds, labels = preds[keep], labels.to(preds.device)[keep]
    if labels.numel() and (int(labels.max()) >= n or int(preds.min()) < 0 or int(preds.max()) >= n):
        raise ValueError(f"labels and predictions must lie in [0, {n})")
    return torch.bincount(labels * n + preds, minlength=n * n).reshape(n, n)


def classification_summary(cm: torch.Tensor) -> dict:
    """Summary of a confusion matrix (rows true, columns predicted).

    Returns acc, balanced_acc (mean recall over classes with support > 0), macro_f1 (mean F1 over classes
    with support > 0), acc_action {name: recall, 0.0 where support is 0}, support {name: count} and
    main_actions_acc: the mean accuracy of the six MAIN_ACTIONS, where a main action without support counts
    as 0 (as the original study did). An empty matrix gives NaN for acc, balanced_acc and macro_f1.
    """
    cm = torch.as_tensor(cm).detach().cpu().to(torch.float64)
    n = cm.shape[0]
    names = ACTION_NAMES if n == N_ACTIONS else tuple(str(i) for i in range(n))
    tp, support, predicted = cm.diag(), cm.sum(dim=1), cm.sum(dim=0)
    total = float(cm.sum())
    has = support > 0
    recall = torch.where(has, tp / support.clamp(min=1), torch.zeros_like(tp))
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-300), torch.zeros_like(tp))
    nan = math.nan
    return {
        "acc": float(tp.sum()) / total if total > 0 else nan,
        "balanced_acc": float(recall[has].mean()) if bool(has.any()) else nan,
        "macro_f1": float(f1[has].mean()) if bool(has.any()) else nan,
        "acc_action": {name: float(recall[i]) for i, name in enumerate(names)},
        "support": {name: int(support[i]) for i, name in enumerate(names)},
        "main_actions_acc": float(np.mean([float(recall[i]) for i in MAIN_ACTIONS])) if n == N_ACTIONS else nan,
    }


def epoch_metrics(
    split: str,
    loss: float,
    cms: list[torch.Tensor],
    offsets_ms: list[int],
    export_offset_ms: int,
) -> dict[str, float]:
    """All metrics of one epoch by their final names (module docstring); cms[i] belongs to offsets_ms[i]."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if len(cms) != len(offsets_ms):
        raise ValueError(f"{len(cms)} confusion matrices for {len(offsets_ms)} offsets {list(offsets_ms)}")
    offsets_ms = [int(d) for d in offsets_ms]
    if export_offset_ms not in offsets_ms:
        raise ValueError(f"export offset {export_offset_ms} ms is not among the offsets {offsets_ms}")
    summaries = [classification_summary(cm) for cm in cms]
    main = summaries[offsets_ms.index(int(export_offset_ms))]
    out = {f"{split}/loss": float(loss), f"{split}/acc": main["acc"]}
    for d, s in zip(offsets_ms, summaries, strict=True):
        out[f"{split}/acc_offset/{offset_label(d)}"] = s["acc"]
    if split in ("val", "test"):  # test: the selected epoch's held-out summary, no per-action curves
        out[f"{split}/main_actions_acc"] = main["main_actions_acc"]
        out[f"{split}/balanced_acc"] = main["balanced_acc"]
        out[f"{split}/macro_f1"] = main["macro_f1"]
    if split == "val":
        for name, acc in main["acc_action"].items():
            out[f"val/acc_action/{name}"] = acc
        if len(offsets_ms) > 1:
            for d, s in zip(offsets_ms, summaries, strict=True):
                for name, acc in s["acc_action"].items():
                    out[f"val/offset/{offset_label(d)}/acc_action/{name}"] = acc
    return out


def support_counts(cm: torch.Tensor) -> dict[str, int]:
    """{"val/support/<name>": number of true labels of that action}."""
    return {f"val/support/{name}": n for name, n in classification_summary(cm)["support"].items()}


# ------------------------------------------------------------------------------------------- baselines


def _np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a).reshape(-1)


def majority_baseline(labels) -> float:
    """Accuracy of always predicting the most frequent label (labels < 0 ignored; NaN if none are left)."""
    labels = _np(labels).astype(np.int64)
    labels = labels[labels >= 0]
    if labels.size == 0:
        return math.nan
    return float(np.bincount(labels).max() / labels.size)


def previous_action_baseline(labels_in_time_order, replay_ids) -> float:
    """Accuracy of predicting each frame's label by the previous frame's label of the same replay.

    Frames are given in time order, each replay as one contiguous run. The first frame of a replay has no
    prediction and is not counted; pairs where either label is masked (< 0) are not counted. NaN if nothing
    is left.
    """
    labels, ids = _np(labels_in_time_order).astype(np.int64), _np(replay_ids)
    if labels.shape != ids.shape:
        raise ValueError(f"labels and replay_ids differ in size: {labels.shape} vs {ids.shape}")
    cur, prev = labels[1:], labels[:-1]
    valid = (ids[1:] == ids[:-1]) & (cur >= 0) & (prev >= 0)
    if not valid.any():
        return math.nan
    return float((cur[valid] == prev[valid]).mean())


def offset0_baseline(labels_at_0, labels_at_d) -> float:
    """Accuracy of predicting the action at offset d by the action at offset 0 (masked entries ignored)."""
    a, b = _np(labels_at_0).astype(np.int64), _np(labels_at_d).astype(np.int64)
    if a.shape != b.shape:
        raise ValueError(f"label arrays differ in size: {a.shape} vs {b.shape}")
    valid = (a >= 0) & (b >= 0)
    if not valid.any():
        return math.nan
    return float((a[valid] == b[valid]).mean())

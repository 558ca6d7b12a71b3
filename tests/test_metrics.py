"""Metrics against hand-computed values, and the exact metric names."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tmpretrain.actions import ACTION_NAMES, MAIN_ACTIONS
from tmpretrain.metrics import (
    classification_summary,
    confusion_matrix,
    epoch_metrics,
    majority_baseline,
    offset0_baseline,
    offset_label,
    previous_action_baseline,
    support_counts,
)


def test_offset_label():
    assert [offset_label(d) for d in (-10, 0, 10, 100, -100)] == ["-10ms", "0ms", "+10ms", "+100ms", "-100ms"]


def test_confusion_matrix_rows_true_cols_pred_and_masking():
    labels = torch.tensor([0, 0, 1, 2, -1, 2, -100])
    preds = torch.tensor([0, 1, 1, 0, 5, 2, 3])
    cm = confusion_matrix(preds, labels, n=12)
    assert cm.dtype == torch.int64 and cm.shape == (12, 12)
    assert int(cm.sum()) == 5  # the two masked entries are gone
    assert cm[0, 0] == 1 and cm[0, 1] == 1 and cm[1, 1] == 1 and cm[2, 0] == 1 and cm[2, 2] == 1
    assert cm[:, 5].sum() == 0 and cm[:, 3].sum() == 0
    small = confusion_matrix(torch.tensor([1, 1]), torch.tensor([0, 1]), n=2)
    assert small.tolist() == [[0, 1], [0, 1]]
    with pytest.raises(ValueError):
        confusion_matrix(torch.tensor([0, 12]), torch.tensor([0, 1]))


def test_classification_summary_hand_computed():
    # Classes present: 0 (support 4), 1 (support 2), 3 (support 1); the others have no support.
    cm = torch.zeros(12, 12, dtype=torch.long)
    cm[0, 0], cm[0, 1] = 3, 1  # class 0: recall 3/4
    cm[1, 1], cm[1, 0] = 1, 1  # class 1: recall 1/2
    cm[3, 0] = 1  # class 3: recall 0
    s = classification_summary(cm)
    assert s["acc"] == pytest.approx(4 / 7)
    assert s["balanced_acc"] == pytest.approx((0.75 + 0.5 + 0.0) / 3)
    # precision: class 0 = 3/5, class 1 = 1/2, class 3 = 0 (never predicted)
    f1_0 = 2 * 0.6 * 0.75 / (0.6 + 0.75)
    f1_1 = 2 * 0.5 * 0.5 / 1.0
    assert s["macro_f1"] == pytest.approx((f1_0 + f1_1 + 0.0) / 3)
    assert s["acc_action"]["accel"] == pytest.approx(0.75)
    assert s["acc_action"]["left+accel"] == pytest.approx(0.5)
    assert s["acc_action"]["coast"] == 0.0 and s["acc_action"]["brake"] == 0.0
    assert s["support"] == {n: {0: 4, 1: 2, 3: 1}.get(i, 0) for i, n in enumerate(ACTION_NAMES)}
    # main actions (0, 1, 2, 3, 10, 11): zero-support ones count as 0
    assert MAIN_ACTIONS == (0, 1, 2, 3, 10, 11)
    assert s["main_actions_acc"] == pytest.approx((0.75 + 0.5 + 0 + 0 + 0 + 0) / 6)


def test_classification_summary_perfect_and_empty():
    labels = torch.arange(12).repeat(3)
    s = classification_summary(confusion_matrix(labels, labels))
    assert s["acc"] == s["balanced_acc"] == s["macro_f1"] == s["main_actions_acc"] == 1.0
    empty = classification_summary(torch.zeros(12, 12, dtype=torch.long))
    assert math.isnan(empty["acc"]) and math.isnan(empty["balanced_acc"]) and math.isnan(empty["macro_f1"])


def _cm(correct: int, wrong: int, cls: int = 0) -> torch.Tensor:
    cm = torch.zeros(12, 12, dtype=torch.long)
    cm[cls, cls], cm[cls, (cls + 1) % 12] = correct, wrong
    return cm


def test_epoch_metrics_names_and_export_offset_selected_by_value():
    offsets = [-10, 0, 10, 100]
    cms = [_cm(1, 3), _cm(3, 1), _cm(2, 2), _cm(0, 4, cls=11)]
    val = epoch_metrics("val", 1.5, cms, offsets, export_offset_ms=0)
    assert val["val/loss"] == 1.5
    assert val["val/acc"] == pytest.approx(0.75)  # the 0 ms head, not the first one (-10 ms: 0.25)
    assert val["val/acc_offset/-10ms"] == pytest.approx(0.25)
    assert val["val/acc_offset/0ms"] == pytest.approx(0.75)
    assert val["val/acc_offset/+10ms"] == pytest.approx(0.5)
    assert val["val/acc_offset/+100ms"] == 0.0
    assert val["val/acc_action/accel"] == pytest.approx(0.75)
    assert val["val/acc_action/right+accel+brake"] == 0.0
    assert val["val/offset/+100ms/acc_action/right+accel+brake"] == 0.0
    assert val["val/offset/-10ms/acc_action/accel"] == pytest.approx(0.25)
    assert val["val/main_actions_acc"] == pytest.approx(0.75 / 6)
    assert val["val/balanced_acc"] == pytest.approx(0.75)
    assert "val/macro_f1" in val
    expected = {"val/loss", "val/acc", "val/main_actions_acc", "val/balanced_acc", "val/macro_f1"}
    expected |= {f"val/acc_offset/{offset_label(d)}" for d in offsets}
    expected |= {f"val/acc_action/{n}" for n in ACTION_NAMES}
    expected |= {f"val/offset/{offset_label(d)}/acc_action/{n}" for d in offsets for n in ACTION_NAMES}
    assert set(val) == expected
    assert not any("." in k for k in val)
    assert all(isinstance(v, float) for v in val.values())

    train = epoch_metrics("train", 2.0, cms, offsets, export_offset_ms=10)
    assert set(train) == {"train/loss", "train/acc"} | {f"train/acc_offset/{offset_label(d)}" for d in offsets}
    assert train["train/acc"] == pytest.approx(0.5)


def test_epoch_metrics_single_offset_and_errors():
    val = epoch_metrics("val", 0.5, [_cm(3, 1)], [0], 0)
    assert not any(k.startswith("val/offset/") for k in val)
    assert val["val/acc_offset/0ms"] == val["val/acc"] == pytest.approx(0.75)
    with pytest.raises(ValueError):
        epoch_metrics("val", 0.5, [_cm(3, 1)], [0], 10)
    with pytest.raises(ValueError):
        epoch_metrics("holdout", 0.5, [_cm(3, 1)], [0], 0)
    test = epoch_metrics("test", 0.5, [_cm(3, 1)], [0], 0)  # the exported epoch's summary on the test tracks
    assert test["test/acc"] == val["val/acc"] and test["test/main_actions_acc"] == val["val/main_actions_acc"]
    assert not any("acc_action" in k for k in test)
    with pytest.raises(ValueError):
        epoch_metrics("val", 0.5, [_cm(3, 1)], [0, 10], 0)


def test_support_counts():
    sc = support_counts(_cm(3, 1, cls=11))
    assert sc["val/support/right+accel+brake"] == 4 and sc["val/support/accel"] == 0
    assert set(sc) == {f"val/support/{n}" for n in ACTION_NAMES}


def test_baselines():
    assert majority_baseline(np.array([0, 0, 1, 2, -1, -1])) == pytest.approx(2 / 4)
    assert majority_baseline(torch.tensor([3, 3, 3])) == 1.0
    assert math.isnan(majority_baseline([-1, -1]))

    labels = [0, 0, 1, 1, 5, 5, -1, 5, 2]
    replays = [7, 7, 7, 7, 8, 8, 8, 8, 9]
    # pairs within a replay: (0,0) ok, (0,1) wrong, (1,1) ok | (5,5) ok, (5,-1) (-1,5) skipped | 9: one frame
    assert previous_action_baseline(labels, replays) == pytest.approx(3 / 4)
    assert math.isnan(previous_action_baseline([1], [0]))

    at0 = np.array([0, 1, 2, 3, -1, 4])
    atd = np.array([0, 1, 3, -1, 2, 4])
    assert offset0_baseline(at0, atd) == pytest.approx(3 / 4)

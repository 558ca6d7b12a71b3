"""Level 0 and Level 1 runs on a tiny real store: every knob does what it says, exports are the selected epoch's
weights of the head named by value, metric names and per-epoch rows are as documented, reruns are identical."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import data_params, make_tree
from tmpretrain.actions import ACTION_NAMES
from tmpretrain.errors import ParamsError
from tmpretrain.export import load_export
from tmpretrain.frame_store import build_frame_store
from tmpretrain.models import encoder_output_dim
from tmpretrain.params import parse_params
from tmpretrain.pretrain import run_bc, run_vis
from tmpretrain.trainer import inverse_frequency_weights

FAST = {"epochs": 2, "batch_size": 64, "trainer": {"accelerator": "cpu"}}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    tree = make_tree(root / "replays", n_tracks=3, replays_per_track=2, n_frames=30, size=40)
    build_frame_store(data_params(root, tree, image_height=36, image_width=36, include_floats=True), progress=False)
    return root / "cache"


def bc_params(**overrides):
    values = {**FAST, "encoder_init": "none", **overrides}
    return parse_params({"bc": values}).bc


def bc(cache, tmp_path, name="run", **overrides):
    out, live = tmp_path / name / "models", tmp_path / name / "reports"
    result = run_bc(bc_params(**overrides), cache, out, live, tmp_path / "vis_models")
    return result, out, live


def test_metric_names_and_one_row_per_epoch(cache, tmp_path):
    _, out, live = bc(cache, tmp_path, epochs=3)
    metrics = json.loads((live / "metrics.json").read_text())
    flat = {}

    def walk(prefix, node):
        for k, v in node.items():
            walk(f"{prefix}{k}/", v) if isinstance(v, dict) else flat.__setitem__(f"{prefix}{k}", v)

    walk("", metrics)
    for name in [
        "train/loss",
        "val/loss",
        "train/acc",
        "val/acc",
        "val/main_actions_acc",
        "val/balanced_acc",
        "val/macro_f1",
        "train/lr",
        "val/acc_offset/-10ms",
        "val/acc_offset/0ms",
        "val/acc_offset/+10ms",
        "val/acc_offset/+100ms",
        "best/epoch",
        "best/value",
    ]:
        assert name in flat, name
    for action in ACTION_NAMES:
        assert f"val/acc_action/{action}" in flat and f"val/support/{action}" in flat
        assert f"val/offset/+100ms/acc_action/{action}" in flat
    rows = (live / "plots/metrics/val/acc_action/left+accel.tsv").read_text().splitlines()
    assert rows[0].split("\t")[0] == "step" and [r.split("\t")[0] for r in rows[1:]] == ["0", "1", "2"]
    assert (live / "plots/sklearn/confusion_matrix.json").is_file()


def test_same_params_give_identical_metrics_and_weights(cache, tmp_path):
    _, out_a, live_a = bc(cache, tmp_path, "a")
    _, out_b, live_b = bc(cache, tmp_path, "b")
    assert (live_a / "metrics.json").read_text() == (live_b / "metrics.json").read_text()
    for name in ("encoder.pt", "actions_head.pt"):
        assert (out_a / name).read_bytes() == (out_b / name).read_bytes()
    _, out_c, _ = bc(cache, tmp_path, "c", seed=1)
    assert (out_a / "encoder.pt").read_bytes() != (out_c / "encoder.pt").read_bytes()


def test_export_is_the_selected_epoch_not_the_last(cache, tmp_path):
    # Selecting the highest train loss picks epoch 0 of 3; seeded training makes a 1-epoch run's final weights
    # exactly the 3-epoch run's epoch-0 weights, so the two exports must be equal.
    select_first = {"metric": "train/loss", "mode": "max"}
    result, out, _ = bc(cache, tmp_path, "three", epochs=3, selection=select_first)
    assert result["selected"].epoch == 0 and len(result["history"]) == 3
    _, out_one, _ = bc(cache, tmp_path, "one", epochs=1, selection=select_first)
    assert (out / "encoder.pt").read_bytes() == (out_one / "encoder.pt").read_bytes()
    # ... and not what three epochs end with (the default rule's choice here, later than epoch 0)
    last, out_last, _ = bc(cache, tmp_path, "last", epochs=3)
    assert last["selected"].epoch > 0
    assert (out / "encoder.pt").read_bytes() != (out_last / "encoder.pt").read_bytes()
    meta = json.loads((out / "pretrain_meta.json").read_text())
    assert meta["selection"] == {
        "metric": "train/loss",
        "mode": "max",
        "epoch": 0,
        "value": result["history"][0]["train/loss"],
        "epochs_run": 3,
    }


def test_actions_head_is_the_head_of_the_named_offset(cache, tmp_path):
    result, out, _ = bc(cache, tmp_path, time_offsets_ms=[-10, 0, 10], offset_weights=[1, 1, 1], export_offset_ms=10)
    _, states = load_export(out)
    head = states["actions_head.pt"]
    state = result["selected"].state_dict
    assert torch.equal(head["0.weight"], state["heads.2.0.weight"])
    assert not torch.equal(head["0.weight"], state["heads.0.0.weight"])
    meta = json.loads((out / "pretrain_meta.json").read_text())
    assert meta["exported_offset_ms"] == 10 and meta["exported_head_index"] == 2


def test_n_stack_reaches_the_model(cache, tmp_path):
    result, out, _ = bc(cache, tmp_path, n_stack=3, epochs=1)
    state = result["selected"].state_dict
    f = encoder_output_dim(36, 36)
    assert state["stack_fusion.weight"].shape == (3, f)
    assert json.loads((out / "pretrain_meta.json").read_text())["n_stack"] == 3


def test_offsets_change_heads_and_labels(cache, tmp_path):
    one, _, live_one = bc(cache, tmp_path, "one", time_offsets_ms=[0], offset_weights=[1], epochs=1)
    four, _, _ = bc(cache, tmp_path, "four", epochs=1)
    assert sum(k.startswith("heads.") for k in one["selected"].state_dict) == 4  # 2 Linear layers x (w, b)
    assert sum(k.startswith("heads.") for k in four["selected"].state_dict) == 16
    assert four["timing"]["offsets"]["100"]["differs_from_0ms"] > four["timing"]["offsets"]["10"]["differs_from_0ms"]
    assert not (live_one / "plots/metrics/val/acc_offset/+100ms.tsv").exists()


def test_next_tick_shifts_the_labels(cache, tmp_path):
    cur, _, _ = bc(cache, tmp_path, "cur", time_offsets_ms=[0], offset_weights=[1], epochs=1)
    nxt, _, _ = bc(cache, tmp_path, "nxt", time_offsets_ms=[0], offset_weights=[1], epochs=1, target="next_tick")
    assert cur["timing"]["offsets"]["0"]["differs_from_0ms"] == 0.0
    assert nxt["timing"]["offsets"]["0"]["differs_from_0ms"] > 0.0


def test_linear_heads_export_no_actions_head_but_what_the_policy_needs(cache, tmp_path):
    """No agent A_head from Linear heads; the exported offset's Linear head (and, with n_stack > 1, the stack
    fusion) are written so that closed-loop evaluation can rebuild the policy from the export alone."""
    result, out, _ = bc(cache, tmp_path, use_actions_head=False, n_stack=2, epochs=1)
    assert not (out / "actions_head.pt").exists()
    meta, states = load_export(out)
    assert meta["head_layout"].startswith("linear") and meta["n_stack"] == 2
    assert set(states) == {"encoder.pt", "linear_head.pt", "stack_fusion.pt"}
    selected = result["selected"].state_dict
    head = 1  # offsets [-10, 0, 10, 100], exported offset 0
    assert torch.equal(states["linear_head.pt"]["weight"], selected[f"heads.{head}.weight"])
    assert torch.equal(states["stack_fusion.pt"]["weight"], selected["stack_fusion.weight"])


def test_floats_reach_the_model_and_export(cache, tmp_path):
    result, out, _ = bc(cache, tmp_path, use_floats=True, epochs=1)
    assert "float_feature_extractor.0.weight" in result["selected"].state_dict
    extractor = torch.load(out / "float_feature_extractor.pt", weights_only=True)
    assert extractor["0.weight"].shape == (256, 184)


def test_dropout_and_weight_decay_change_training(cache, tmp_path):
    base, _, _ = bc(cache, tmp_path, "base", dropout=0.0, action_head_dropout=0.0, weight_decay=0.0, epochs=1)
    drop, _, _ = bc(cache, tmp_path, "drop", dropout=0.5, action_head_dropout=0.0, weight_decay=0.0, epochs=1)
    decay, _, _ = bc(cache, tmp_path, "decay", dropout=0.0, action_head_dropout=0.0, weight_decay=0.5, epochs=1)
    losses = {r["history"][0]["train/loss"] for r in (base, drop, decay)}
    assert len(losses) == 3


def test_class_weighting():
    labels = np.array([[0], [0], [0], [1], [-1]])
    w = inverse_frequency_weights(labels)
    assert w[0] == pytest.approx(4 / (2 * 3)) and w[1] == pytest.approx(4 / 2) and w[2] == 0


def test_early_stopping_stops(cache, tmp_path):
    early = {"enabled": True, "monitor": "val/loss", "mode": "min", "patience": 1, "min_delta": 10.0}
    result, _, _ = bc(cache, tmp_path, epochs=6, early_stopping=early)
    assert len(result["history"]) == 2  # epoch 0 sets the reference; epoch 1 cannot improve by 10


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"time_offsets_ms": [0, 10], "offset_weights": [1.0]}, "bc.offset_weights"),
        ({"export_offset_ms": 50}, "bc.export_offset_ms"),
        ({"dense_hidden_dimension": 512}, "bc.dense_hidden_dimension"),
        ({"encoder_init": "vis"}, "bc.encoder_init"),
        ({"target": "next_next_tick"}, "bc.target"),
    ],
)
def test_params_that_cannot_work_fail_before_training(cache, tmp_path, overrides, key):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        bc(cache, tmp_path, **overrides)
    assert not (tmp_path / "run" / "reports").exists()


def test_image_too_small_for_the_encoder(tmp_path):
    tree = make_tree(tmp_path / "replays", n_tracks=2, replays_per_track=1, size=24)
    build_frame_store(data_params(tmp_path, tree, image_height=24, image_width=24, val_fraction=0.5), progress=False)
    with pytest.raises(ParamsError, match="too small"):
        run_bc(bc_params(), tmp_path / "cache", tmp_path / "m", tmp_path / "r")


@pytest.mark.parametrize("task", ["autoencoder", "vae", "simclr"])
def test_level0_tasks_train_and_export_an_agent_encoder(cache, tmp_path, task):
    params = parse_params({"vis": {**FAST, "task": task}}).vis
    result = run_vis(params, cache, tmp_path / "vis", tmp_path / "live")
    meta, states = load_export(tmp_path / "vis")
    assert meta["task"] == task and set(states["encoder.pt"]) == {
        f"{i}.{p}" for i in (0, 2, 4, 6) for p in ("weight", "bias")
    }
    assert np.isfinite(result["history"][-1]["val/loss"])
    if task == "simclr":
        assert "val/acc" in result["history"][-1]
    # val frames (top row) above the selected epoch's reconstructions, 2x; simclr has no decoder
    png = tmp_path / "live" / "samples" / "reconstructions.png"
    assert (tmp_path / "live" / "samples").is_dir() and png.exists() == (task != "simclr")
    if png.exists():
        from PIL import Image

        grid = np.asarray(Image.open(png))
        assert grid.shape == (2 * 36 * 2, 8 * 36 * 2)
        top, bottom = grid[: 36 * 2].astype(float), grid[36 * 2 :].astype(float)
        assert top.std() > 0 and np.abs(top - bottom).mean() < 100  # a picture of the frames, not noise


def test_bc_starts_from_the_level0_encoder(cache, tmp_path):
    params = parse_params({"vis": FAST}).vis
    run_vis(params, cache, tmp_path / "vis_models", tmp_path / "live")
    result, out, _ = bc(cache, tmp_path, encoder_init="vis", epochs=1, lr=1e-12)
    vis_encoder = torch.load(tmp_path / "vis_models" / "encoder.pt", weights_only=True)
    bc_encoder = torch.load(out / "encoder.pt", weights_only=True)
    assert all(torch.allclose(vis_encoder[k], bc_encoder[k], atol=1e-6) for k in vis_encoder)


def test_test_split_is_scored_once_with_the_exported_weights(tmp_path):
    """The test tracks never reach training, selection or early stopping: they are scored once, with the exported
    epoch's weights, and nested beside train/val in metrics.json. Scoring the val split the same way gives back the
    selected epoch's val metrics exactly, so test and val numbers are the same measurement on other tracks."""
    from tmpretrain.datamodule import FrameDataModule
    from tmpretrain.frame_store import FrameStore
    from tmpretrain.pretrain import score_split
    from tmpretrain.trainer import BCModule
    from tmpretrain.windows import build_samples

    tree = make_tree(tmp_path / "replays", n_tracks=4, replays_per_track=1, n_frames=30, size=40)
    build_frame_store(
        data_params(tmp_path, tree, image_height=36, image_width=36, val_fraction=0.25, test_fraction=0.25),
        progress=False,
    )
    store = FrameStore.open(tmp_path / "cache")
    assert len(store.meta["split"]["test_tracks"]) == 1
    params = bc_params(epochs=3)
    result, out, live = bc(tmp_path / "cache", tmp_path, epochs=3)
    metrics = json.loads((live / "metrics.json").read_text())
    test = metrics["test"]
    assert set(test) >= {"loss", "acc", "acc_offset", "main_actions_acc", "balanced_acc", "macro_f1"}
    assert np.isfinite(test["loss"]) and 0.0 <= test["acc"] <= 1.0

    module = BCModule(params=params, image_hw=store.image_hw)
    module.model.load_state_dict(result["selected"].state_dict)
    offsets = params.time_offsets_ms
    val = build_samples(store, "val", params.n_stack, offsets, params.target)
    data = FrameDataModule(store, val, val, params.batch_size, params.seed)
    again, _ = score_split(module, data, val)
    assert again["test/acc"] == metrics["best"]["val/acc"]
    assert again["test/loss"] == pytest.approx(metrics["best"]["val/loss"], rel=1e-6)
    test_again, _ = score_split(module, data, build_samples(store, "test", 1, offsets, params.target))
    assert test_again["test/acc"] == test["acc"]


def test_test_replay_counts_sum_back_to_the_reported_test_metrics(tmp_path):
    """reports/bc/test_replays.json: per test replay, the counts behind every test/* accuracy; summed over the
    replays they give the reported numbers back exactly (the loss to float32 summation)."""
    from tmpretrain.metrics import classification_summary, offset_label

    tree = make_tree(tmp_path / "replays", n_tracks=4, replays_per_track=2, n_frames=30, size=40)
    build_frame_store(
        data_params(tmp_path, tree, image_height=36, image_width=36, val_fraction=0.25, test_fraction=0.25),
        progress=False,
    )
    _, _, live = bc(tmp_path / "cache", tmp_path, epochs=2)
    test = json.loads((live / "metrics.json").read_text())["test"]
    report = json.loads((live / "test_replays.json").read_text())
    replays = report["replays"]
    assert len(replays) == 2 and all(r["replay"].startswith(r["track"] + "/") for r in replays)
    head = report["offsets_ms"].index(report["export_offset_ms"])
    frames = sum(r["frames"][head] for r in replays)
    correct = sum(r["correct"][head] for r in replays)
    assert frames > 0 and correct / frames == test["acc"]
    for j, d in enumerate(report["offsets_ms"]):
        n = sum(r["frames"][j] for r in replays)
        assert sum(r["correct"][j] for r in replays) / n == test["acc_offset"][offset_label(d)]
    cm = torch.tensor([r["confusion"] for r in replays]).sum(0)
    assert int(cm.sum()) == frames and int(cm.diag().sum()) == correct
    summary = classification_summary(cm)
    for key in ("acc", "main_actions_acc", "balanced_acc", "macro_f1"):
        assert summary[key] == test[key], key
    w = torch.tensor(report["offset_weights"], dtype=torch.float64)
    ce = torch.tensor([r["ce_sum"] for r in replays], dtype=torch.float64).sum(0)
    weight = torch.tensor([r["weight_sum"] for r in replays], dtype=torch.float64).sum(0)
    assert float((w * ce / weight).sum() / w.sum()) == pytest.approx(test["loss"], rel=1e-6)


def test_no_test_split_no_test_metrics(cache, tmp_path):
    _, _, live = bc(cache, tmp_path, epochs=1)
    assert "test" not in json.loads((live / "metrics.json").read_text())

"""Windows and labels: index arrays into the store, timeline labels at offsets, masks (never clamps), fallback."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import data_params, make_replay
from tmpretrain.errors import DataError
from tmpretrain.frame_store import FrameStore, build_frame_store
from tmpretrain.params import parse_params
from tmpretrain.pretrain import check_labels_exist, run_bc
from tmpretrain.windows import MASKED, build_samples, label_timing_report, nearest_entry_labels, timeline_labels


@pytest.fixture
def store_and_timelines(tmp_path):
    root = tmp_path / "replays"
    timelines = {}
    for t in range(2):
        timelines[f"T{t}"] = make_replay(root / f"T{t}" / "r.replay", n_frames=10, fps=10, seed=t)
    make_replay(root / "T2" / "legacy.replay", n_frames=10, fps=10, seed=9, legacy=True)
    build_frame_store(data_params(tmp_path, root, val_fraction=0.34), progress=False)
    return FrameStore.open(tmp_path / "cache"), timelines


def _train_samples(store, **kw):
    return build_samples(store, "train", kw.pop("n_stack", 1), kw.pop("offsets", [0]), **kw)


def test_labels_are_the_timeline_action_at_T_plus_d(store_and_timelines):
    store, timelines = store_and_timelines
    offsets = [-10, 0, 10, 100]
    s = build_samples(store, "train", 1, offsets) if store.timeline(0) is not None else None
    for i in range(len(s)):
        rid = s.replay[i]
        timeline = store.timeline(rid)
        if timeline is None:
            continue
        track = store.meta["replays"][rid]["track_id"]
        assert np.array_equal(timeline, timelines[track])
        for j, d in enumerate(offsets):
            k = (s.time_ms[i] + d) // 10
            expected = timeline[k] if 0 <= k < len(timeline) else MASKED
            assert s.labels[i, j] == expected


def test_positions_past_either_end_are_masked_not_clamped():
    timeline = np.array([3, 1, 1, 2], dtype=np.int8)  # steps at 0, 10, 20, 30 ms
    times = np.array([0, 30])
    assert timeline_labels(timeline, times, -10, 10).tolist() == [MASKED, 1]
    assert timeline_labels(timeline, times, 10, 10).tolist() == [1, MASKED]
    assert timeline_labels(timeline, times, 0, 10).tolist() == [3, 2]
    assert timeline_labels(timeline, np.array([4, 5]), 0, 10).tolist() == [3, 1]  # rounds half up


def test_next_tick_is_one_step_later(store_and_timelines):
    store, _ = store_and_timelines
    cur = build_samples(store, "train", 1, [10], "current_tick")
    nxt = build_samples(store, "train", 1, [0], "next_tick")
    assert np.array_equal(cur.labels, nxt.labels) and np.array_equal(cur.windows, nxt.windows)


def test_stack_windows_are_indices_that_share_frames(store_and_timelines):
    store, _ = store_and_timelines
    one = build_samples(store, "train", 1, [0])
    three = build_samples(store, "train", 3, [0])
    assert three.windows.shape == (len(one), 3) and np.array_equal(three.windows[:, -1], one.windows[:, 0])
    assert np.array_equal(three.labels, one.labels)
    # consecutive samples of a replay overlap by two frames: the store is shared, nothing is copied
    same_replay = three.replay[1:] == three.replay[:-1]
    assert np.array_equal(three.windows[1:, :2][same_replay], three.windows[:-1, 1:][same_replay])
    # a replay's first frame repeats where there is no earlier frame
    first = np.flatnonzero(np.r_[True, ~same_replay])
    assert (three.windows[first] == three.windows[first, -1:]).all()
    assert three.windows.nbytes < 100 * len(three)  # index bytes, not pixels


def test_fallback_replay_is_flagged_and_uses_the_nearest_entry(tmp_path):
    root = tmp_path / "replays"
    make_replay(root / "A" / "legacy.replay", n_frames=10, fps=10, legacy=True, seed=4)
    make_replay(root / "A" / "cur.replay", n_frames=10, fps=10, seed=5)
    make_replay(root / "B" / "other.replay", n_frames=10, fps=10, seed=6)
    build_frame_store(data_params(tmp_path, root, val_fraction=0.5), progress=False)
    store = FrameStore.open(tmp_path / "cache")
    split_of_a = "train" if "A" in store.meta["split"]["train_tracks"] else "val"
    s = build_samples(store, split_of_a, 1, [0, 10, 100])
    legacy = s.fallback
    assert legacy.sum() == 10 and (~legacy).sum() == 10
    # at 10 fps a +10 ms label from frames is the 0 ms label: the symptom the report exposes
    assert np.array_equal(s.labels[legacy, 0][:-1], s.labels[legacy, 1][:-1])
    assert s.labels[legacy, 1][-1] == MASKED and s.labels[legacy, 2][-1] == MASKED  # past the last entry
    report = label_timing_report(store, s, [0, 10, 100], "current_tick")
    assert report["n_fallback_samples"] == 10
    assert report["offsets"]["0"]["differs_from_0ms"] == 0.0
    assert store.meta["label_fallback_replays"] == ["A/legacy.replay"]


def test_nearest_entry_labels():
    times = np.array([0, 100, 200])
    actions = np.array([5, 6, 7])
    assert nearest_entry_labels(actions, times, 40).tolist() == [5, 6, MASKED]
    assert nearest_entry_labels(actions, times, 60).tolist() == [6, 7, MASKED]
    assert nearest_entry_labels(actions, times, -10).tolist() == [MASKED, 6, 7]


def test_a_run_without_a_single_label_says_so_naming_the_data(tmp_path):
    # 1 s replays and a +5 s offset: every label is past the end of its timeline (was: an error about
    # trainer.devices from deep inside Lightning).
    root = tmp_path / "replays"
    for t in range(3):
        make_replay(root / f"T{t}" / "r.replay", n_frames=10, fps=10, seed=t)
    build_frame_store(data_params(tmp_path, root, image_height=36, image_width=36), progress=False)
    bc = {"encoder_init": "none", "time_offsets_ms": [5000], "export_offset_ms": 5000, "offset_weights": [1.0]}
    params = parse_params({"bc": {**bc, "epochs": 1, "trainer": {"accelerator": "cpu"}}}).bc
    with pytest.raises(DataError) as refused:
        run_bc(params, tmp_path / "cache", tmp_path / "models", tmp_path / "reports")
    assert str(refused.value) == (
        f"{tmp_path / 'cache'}: none of the 20 train frames has a label at bc.time_offsets_ms [5000]: every label is "
        "masked (at these offsets the frames lie outside their replays' action timelines); check the captures or "
        "choose smaller offsets"
    )
    assert not (tmp_path / "models").exists() and not (tmp_path / "reports").exists()


def test_replays_without_a_label_at_the_offsets_are_named(tmp_path, capsys):
    # Each track: a 6 s replay and a 1 s one; at +2 s every label of the short ones is past their timeline's end.
    root = tmp_path / "replays"
    for t in range(3):
        make_replay(root / f"T{t}" / "long.replay", n_frames=60, fps=10, seed=t)
        make_replay(root / f"T{t}" / "short.replay", n_frames=10, fps=10, seed=10 + t)
    build_frame_store(data_params(tmp_path, root, image_height=36, image_width=36), progress=False)
    store = FrameStore.open(tmp_path / "cache")
    samples = build_samples(store, "train", 1, [2000])
    check_labels_exist(store, "train", samples, [2000])
    train_tracks = store.meta["split"]["train_tracks"]
    assert capsys.readouterr().err == (
        f"warning: {len(train_tracks)} train replays have no label at bc.time_offsets_ms [2000] (every one masked; "
        f"shorter than the offsets?): {[f'{t}/short.replay' for t in train_tracks]!r}\n"
    )

"""Ingest: both manifest shapes, every frame extension, the uint8 store, the track split, content hashing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import data_params, make_replay, make_tree
from tmpretrain.capture import read_replay
from tmpretrain.errors import ParamsError
from tmpretrain.frame_store import FrameStore, build_frame_store, split_tracks


def test_current_and_legacy_manifests_both_ingest(tmp_path):
    root = tmp_path / "replays"
    make_replay(root / "A01" / "cur.replay", seed=1)
    make_replay(root / "A02" / "legacy.replay", seed=2, legacy=True)
    cur, legacy = read_replay(root / "A01" / "cur.replay"), read_replay(root / "A02" / "legacy.replay")
    assert cur.timeline is not None and legacy.timeline is None
    assert (legacy.frame_actions >= 0).all()  # legacy entries still carry action_idx
    report = build_frame_store(data_params(tmp_path, root, val_fraction=0.5), progress=False)
    assert report["label_fallback_replays"] == ["A02/legacy.replay"]
    store = FrameStore.open(tmp_path / "cache")
    assert store.frames.dtype == np.uint8 and store.frames.shape == (24, 16, 16)
    assert isinstance(store.frames, np.memmap)


@pytest.mark.parametrize("ext", [".jpeg", ".jpg", ".png", ".bmp", ".npy"])
def test_every_frame_extension_decodes_to_the_same_pixels(tmp_path, ext):
    root = tmp_path / "replays"
    make_replay(root / "T0" / "r.replay", ext=ext, size=16, seed=5)
    make_replay(root / "T1" / "r.replay", ext=".png", size=16, seed=5)
    build_frame_store(data_params(tmp_path, root), progress=False)
    store = FrameStore.open(tmp_path / "cache")
    a, b = store.frames[:12].astype(int), store.frames[12:].astype(int)
    if ext in (".jpeg", ".jpg"):  # lossy (and these frames are noise, its worst case): close, not equal
        assert np.abs(a - b).mean() < 2.5 and np.abs(a - b).max() <= 16
    else:
        assert np.array_equal(a, b)


def test_store_holds_each_frame_once_at_the_configured_size(tmp_path, capture_tree):
    build_frame_store(data_params(tmp_path, capture_tree, image_height=12, image_width=20), progress=False)
    store = FrameStore.open(tmp_path / "cache")
    assert store.frames.shape == (3 * 2 * 12, 12, 20)
    frames_bytes = (tmp_path / "cache" / "frames.npy").stat().st_size
    assert frames_bytes - store.frames.size < 256  # only the .npy header on top of N x H x W bytes
    assert len(store.frame_replay) == len(store.frames)
    # frames of a replay are contiguous and time-ordered
    for rid in range(len(store.replay_frame_start)):
        s, c = store.replay_frame_start[rid], store.replay_frame_count[rid]
        assert (store.frame_replay[s : s + c] == rid).all()
        assert (np.diff(store.frame_time_ms[s : s + c]) > 0).all()


def test_resize_is_antialiased(tmp_path):
    root = tmp_path / "replays"
    for t in range(2):
        path = root / f"T{t}" / "r.replay"
        make_replay(path, size=32, ext=".png")
        # overwrite frames with a one-pixel checkerboard: antialiased downscaling averages it to mid-grey
        from tmpretrain.capture import encode_frame

        board = ((np.indices((32, 32)).sum(0) % 2) * 255).astype(np.uint8)
        for f in path.glob("frame_*.png"):
            f.write_bytes(encode_frame(board, ".png"))
    build_frame_store(data_params(tmp_path, root, image_height=8, image_width=8), progress=False)
    frames = FrameStore.open(tmp_path / "cache").frames
    assert abs(float(frames.mean()) - 127.5) < 4 and frames.std() < 4


def test_split_is_by_track_seeded_and_recorded(tmp_path):
    root = make_tree(tmp_path / "replays", n_tracks=5, replays_per_track=2)
    build_frame_store(data_params(tmp_path, root, val_fraction=0.4, test_fraction=0.2, split_seed=3), progress=False)
    store = FrameStore.open(tmp_path / "cache")
    split = store.meta["split"]
    roles = {name: set(split[f"{name}_tracks"]) for name in ("train", "val", "test")}
    assert [len(roles[name]) for name in ("train", "val", "test")] == [2, 2, 1]
    assert set.union(*roles.values()) == {f"track{t}" for t in range(5)}
    assert split["test_fraction"] == 0.2 and split["seed"] == 3
    for row in store.meta["replays"]:
        assert row["track_id"] in roles[row["split"]]
    for name, tracks in roles.items():
        ids = store.replay_ids(name)
        assert {store.meta["replays"][i]["track_id"] for i in ids} == tracks
    assert split_tracks([f"t{i}" for i in range(10)], 0.2, 3) == split_tracks([f"t{i}" for i in range(10)], 0.2, 3)
    assert split_tracks([f"t{i}" for i in range(10)], 0.2, 3) != split_tracks([f"t{i}" for i in range(10)], 0.2, 4)


def test_content_hash_follows_the_bytes_not_the_file_count(tmp_path, capture_tree):
    build_frame_store(data_params(tmp_path, capture_tree), progress=False)
    first = FrameStore.open(tmp_path / "cache").content_hash
    build_frame_store(data_params(tmp_path, capture_tree), progress=False)
    assert FrameStore.open(tmp_path / "cache").content_hash == first
    frame = sorted(capture_tree.rglob("frame_*.jpeg"))[0]
    data = bytearray(frame.read_bytes())
    data[-10] ^= 0xFF  # same file count, same sizes, different content
    frame.write_bytes(bytes(data))
    build_frame_store(data_params(tmp_path, capture_tree), progress=False)
    assert FrameStore.open(tmp_path / "cache").content_hash != first


def test_parallel_ingest_gives_the_same_cache(tmp_path, capture_tree):
    build_frame_store(data_params(tmp_path / "a", capture_tree, workers=1), progress=False)
    build_frame_store(data_params(tmp_path / "b", capture_tree, workers=2), progress=False)
    a, b = FrameStore.open(tmp_path / "a" / "cache"), FrameStore.open(tmp_path / "b" / "cache")
    assert np.array_equal(a.frames, b.frames) and a.meta == b.meta


def test_floats_are_built_from_manifest_meta(tmp_path, capture_tree):
    build_frame_store(data_params(tmp_path, capture_tree, include_floats=True), progress=False)
    store = FrameStore.open(tmp_path / "cache")
    assert store.floats.shape == (len(store.frames), 184)
    # leaves in sorted key order: position (3 values) then speed
    assert np.allclose(store.floats[3, :4], [store.frame_time_ms[3], 0.0, 1.0, store.frame_time_ms[3] % 7])


def test_include_floats_comes_from_the_params_only(tmp_path, capture_tree):
    """data.include_floats is the one switch: build_frame_store takes no argument that could contradict it."""
    import inspect

    assert "include_floats" not in inspect.signature(build_frame_store).parameters
    for on in (False, True):
        build_frame_store(data_params(tmp_path / str(on), capture_tree, include_floats=on), progress=False)
        store = FrameStore.open(tmp_path / str(on) / "cache")
        assert (store.floats is not None) is on and store.meta["preprocessing"]["include_floats"] is on


def test_one_track_is_a_clear_error_naming_val_fraction(tmp_path):
    root = tmp_path / "replays"
    make_replay(root / "only" / "r.replay")
    with pytest.raises(ParamsError, match=r"data.val_fraction: .*at least two tracks; .* has 1 usable \(only\)"):
        build_frame_store(data_params(tmp_path, root), progress=False)
    assert not (tmp_path / "cache").exists() and not (tmp_path / "cache.partial").exists()


def test_split_keeps_one_val_and_one_train_track():
    assert sorted(split_tracks(["a", "b"], 0.9, 0).values()) == ["train", "val"]
    assert sorted(split_tracks(["a", "b", "c"], 0.01, 0).values()) == ["train", "train", "val"]


def test_test_split_is_carved_after_val_and_keeps_the_val_tracks():
    tracks = [f"t{i:02d}" for i in range(12)]
    without = split_tracks(tracks, 0.2, 0)
    with_test = split_tracks(tracks, 0.2, 0, test_fraction=0.2)
    val = {t for t, s in without.items() if s == "val"}
    assert val == {t for t, s in with_test.items() if s == "val"} and len(val) == 2
    test = {t for t, s in with_test.items() if s == "test"}
    assert len(test) == 2 and not test & val
    assert sorted(split_tracks(["a", "b", "c"], 0.01, 0, test_fraction=0.01).values()) == ["test", "train", "val"]


def test_a_test_split_that_leaves_no_train_track_is_refused():
    with pytest.raises(ParamsError, match=r"data.test_fraction: 0.5 of 3 usable tracks is 2 test track\(s\)"):
        split_tracks(["a", "b", "c"], 0.34, 0, test_fraction=0.5)


def test_integral_floats_are_the_integers_they_claim(tmp_path):
    """10.0 is 10 (some JSON writers emit floats): stored exactly as the integer form of the same replay."""
    for variant in ("ints", "floats"):
        root = tmp_path / variant / "replays"
        for track in ("A", "B"):
            make_replay(root / track / "r.replay", seed=7)
        if variant == "floats":
            path = root / "A" / "r.replay" / "manifest.json"
            manifest = json.loads(path.read_text())
            manifest["actions"] = [float(a) for a in manifest["actions"]]
            for entry in manifest["entries"]:
                entry["time_ms"], entry["action_idx"] = float(entry["time_ms"]), float(entry["action_idx"])
            path.write_text(json.dumps(manifest))
            meta_path = root / "A" / "r.replay" / "metadata.json"
            meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "step_ms": 10.0, "width": 24.0}))
        build_frame_store(data_params(tmp_path / variant, root, val_fraction=0.5), progress=False)
    ints, floats = (FrameStore.open(tmp_path / v / "cache") for v in ("ints", "floats"))
    assert floats.meta["n_replays"] == 2
    for name in ("frames", "frame_time_ms", "frame_action", "timelines", "replay_step_ms"):
        assert np.array_equal(getattr(ints, name), getattr(floats, name)), name

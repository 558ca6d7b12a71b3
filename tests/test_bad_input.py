"""The bad-input corpus: each fault is named with its path and skipped (listed in the ingest report), or stops
the stage with one clear line when data.strict is on. Never a traceback, never a partial cache that looks valid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import data_params, make_tree
from tmpretrain.cache import FrameStore, build_cache
from tmpretrain.errors import DataError

BAD = "track1/pos0_bot_1000ms.replay"  # the replay each fault is planted in


def _frame(replay: Path, i: int = 3) -> Path:
    return sorted(p for p in replay.iterdir() if p.name.startswith("frame_"))[i]


def _edit_manifest(replay: Path, edit) -> Path:
    path = replay / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    return path


def truncated_frame(r):
    f = _frame(r)
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    return f


def zero_byte_frame(r):
    f = _frame(r)
    f.write_bytes(b"")
    return f


def wrong_size_frame(r):
    f = _frame(r)
    Image.fromarray(np.zeros((30, 24), np.uint8), mode="L").save(f, format="JPEG")
    return f


def wrong_colour_frame(r):
    f = _frame(r)
    Image.fromarray(np.zeros((24, 24, 3), np.uint8), mode="RGB").save(f, format="JPEG")
    return f


def not_an_image(r):
    f = _frame(r)
    f.write_text("hello")
    return f


def no_manifest(r):
    (r / "manifest.json").unlink()
    return r


def missing_frame_file(r):
    f = _frame(r)
    f.unlink()
    return f


def entries_but_no_frames(r):
    for f in r.glob("frame_*"):
        f.unlink()
    return r / _frame_name_of_first_entry(r)


def _frame_name_of_first_entry(r):
    return json.loads((r / "manifest.json").read_text())["entries"][0]["file"]


def action_out_of_range(r):
    return _edit_manifest(r, lambda m: m["actions"].__setitem__(2, 12))


def entry_action_out_of_range(r):
    return _edit_manifest(r, lambda m: m["entries"][1].__setitem__("action_idx", -1))


def non_monotonic_times(r):
    def swap(m):
        m["entries"][2]["time_ms"], m["entries"][3]["time_ms"] = m["entries"][3]["time_ms"], m["entries"][2]["time_ms"]

    return _edit_manifest(r, swap)


def duplicated_times(r):
    return _edit_manifest(r, lambda m: m["entries"][4].__setitem__("time_ms", m["entries"][3]["time_ms"]))


def json_does_not_parse(r):
    path = r / "manifest.json"
    path.write_text(path.read_text()[:-20])
    return path


def empty_entries(r):
    return _edit_manifest(r, lambda m: m.__setitem__("entries", []))


def bad_step_ms(r):
    path = r / "metadata.json"
    meta = json.loads(path.read_text())
    meta["step_ms"] = 0
    path.write_text(json.dumps(meta))
    return path


def nan_npy_frame(r):
    f = _frame(r)
    npy = f.with_suffix(".npy")
    f.unlink()
    np.save(npy, np.full((24, 24), np.nan, dtype=np.float32))
    _edit_manifest(r, lambda m: m["entries"][3].__setitem__("file", npy.name))
    return npy


def float_npy_frame(r):
    f = _frame(r)
    npy = f.with_suffix(".npy")
    f.unlink()
    np.save(npy, np.full((24, 24), 0.5, dtype=np.float64))
    _edit_manifest(r, lambda m: m["entries"][3].__setitem__("file", npy.name))
    return npy


FAULTS = [
    truncated_frame,
    zero_byte_frame,
    wrong_size_frame,
    wrong_colour_frame,
    not_an_image,
    no_manifest,
    missing_frame_file,
    entries_but_no_frames,
    action_out_of_range,
    entry_action_out_of_range,
    non_monotonic_times,
    duplicated_times,
    json_does_not_parse,
    empty_entries,
    bad_step_ms,
    nan_npy_frame,
    float_npy_frame,
]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.__name__)
def test_fault_is_skipped_with_its_path_or_fails_strict(tmp_path, fault):
    root = make_tree(tmp_path / "replays", n_tracks=3, replays_per_track=2)
    culprit = fault(root / BAD)
    with pytest.raises(DataError) as err:
        build_cache(data_params(tmp_path, root, strict=True), progress=False)
    assert str(culprit) in str(err.value)
    assert not (tmp_path / "cache").exists()  # strict failure leaves no cache behind

    report = build_cache(data_params(tmp_path, root, strict=False), progress=False)
    assert [s["path"] for s in report["skipped"]] == [str(culprit)]
    assert report["n_replays"] == 5
    store = FrameStore.open(tmp_path / "cache")
    assert len(store.frames) == 5 * 12 and BAD not in [r["replay"] for r in store.meta["replays"]]
    assert json.loads((tmp_path / "cache" / "ingest_report.json").read_text())["n_skipped"] == 1


def test_empty_track_directory_is_reported(tmp_path):
    root = make_tree(tmp_path / "replays", n_tracks=2, replays_per_track=1)
    (root / "empty_track").mkdir()
    report = build_cache(data_params(tmp_path, root, val_fraction=0.5), progress=False)
    assert report["skipped"] == [
        {"path": str(root / "empty_track"), "reason": "empty track directory (no replay directories)"}
    ]


def test_symlink_loops_do_not_trap_the_scan(tmp_path):
    root = make_tree(tmp_path / "replays", n_tracks=2, replays_per_track=1)
    os.symlink(root / "track0", root / "track0" / "loop")  # a replay-level link back to its own track
    os.symlink(root / "track1" / "pos0_bot_1000ms.replay", root / "track1" / "pos0_bot_1000ms.replay" / "self")
    report = build_cache(data_params(tmp_path, root, val_fraction=0.5), progress=False)
    assert report["n_replays"] == 2
    assert [s["path"] for s in report["skipped"]] == [str(root / "track0" / "loop")]


def test_missing_tree_names_the_param(tmp_path):
    with pytest.raises(DataError, match="data.replays_dir"):
        build_cache(data_params(tmp_path, tmp_path / "nowhere"), progress=False)


def test_previous_cache_survives_a_failed_ingest(tmp_path):
    root = make_tree(tmp_path / "replays")
    build_cache(data_params(tmp_path, root), progress=False)
    before = (tmp_path / "cache" / "frames.npy").read_bytes()
    truncated_frame(root / BAD)
    with pytest.raises(DataError):
        build_cache(data_params(tmp_path, root, strict=True), progress=False)
    assert (tmp_path / "cache" / "frames.npy").read_bytes() == before


def test_stage_prints_one_line_not_a_traceback(tmp_path):
    root = make_tree(tmp_path / "replays")
    culprit = zero_byte_frame(root / BAD)
    params = {
        "data": {
            "replays_dir": str(root),
            "cache_dir": str(tmp_path / "cache"),
            "strict": True,
            "workers": 1,
            "image_height": 16,
            "image_width": 16,
        }
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run = subprocess.run(
        [sys.executable, "-m", "tmpretrain.stages.ingest"], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert f"error: {culprit}: empty file" in run.stderr
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"strcit": True}}))
    run = subprocess.run(
        [sys.executable, "-m", "tmpretrain.stages.ingest"], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "data.strcit: unknown key; did you mean data.strict?" in run.stderr


def test_ingest_killed_mid_build_leaves_no_cache_that_looks_valid(tmp_path):
    """SIGKILL while frames are being decoded into <cache>.partial: nothing opens as a frame store, the earlier
    cache (if the kill missed the final swap) is intact, and the rerun completes and clears the partial dir."""
    import signal
    import time

    root = make_tree(tmp_path / "replays", n_tracks=3, replays_per_track=4, n_frames=40, size=64)
    params = {"data": {"replays_dir": str(root), "cache_dir": "cache", "workers": 1, "val_fraction": 0.34}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    cache, partial = tmp_path / "cache", tmp_path / "cache.partial"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tmpretrain.stages.ingest"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "ingest finished before it could be killed"
    assert partial.is_dir() and not cache.exists()
    for path in (cache, partial):
        with pytest.raises(DataError, match="no complete replay cache here"):
            FrameStore.open(path)

    run = subprocess.run(
        [sys.executable, "-m", "tmpretrain.stages.ingest"], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert not partial.exists()
    store = FrameStore.open(cache)
    assert len(store.frames) == 12 * 40 and store.meta["complete"]


def test_a_store_without_its_completion_marker_is_refused(tmp_path):
    root = make_tree(tmp_path / "replays")
    build_cache(data_params(tmp_path, root), progress=False)
    (tmp_path / "cache" / "cache_meta.json").unlink()  # e.g. a copy that stopped before the last file
    with pytest.raises(DataError, match="cache_meta.json missing"):
        FrameStore.open(tmp_path / "cache")

"""The bad-input corpus (support/capture_faults.py, shared with the fault table): each hostile replay is skipped and
reported with the path at fault, or stops ingest with one line when data.strict is on; never a traceback, never a
wrong frame or label in the store, never a half-built cache left behind. At data.workers 1 and 2 (the shipped
value), and the whole corpus mixed into valid replays under the spawn start method (Windows has no fork)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import data_params, make_tree
from support.capture_faults import (
    check_case,
    hostile_replays,
    ingest_params,
    stored_replays,
    write_mixed_tree,
    write_valid_tree,
)
from support.setups import ingest_without_privileges_command
from tmpretrain.errors import DataError, ParamsError
from tmpretrain.frame_store import FrameStore, build_frame_store

BAD = "track1/pos0_bot_1000ms.replay"  # a replay of conftest.make_tree


@pytest.fixture(scope="module")
def valid_tree(tmp_path_factory) -> tuple[Path, Path]:
    """The corpus's valid tree and its clean store."""
    base = tmp_path_factory.mktemp("valid")
    template = write_valid_tree(base / "replays")
    build_frame_store(
        ingest_params(template, base / "cache", strict=True, workers=1, include_floats=True), progress=False
    )
    return template, base / "cache"


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("case", hostile_replays(), ids=lambda case: case.id)
def test_hostile_replay_is_skipped_and_reported_or_a_clear_error(tmp_path, valid_tree, case, workers):
    row = check_case(case, tmp_path, *valid_tree, workers)
    assert row["outcome"] in ("skipped and reported", "handled"), row
    assert not row["traceback"] and not row["wrong_result"] and not row["outputs_lost"], row


def test_whole_corpus_mixed_into_valid_replays_under_spawn(tmp_path, valid_tree, spawn_start_method):
    """Every DataError a spawned worker raises comes back through pickle; only the valid frames are stored."""
    clean = stored_replays(valid_tree[1])
    culprits, must_hold = write_mixed_tree(tmp_path / "replays")
    report = build_frame_store(
        ingest_params(tmp_path / "replays", tmp_path / "cache", strict=False, workers=2, include_floats=True),
        progress=False,
    )
    assert sorted(s["path"] for s in report["skipped"]) == sorted(culprits)
    stored = stored_replays(tmp_path / "cache")
    assert stored == {replay: clean[source] for replay, source in must_hold.items()}


def test_capture_root_that_is_a_link_is_fine(tmp_path, capture_tree):
    (tmp_path / "linked").symlink_to(capture_tree, target_is_directory=True)
    report = build_frame_store(data_params(tmp_path, tmp_path / "linked", workers=2), progress=False)
    assert report["n_skipped"] == 0 and report["n_replays"] == 6


def test_the_scan_does_not_follow_links_below_a_replay(tmp_path):
    root = make_tree(tmp_path / "replays", n_tracks=2, replays_per_track=1)
    replay = root / "track1" / "pos0_bot_1000ms.replay"
    (replay / "self").symlink_to(replay, target_is_directory=True)  # a loop inside a replay is never walked
    report = build_frame_store(data_params(tmp_path, root, val_fraction=0.5), progress=False)
    assert report["n_replays"] == 2 and report["skipped"] == []


def test_files_that_are_not_regular_files_are_skipped_and_reported(tmp_path):
    """A FIFO would block a plain read forever; special files in the tree are listed, never opened."""
    root = make_tree(tmp_path / "replays", n_tracks=3, replays_per_track=2)
    manifest = root / "track1/pos0_bot_1000ms.replay/manifest.json"
    manifest.unlink()
    os.mkfifo(manifest)
    metadata = root / "track2/pos1_bot_1001ms.replay/metadata.json"
    metadata.unlink()
    os.mkfifo(metadata)
    os.mkfifo(root / "track0/a-fifo")  # not a replay directory: not part of the layout, ignored like any file
    report = build_frame_store(data_params(tmp_path, root, workers=2), progress=False)
    assert report["n_replays"] == 4
    assert report["skipped"] == [
        {"path": str(manifest), "reason": "not a regular file"},
        {"path": str(metadata), "reason": "not a regular file"},
    ]


def _ingest_without_privileges(base: Path, workers: int = 2):
    # As root (CI runs as root) the child runs without root's read-anything capabilities (support.setups).
    run = subprocess.run(
        ingest_without_privileges_command(base, workers), capture_output=True, text=True, timeout=300, cwd=base
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_directories_and_files_without_read_permission_are_skipped_and_reported(tmp_path):
    base = tmp_path
    root = make_tree(base / "replays", n_tracks=4, replays_per_track=2)
    modes = {
        "track0/pos0_bot_1000ms.replay": 0o000,  # not even its manifest can be looked up
        "track1/pos0_bot_1000ms.replay": 0o300,  # cannot be listed
        "track2/pos0_bot_1000ms.replay/metadata.json": 0o000,
        "track3": 0o000,
    }
    for path, mode in modes.items():
        (root / path).chmod(mode)
    try:
        skipped = _ingest_without_privileges(base)
    finally:
        for path in modes:
            (root / path).chmod(0o700)
    assert {s["path"]: s["reason"] for s in skipped} == {
        str(root / "track0/pos0_bot_1000ms.replay"): "cannot be read (Permission denied)",
        str(root / "track1/pos0_bot_1000ms.replay"): "cannot be listed (Permission denied)",
        str(root / "track2/pos0_bot_1000ms.replay/metadata.json"): "cannot be read (Permission denied)",
        str(root / "track3"): "cannot be listed (Permission denied)",
    }
    root.chmod(0o000)  # the tree itself: one line, no traceback
    try:
        message = _ingest_without_privileges(base, workers=1)
    finally:
        root.chmod(0o700)
    assert re.search(r"no usable replays.*\n(.*\n)*  .*replays: cannot be listed", message), message


def test_missing_tree_names_the_param(tmp_path):
    with pytest.raises(DataError, match="set data.replays_dir to the directory that holds <track_id>/<replay_name>/"):
        build_frame_store(data_params(tmp_path, tmp_path / "nowhere"), progress=False)


def test_no_usable_replays_shows_the_layout_and_each_reason(tmp_path):
    root = make_tree(tmp_path / "replays", n_tracks=2, replays_per_track=1)
    for manifest in root.glob("*/*/manifest.json"):
        manifest.write_text("[]")
    with pytest.raises(DataError) as err:
        build_frame_store(data_params(tmp_path, root), progress=False)
    message = str(err.value)
    assert message.startswith(f"{root}: no usable replays in data.replays_dir (2 skipped). Expected layout:")
    assert "<track_id>/" in message and "manifest.json" in message and "frame_00000_0ms.jpeg" in message
    for manifest in root.glob("*/*/manifest.json"):
        assert f"  {manifest}: manifest has no entries (no frames)" in message.splitlines()
    with pytest.raises(DataError, match="it looks like a track: point data.replays_dir one up"):
        build_frame_store(data_params(tmp_path, root / "track0"), progress=False)


def test_previous_cache_survives_a_failed_ingest(tmp_path):
    root = make_tree(tmp_path / "replays")
    build_frame_store(data_params(tmp_path, root), progress=False)
    before = (tmp_path / "cache" / "frames.npy").read_bytes()
    frame = sorted((root / BAD).glob("frame_*"))[3]
    frame.write_bytes(frame.read_bytes()[:100])
    with pytest.raises(DataError, match="corrupt or truncated image"):
        build_frame_store(data_params(tmp_path, root, strict=True, workers=2), progress=False)
    assert (tmp_path / "cache" / "frames.npy").read_bytes() == before
    assert not (tmp_path / "cache.partial").exists()


def _frames_late(m: dict) -> None:
    for entry in m["entries"]:
        entry["time_ms"] += 3_000


def _timeline_late(m: dict) -> None:
    m["actions"] = m["actions"][:1] * 300 + m["actions"]


@pytest.mark.parametrize(
    ("plant", "message"),
    [
        (_frames_late, "offset from the action timeline by -3000 ms"),  # frame clock started 3 s after the race's
        (_timeline_late, "offset from the action timeline by +3000 ms"),  # timeline 3 s late
    ],
    ids=["frames-3s-late", "timeline-3s-late"],
)
def test_a_frame_clock_a_few_seconds_off_is_named(tmp_path, plant, message):
    """Most frames still lie on the timeline, so the overlap check passes, but each would carry the action held
    3 s away; the entries' own action_idx gives it away: strict, one error naming the replay; lenient, that replay
    skipped and reported."""
    root = make_tree(tmp_path / "replays", n_tracks=2, replays_per_track=2, n_frames=100, size=16)
    manifest_path = root / BAD / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    plant(manifest)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(DataError) as err:
        build_frame_store(data_params(tmp_path, root, strict=True), progress=False)
    assert str(err.value).startswith(f"{manifest_path}: the frame clock is offset from the action timeline by ")
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)
    report = build_frame_store(data_params(tmp_path, root, strict=False), progress=False)
    assert [s["path"] for s in report["skipped"]] == [str(manifest_path)]
    assert message in report["skipped"][0]["reason"]
    assert sorted(stored_replays(tmp_path / "cache")) == sorted(
        p.relative_to(root).as_posix() for p in root.glob("*/*") if p != root / BAD
    )


def test_frame_clock_checks_leave_honest_replays_alone(tmp_path):
    """Not offsets: a capture that stopped before the race ended (timeline longer than the frames), a timeline
    cut short (the late frames simply have no label), keys read a step late (action_idx of the next step), and a
    3 s offset in a replay whose entries carry no action_idx (nothing to judge it by): all ingested."""
    root = make_tree(tmp_path / "replays", n_tracks=3, replays_per_track=1, n_frames=100, size=16)
    manifest_path = root / "track0/pos0_bot_1000ms.replay/manifest.json"
    original = json.loads(manifest_path.read_text())

    def next_step_keys(m):
        for e in m["entries"]:
            e["action_idx"] = m["actions"][min(e["time_ms"] // 10 + 1, len(m["actions"]) - 1)]

    def offset_without_action_idx(m):
        _frames_late(m)
        for e in m["entries"]:
            e.pop("action_idx"), e.pop("inputs")

    for plant in (
        lambda m: m.__setitem__("actions", m["actions"] + m["actions"][-1:] * 300),
        lambda m: m.__setitem__("actions", m["actions"][:-300]),
        next_step_keys,
        offset_without_action_idx,
    ):
        manifest = json.loads(json.dumps(original))
        plant(manifest)
        manifest_path.write_text(json.dumps(manifest))
        report = build_frame_store(data_params(tmp_path, root, strict=False), progress=False)
        assert report["skipped"] == [], report["skipped"]


def _run_ingest(cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tmpretrain.stages.ingest"], cwd=cwd, capture_output=True, text=True, **kwargs
    )


def test_stage_prints_one_line_not_a_traceback(tmp_path):
    root = make_tree(tmp_path / "replays")
    culprit = sorted((root / BAD).glob("frame_*"))[3]
    culprit.write_bytes(b"")
    params = {
        "data": {
            "replays_dir": str(root),
            "cache_dir": str(tmp_path / "cache"),
            "strict": True,
            "image_height": 16,
            "image_width": 16,
        }
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run = _run_ingest(tmp_path)
    assert run.returncode == 1
    assert run.stderr == f"error: {culprit}: empty file (zero bytes)\n"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"strcit": True}}))
    run = _run_ingest(tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "data.strcit" in run.stderr and "data.strict" in run.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="a file name that is not valid UTF-8 needs a byte-name file system")
def test_names_that_are_not_utf8_are_reported_and_printed(tmp_path):
    """A track directory whose name is not UTF-8 (Python keeps the bytes as surrogates) prints and is stored."""
    root = make_tree(tmp_path / "replays")
    os.rename(os.fsencode(root / "track2"), os.fsencode(root) + b"/track\xff")
    os.mkdir(os.fsencode(root) + b"/empty\xfe")
    params = {"data": {"replays_dir": str(root), "cache_dir": "cache", "image_height": 16, "image_width": 16}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run = _run_ingest(tmp_path, env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert run.returncode == 0, run.stderr
    assert "empty\\udcfe: empty track directory" in run.stdout
    tracks = {row["track_id"] for row in FrameStore.open(tmp_path / "cache").meta["replays"]}
    assert tracks == {"track0", "track1", "track\udcff"}


def test_ingest_killed_mid_build_leaves_no_cache_that_looks_valid(tmp_path):
    """SIGKILL while frames are being decoded into <cache>.partial: nothing opens as a frame store, the earlier
    cache (if the kill missed the final swap) is intact, and the rerun completes and clears the partial dir."""
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

    run = _run_ingest(tmp_path)
    assert run.returncode == 0, run.stderr
    assert not partial.exists()
    store = FrameStore.open(cache)
    assert len(store.frames) == 12 * 40 and store.meta["complete"]


def test_a_store_without_its_completion_marker_is_refused(tmp_path):
    root = make_tree(tmp_path / "replays")
    build_frame_store(data_params(tmp_path, root), progress=False)
    (tmp_path / "cache" / "cache_meta.json").unlink()  # e.g. a copy that stopped before the last file
    with pytest.raises(DataError, match="cache_meta.json missing"):
        FrameStore.open(tmp_path / "cache")
    meta = tmp_path / "cache" / "cache_meta.json"
    for make, message in [
        (lambda: meta.write_text("[1, 2]"), "cache format None is not 1"),
        (lambda: meta.write_text("{not json"), "cannot be read (Expecting property name"),
        (lambda: os.mkfifo(meta), "cannot be read (not a regular file: a FIFO (named pipe))"),  # would block
    ]:
        meta.unlink(missing_ok=True)
        make()
        with pytest.raises(DataError, match=re.escape(message)):
            FrameStore.open(tmp_path / "cache")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _drop_index_array(path: Path) -> None:
    with np.load(path) as index:
        arrays = {k: index[k] for k in index.files if k != "frame_action"}
    np.savez(path, **arrays)


def _shift_a_replay(path: Path) -> None:
    with np.load(path) as index:
        arrays = {k: index[k] for k in index.files}
    arrays["replay_frame_start"][-1] += 1000  # past the end of frames.npy
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("frames.npy", _truncate, "cannot be read as a frame store array (mmap length is greater than file size)"),
        ("timelines.npy", _truncate, "cannot be read as a frame store array"),
        ("index.npz", _truncate, "cannot be read (not an .npz archive: damaged or cut short)"),
        ("index.npz", lambda p: p.write_bytes(b"not a zip"), "cannot be read (not an .npz archive: damaged or cut"),
        ("index.npz", _drop_index_array, "has no array frame_action"),
        ("index.npz", _shift_a_replay, "replay 5's frames lie outside frames.npy (72 entries)"),
        ("cache_meta.json", lambda p: p.write_text('{"format_version": 1, "complete": true}'), "n_frames None"),
    ],
    ids=[
        "frames-truncated",
        "timelines-truncated",
        "index-truncated",
        "index-not-zip",
        "index-array",
        "index-range",
        "meta-no-counts",
    ],
)
def test_a_damaged_store_is_one_error_naming_the_file(tmp_path, name, damage, message):
    root = make_tree(tmp_path / "replays")
    build_frame_store(data_params(tmp_path, root), progress=False)
    damage(tmp_path / "cache" / name)
    with pytest.raises(DataError) as refused:
        FrameStore.open(tmp_path / "cache")
    assert str(refused.value).startswith(f"{tmp_path / 'cache' / name}: {message}"), refused.value
    assert str(refused.value).endswith("rebuild it with `dvc repro ingest`")


def test_frames_skipped_while_decoding_shrink_the_store_exactly(tmp_path):
    """Replays refused by a worker after the store file was sized: the header and length match what was kept."""
    root = make_tree(tmp_path / "replays")
    frame = sorted((root / BAD).glob("frame_*"))[5]
    frame.write_bytes(b"not a frame")
    report = build_frame_store(data_params(tmp_path, root, workers=2), progress=False)
    frames = np.load(tmp_path / "cache" / "frames.npy")
    assert report["n_skipped"] == 1 and frames.shape == (5 * 12, 16, 16)
    assert (tmp_path / "cache" / "frames.npy").stat().st_size == 128 + frames.size


def test_too_few_tracks_after_skipping_names_what_was_skipped(tmp_path):
    """A split that fails because replays were skipped says so, naming the first: the cause is the replay, not the
    fraction."""
    root = make_tree(tmp_path / "replays", n_tracks=3, replays_per_track=1, size=16)
    bad = root / "track0/pos0_bot_1000ms.replay/manifest.json"
    bad.write_text("{not json")
    with pytest.raises(ParamsError) as err:
        build_frame_store(data_params(tmp_path, root, test_fraction=0.2), progress=False)
    message = str(err.value)
    assert message.startswith("params.yaml: data.test_fraction: 0.2 of 2 usable tracks is 1 test track(s)")
    assert f"; 1 replay(s) were skipped, the first {bad}: " in message and "\n" not in message

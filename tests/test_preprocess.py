"""preprocess.py, the functions ingest and the env share: the env's observation of a frame is byte-equal to what
ingest stores for the same frame written to a capture tree, and its floats equal ingest's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tmpretrain.capture import encode_frame, read_frame_bytes, read_replay, write_replay
from tmpretrain.errors import DataError
from tmpretrain.preprocess import (
    FLOAT_DIM,
    decode_frame,
    float_vectors,
    observation_frame,
    resize_frame,
    snapshot_floats,
)
from tmpretrain.synthetic.env import SynthTrackEnv
from tmpretrain.synthetic.generate import get_track
from tmpretrain.synthetic.race import Race

EXTENSIONS = [".jpeg", ".jpg", ".png", ".bmp", ".npy"]


@pytest.fixture(scope="module")
def rendered() -> list[np.ndarray]:
    """Frames the env renders (grayscale uint8 at the synthesized 128x128), a few decisions apart."""
    env = SynthTrackEnv(track=0, training_seed=0, include_floats=True)
    env.reset(seed=0)
    frames = [env.render_frame()]
    for _ in range(3):
        env.step(0)
        frames.append(env.render_frame())
    return frames


@pytest.mark.parametrize("ext", EXTENSIONS)
@pytest.mark.parametrize("size", [(64, 64), (48, 40), (128, 128)])
def test_observation_frame_is_the_ingest_decode_and_resize_of_the_written_bytes(rendered, ext, size):
    for frame in rendered:
        stored, _ = decode_frame(Path(f"frame{ext}"), encode_frame(frame, ext))
        expected = resize_frame(stored, *size)
        got = observation_frame(frame, ext, *size)
        assert got.dtype == np.uint8 and got.shape == size
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("ext", [".jpeg", ".png"])
def test_env_observation_equals_the_frame_ingest_reads_from_a_capture_tree(tmp_path, ext):
    """The env's rendered frames, written to a capture tree by the synthesizer's writer and read back by ingest's
    path (file bytes, decode_frame, resize_frame), are the env's observations; race-state snapshots written to the
    manifest give ingest the floats the env computes from them (snapshot_floats)."""
    env = SynthTrackEnv(track=1, training_seed=0, frame_format=ext, decision_interval_ms=100)
    observations, frames = [env.reset(seed=0)[0]], [env.render_frame()]
    for _ in range(5):
        observations.append(env.step(0)[0])
        frames.append(env.render_frame())
    race = Race(get_track(0, 1))
    race.locate(0)
    snapshots = [race.meta_snapshot(0)]
    for k in range(1, 51):
        race.advance(0)
        race.locate(10 * k)
        if k % 10 == 0:
            snapshots.append(race.meta_snapshot(10 * k))
    times = [100 * i for i in range(len(frames))]
    write_replay(tmp_path / "track" / "r.replay", frames, times, None, fps=10, meta=snapshots, ext=ext)
    replay = read_replay(tmp_path / "track" / "r.replay")
    floats = float_vectors(replay)
    assert len(replay.frame_files) == len(observations) == len(snapshots) == 6
    for i, path in enumerate(replay.frame_files):
        stored = resize_frame(decode_frame(path, read_frame_bytes(path))[0], *env.image_size)
        np.testing.assert_array_equal(observations[i][-1], stored)
        np.testing.assert_array_equal(floats[i], snapshot_floats(snapshots[i]))
    assert floats.any()


def test_snapshot_floats_are_the_sorted_numeric_leaves_padded():
    got = snapshot_floats({"time_ms": 5, "speed": 2.5, "position": [1, 2.0, True], "name": "x", "a": {"b": 7}})
    assert got.dtype == np.float32 and got.shape == (FLOAT_DIM,)
    np.testing.assert_array_equal(got[:5], [7.0, 1.0, 2.0, 1.0, 2.5])  # a.b, position, speed
    assert not got[5:].any()
    assert len(snapshot_floats({"v": list(range(500))})) == FLOAT_DIM  # truncated


def test_a_value_that_is_not_a_finite_float32_is_refused(tmp_path):
    with pytest.raises(ValueError, match="finite float32"):
        snapshot_floats({"speed": 1e39})
    frames = [np.zeros((8, 8), np.uint8)] * 2
    meta = [{"time_ms": 0, "speed": 1.0}, {"time_ms": 100, "speed": float("nan")}]
    write_replay(tmp_path / "t" / "r.replay", frames, [0, 100], None, fps=10, meta=meta, ext=".png")
    with pytest.raises(DataError, match=r"meta\[1\] holds a value that is not a finite float32"):
        float_vectors(read_replay(tmp_path / "t" / "r.replay"))

"""Tiny real capture trees written with the capture writer, for fast tests of ingest and training."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tmpretrain.capture import write_replay
from tmpretrain.params import DataParams

# Tests that start DVC must not report analytics.
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def make_replay(
    path: Path,
    n_frames: int = 12,
    fps: float = 10,
    size: int = 24,
    seed: int = 0,
    legacy: bool = False,
    ext: str = ".jpeg",
    with_timeline: bool = True,
) -> np.ndarray:
    """One replay whose frame brightness encodes the action held at its time (so a model can learn it).
    Returns the action timeline (one id per 10 ms step)."""
    rng = np.random.default_rng(seed)
    step_ms = 10
    interval = int(round(1000 / fps))
    n_steps = (n_frames - 1) * interval // step_ms + 1
    # Runs of actions 20-60 ms long, drawn from a few classes.
    timeline = np.repeat(rng.choice([0, 1, 2, 3], size=n_steps), rng.integers(2, 7, size=n_steps))[:n_steps]
    times = [i * interval for i in range(n_frames)]
    frames = []
    for t in times:
        a = int(timeline[t // step_ms])
        frame = rng.integers(0, 40, size=(size, size)) + 50 * a
        frames.append(frame.astype(np.uint8))
    write_replay(
        path,
        frames,
        times,
        timeline if with_timeline or not legacy else timeline,
        fps=fps,
        legacy_manifest=legacy,
        ext=ext,
        meta=[{"time_ms": t, "speed": float(t % 7), "position": [float(t), 0.0, 1.0]} for t in times],
    )
    return timeline


def make_tree(root: Path, n_tracks: int = 3, replays_per_track: int = 2, **kwargs) -> Path:
    for t in range(n_tracks):
        for r in range(replays_per_track):
            make_replay(root / f"track{t}" / f"pos{r}_bot_{1000 + r}ms.replay", seed=100 * t + r, **kwargs)
    return root


@pytest.fixture
def capture_tree(tmp_path) -> Path:
    return make_tree(tmp_path / "replays")


def data_params(tmp_path: Path, replays_dir: Path, **overrides) -> DataParams:
    values = dict(
        replays_dir=str(replays_dir),
        cache_dir=str(tmp_path / "cache"),
        image_height=16,
        image_width=16,
        val_fraction=0.34,
        test_fraction=0.0,  # trees of 2-3 tracks: the split tests and the DVC-stage tests use a test split
        split_seed=0,
        strict=False,
        workers=1,
    )
    values.update(overrides)
    return DataParams(**values)


@pytest.fixture(autouse=True)
def _run_outside_the_project(tmp_path, monkeypatch):
    """DVCLive and DVC find their repository from the working directory: keep tests out of this one."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def spawn_start_method():
    """Worker pools start as on Windows and macOS (no fork: workers import everything afresh, and everything that
    crosses to them and back is pickled); the platform default is restored afterwards."""
    import multiprocessing

    before = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("spawn", force=True)
    yield
    multiprocessing.set_start_method(before, force=True)


@pytest.fixture
def one_torch_thread():
    """torch on one thread, as the RL learner and `evaluate` run on a shared CPU (two threads on two busy cores were
    several times slower than one); the thread count is restored afterwards."""
    from tmpretrain.evaluate import one_torch_thread as one_thread

    with one_thread():
        yield

"""Tiny real capture trees (the product's tree writer, tmpretrain.synthetic.trees), for fast tests of ingest and
training."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from support.setups import small_store
from tmpretrain.frame_store import build_frame_store
from tmpretrain.params import DataParams, parse_params
from tmpretrain.pretrain import run_bc, run_vis
from tmpretrain.synthetic.trees import write_coded_replay, write_tree

# Tests that start DVC must not report analytics.
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def make_replay(path: Path, n_frames: int = 12, **options) -> np.ndarray:
    """One replay whose frame brightness encodes the action held at its time (so a model can learn it), written by
    the product's tree writer (options: fps, size, seed, legacy, ext). Returns the action timeline (one id per
    10 ms step)."""
    return write_coded_replay(path, n_frames, **options)


def make_tree(root: Path, n_tracks: int = 3, replays_per_track: int = 2, n_frames: int = 12, size: int = 24, **kw):
    """track0..: pos0_bot_1000ms.replay, ... of coded frames (the product's writer)."""
    write_tree(root, n_tracks, replays_per_track, n_frames, size, frames="coded", **kw)
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


# ----------------------------------------------------------------------------- fixtures several modules share


@pytest.fixture(scope="module")
def stage_store(tmp_path_factory) -> Path:
    """The stage tests' frame store: 4 tracks x 2 replays x 30 frames, 180 train and 60 val samples (one held-out
    track)."""
    return small_store(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def agent_exports(tmp_path_factory) -> dict[str, Path]:
    """Real exports at the agent's 64x64: Level 0 (autoencoder, on the agent's normalization and on x / 255), Level 1
    with an A_head (single frame, and n_stack 2), Level 1 with a Linear head."""
    root = tmp_path_factory.mktemp("rl_exports")
    cwd = Path.cwd()
    os.chdir(root)  # DVCLive looks for a repository from the working directory
    try:
        tree = make_tree(root / "replays", n_tracks=3, replays_per_track=1, n_frames=12, size=40)
        build_frame_store(data_params(root, tree, image_height=64, image_width=64), progress=False)
        fast = {"epochs": 1, "batch_size": 16, "trainer": {"accelerator": "cpu"}}
        for name, normalization in (("vis", "iqn"), ("vis_01", "01")):
            vis = parse_params({"vis": {**fast, "image_normalization": normalization}}).vis
            run_vis(vis, root / "cache", root / name, root / f"live_{name}")
        for name, overrides in (("bc", {}), ("bc_stack2", {"n_stack": 2}), ("bc_linear", {"use_actions_head": False})):
            bc = parse_params({"bc": {**fast, "encoder_init": "none", "use_actions_head": True, **overrides}}).bc
            run_bc(bc, root / "cache", root / name, root / f"live_{name}")
    finally:
        os.chdir(cwd)
    return {name: root / name for name in ("vis", "vis_01", "bc", "bc_stack2", "bc_linear")}

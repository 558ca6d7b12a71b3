"""Small capture trees in seconds, without the simulator: the one writer of fast test data.

The benchmark (`tmpretrain bench`) measures ingest and training on trees written here; the tests and the fault
table write their small and damaged trees with it too. Every replay goes through `capture.write_replay`, the
product's writer of the capture layout, so the format has one implementation. Two kinds of frames:

- "scene": a smooth, game-like grey frame (road band, horizon, moving stripes) with mild noise, JPEG-realistic;
  the action shows only faintly (the benchmark's data: ingest and loader costs of real-looking captures).
- "coded": noise whose brightness encodes the action held at the frame's time, with meta snapshots (speed and
  position) for every frame: small models learn it in an epoch (the tests' data).

Everything written is a pure function of the arguments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..capture import write_replay

STEP_MS = 10  # the action timeline's step


def _scene_frame(rng: np.random.Generator, size: int, t: int, action: int, phase: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    road = np.abs(xx - 0.5 - 0.2 * np.sin(phase + t * 0.05 + yy * 3)) < 0.15 + 0.2 * yy
    stripes = (np.sin(yy * 20 + t * 0.7) > 0.6) & road
    img = 90 + 60 * yy + 40 * road + 50 * stripes + 8 * action
    img = np.where(yy < 0.3, 170 + 30 * xx, img) + rng.normal(0, 4, (size, size))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_scene_replay(path: Path, rng: np.random.Generator, n_frames: int, size: int) -> int:
    """One replay of "scene" frames at 10 fps (12 actions in runs of 50-400 ms); returns its frame count."""
    n_steps = (n_frames - 1) * 10 + 1  # 100 ms between frames, 10 ms timeline
    runs = rng.integers(5, 40, size=n_steps)
    timeline = np.repeat(rng.integers(0, 12, size=n_steps), runs)[:n_steps].astype(np.int64)
    times = [i * 100 for i in range(n_frames)]
    phase = float(rng.uniform(0, 6))
    frames = [_scene_frame(rng, size, i, int(timeline[i * 10]), phase) for i in range(n_frames)]
    write_replay(path, frames, times, timeline, fps=10)
    return n_frames


def write_coded_replay(
    path: Path,
    n_frames: int = 12,
    fps: float = 10,
    size: int = 24,
    seed: int = 0,
    legacy: bool = False,
    ext: str = ".jpeg",
) -> np.ndarray:
    """One replay of "coded" frames (brightness = 50 x the action held, 4 actions in runs of 20-60 ms) with meta
    snapshots; `legacy` writes the old list-only manifest. Returns the action timeline (one id per 10 ms)."""
    rng = np.random.default_rng(seed)
    interval = int(round(1000 / fps))
    n_steps = (n_frames - 1) * interval // STEP_MS + 1
    timeline = np.repeat(rng.choice([0, 1, 2, 3], size=n_steps), rng.integers(2, 7, size=n_steps))[:n_steps]
    times = [i * interval for i in range(n_frames)]
    frames = []
    for t in times:
        a = int(timeline[t // STEP_MS])
        frame = rng.integers(0, 40, size=(size, size)) + 50 * a
        frames.append(frame.astype(np.uint8))
    write_replay(
        path,
        frames,
        times,
        timeline,
        fps=fps,
        legacy_manifest=legacy,
        ext=ext,
        meta=[{"time_ms": t, "speed": float(t % 7), "position": [float(t), 0.0, 1.0]} for t in times],
    )
    return timeline


def write_tree(
    root: Path,
    tracks: int,
    replays_per_track: int,
    frames_per_replay: int,
    size: int,
    *,
    frames: str = "scene",
    seed: int = 0,
    **replay_options,
) -> int:
    """`tracks` x `replays_per_track` replays under `root` in the capture layout; returns the frame count.

    "scene" trees are named track00/pos0_bench_1000ms.replay, ... (replay seed (seed, track, replay)); "coded"
    trees track0/pos0_bot_1000ms.replay, ... (replay seed 100 x track + replay + seed) and take
    write_coded_replay's options (fps, legacy, ext)."""
    root = Path(root)
    n = 0
    for t in range(tracks):
        for r in range(replays_per_track):
            if frames == "scene":
                path = root / f"track{t:02d}" / f"pos{r}_bench_{1000 + r}ms.replay"
                n += write_scene_replay(path, np.random.default_rng((seed, t, r)), frames_per_replay, size)
            elif frames == "coded":
                path = root / f"track{t}" / f"pos{r}_bot_{1000 + r}ms.replay"
                write_coded_replay(path, frames_per_replay, size=size, seed=100 * t + r + seed, **replay_options)
                n += frames_per_replay
            else:
                raise ValueError(f"frames must be 'scene' or 'coded', not {frames!r}")
    return n

"""Generate the embedded default data set: synthetic replays written in the capture layout.

Every replay is a pure function of (seed, track index, replay index): its tracks, driver and mistakes come from
random generators seeded with exactly those numbers, so the output does not depend on how many workers run or in
which order they finish. Replays run in parallel (multiprocessing) and each writes its own directory.
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..actions import ACTION_NAMES, N_ACTIONS
from ..capture import write_replay
from ..params import SynthParams
from .driver import Driver, DriverStyle
from .perturb import Perturber
from .race import STEP_MS, Race, capture_step
from .render import Renderer
from .track import Track, generate_track

META_INTERVAL_MS = 100

_TRACK_STREAM, _REPLAY_STREAM, _SCENERY_STREAM, _PERTURB_STREAM = 0, 1, 2, 3


def _entropy(seed: int) -> int:
    return int(seed) % (2**64)


def track_id(index: int) -> str:
    return f"synth-t{index:03d}"


@lru_cache(maxsize=4)
def get_track(seed: int, index: int) -> Track:
    return generate_track(np.random.default_rng([_entropy(seed), _TRACK_STREAM, index]))


@lru_cache(maxsize=2)
def get_renderer(seed: int, index: int, width: int, height: int) -> Renderer:
    rng = np.random.default_rng([_entropy(seed), _SCENERY_STREAM, index])
    return Renderer(get_track(seed, index), width, height, rng)


@dataclass(frozen=True)
class _Job:
    seed: int
    track_index: int
    replay_index: int
    seconds: float
    fps: float
    width: int
    height: int
    out_dir: str
    perturbation_rate: float = 0.0


@dataclass
class ReplayResult:
    track_id: str
    replay_name: str
    frames: int
    steps: int
    frame_action_counts: list[int]
    step_action_counts: list[int]
    laps_completed: int
    lap_times_ms: list[int]
    off_road_steps: int
    perturbed_steps: int
    mean_speed: float


def simulate_replay(job: _Job, render: bool = True) -> dict:
    """Drive one replay: timeline, frames, frame times, meta snapshots and lap facts (nothing written)."""
    track = get_track(job.seed, job.track_index)
    renderer = get_renderer(job.seed, job.track_index, job.width, job.height) if render else None
    rng = np.random.default_rng([_entropy(job.seed), _REPLAY_STREAM, job.track_index, job.replay_index])
    style = DriverStyle.sample(rng)
    driver = Driver(track, style, rng)
    # Its own stream: with rate 0 the expert, its mistakes and so the data are those of an unperturbed run.
    perturber = Perturber(
        job.perturbation_rate,
        np.random.default_rng([_entropy(job.seed), _PERTURB_STREAM, job.track_index, job.replay_index]),
    )

    race = Race(track)
    car = race.car

    n_steps = max(1, int(round(job.seconds * 1000 / STEP_MS)))
    duration_ms = n_steps * STEP_MS
    capture_steps: dict[int, int] = {}
    j = 0
    while True:
        t = int(round(j * 1000.0 / job.fps))
        if t >= duration_ms:
            break
        capture_steps[capture_step(t)] = t
        j += 1

    timeline = np.zeros(n_steps, dtype=np.int8)
    frames: list[np.ndarray] = []
    frame_times: list[int] = []
    meta: list[dict] = []
    off_road = 0
    perturbed = 0
    speed_sum = 0.0

    for k in range(n_steps):
        t_ms = k * STEP_MS
        race.locate(t_ms)
        off_road += not race.on_road
        speed = car.speed
        speed_sum += speed

        if k in capture_steps:
            frame_times.append(capture_steps[k])
            if renderer is not None:
                frames.append(renderer.render(car.x, car.y, car.yaw, race.cam_heading, speed))
        if t_ms % META_INTERVAL_MS == 0:
            meta.append(race.meta_snapshot(t_ms))

        action = driver.act(car, race.idx)
        timeline[k] = action  # the label: the expert's choice, also when a perturbation overrides it
        executed = perturber.executed(action)
        perturbed += executed != action
        race.advance(executed)

    return {
        "timeline": timeline,
        "frames": frames,
        "frame_times": frame_times,
        "meta": meta,
        "laps": race.laps,
        "lap_times": race.lap_times,
        "centre_distance_m": race.centre_progress,  # along the centre line, gates or not
        "off_road": off_road,
        "perturbed": perturbed,
        "mean_speed": speed_sum / n_steps,
        "style": style,
    }


def _run_job(job: _Job) -> ReplayResult:
    sim = simulate_replay(job)
    timeline = sim["timeline"]
    race_ms = sim["lap_times"][0] if sim["lap_times"] else len(timeline) * STEP_MS
    name = f"pos{job.replay_index + 1}_bot{job.replay_index}_{race_ms}ms.replay"
    tid = track_id(job.track_index)
    replay_dir = Path(job.out_dir) / tid / name
    style = sim["style"]
    write_replay(
        replay_dir,
        sim["frames"],
        sim["frame_times"],
        timeline,
        step_ms=STEP_MS,
        fps=job.fps,
        meta=sim["meta"],
        metadata_extra={
            "meta_interval_ms": META_INTERVAL_MS,
            "challenge_name": f"Synthetic track {job.track_index}",
            "synthetic": True,
            "generator": "tmpretrain.synthetic",
            "seed": job.seed,
            "track_index": job.track_index,
            "replay_index": job.replay_index,
            "laps_completed": sim["laps"],
            "lap_times_ms": sim["lap_times"],
            "off_road_fraction": round(sim["off_road"] / len(timeline), 5),
            "driver_style": {k: round(v, 4) for k, v in vars(style).items()},
            # Only when on: clean data keeps the bytes of a generator without perturbations.
            **(
                {"perturbation_rate": job.perturbation_rate, "perturbed_steps": sim["perturbed"]}
                if job.perturbation_rate > 0
                else {}
            ),
        },
        capture_start_utc=datetime(2026, 1, 1, tzinfo=timezone.utc)
        + timedelta(hours=job.track_index, minutes=job.replay_index),
    )
    steps_idx = np.round(np.asarray(sim["frame_times"]) / STEP_MS).astype(np.int64)
    frame_actions = timeline[np.minimum(steps_idx, len(timeline) - 1)]
    return ReplayResult(
        track_id=tid,
        replay_name=name,
        frames=len(sim["frames"]),
        steps=len(timeline),
        frame_action_counts=np.bincount(frame_actions, minlength=N_ACTIONS).tolist(),
        step_action_counts=np.bincount(timeline, minlength=N_ACTIONS).tolist(),
        laps_completed=sim["laps"],
        lap_times_ms=sim["lap_times"],
        off_road_steps=sim["off_road"],
        perturbed_steps=sim["perturbed"],
        mean_speed=sim["mean_speed"],
    )


def _mix(counts: np.ndarray) -> dict[str, float]:
    total = max(int(counts.sum()), 1)
    return {name: round(float(c) / total, 5) for name, c in zip(ACTION_NAMES, counts, strict=True)}


def generate_dataset(params: SynthParams, out_dir: Path, progress: bool = True) -> dict:
    """Write params.n_tracks x params.replays_per_track replays under `out_dir`; return a summary dict."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        _Job(
            seed=int(params.seed),
            track_index=t,
            replay_index=r,
            seconds=float(params.seconds_per_replay),
            fps=float(params.fps),
            width=int(params.width),
            height=int(params.height),
            out_dir=str(out_dir),
            perturbation_rate=float(params.perturbation_rate),
        )
        for t in range(params.n_tracks)
        for r in range(params.replays_per_track)
    ]
    bar = None
    if progress:
        from tqdm import tqdm

        # disable=None: no bar when stderr is not a terminal (a log file gets no carriage-return redraws)
        bar = tqdm(total=len(jobs), desc="synthesize", unit="replay", disable=None)
    results: list[ReplayResult] = []
    workers = max(1, min(int(params.workers), len(jobs)))
    if workers == 1:
        for job in jobs:
            results.append(_run_job(job))
            if bar is not None:
                bar.update(1)
    else:
        # fork where the platform has it: fast start, no __main__ guard needed in callers' scripts.
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(workers) as pool:
            for res in pool.imap(_run_job, jobs, chunksize=1):
                results.append(res)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return summarize(results, params)


def summarize(results: list[ReplayResult], params: SynthParams) -> dict:
    frame_counts = np.sum([r.frame_action_counts for r in results], axis=0)
    step_counts = np.sum([r.step_action_counts for r in results], axis=0)
    steps = sum(r.steps for r in results)
    lap_times = [t for r in results for t in r.lap_times_ms]
    return {
        "tracks": len({r.track_id for r in results}),
        "replays": len(results),
        "frames": int(sum(r.frames for r in results)),
        "steps": int(steps),
        "fps": float(params.fps),
        "width": int(params.width),
        "height": int(params.height),
        "seed": int(params.seed),
        "laps_completed": int(sum(r.laps_completed for r in results)),
        "replays_with_a_lap": int(sum(r.laps_completed > 0 for r in results)),
        "mean_lap_time_s": round(float(np.mean(lap_times)) / 1000, 3) if lap_times else None,
        "off_road_fraction": round(sum(r.off_road_steps for r in results) / max(steps, 1), 5),
        "perturbation_rate": float(params.perturbation_rate),
        "perturbed_fraction": round(sum(r.perturbed_steps for r in results) / max(steps, 1), 5),
        "mean_speed_mps": round(float(np.mean([r.mean_speed for r in results])), 3),
        "class_mix": _mix(frame_counts),
        "class_mix_steps": _mix(step_counts),
        "class_counts": {n: int(c) for n, c in zip(ACTION_NAMES, frame_counts, strict=True)},
        "replay_names": [f"{r.track_id}/{r.replay_name}" for r in results],
    }

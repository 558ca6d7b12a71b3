"""The generated default data: determinism, layout, driving quality, class mix and learnability."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tmpretrain.actions import ACTION_NAMES, N_ACTIONS, action_inputs
from tmpretrain.capture import discover_replays, read_frame, read_replay
from tmpretrain.params import SynthParams
from tmpretrain.synthetic import generate_dataset
from tmpretrain.synthetic.generate import _Job, get_track, simulate_replay
from tmpretrain.synthetic.track import MIN_RADIUS, generate_track

META_FIELDS = {"time_ms", "position", "velocity", "yaw", "speed", "steer", "on_road"}


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _small(seed: int = 0, **kw) -> SynthParams:
    base = dict(seed=seed, n_tracks=2, replays_per_track=1, seconds_per_replay=3.0, width=32, height=32, workers=1)
    base.update(kw)
    return SynthParams(**base)


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path):
    generate_dataset(_small(workers=1), tmp_path / "a", progress=False)
    generate_dataset(_small(workers=2), tmp_path / "b", progress=False)
    a, b = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert len(a) > 20
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]][:5]


def test_other_seed_other_data(tmp_path):
    generate_dataset(_small(seed=0), tmp_path / "a", progress=False)
    generate_dataset(_small(seed=1), tmp_path / "b", progress=False)
    a, b = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    frames_a = {k[k.index("/frame_") :]: v for k, v in a.items() if "/frame_" in k}
    frames_b = {k[k.index("/frame_") :]: v for k, v in b.items() if "/frame_" in k}
    assert frames_a.keys() & frames_b.keys()
    assert sum(frames_a[k] != frames_b[k] for k in frames_a.keys() & frames_b.keys()) > len(frames_a) // 2


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "replays"
    params = SynthParams(
        seed=3, n_tracks=2, replays_per_track=2, seconds_per_replay=5.0, fps=20.0, width=48, height=40, workers=2
    )
    summary = generate_dataset(params, out, progress=False)
    return out, params, summary


def test_layout_reads_back(small_set):
    out, params, summary = small_set
    replays, problems = discover_replays(out)
    assert problems == []
    assert len(replays) == params.n_tracks * params.replays_per_track == summary["replays"]
    assert sorted({p.parent.name for p in replays}) == ["synth-t000", "synth-t001"]
    n_frames = 0
    for path in replays:
        assert path.name.startswith("pos") and path.name.endswith("ms.replay")
        rep = read_replay(path)
        md = rep.metadata
        for key in ("track_id", "replay_name", "fps", "step_ms", "width", "height", "race_time_ms", "total_frames"):
            assert key in md
        assert md["step_ms"] == 10 and md["fps"] == 20.0 and md["meta_interval_ms"] == 100
        assert (rep.width, rep.height) == (48, 40)
        # One timeline entry per 10 ms step; one frame every 50 ms; entries labelled from the timeline.
        assert len(rep.timeline) == 500 == md["race_time_ms"] // 10
        assert len(rep.frame_files) == 100 == md["total_frames"]
        assert np.array_equal(rep.frame_times_ms, np.arange(100) * 50)
        assert np.array_equal(rep.frame_actions, rep.timeline[rep.frame_times_ms // 10])
        manifest = json.loads((path / "manifest.json").read_text())
        for entry in manifest["entries"]:
            assert entry["inputs"] == action_inputs(entry["action_idx"])
        for k in (0, len(rep.frame_files) - 1):
            frame = read_frame(rep.frame_files[k])
            assert frame.shape == (40, 48) and frame.dtype == np.uint8
            assert frame.std() > 5  # a picture, not a blank
        assert len(rep.meta) == 50
        assert [m["time_ms"] for m in rep.meta] == list(range(0, 5000, 100))
        assert all(META_FIELDS <= m.keys() for m in rep.meta)
        assert len(rep.meta[-1]["position"]) == 3 and len(rep.meta[-1]["velocity"]) == 3
        assert rep.meta[-1]["speed"] > 10  # the car got going
        n_frames += len(rep.frame_files)
    assert summary["frames"] == n_frames
    assert abs(sum(summary["class_mix"].values()) - 1) < 1e-3
    assert set(summary["class_mix"]) == set(ACTION_NAMES)


def test_tracks_are_valid_closed_loops():
    for index in range(6):
        track = generate_track(np.random.default_rng([0, 0, index]))
        step = np.hypot(*np.diff(np.vstack([track.points, track.points[:1]]), axis=0).T)
        assert np.allclose(step, track.ds, atol=0.05)  # closed, resampled every metre
        assert np.max(np.abs(track.curvature)) <= 1 / MIN_RADIUS
        # Total turning of a simple closed loop is +-2 pi; both directions occur over seeds.
        assert abs(abs(track.curvature.sum() * track.ds) - 2 * np.pi) < 0.05
    turns = {np.sign(generate_track(np.random.default_rng([0, 0, i])).curvature.sum()) for i in range(12)}
    assert turns == {-1.0, 1.0}


def _drive(track_index: int, replay_index: int = 0, seconds: float = 40.0, seed: int = 0) -> dict:
    return simulate_replay(_Job(seed, track_index, replay_index, seconds, 10.0, 32, 32, ""), render=False)


def test_driver_completes_laps_and_stays_on_road():
    runs = [_drive(t) for t in range(4)]
    laps = [r["laps"] for r in runs]
    off = sum(r["off_road"] for r in runs) / sum(len(r["timeline"]) for r in runs)
    assert sum(laps) >= 3, laps
    assert off < 0.02, off
    for r in runs:
        for lap in r["lap_times"]:
            assert 18_000 < lap < 40_000


def test_class_mix_is_realistic():
    counts = np.zeros(N_ACTIONS)
    for t in range(6):
        for r in range(2):
            counts += np.bincount(_drive(t, r)["timeline"], minlength=N_ACTIONS)
    mix = dict(zip(ACTION_NAMES, counts / counts.sum(), strict=True))
    assert (counts > 0).sum() >= 10, mix  # (nearly) every action appears
    assert mix["accel"] == max(mix.values()), mix
    assert 0.25 < mix["accel"] < 0.6, mix
    assert 0.12 < mix["left+accel"] + mix["right+accel"] < 0.45, mix
    assert min(mix["left+accel"], mix["right+accel"]) > 0.03, mix
    assert 0.05 < mix["coast"] < 0.35, mix
    assert 0.01 < mix["left+accel+brake"] + mix["right+accel+brake"] < 0.15, mix
    for rare in ("brake", "left", "right", "left+brake", "right+brake"):
        assert 0 < mix[rare] < 0.03, (rare, mix)


def _features_and_labels(root: Path, offsets: tuple[int, ...]):
    xs, tracks, labels = [], [], {d: [] for d in offsets}
    for path in discover_replays(root)[0]:
        rep = read_replay(path)
        for f, t in zip(rep.frame_files, rep.frame_times_ms, strict=True):
            img = read_frame(f).astype(np.float32)
            k = img.shape[0] // 32
            xs.append(img.reshape(32, k, 32, k).mean(axis=(1, 3)).ravel() / 255.0)
            tracks.append(rep.track_id)
            for d in offsets:
                labels[d].append(int(rep.timeline[min(round((t + d) / rep.step_ms), len(rep.timeline) - 1)]))
    return np.array(xs), np.array(tracks), {d: np.array(v) for d, v in labels.items()}


def _logistic_accuracy(x_tr, y_tr, x_te, y_te, l2: float = 1e-2) -> float:
    torch.manual_seed(0)
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-3
    a = torch.tensor((x_tr - mu) / sd, dtype=torch.float32)
    b = torch.tensor((x_te - mu) / sd, dtype=torch.float32)
    ya = torch.tensor(y_tr)
    lin = torch.nn.Linear(a.shape[1], N_ACTIONS)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=150, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(a), ya) + l2 * (lin.weight**2).sum()
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small problem: threads only add contention
    try:
        opt.step(closure)
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        return float((lin(b).argmax(1).numpy() == y_te).mean())


def test_frames_carry_the_action_on_held_out_tracks(tmp_path):
    """A linear model on 32x32 pixels beats the majority class on unseen tracks; +100 ms is harder than 0 ms."""
    params = SynthParams(
        seed=0, n_tracks=8, replays_per_track=2, seconds_per_replay=40.0, width=32, height=32, workers=2
    )
    generate_dataset(params, tmp_path / "replays", progress=False)
    x, tracks, labels = _features_and_labels(tmp_path / "replays", (0, 100))
    test = np.isin(tracks, ["synth-t005", "synth-t006", "synth-t007"])
    acc, base = {}, {}
    for d, y in labels.items():
        majority = np.bincount(y[~test], minlength=N_ACTIONS).argmax()
        base[d] = float((y[test] == majority).mean())
        acc[d] = _logistic_accuracy(x[~test], y[~test], x[test], y[test])
    print("majority", base, "accuracy", acc)
    assert acc[0] > base[0] + 0.04, (acc, base)
    assert acc[100] < acc[0], (acc, base)


def test_perturbations_move_the_car_but_the_labels_stay_the_experts():
    """DART-style recovery data: the executed keys are overridden now and then, the timeline keeps the expert's
    choice, the car leaves the racing line more often, and the expert brings it back to the road and on round the
    track (its excursions miss checkpoint gates, so under the track limits these are not counted laps)."""
    clean = [_drive(t) for t in range(3)]
    noisy = [
        simulate_replay(_Job(0, t, 0, 40.0, 10.0, 32, 32, "", perturbation_rate=1.0), render=False) for t in range(3)
    ]
    assert all(r["perturbed"] == 0 for r in clean)
    steps = sum(len(r["timeline"]) for r in noisy)
    assert 0.05 < sum(r["perturbed"] for r in noisy) / steps < 0.6

    def spread(runs):
        return float(np.mean([abs(m["lateral_offset"]) for r in runs for m in r["meta"]]))

    assert spread(noisy) > 1.2 * spread(clean)
    on_road = [m["on_road"] for r in noisy for m in r["meta"]]
    assert sum(on_road) / len(on_road) > 0.6
    for t, r in enumerate(noisy):
        assert r["centre_distance_m"] > 0.8 * get_track(0, t).length


def test_a_perturbation_overrides_only_steering_or_only_the_throttle():
    from tmpretrain.actions import action_inputs
    from tmpretrain.synthetic.perturb import Perturber

    assert [Perturber(0.0, np.random.default_rng(0)).executed(a) for a in range(N_ACTIONS)] == list(range(N_ACTIONS))
    perturber = Perturber(50.0, np.random.default_rng(1))  # nearly always active
    kinds = set()
    for step in range(3000):
        expert = step % N_ACTIONS
        got, want = action_inputs(perturber.executed(expert)), action_inputs(expert)
        if got == want:
            continue
        if got["left"] != want["left"] or got["right"] != want["right"]:
            assert (got["accelerate"], got["brake"]) == (want["accelerate"], want["brake"])  # a swerve
            assert got["left"] != got["right"]
            kinds.add("swerve")
        else:
            assert got["accelerate"] and not got["brake"]  # throttle held on
            kinds.add("throttle")
    assert kinds == {"swerve", "throttle"}

"""The closed-loop environment tmpretrain/SynthTrack-v0: Gymnasium API, faithfulness to the training data,
episode ends, frame stacks, and held-out tracks that are never training tracks."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import tmpretrain  # noqa: F401  (registers the env)
from tmpretrain.actions import ACTION_NAMES
from tmpretrain.frame_store import FrameStore, build_frame_store
from tmpretrain.params import DataParams, SynthParams
from tmpretrain.synthetic import generate_dataset
from tmpretrain.synthetic.env import ENV_ID, SynthTrackEnv, heldout_track
from tmpretrain.synthetic.generate import get_track

ACCEL, COAST, RIGHT_ACCEL = (ACTION_NAMES.index(n) for n in ("accel", "coast", "right+accel"))


def run_episode(env: gym.Env, action: int, seed: int = 0) -> tuple[list, list, dict, bool, bool, float]:
    """Hold one action (ignored under autopilot) until the episode ends."""
    _, info = env.reset(seed=seed)
    infos, rewards = [info], []
    terminated = truncated = False
    while not (terminated or truncated):
        _, reward, terminated, truncated, info = env.step(action)
        infos.append(info)
        rewards.append(reward)
    return infos, rewards, info, terminated, truncated, float(sum(rewards))


@pytest.mark.parametrize("kwargs", [{}, {"n_stack": 3, "include_floats": True, "decision_interval_ms": 50}])
def test_passes_gymnasium_env_checker(kwargs):
    env = gym.make(ENV_ID, track=1, render_mode="rgb_array", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker reports problems as warnings
        check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    frames = obs["frames"] if isinstance(obs, dict) else obs
    assert frames.shape == (kwargs.get("n_stack", 1), 64, 64) and frames.dtype == np.uint8
    rgb = env.render()
    assert rgb.shape == (128, 128, 3) and rgb.dtype == np.uint8
    assert env.unwrapped.metadata["render_fps"] == 1000 / kwargs.get("decision_interval_ms", 100)


def test_observation_is_exactly_the_cache_frame_of_the_same_state(tmp_path):
    """Drive a synthesized replay's own action timeline in the env (on the same training track): at every
    captured frame the observation equals the frame ingest stored, and the floats equal ingest's floats."""
    # Clean demonstrations: with perturbations the car executes other keys than the timeline's (the expert's) labels.
    clean = SynthParams(n_tracks=2, replays_per_track=1, seconds_per_replay=2.0, workers=1, perturbation_rate=0.0)
    generate_dataset(clean, tmp_path / "r")
    data = DataParams(
        replays_dir=str(tmp_path / "r"),
        cache_dir=str(tmp_path / "c"),
        val_fraction=0.5,
        test_fraction=0.0,
        include_floats=True,
        workers=1,
    )
    build_frame_store(data, progress=False)
    store = FrameStore.open(tmp_path / "c")
    rid = 1
    start, count = int(store.replay_frame_start[rid]), int(store.replay_frame_count[rid])
    timeline = store.timeline(rid)
    env = SynthTrackEnv(track=rid, training_seed=0, decision_interval_ms=10, include_floats=True)
    obs, _ = env.reset(seed=0)
    by_step = {0: obs}
    for k, action in enumerate(timeline[:-1]):
        by_step[k + 1] = env.step(int(action))[0]
    for j in range(count):
        obs = by_step[round(int(store.frame_time_ms[start + j]) / 10)]
        np.testing.assert_array_equal(obs["frames"][0], store.frames[start + j])
        np.testing.assert_array_equal(obs["floats"], store.floats[start + j])
    assert count == 20


def test_same_seed_same_episode_and_the_expert_finishes():
    env = gym.make(ENV_ID, track=2, autopilot=True, observe=False)
    first = run_episode(env, ACCEL, seed=5)
    again = run_episode(env, ACCEL, seed=5)
    other = run_episode(env, ACCEL, seed=6)
    assert first[0] == again[0] and first[1] == again[1]
    assert [i["action"] for i in first[0]] != [i["action"] for i in other[0]]  # another driver style
    infos, _, last, terminated, truncated, total = first
    assert terminated and not truncated and last["end"] == "finished"
    assert last["progress"] == 1.0 and 20.0 < last["lap_time_s"] < 45.0
    assert last["offroad_s"] == 0.0
    # Reward is metres along the centre line: a lap from 5 m before the line sums to about its length + 5 m.
    assert total == pytest.approx(env.unwrapped.track.length + 5.0, abs=3.0)
    assert {i["action"] for i in infos[1:]} - {-1}  # the expert's actions are reported, not the ignored input


def test_truncation_reasons():
    stuck = run_episode(gym.make(ENV_ID, track=0, observe=False), COAST)
    assert stuck[3:5] == (False, True) and stuck[2]["end"] == "stuck" and stuck[2]["time_s"] == pytest.approx(5.0)
    off = run_episode(gym.make(ENV_ID, track=0, observe=False, offroad_limit_s=1.0), RIGHT_ACCEL)
    assert off[2]["end"] == "off_road" and off[2]["offroad_s"] >= 1.0 and not off[2]["on_road"]
    timed = run_episode(gym.make(ENV_ID, track=0, observe=False, time_limit_s=2.0), ACCEL)
    assert timed[2]["end"] == "time_limit" and timed[2]["time_s"] == pytest.approx(2.0)
    assert 0.0 < timed[2]["progress"] < 0.2 and timed[2]["lap_time_s"] == 0.0


def test_frame_stack_is_capture_interval_apart_newest_last_first_frame_repeated():
    """Decisions every 50 ms, frames stacked 100 ms apart: the stack is the single-frame env's observations
    of 200, 100 and 0 ms ago; at the start the first frame repeats (windows.py's padding)."""
    stacked = SynthTrackEnv(track=3, n_stack=3, decision_interval_ms=50, frame_interval_ms=100)
    single = SynthTrackEnv(track=3, decision_interval_ms=50)
    obs, _ = stacked.reset(seed=0)
    ref, _ = single.reset(seed=0)
    history = [ref[0]]
    assert all(np.array_equal(f, ref[0]) for f in obs)
    for _ in range(8):
        obs = stacked.step(ACCEL)[0]
        history.append(single.step(ACCEL)[0][0])
    np.testing.assert_array_equal(obs, np.stack([history[-5], history[-3], history[-1]]))
    assert not np.array_equal(history[-5], history[-1])


def test_heldout_tracks_are_never_training_tracks():
    """Held-out track seeds 0..29 against synthesize's tracks for the default params (seed 0, 12 tracks) and
    other seeds, including one above 2**32 (two entropy words): no loop lies on another, wherever it starts."""
    assert SynthParams().seed == 0 and SynthParams().n_tracks == 12
    training = [get_track(seed, i) for seed in (0, 1, 7, 2**32 + 3) for i in range(12)]
    heldout = [heldout_track(s) for s in range(30)]
    for h in heldout:
        for t in training:
            if abs(h.length - t.length) > 5.0:
                continue  # different lengths: different loops
            gaps = np.linalg.norm(h.points[::10, None, :] - t.points[None, :, :], axis=2).min(axis=1)
            assert np.median(gaps) > 1.0
    assert len({round(h.length) for h in heldout}) > 20  # and they differ from each other

"""Demonstrations for the DQfD-style arm, from the scripted driver that made the replays, driving the same env.

A stand-in for the replays' own transitions: the cache holds their frames and actions but not the rewards (progress
along the centre line), while SynthTrack-v0 with `autopilot=True` gives the same driver's frames, actions and
rewards as the agent would see them. The action recorded for a decision is the driver's first one in it (the env's
`info["action"]`); the driver may change keys within a decision, the agent cannot.
"""

from __future__ import annotations

import gymnasium as gym

from ..models import FLOAT_INPUT_DIM
from ..synthetic.env import ENV_ID
from .learner import RLConfig
from .loop import split_observation
from .replay import NStepWriter, ReplayBuffer


def collect_demonstrations(
    rl: RLConfig, steps: int, tracks: tuple[int, ...] = (0,), env_kwargs: dict | None = None, capacity: int = 0
) -> ReplayBuffer:
    """`steps` autopilot decisions, episodes on `tracks` in turn (reset seeds rl.seed + episode), as n-step
    transitions with the learner's n, gamma and reward scale, in a demonstration buffer (`is_demo` rows)."""
    env_kwargs = dict(env_kwargs or {})
    float_dim = FLOAT_INPUT_DIM if env_kwargs.get("include_floats") else 0
    image_hw = (env_kwargs.get("image_height", 64), env_kwargs.get("image_width", 64))
    buffer = ReplayBuffer(capacity or steps, (1, *image_hw), float_dim, seed=rl.seed, demo=True)
    writer = NStepWriter(rl.n_step, rl.gamma)
    envs = {t: gym.make(ENV_ID, track=t, autopilot=True, **env_kwargs) for t in sorted(set(tracks))}
    episode, track = 0, tracks[0]
    obs, _ = envs[track].reset(seed=rl.seed)
    for _ in range(steps):
        next_obs, reward, terminated, truncated, info = envs[track].step(0)  # the driver ignores the action
        (frames, floats), (next_frames, next_floats) = split_observation(obs), split_observation(next_obs)
        action, scaled = info["action"], reward * rl.reward_scale
        for transition in writer.step(frames, floats, action, scaled, next_frames, next_floats, terminated, truncated):
            buffer.add(transition)
        obs = next_obs
        if terminated or truncated:
            episode += 1
            track = tracks[episode % len(tracks)]
            obs, _ = envs[track].reset(seed=rl.seed + episode)
    for env in envs.values():
        env.close()
    return buffer

"""A minimal, single-environment training loop in tmpretrain/SynthTrack-v0, deterministic for a seed.

Not a pipeline stage yet: no params group, no DVC stage, no evaluation of the greedy policy. One process, one
environment, acting and learning interleaved at `samples_per_transition / batch_size` updates per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from ..models import FLOAT_INPUT_DIM
from ..synthetic.env import ENV_ID  # registered by importing tmpretrain
from .learner import Learner, RLConfig, schedule_value
from .network import IQNNetwork, init_from_export
from .replay import NStepWriter, ReplayBuffer, sample_mixed


@dataclass(frozen=True)
class LoopConfig:
    total_steps: int = 100_000
    tracks: tuple[int, ...] = (0,)  # env `track` of each episode, in turn
    init: str = "scratch"  # network.INIT_ARMS
    init_dir: str | None = None  # the export that `init` loads
    # SynthTrack-v0 keywords (observation size, decision interval, limits...); n_stack must stay 1 (the agent
    # sees one frame), include_floats True feeds the 184 race floats instead of zeros.
    env_kwargs: dict = field(default_factory=dict)
    # One thread per process on a shared CPU (two threads on two busy cores oversubscribe: several times slower);
    # float reductions, hence the run's numbers, can depend on the thread count.
    torch_threads: int = 1


@dataclass
class EpisodeLog:
    step: int  # environment steps done when the episode ended
    track: int
    steps: int
    distance_m: float
    progress: float
    finished: bool
    lap_time_s: float
    end: str


def split_observation(obs) -> tuple[np.ndarray, np.ndarray | None]:
    """(frames, floats) of a SynthTrack-v0 observation; floats None without include_floats."""
    return (obs["frames"], obs["floats"]) if isinstance(obs, dict) else (obs, None)


def train(
    rl: RLConfig, loop: LoopConfig, demos: ReplayBuffer | None = None, device: str = "cpu"
) -> tuple[Learner, list[EpisodeLog]]:
    """Train from `loop.init`, `rl.demo_fraction` of each batch from `demos` if given; returns the learner and one
    log line per finished episode."""
    if loop.env_kwargs.get("n_stack", 1) != 1:
        raise ValueError("the agent's network sees one frame: env n_stack must be 1")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(loop.torch_threads)
    try:
        return _train(rl, loop, demos, device)
    finally:
        torch.set_num_threads(previous_threads)


def _train(rl: RLConfig, loop: LoopConfig, demos: ReplayBuffer | None, device: str) -> tuple[Learner, list[EpisodeLog]]:
    torch.manual_seed(rl.seed)
    image_hw = (loop.env_kwargs.get("image_height", 64), loop.env_kwargs.get("image_width", 64))
    network = IQNNetwork(image_hw)
    init_from_export(network, loop.init, loop.init_dir)
    learner = Learner(rl, network, device)
    float_dim = FLOAT_INPUT_DIM if loop.env_kwargs.get("include_floats") else 0
    buffer = ReplayBuffer(rl.replay_capacity, (1, *image_hw), float_dim, seed=rl.seed)
    writer = NStepWriter(rl.n_step, rl.gamma)
    updates_per_step = rl.samples_per_transition / rl.batch_size

    logs: list[EpisodeLog] = []
    envs = {track: gym.make(ENV_ID, track=track, **loop.env_kwargs) for track in sorted(set(loop.tracks))}
    episode, episode_steps, credit = 0, 0, 0.0
    track = loop.tracks[0]
    frames, floats = split_observation(envs[track].reset(seed=rl.seed)[0])
    for step in range(loop.total_steps):
        epsilon = schedule_value(rl.epsilon_schedule, step)
        epsilon_boltzmann = schedule_value(rl.epsilon_boltzmann_schedule, step)
        batch_floats = None if floats is None else floats[None]
        action = int(learner.act(frames[None], batch_floats, epsilon, epsilon_boltzmann)[0])
        obs, reward, terminated, truncated, info = envs[track].step(action)
        next_frames, next_floats = split_observation(obs)
        scaled = reward * rl.reward_scale
        for transition in writer.step(frames, floats, action, scaled, next_frames, next_floats, terminated, truncated):
            buffer.add(transition)
        frames, floats = next_frames, next_floats
        episode_steps += 1

        if terminated or truncated:
            logs.append(
                EpisodeLog(
                    step=step + 1,
                    track=track,
                    steps=episode_steps,
                    distance_m=info["distance_m"],
                    progress=info["progress"],
                    finished=terminated,  # the env terminates an episode only at the finish line
                    lap_time_s=info["lap_time_s"],
                    end=info["end"],
                )
            )
            episode, episode_steps = episode + 1, 0
            track = loop.tracks[episode % len(loop.tracks)]
            frames, floats = split_observation(envs[track].reset(seed=rl.seed + episode)[0])

        if len(buffer) >= rl.learning_starts:
            credit += updates_per_step
            while credit >= 1.0:
                learner.update(sample_mixed(buffer, demos, rl.batch_size, rl.demo_fraction), step)
                credit -= 1.0
    for env in envs.values():
        env.close()
    return learner, logs

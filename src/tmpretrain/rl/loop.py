"""The training loop: one SynthTrack-v0 env per track stepped in lockstep, one batched action per step for all of
them, learning interleaved at `samples_per_transition / batch_size` updates per env step; deterministic for a seed.

With demonstrations, DQfD's order: `demo_pretrain_updates` updates on demonstrations alone before the first action,
then `demo_fraction` of every batch from them. `on_eval(learner, env_steps)` is called at step 0 and whenever another
`eval_every` env steps are done (eval_every > 0), and at the end. Env steps count every env at every lockstep step
(gymnasium spends an env's step after its episode's end on the reset), so they advance by the number of envs and
may pass the budget by up to one step per env.
"""

from __future__ import annotations

from collections.abc import Callable
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
    total_steps: int = 100_000  # env steps, all envs together
    tracks: tuple[int, ...] = (0,)  # one env per track (SynthTrack-v0's `track`)
    init: str = "scratch"  # network.INIT_ARMS
    init_dir: str | None = None  # the export that `init` loads
    # SynthTrack-v0 keywords for every env (observation size, decision interval, limits, training_seed...); n_stack
    # must stay 1 (the agent sees one frame), include_floats True feeds the 184 race floats instead of zeros.
    env_kwargs: dict = field(default_factory=dict)
    eval_every: int = 0  # env steps between calls of on_eval; 0 = none
    demo_pretrain_updates: int = 0  # updates on demonstrations alone before acting (DQfD's pre-training phase)
    # One thread per process on a shared CPU (two threads on two busy cores oversubscribe: several times slower);
    # float reductions, hence the run's numbers, can depend on the thread count.
    torch_threads: int = 1


@dataclass
class EpisodeLog:
    step: int  # environment steps done (all envs) when the episode ended
    track: int
    steps: int
    distance_m: float
    progress: float
    finished: bool
    lap_time_s: float
    end: str


def split_observation(obs) -> tuple[np.ndarray, np.ndarray | None]:
    """(frames, floats) of a SynthTrack-v0 observation (one env's or a vector env's); floats None without
    include_floats."""
    return (obs["frames"], obs["floats"]) if isinstance(obs, dict) else (obs, None)


def make_network(loop: LoopConfig, seed: int) -> IQNNetwork:
    """The online network of a run: the agent's init drawn from `seed`, then the arm's export loaded over it (so
    the parts an arm does not load start the same in every arm of a seed)."""
    torch.manual_seed(seed)
    network = IQNNetwork((loop.env_kwargs.get("image_height", 64), loop.env_kwargs.get("image_width", 64)))
    init_from_export(network, loop.init, loop.init_dir)
    return network


def train(
    rl: RLConfig,
    loop: LoopConfig,
    demos: ReplayBuffer | None = None,
    on_eval: Callable[[Learner, int], None] | None = None,
    device: str = "cpu",
) -> tuple[Learner, list[EpisodeLog]]:
    """Train from `loop.init`, with `demos` as DQfD's demonstrations if given; returns the learner and one log per
    finished episode."""
    if loop.env_kwargs.get("n_stack", 1) != 1:
        raise ValueError("the agent's network sees one frame: env n_stack must be 1")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(loop.torch_threads)
    try:
        return _train(rl, loop, demos, on_eval, device)
    finally:
        torch.set_num_threads(previous_threads)


def _train(rl, loop, demos, on_eval, device) -> tuple[Learner, list[EpisodeLog]]:
    learner = Learner(rl, make_network(loop, rl.seed), device)
    image_hw = learner.online.image_hw
    float_dim = FLOAT_INPUT_DIM if loop.env_kwargs.get("include_floats") else 0
    buffer = ReplayBuffer(rl.replay_capacity, (1, *image_hw), float_dim, seed=rl.seed)
    n_envs = len(loop.tracks)
    writers = [NStepWriter(rl.n_step, rl.gamma) for _ in range(n_envs)]
    updates_per_step = rl.samples_per_transition / rl.batch_size
    if demos is not None:
        for _ in range(loop.demo_pretrain_updates):
            learner.update(demos.sample(rl.batch_size), 0)
    envs = gym.make_vec(
        ENV_ID, n_envs, vectorization_mode="vector_entry_point", tracks=list(loop.tracks), **loop.env_kwargs
    )
    logs: list[EpisodeLog] = []
    episode_steps = np.zeros(n_envs, dtype=np.int64)
    resetting = np.zeros(n_envs, dtype=bool)  # gymnasium's next-step autoreset: this step only resets the env
    frames, floats = split_observation(envs.reset(seed=rl.seed)[0])
    step, credit, next_eval, last_eval = 0, 0.0, 0, None
    while step < loop.total_steps:
        if on_eval is not None and loop.eval_every and step >= next_eval:
            on_eval(learner, step)
            last_eval, next_eval = step, (step // loop.eval_every + 1) * loop.eval_every
        actions = learner.act(
            frames,
            floats,
            schedule_value(rl.epsilon_schedule, step),
            schedule_value(rl.epsilon_boltzmann_schedule, step),
        )
        obs, rewards, terminated, truncated, info = envs.step(actions)
        next_frames, next_floats = split_observation(obs)
        for i in np.flatnonzero(~resetting):
            transitions = writers[i].step(
                frames[i],
                None if floats is None else floats[i],
                actions[i],
                rewards[i] * rl.reward_scale,
                next_frames[i],
                None if next_floats is None else next_floats[i],
                bool(terminated[i]),
                bool(truncated[i]),
            )
            for transition in transitions:
                buffer.add(transition)
        episode_steps += ~resetting
        step += n_envs
        done = terminated | truncated
        for i in np.flatnonzero(done):
            logs.append(_episode_log(info, i, step, loop.tracks[i], int(episode_steps[i]), bool(terminated[i])))
            episode_steps[i] = 0
        resetting = done
        frames, floats = next_frames, next_floats

        if len(buffer) >= rl.learning_starts:
            credit += n_envs * updates_per_step
            while credit >= 1.0:
                learner.update(sample_mixed(buffer, demos, rl.batch_size, rl.demo_fraction), step)
                credit -= 1.0
    if on_eval is not None and last_eval != step:
        on_eval(learner, step)
    envs.close()
    return learner, logs


def _episode_log(info: dict, i: int, step: int, track: int, steps: int, finished: bool) -> EpisodeLog:
    return EpisodeLog(
        step=step,
        track=track,
        steps=steps,
        distance_m=float(info["distance_m"][i]),
        progress=float(info["progress"][i]),
        finished=finished,  # the env terminates an episode only at the finish line
        lap_time_s=float(info["lap_time_s"][i]),
        end=str(info["end"][i]),
    )

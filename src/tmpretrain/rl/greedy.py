"""The greedy policy of a learner, evaluated with the `evaluate` protocol (evaluate.py's rollout, track_rows and
group_metrics) on held-out tracks: argmax of the mean of K quantiles, as the agent acts without exploration."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from ..evaluate import ConstantPolicy, EvalSetup, rollout, track_rows
from .learner import Learner
from .loop import split_observation

TRACK_FIELDS = ("track", "finished", "clean", "progress", "lap_time_ratio", "offroad_fraction", "mean_speed", "end")
_EVAL_TAUS_SEED = 0  # every evaluation draws the same taus: its result depends on the weights alone


class GreedyPolicy:
    """`act(observations, episodes)` as evaluate.rollout calls it; taus from its own stream, not the learner's."""

    def __init__(self, learner: Learner):
        self.learner = learner
        self.generator = torch.Generator(learner.device).manual_seed(_EVAL_TAUS_SEED)

    def act(self, observations: list, episodes: list) -> list[int]:
        frames, floats = zip(*(split_observation(o) for o in observations), strict=True)
        batch_floats = None if floats[0] is None else np.stack(floats)
        return self.learner.q_values(np.stack(frames), batch_floats, self.generator).argmax(dim=1).tolist()


def expert_lap_times(setup: EvalSetup) -> dict[int, float]:
    """The scripted driver's lap time per evaluation track (the lap-time ratio's denominator), as `evaluate`."""
    envs = [setup.make_env(track, {}, autopilot=True, observe=False) for track in setup.tracks]
    episodes = rollout(envs, [(track, 0) for track in setup.tracks], ConstantPolicy(0), setup.seed)
    for env in envs:
        env.close()
    return {row["track"]: row["lap_time_s"] for row in track_rows("expert", episodes, {})}


class GreedyEvaluation:
    """One env per held-out track, kept for the whole run; each call drives every track once, all together."""

    def __init__(self, setup: EvalSetup, observation: dict, expert_laps: dict[int, float]):
        self.setup, self.expert_laps = setup, expert_laps
        self.envs: list[gym.Env] = [setup.make_env(track, observation) for track in setup.tracks]

    def __call__(self, learner: Learner) -> list[dict]:
        """One row per track: finished, clean, progress, lap_time_ratio (None where it did not finish)."""
        runs = [(track, 0) for track in self.setup.tracks]
        episodes = rollout(self.envs, runs, GreedyPolicy(learner), self.setup.seed)
        rows = track_rows("greedy", episodes, self.expert_laps)
        return [{k: row[k] for k in TRACK_FIELDS} for row in rows]

    def close(self) -> None:
        for env in self.envs:
            env.close()

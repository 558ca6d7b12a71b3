"""Demonstrations: the scripted driver's own decisions and rewards, as n-step transitions marked `is_demo`."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from tmpretrain.rl.demos import collect_demonstrations
from tmpretrain.rl.learner import RLConfig
from tmpretrain.rl.loop import LoopConfig, train
from tmpretrain.synthetic.env import ENV_ID

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_demonstrations_are_the_drivers_decisions():
    rl = RLConfig(n_step=3, gamma=0.5, reward_scale=0.01, seed=4)
    # 1 s episodes of 10 decisions on tracks 0, 1, 0: two whole episodes and 5 steps of a third, whose last 2
    # transitions still wait for their third reward.
    buffer = collect_demonstrations(rl, steps=25, tracks=(0, 1), env_kwargs={"time_limit_s": 1.0})
    assert len(buffer) == 23 and buffer.demo and buffer.sample(4).is_demo.all()

    # The first episode again, driven here: the same actions, and the n-step returns of its rewards.
    env = gym.make(ENV_ID, track=0, autopilot=True, time_limit_s=1.0)
    env.reset(seed=4)
    actions, rewards = [], []
    for _ in range(10):
        _, reward, _, _, info = env.step(0)
        actions.append(info["action"])
        rewards.append(0.01 * reward)
    assert buffer.actions[:10].tolist() == actions
    assert buffer.returns[0] == pytest.approx(rewards[0] + 0.5 * rewards[1] + 0.25 * rewards[2], rel=1e-5)
    assert buffer.discounts[:10].tolist() == [0.125] * 8 + [0.25, 0.5]  # truncated by the time limit: bootstrap


def test_the_loop_mixes_demonstrations_into_its_batches():
    rl = RLConfig(batch_size=8, learning_starts=20, samples_per_transition=2.0, demo_fraction=0.5, margin_weight=1.0)
    loop = LoopConfig(total_steps=40, env_kwargs={"time_limit_s": 1.0})
    demos = collect_demonstrations(rl, steps=20, env_kwargs=loop.env_kwargs)
    with_demos, _ = train(rl, loop, demos)
    without, _ = train(rl, loop)
    assert with_demos.updates == without.updates > 0
    assert not torch.equal(with_demos.online.A_head[0].weight, without.online.A_head[0].weight)

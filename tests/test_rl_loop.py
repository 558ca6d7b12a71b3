"""The training loop runs in SynthTrack-v0, logs its episodes, and a seed reproduces it exactly."""

from __future__ import annotations

import pytest
import torch

from tmpretrain.rl.learner import RLConfig
from tmpretrain.rl.loop import LoopConfig, train

# 1 s episodes of 100 ms decisions on two tracks in turn; learning from step ~20, one batch of 8 every 4 steps.
LOOP = LoopConfig(total_steps=60, tracks=(0, 1), env_kwargs={"time_limit_s": 1.0})


def run(seed: int):
    rl = RLConfig(batch_size=8, learning_starts=20, samples_per_transition=2.0, seed=seed)
    learner, logs = train(rl, LOOP)
    return torch.cat([p.flatten() for p in learner.online.parameters()]), logs, learner.updates


def test_a_seed_reproduces_the_run_and_episodes_are_logged():
    weights, logs, updates = run(0)
    again, logs_again, _ = run(0)
    assert torch.equal(weights, again) and logs == logs_again
    assert [log.track for log in logs] == [0, 1] * 3  # 10 decisions each, tracks in turn
    assert all(log.steps == 10 and log.end == "time_limit" for log in logs)
    assert 8 <= updates <= 10  # about (60 - 20) / 4
    other, _, _ = run(1)
    assert not torch.equal(weights, other)


def test_the_agent_sees_one_frame():
    with pytest.raises(ValueError, match="n_stack must be 1"):
        train(RLConfig(), LoopConfig(total_steps=1, env_kwargs={"n_stack": 2}))

"""The training loop steps one env per track in lockstep, logs their episodes, evaluates on schedule, and a seed
reproduces it exactly."""

from __future__ import annotations

import pytest
import torch

from tmpretrain.rl.demos import collect_demonstrations
from tmpretrain.rl.learner import RLConfig
from tmpretrain.rl.loop import LoopConfig, train

# 1 s episodes of 100 ms decisions on two tracks in lockstep; learning from step ~20, one batch of 8 every 4 steps.
LOOP = LoopConfig(total_steps=60, tracks=(0, 1), env_kwargs={"time_limit_s": 1.0}, eval_every=25)


def run(seed: int, **overrides):
    rl = RLConfig(batch_size=8, learning_starts=20, samples_per_transition=2.0, seed=seed, **overrides)
    evaluated = []
    learner, logs = train(rl, LOOP, on_eval=lambda learner, step: evaluated.append(step))
    return torch.cat([p.flatten() for p in learner.online.parameters()]), logs, learner.updates, evaluated


def test_a_seed_reproduces_the_run_and_episodes_are_logged():
    weights, logs, updates, evaluated = run(0)
    again, logs_again, _, _ = run(0)
    assert torch.equal(weights, again) and logs == logs_again
    # each env's episode is 10 decisions; the step after one only resets that env (gymnasium's autoreset)
    assert [(log.track, log.steps, log.end) for log in logs] == [(0, 10, "time_limit"), (1, 10, "time_limit")] * 2
    assert [log.step for log in logs] == [20, 20, 42, 42]  # 2 envs x (10 + the reset step + 10)
    assert evaluated == [0, 26, 50, 60]  # at 0, on passing 25 and 50 (lockstep steps of 2), at the end
    assert 9 <= updates <= 12  # about (60 - 20) / 4
    other, _, _, _ = run(1)
    assert not torch.equal(weights, other)


def test_demonstrations_train_before_the_first_action():
    rl = RLConfig(batch_size=8, learning_starts=10**6, demo_fraction=0.5, margin_weight=1.0)
    demos = collect_demonstrations(rl, 30, tracks=(0,), env_kwargs={"time_limit_s": 1.0})
    loop = LoopConfig(total_steps=4, tracks=(0, 1), env_kwargs={"time_limit_s": 1.0}, demo_pretrain_updates=5)
    learner, _ = train(rl, loop, demos)
    assert learner.updates == 5  # the online phase never reached learning_starts


def test_the_agent_sees_one_frame():
    with pytest.raises(ValueError, match="n_stack must be 1"):
        train(RLConfig(), LoopConfig(total_steps=1, env_kwargs={"n_stack": 2}))

"""The learner: it learns a fixed batch, updates its target network as configured, explores as Linesight does,
anneals the large-margin term, is reproducible for a seed; the benchmark prints its JSON."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from tmpretrain.cli import main
from tmpretrain.params import Params, parse_params
from tmpretrain.rl.learner import Learner, RLConfig, schedule_value
from tmpretrain.rl.network import IQNNetwork
from tmpretrain.rl.replay import Batch

HW = (36, 36)  # the encoder's smallest input: fast, the same layers


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_learner(seed: int = 0, **overrides) -> Learner:
    torch.manual_seed(seed)
    return Learner(RLConfig(seed=seed, **overrides), IQNNetwork(HW))


def fixed_batch(n: int = 8, demo: bool = False) -> Batch:
    """Two distinct frames; action 0 pays 1 from the first, action 1 pays -1 from the second; episodes end there."""
    frames = torch.zeros(n, 1, *HW, dtype=torch.uint8)
    frames[1::2] = 255
    actions = torch.arange(n) % 2
    return Batch(
        frames=frames,
        floats=None,
        actions=actions,
        returns=1.0 - 2.0 * actions.float(),
        discounts=torch.zeros(n),
        next_frames=frames.clone(),
        next_floats=None,
        is_demo=torch.full((n,), demo),
    )


def taken_q(learner: Learner, batch: Batch) -> torch.Tensor:
    return learner.q_values(batch.frames).gather(1, batch.actions[:, None]).squeeze(1)


def test_learns_a_fixed_batch():
    learner, batch = make_learner(), fixed_batch()
    error_before = (taken_q(learner, batch) - batch.returns).abs().mean()
    losses = [learner.update(batch)["td_loss"] for _ in range(60)]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])  # the quantiles' spread shrinks more slowly ...
    assert (taken_q(learner, batch) - batch.returns).abs().mean() < 0.2 * error_before  # ... than their mean moves
    assert learner.updates == 60 and learner.transitions_trained == 480


def test_target_network_soft_update_every_n_transitions():
    learner, batch = make_learner(target_update_every_transitions=16, target_update_tau=0.25), fixed_batch(8)
    start = [p.clone() for p in learner.target.parameters()]
    learner.update(batch)  # 8 transitions trained: no target update yet
    assert all(torch.equal(p, s) for p, s in zip(learner.target.parameters(), start, strict=True))
    learner.update(batch)  # 16: target <- 0.75 target + 0.25 online
    for p, s, o in zip(learner.target.parameters(), start, learner.online.parameters(), strict=True):
        torch.testing.assert_close(p, 0.75 * s + 0.25 * o.detach())
    assert not any(p.requires_grad for p in learner.target.parameters())


def test_exploration():
    frames = np.random.default_rng(0).integers(0, 256, (240, 1, *HW), dtype=np.uint8)
    greedy = make_learner(seed=3).q_values(frames).argmax(dim=1).numpy()  # the same seed draws the same taus
    assert (make_learner(seed=3).act(frames) == greedy).all()
    random_actions = make_learner(seed=3).act(frames, epsilon=1.0)
    assert len(set(random_actions.tolist())) == 12 and (random_actions != greedy).mean() > 0.8
    # "Boltzmann": Q plus Gaussian noise of std boltzmann_temperature; tiny noise keeps the greedy choice.
    assert (make_learner(seed=3, boltzmann_temperature=1e-9).act(frames, epsilon_boltzmann=1.0) == greedy).all()
    noisy = make_learner(seed=3, boltzmann_temperature=1e3).act(frames, epsilon_boltzmann=1.0)
    assert (noisy != greedy).mean() > 0.8


def test_large_margin_term_on_demonstrations_only_and_annealed():
    learner = make_learner(margin_weight=1.0, margin_anneal_updates=4)
    assert learner.update(fixed_batch(demo=False))["margin_loss"] == 0.0  # own transitions: TD only
    assert learner.margin_weight() == 0.75
    assert learner.update(fixed_batch(demo=True))["margin_loss"] > 0.0
    for _ in range(2):
        learner.update(fixed_batch(demo=True))
    assert learner.margin_weight() == 0.0 and learner.update(fixed_batch(demo=True))["margin_loss"] == 0.0


def test_a_seed_reproduces_the_run():
    def run(seed):
        learner = make_learner(seed)
        for _ in range(3):
            learner.update(fixed_batch())
        return torch.cat([p.flatten() for p in learner.online.parameters()])

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_a_resumed_learner_continues_exactly(tmp_path):
    frames = fixed_batch().frames.numpy()
    uninterrupted = make_learner(target_update_every_transitions=16)
    for _ in range(4):
        uninterrupted.update(fixed_batch())
    uninterrupted.act(frames, epsilon=0.5)

    first = make_learner(target_update_every_transitions=16)
    for _ in range(2):
        first.update(fixed_batch())
    torch.save(first.state_dict(), tmp_path / "learner.pt")
    resumed = make_learner(seed=99, target_update_every_transitions=16)  # another seed: everything comes from the file
    resumed.load_state_dict(torch.load(tmp_path / "learner.pt", weights_only=False))
    for _ in range(2):
        resumed.update(fixed_batch())
    resumed.act(frames, epsilon=0.5)

    for a, b in ((uninterrupted.online, resumed.online), (uninterrupted.target, resumed.target)):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert (uninterrupted.act(frames, epsilon=0.5) == resumed.act(frames, epsilon=0.5)).all()
    assert resumed.updates == 4 and resumed.transitions_trained == 32


def test_schedules_by_hand():
    epsilon = ((0, 1.0), (5_000, 1.0), (30_000, 0.1), (300_000, 0.03))  # Linesight's, steps / 10
    assert schedule_value(epsilon, 0) == 1.0 and schedule_value(epsilon, 5_000) == 1.0
    assert schedule_value(epsilon, 17_500) == pytest.approx(0.55)
    assert schedule_value(epsilon, 10**9) == 0.03
    learner = make_learner(lr_schedule=((0, 1e-3), (100, 1e-4)))
    learner.update(fixed_batch(), env_step=50)
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(5.5e-4)


def test_config_is_frozen_and_checked():
    with pytest.raises(ValueError, match="n_quantiles=7"):
        RLConfig(n_quantiles=7)
    with pytest.raises(ValueError, match="gamma=1.5, demo_fraction=-0.1"):
        RLConfig(gamma=1.5, demo_fraction=-0.1)
    cfg = RLConfig()
    with pytest.raises(AttributeError):
        cfg.gamma = 0.5  # type: ignore[misc]
    assert replace(cfg, gamma=0.5).gamma == 0.5


def test_bench_prints_json(capsys):
    assert main(["bench", "rl", "--batch-size", "8", "--updates", "2", "--envs", "2", "--steps", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["env_steps_per_cpu_s_1_envs"] > 0 and result["env_steps_per_cpu_s_2_envs"] > 0
    assert result["batch_size"] == 8 and result["torch_threads"] == 1 and result["updates_per_cpu_s"] > 0
    assert result["parameters"] == sum(p.numel() for p in IQNNetwork((64, 64)).parameters())


def test_the_rl_params_group_is_the_one_source_of_the_tunable_defaults():
    assert RLConfig.from_params(Params().rl, seed=3) == RLConfig(seed=3)
    tuned = parse_params({"rl": {"batch_size": 8, "epsilon_schedule": [[0, 0.5], [100, 0.05]]}}).rl
    config = RLConfig.from_params(tuned, seed=0)
    assert config.batch_size == 8 and config.epsilon_schedule == ((0, 0.5), (100, 0.05))
    assert config.kappa == RLConfig().kappa  # Linesight's fixed knobs are not params

"""The IQN loss, its TD targets and the large-margin term against computations written here, independently, with
plain loops and numbers that can be checked by hand."""

from __future__ import annotations

import pytest
import torch

from tmpretrain.rl.loss import large_margin_loss, quantile_huber_loss, td_target_quantiles
from tmpretrain.rl.network import IQNNetwork, sample_taus


def loop_quantile_huber(targets, online, taus, kappa):
    """The IQN paper's loss for one sample, a pair at a time: mean over targets j of the sum over online i."""
    total = 0.0
    for t in targets:
        for q, tau in zip(online, taus, strict=True):
            d = t - q
            huber = 0.5 * d * d if abs(d) <= kappa else kappa * (abs(d) - 0.5 * kappa)
            total += abs(tau - (1.0 if d < 0 else 0.0)) * huber / kappa
    return total / len(targets)


def test_quantile_huber_by_hand():
    # kappa = 1. Pairs (target - online, tau): (2, 0.25): linear branch, 2 - 0.5 = 1.5, weight 0.25 -> 0.375.
    # (-0.5, 0.25): quadratic branch, 0.25 / 2 = 0.125, weight |0.25 - 1| = 0.75 -> 0.09375.
    one = quantile_huber_loss(torch.tensor([[2.0]]), torch.tensor([[0.0]]), torch.tensor([[0.25]]), kappa=1.0)
    assert one.tolist() == [0.375]
    two = quantile_huber_loss(torch.tensor([[-0.5]]), torch.tensor([[0.0]]), torch.tensor([[0.25]]), kappa=1.0)
    assert two.tolist() == [0.09375]
    # Two targets, one online quantile: the mean over targets (not the sum): (0.375 + 0.09375) / 2.
    both = quantile_huber_loss(torch.tensor([[2.0, -0.5]]), torch.tensor([[0.0]]), torch.tensor([[0.25]]), 1.0)
    assert both.tolist() == [pytest.approx(0.234375)]
    # Two online quantiles, one target: summed over online quantiles.
    summed = quantile_huber_loss(torch.tensor([[2.0]]), torch.tensor([[0.0, 2.5]]), torch.tensor([[0.25, 0.25]]), 1.0)
    assert summed.tolist() == [pytest.approx(0.375 + 0.09375)]


@pytest.mark.parametrize("kappa", [5e-3, 1.0])
def test_quantile_huber_matches_the_loop(kappa):
    g = torch.Generator().manual_seed(0)
    targets = torch.randn(4, 6, generator=g) * 0.02  # both branches at kappa = 5e-3
    online = torch.randn(4, 8, generator=g) * 0.02
    taus = torch.rand(4, 8, generator=g)
    got = quantile_huber_loss(targets, online, taus, kappa)
    want = [loop_quantile_huber(targets[b].tolist(), online[b].tolist(), taus[b].tolist(), kappa) for b in range(4)]
    torch.testing.assert_close(got, torch.tensor(want), rtol=1e-5, atol=1e-7)


def test_loss_is_zero_only_at_the_targets_and_pulls_towards_them():
    taus = torch.tensor([[0.5]])
    online = torch.tensor([[0.3]], requires_grad=True)
    quantile_huber_loss(torch.tensor([[1.0]]), online, taus, 5e-3).sum().backward()
    assert online.grad.item() < 0  # gradient descent raises the quantile towards the target
    assert quantile_huber_loss(torch.tensor([[0.3]]), torch.tensor([[0.3]]), taus, 5e-3).item() == 0.0


def test_sample_taus_are_symmetric_strata():
    taus = sample_taus(5, 8, torch.Generator().manual_seed(1))
    assert taus.shape == (5, 8)
    for q in range(4):
        assert ((taus[:, q] >= q / 8) & (taus[:, q] < (q + 1) / 8)).all()
    torch.testing.assert_close(taus[:, :4] + taus[:, 4:], torch.ones(5, 4))
    with pytest.raises(ValueError, match="even"):
        sample_taus(1, 7)


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    online, target = IQNNetwork((64, 64)).eval(), IQNNetwork((64, 64)).eval()
    g = torch.Generator().manual_seed(1)
    next_img = torch.rand(3, 1, 64, 64, generator=g) * 2 - 1
    next_floats = torch.randn(3, 184, generator=g)
    return online, target, next_img, next_floats


@pytest.mark.parametrize("double_dqn", [False, True])
def test_td_targets_match_the_loop(nets, double_dqn):
    online, target, next_img, next_floats = nets
    returns = torch.tensor([1.0, -2.0, 0.5])
    discounts = torch.tensor([0.99**3, 0.0, 0.99])  # the second transition ended in a terminal state
    got = td_target_quantiles(
        online, target, next_img, next_floats, returns, discounts, 8, torch.Generator().manual_seed(7), double_dqn
    )
    # The same draws, in the documented order: the target's taus first, then (double DQN) the online network's.
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        q_target = target(next_img, next_floats, sample_taus(3, 8, g))
        q_online = online(next_img, next_floats, sample_taus(3, 8, g))
    for b in range(3):
        mean_online = [sum(q_online[b, j, a].item() for j in range(8)) / 8 for a in range(12)]
        greedy = max(range(12), key=lambda a: mean_online[a])
        for j in range(8):
            row = q_target[b, j].tolist()
            bootstrap = row[greedy] if double_dqn else max(row)
            assert got[b, j].item() == pytest.approx(returns[b].item() + discounts[b].item() * bootstrap, rel=1e-5)
    assert (got[1] == -2.0).all()  # terminal: the return alone, whatever the next state's value


def test_large_margin_by_hand():
    q = torch.tensor([[1.0, 2.0, 0.5], [1.0, 2.0, 0.5]])
    got = large_margin_loss(q, torch.tensor([0, 1]), margin=0.8)
    # expert 0: max(1, 2 + 0.8, 0.5 + 0.8) - 1 = 1.8; expert 1 leads the others by more than 0.8: 0
    torch.testing.assert_close(got, torch.tensor([1.8, 0.0]))

"""The IQN loss (Dabney et al. 2018) as the agent computes it (Linesight agents/iqn.py), its targets, and DQfD's
large-margin term (Hester et al. 2017) for the demonstration-aware arm."""

from __future__ import annotations

import torch

from .network import IQNNetwork, sample_taus


def quantile_huber_loss(
    target_quantiles: torch.Tensor, online_quantiles: torch.Tensor, online_taus: torch.Tensor, kappa: float
) -> torch.Tensor:
    """Per-sample quantile Huber loss (B,).

    target_quantiles (B, N'), online_quantiles and online_taus (B, N). With d = target - online for every pair:
    Huber(d) / kappa, i.e. d^2 / (2 kappa) when |d| < kappa and |d| - kappa / 2 otherwise, weighted by
    |tau - 1[d < 0]|, summed over the online quantiles and averaged over the target ones.
    """
    d = target_quantiles[:, :, None] - online_quantiles[:, None, :]  # (B, N', N)
    abs_d = d.abs()
    huber = torch.where(abs_d < kappa, d.square() / (2.0 * kappa), abs_d - 0.5 * kappa)
    weight = (online_taus[:, None, :] - (d < 0).to(d.dtype)).abs()
    return (weight * huber).sum(dim=2).mean(dim=1)


@torch.no_grad()
def td_target_quantiles(
    online: IQNNetwork,
    target: IQNNetwork,
    next_img: torch.Tensor,
    next_floats: torch.Tensor,
    returns: torch.Tensor,
    discounts: torch.Tensor,
    n_quantiles: int,
    generator: torch.Generator | None = None,
    double_dqn: bool = False,
) -> torch.Tensor:
    """n-step targets (B, N'): returns + discounts * Z_target(next state, a*) at N' fresh taus.

    `returns` is the discounted sum of the n rewards, `discounts` gamma^k to the bootstrap state (0 where the
    episode terminated on the way). a* is Linesight's: without double DQN the max over actions of each target
    quantile; with it (Linesight's use_ddqn), the online network's argmax of the mean, the same for every quantile.
    """
    batch = next_img.shape[0]
    device = next_img.device
    q_next = target(next_img, next_floats, sample_taus(batch, n_quantiles, generator, device))  # (B, N', A)
    if double_dqn:
        online_mean = online(next_img, next_floats, sample_taus(batch, n_quantiles, generator, device)).mean(dim=1)
        best = online_mean.argmax(dim=1)[:, None, None].expand(-1, n_quantiles, 1)
        chosen = q_next.gather(2, best).squeeze(2)
    else:
        chosen = q_next.max(dim=2).values
    return returns[:, None] + discounts[:, None] * chosen


def large_margin_loss(q_values: torch.Tensor, expert_actions: torch.Tensor, margin: float) -> torch.Tensor:
    """DQfD's supervised term per sample (B,): max_a [Q(s, a) + margin * 1[a != a_E]] - Q(s, a_E) >= 0.

    q_values (B, A), e.g. the mean over quantiles; it is 0 once the expert's action leads all others by the margin.
    """
    margins = torch.full_like(q_values, margin).scatter(1, expert_actions[:, None], 0.0)
    return (q_values + margins).max(dim=1).values - q_values.gather(1, expert_actions[:, None]).squeeze(1)

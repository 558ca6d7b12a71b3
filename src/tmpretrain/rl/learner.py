"""The learner: RLConfig (every knob), the IQN update step, the target network and exploration.

Defaults follow Linesight's config_files/config.py (mid-2026) where the value does not depend on the game;
schedules measured in environment steps are scaled by 1/10 (SynthTrack tracks are short and a small study runs
~100k-300k steps where Linesight runs millions), and the batch is the CPU's, not the GPU's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from .loss import large_margin_loss, quantile_huber_loss, td_target_quantiles
from .network import IQNNetwork, obs_to_img, sample_taus, zero_floats
from .replay import Batch

Schedule = tuple[tuple[int, float], ...]  # (step, value) points, linear in between, constant after the last


@dataclass(frozen=True)
class RLConfig:
    # IQN (Linesight iqn_n, iqn_k, iqn_kappa, use_ddqn as is; E = 128 is the 64x64 variant of the contract)
    n_quantiles: int = 8  # N = N' for the loss
    n_quantiles_act: int = 32  # K when acting
    kappa: float = 5e-3  # Huber threshold, in reward units: meaningful with reward_scale below
    double_dqn: bool = False  # Linesight use_ddqn = False
    # returns (Linesight n_steps = 3; gamma 0.999 per 50 ms action is a 50 s horizon: at SynthTrack's 100 ms
    # decisions 0.99 is 10 s, about a corner sequence on its short tracks: scaled, not copied)
    n_step: int = 3
    gamma: float = 0.99
    reward_scale: float = 0.01  # Linesight pays 5/500 per metre along the centre line; the env pays 1 per metre
    # optimisation (Linesight: RAdam, adam_epsilon 1e-4, betas 0.9 / 0.999, clip_grad_norm 30, clip_grad_value
    # 1000, lr 1e-3 -> 5e-5 at 3M steps; batch 512 on a GPU, 64 here: ~80 ms per update on one CPU core, see bench.py)
    batch_size: int = 64
    lr_schedule: Schedule = ((0, 1e-3), (300_000, 5e-5))
    adam_eps: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    clip_grad_norm: float = 30.0
    clip_grad_value: float = 1000.0
    # target network (Linesight: soft update, tau 0.02, every 2048 transitions trained)
    target_update_tau: float = 0.02
    target_update_every_transitions: int = 2048
    # replay (Linesight: 50k transitions, learning starts at 20k, each transition sampled ~32 times)
    replay_capacity: int = 50_000
    learning_starts: int = 2_000
    samples_per_transition: float = 32.0
    # exploration (Linesight schedules scaled by 1/10: epsilon 1 until 50k, 0.1 at 300k, 0.03 at 3M; Gaussian
    # noise of std 0.01 on the Q values with probability 0.15 -> 0.03 at 3M, its "Boltzmann" exploration)
    epsilon_schedule: Schedule = ((0, 1.0), (5_000, 1.0), (30_000, 0.1), (300_000, 0.03))
    epsilon_boltzmann_schedule: Schedule = ((0, 0.15), (300_000, 0.03))
    boltzmann_temperature: float = 0.01
    # demonstrations (DQfD: large-margin term, margin 0.8, weight 1; annealed to 0 as in QDagger; off by default)
    demo_fraction: float = 0.0  # share of each batch drawn from the demonstration buffer
    margin: float = 0.8
    margin_weight: float = 0.0
    margin_anneal_updates: int = 10_000  # the weight falls linearly to 0 over this many updates
    seed: int = 0

    def __post_init__(self):
        checks = {
            "n_quantiles": self.n_quantiles >= 2 and self.n_quantiles % 2 == 0,  # symmetric strata: even
            "n_quantiles_act": self.n_quantiles_act >= 2 and self.n_quantiles_act % 2 == 0,
            "kappa": self.kappa > 0,
            "n_step": self.n_step >= 1,
            "gamma": 0 < self.gamma <= 1,
            "batch_size": self.batch_size >= 1,
            "target_update_tau": 0 < self.target_update_tau <= 1,
            "demo_fraction": 0 <= self.demo_fraction <= 1,
            "replay_capacity": self.replay_capacity >= self.batch_size,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"RLConfig: {values} out of range (quantile counts even, gamma in (0, 1], ...)")


def schedule_value(schedule: Schedule, step: int) -> float:
    """Piecewise-linear in `step` through the (step, value) points, as Linesight's schedules."""
    steps, values = zip(*schedule, strict=True)
    return float(np.interp(step, steps, values))


class Learner:
    """The online and target IQN networks, their optimizer and the update; acts with K quantiles."""

    def __init__(self, config: RLConfig, network: IQNNetwork, device: str | torch.device = "cpu"):
        self.config, self.device = config, torch.device(device)
        self.online = network.to(self.device)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        self.optimizer = torch.optim.RAdam(
            self.online.parameters(),
            lr=schedule_value(config.lr_schedule, 0),
            betas=config.adam_betas,
            eps=config.adam_eps,
        )
        self.taus = torch.Generator(self.device).manual_seed(config.seed)  # quantile fractions of the updates
        self.act_taus = torch.Generator(self.device).manual_seed(config.seed + 1)  # of acting: its own stream
        self.rng = np.random.default_rng(config.seed)  # exploration
        self.updates = 0
        self.transitions_trained = 0
        self._next_target_update = config.target_update_every_transitions

    def _floats(self, floats: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        return zero_floats(batch_size, self.device) if floats is None else floats.to(self.device, torch.float32)

    def update(self, batch: Batch, env_step: int = 0) -> dict[str, float]:
        """One gradient step on `batch`; `env_step` sets the learning rate from its schedule."""
        cfg, b = self.config, batch.to(self.device)
        n = len(b)
        img, next_img = obs_to_img(b.frames), obs_to_img(b.next_frames)
        floats, next_floats = self._floats(b.floats, n), self._floats(b.next_floats, n)
        targets = td_target_quantiles(
            self.online, self.target, next_img, next_floats, b.returns, b.discounts, cfg.n_quantiles, self.taus,
            cfg.double_dqn,
        )  # fmt: skip
        taus = sample_taus(n, cfg.n_quantiles, self.taus, self.device)
        quantiles = self.online(img, floats, taus)  # (B, N, A)
        chosen = quantiles.gather(2, b.actions[:, None, None].expand(-1, cfg.n_quantiles, 1)).squeeze(2)
        td_loss = quantile_huber_loss(targets, chosen, taus, cfg.kappa).sum()  # Linesight sums over the batch
        loss, margin_loss, weight = td_loss, torch.zeros(0), self.margin_weight()
        if weight > 0 and b.is_demo.any():
            demo_q = quantiles[b.is_demo].mean(dim=1)
            margin_loss = large_margin_loss(demo_q, b.actions[b.is_demo], cfg.margin)
            loss = loss + weight * margin_loss.sum()

        for group in self.optimizer.param_groups:
            group["lr"] = schedule_value(cfg.lr_schedule, env_step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.online.parameters(), cfg.clip_grad_norm)
        torch.nn.utils.clip_grad_value_(self.online.parameters(), cfg.clip_grad_value)
        self.optimizer.step()

        self.updates += 1
        self.transitions_trained += n
        if self.transitions_trained >= self._next_target_update:
            self._next_target_update += cfg.target_update_every_transitions
            self.soft_update_target()
        return {
            "loss": float(loss.detach()),
            "td_loss": float(td_loss.detach()) / n,
            "margin_loss": float(margin_loss.detach().mean()) if margin_loss.numel() else 0.0,
            "grad_norm": float(grad_norm),
        }

    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue exactly as an uninterrupted one (torch.save-able)."""
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "taus": self.taus.get_state(),
            "act_taus": self.act_taus.get_state(),
            "rng": self.rng.bit_generator.state,
            "counters": [self.updates, self.transitions_trained, self._next_target_update],
        }

    def load_state_dict(self, state: dict) -> None:
        self.online.load_state_dict(state["online"], strict=True)
        self.target.load_state_dict(state["target"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.taus.set_state(state["taus"])
        self.act_taus.set_state(state["act_taus"])
        self.rng.bit_generator.state = state["rng"]
        self.updates, self.transitions_trained, self._next_target_update = state["counters"]

    @torch.no_grad()
    def soft_update_target(self) -> None:
        """target <- (1 - tau) target + tau online (Linesight's soft update)."""
        tau = self.config.target_update_tau
        for target, online in zip(self.target.parameters(), self.online.parameters(), strict=True):
            target.lerp_(online, tau)

    def margin_weight(self) -> float:
        cfg = self.config
        if cfg.margin_anneal_updates <= 0:
            return cfg.margin_weight
        return cfg.margin_weight * max(0.0, 1.0 - self.updates / cfg.margin_anneal_updates)

    @torch.no_grad()
    def q_values(self, frames: np.ndarray | torch.Tensor, floats: np.ndarray | torch.Tensor | None = None):
        """Mean over K quantiles (B, A) for uint8 frames (B, 1, H, W): what the agent acts on."""
        img = obs_to_img(frames, self.device)
        floats = None if floats is None else torch.as_tensor(floats)
        taus = sample_taus(img.shape[0], self.config.n_quantiles_act, self.act_taus, self.device)
        return self.online(img, self._floats(floats, img.shape[0]), taus).mean(dim=1)

    def act(
        self,
        frames: np.ndarray | torch.Tensor,
        floats: np.ndarray | torch.Tensor | None = None,
        epsilon: float = 0.0,
        epsilon_boltzmann: float = 0.0,
    ) -> np.ndarray:
        """Actions (B,) for a batch of observations, Linesight's exploration per row: with probability epsilon a
        uniformly random action, with probability epsilon_boltzmann the argmax of Q plus Gaussian noise of std
        `boltzmann_temperature`, otherwise greedy."""
        q = self.q_values(frames, floats).cpu().numpy()
        r = self.rng.random(q.shape[0])[:, None]
        noise = self.rng.standard_normal(q.shape)
        perturbed = np.where(r < epsilon, noise, q + self.config.boltzmann_temperature * noise)
        scores = np.where(r < epsilon + epsilon_boltzmann, perturbed, q)
        return scores.argmax(axis=1)

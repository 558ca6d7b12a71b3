"""The learner: RLConfig (every knob), the IQN update step, the target network and exploration.

One source of truth: the knobs a run may tune (batch, returns, replay, schedules, target updates, demonstrations)
take their defaults from params.py's `rl` group, the default pipeline's values; `RLConfig.from_params` builds the
config of a run from that group. The knobs fixed to Linesight's config_files/config.py (mid-2026: quantile counts,
kappa, RAdam's eps and betas, gradient clipping, the exploration noise) are defined here only. docs/rl.md gives
each value's origin and how Linesight's were scaled.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields

import numpy as np
import torch

from ..params import RLParams
from .loss import large_margin_loss, quantile_huber_loss, td_target_quantiles
from .network import IQNNetwork, obs_to_img, sample_taus, zero_floats
from .replay import Batch

Schedule = tuple[tuple[int, float], ...]  # (step, value) points, linear in between, constant after the last


def _schedule(points) -> Schedule:
    return tuple((int(step), float(value)) for step, value in points)


def _param(name: str):
    """The `rl` group's default for a learner knob (schedules as tuples: the config is frozen and hashable)."""
    value = RLParams.model_fields[name].default
    return _schedule(value) if name.endswith("_schedule") else value


@dataclass(frozen=True)
class RLConfig:
    # IQN, fixed (Linesight iqn_n, iqn_k, iqn_kappa; E = 128 is the 64x64 variant of the contract)
    n_quantiles: int = 8  # N = N' for the loss
    n_quantiles_act: int = 32  # K when acting
    kappa: float = 5e-3  # Huber threshold, in reward units: meaningful with reward_scale
    double_dqn: bool = _param("double_dqn")
    # returns
    n_step: int = _param("n_step")
    gamma: float = _param("gamma")
    reward_scale: float = _param("reward_scale")
    # optimisation (fixed: Linesight's RAdam, adam_epsilon 1e-4, betas 0.9 / 0.999, clip_grad_norm 30,
    # clip_grad_value 1000)
    batch_size: int = _param("batch_size")
    lr_schedule: Schedule = _param("lr_schedule")
    adam_eps: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    clip_grad_norm: float = 30.0
    clip_grad_value: float = 1000.0
    # target network (soft update every so many transitions trained)
    target_update_tau: float = _param("target_update_tau")
    target_update_every_transitions: int = _param("target_update_every_transitions")
    # replay
    replay_capacity: int = _param("replay_capacity")
    learning_starts: int = _param("learning_starts")
    samples_per_transition: float = _param("samples_per_transition")
    # exploration (the Gaussian noise's std is Linesight's, fixed)
    epsilon_schedule: Schedule = _param("epsilon_schedule")
    epsilon_boltzmann_schedule: Schedule = _param("epsilon_boltzmann_schedule")
    boltzmann_temperature: float = 0.01
    # demonstrations (DQfD's large margin, annealed to 0 as in QDagger; used only where a demo buffer is given)
    demo_fraction: float = _param("demo_fraction")  # share of each batch drawn from the demonstration buffer
    margin: float = _param("margin")
    margin_weight: float = _param("margin_weight")
    margin_anneal_updates: int = _param("margin_anneal_updates")  # the weight falls linearly to 0 over these
    seed: int = 0

    @classmethod
    def from_params(cls, rl: RLParams, seed: int) -> RLConfig:
        """The config of one run of the `rl` stage: every knob the group shares with RLConfig, and the run's seed."""
        shared = {f.name: getattr(rl, f.name) for f in fields(cls) if f.name in RLParams.model_fields}
        return cls(**{k: _schedule(v) if k.endswith("_schedule") else v for k, v in shared.items()}, seed=seed)

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
    def q_values(
        self,
        frames: np.ndarray | torch.Tensor,
        floats: np.ndarray | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ):
        """Mean over K quantiles (B, A) for uint8 frames (B, 1, H, W): what the agent acts on. The taus come from
        `generator` where given (an evaluation's own stream leaves training's untouched), else the acting stream."""
        img = obs_to_img(frames, self.device)
        floats = None if floats is None else torch.as_tensor(floats)
        taus = sample_taus(img.shape[0], self.config.n_quantiles_act, generator or self.act_taus, self.device)
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

"""n-step transitions and a uniform replay buffer of uint8 frames, with demonstrations mixed into batches.

Frames stay uint8 from the environment to the batch (the network normalizes on the fly): a quarter of float32's
bytes. Each transition keeps its own two frames, as Linesight's buffer does; with one 64x64 frame that is 8 KiB,
so 50k transitions hold 400 MiB.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
import torch


class Transition(NamedTuple):
    """One n-step transition: from `frames` the agent took `action`, collected `ret` (the discounted sum of up to n
    rewards) and reached `next_frames`, whose value counts with `discount` (gamma^k, 0 if the episode ended)."""

    frames: np.ndarray  # uint8 (C, H, W)
    floats: np.ndarray | None  # float32 (F,), None for an environment without float inputs
    action: int
    ret: float
    discount: float
    next_frames: np.ndarray
    next_floats: np.ndarray | None


class NStepWriter:
    """Turns one environment's steps into n-step transitions (Linesight: n = 3, returns computed when stored).

    A transition is complete once n more rewards are known; at the episode's end the pending ones are completed
    with the rewards there are: terminated, they do not bootstrap (discount 0); truncated (time limit, off road,
    stuck), they bootstrap from the last observation with gamma^k, k the steps actually taken.
    """

    def __init__(self, n: int, gamma: float):
        if n < 1:
            raise ValueError(f"n-step must be >= 1, got {n}")
        self.n, self.gamma = n, gamma
        self._pending: deque[tuple[np.ndarray, np.ndarray | None, int, float]] = deque()

    def step(
        self,
        frames: np.ndarray,
        floats: np.ndarray | None,
        action: int,
        reward: float,
        next_frames: np.ndarray,
        next_floats: np.ndarray | None,
        terminated: bool,
        truncated: bool,
    ) -> list[Transition]:
        """Record one step; returns the transitions it completed (oldest first)."""
        self._pending.append((frames, floats, int(action), float(reward)))
        done = terminated or truncated
        out = []
        while self._pending and (len(self._pending) == self.n or done):
            rewards = [r for *_, r in self._pending]
            ret = sum(self.gamma**i * r for i, r in enumerate(rewards))
            discount = 0.0 if terminated else self.gamma ** len(rewards)
            first_frames, first_floats, first_action, _ = self._pending.popleft()
            out.append(Transition(first_frames, first_floats, first_action, ret, discount, next_frames, next_floats))
        return out


@dataclass
class Batch:
    """Sampled transitions as tensors; `floats` / `next_floats` are None when the environment gives none."""

    frames: torch.Tensor  # uint8 (B, C, H, W)
    floats: torch.Tensor | None  # float32 (B, F)
    actions: torch.Tensor  # int64 (B,)
    returns: torch.Tensor  # float32 (B,)
    discounts: torch.Tensor  # float32 (B,)
    next_frames: torch.Tensor
    next_floats: torch.Tensor | None
    is_demo: torch.Tensor  # bool (B,): drawn from the demonstration buffer

    def __len__(self) -> int:
        return self.actions.shape[0]

    @staticmethod
    def cat(batches: list[Batch]) -> Batch:
        def join(name: str):
            parts = [getattr(b, name) for b in batches]
            return None if parts[0] is None else torch.cat(parts)

        return Batch(**{f.name: join(f.name) for f in fields(Batch)})

    def to(self, device) -> Batch:
        return Batch(**{f.name: None if (v := getattr(self, f.name)) is None else v.to(device) for f in fields(Batch)})


class ReplayBuffer:
    """A ring of `capacity` transitions sampled uniformly with replacement by its own seeded generator."""

    def __init__(
        self, capacity: int, frame_shape: tuple[int, ...], float_dim: int = 0, seed: int = 0, demo: bool = False
    ):
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.capacity, self.float_dim, self.demo = capacity, float_dim, demo
        self.frames = np.zeros((capacity, *frame_shape), dtype=np.uint8)
        self.next_frames = np.zeros_like(self.frames)
        self.floats = np.zeros((capacity, float_dim), dtype=np.float32)
        self.next_floats = np.zeros_like(self.floats)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.returns = np.zeros(capacity, dtype=np.float32)
        self.discounts = np.zeros(capacity, dtype=np.float32)
        self.rng = np.random.default_rng(seed)
        self.added = 0  # transitions ever added; the next one goes to added % capacity

    def __len__(self) -> int:
        return min(self.added, self.capacity)

    def add(self, t: Transition) -> None:
        i = self.added % self.capacity
        self.frames[i], self.next_frames[i] = t.frames, t.next_frames
        if self.float_dim:
            self.floats[i], self.next_floats[i] = t.floats, t.next_floats
        self.actions[i], self.returns[i], self.discounts[i] = t.action, t.ret, t.discount
        self.added += 1

    def sample(self, batch_size: int) -> Batch:
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = self.rng.integers(0, len(self), size=batch_size)
        floats = (torch.from_numpy(self.floats[idx]), torch.from_numpy(self.next_floats[idx]))
        return Batch(
            frames=torch.from_numpy(self.frames[idx]),
            floats=floats[0] if self.float_dim else None,
            actions=torch.from_numpy(self.actions[idx]),
            returns=torch.from_numpy(self.returns[idx]),
            discounts=torch.from_numpy(self.discounts[idx]),
            next_frames=torch.from_numpy(self.next_frames[idx]),
            next_floats=floats[1] if self.float_dim else None,
            is_demo=torch.full((batch_size,), self.demo),
        )


def sample_mixed(online: ReplayBuffer, demos: ReplayBuffer | None, batch_size: int, demo_fraction: float) -> Batch:
    """A batch whose first round(batch_size * demo_fraction) rows come from the demonstrations (DQfD, RLPD's
    half-and-half), the rest from the agent's own transitions."""
    n_demo = round(batch_size * demo_fraction) if demos is not None else 0
    if n_demo == 0:
        return online.sample(batch_size)
    if n_demo == batch_size:
        return demos.sample(batch_size)
    return Batch.cat([demos.sample(n_demo), online.sample(batch_size - n_demo)])

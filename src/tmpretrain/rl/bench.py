"""Throughput on this machine: learner updates per CPU second at a batch size, acting latency with K quantiles, and
env steps per CPU second of the training loop's acting (envs stepped in lockstep, one batched forward for all)."""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch

from ..synthetic.env import ENV_ID
from .learner import Learner, RLConfig
from .network import IQNNetwork
from .replay import NStepWriter, ReplayBuffer


def _filled_buffer(config: RLConfig, image_hw: tuple[int, int], size: int) -> ReplayBuffer:
    """Random frames and rewards through the n-step writer: the cost of an update does not depend on their values."""
    rng = np.random.default_rng(config.seed)
    buffer = ReplayBuffer(size, (1, *image_hw), seed=config.seed)
    writer = NStepWriter(config.n_step, config.gamma)
    frames = rng.integers(0, 256, (size + 1, 1, *image_hw), dtype=np.uint8)
    for t in range(size):
        action, reward, done = int(rng.integers(12)), float(rng.random()), t % 100 == 99
        for transition in writer.step(frames[t], None, action, reward, frames[t + 1], None, done, False):
            buffer.add(transition)
    return buffer


def bench_learner(
    batch_size: int = 64, updates: int = 20, warmup: int = 3, threads: int = 1, image_hw=(64, 64), seed: int = 0
) -> dict:
    """CPU seconds per update (after `warmup` untimed ones) and per acting forward (batch 1, K quantiles)."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _bench(batch_size, updates, warmup, threads, image_hw, seed)
    finally:
        torch.set_num_threads(previous_threads)


def _bench(batch_size: int, updates: int, warmup: int, threads: int, image_hw, seed: int) -> dict:
    torch.manual_seed(seed)
    config = RLConfig(batch_size=batch_size, seed=seed)
    learner = Learner(config, IQNNetwork(image_hw))
    buffer = _filled_buffer(config, image_hw, max(4 * batch_size, 256))
    batches = [buffer.sample(batch_size) for _ in range(warmup + updates)]
    for batch in batches[:warmup]:
        learner.update(batch)
    start = time.process_time()
    for batch in batches[warmup:]:
        learner.update(batch)
    update_s = (time.process_time() - start) / updates
    frame = batches[0].frames[:1].numpy()
    learner.act(frame)
    start = time.process_time()
    for _ in range(updates):
        learner.act(frame)
    act_s = (time.process_time() - start) / updates
    return {
        "device": "cpu",
        "torch_threads": threads,
        "batch_size": batch_size,
        "n_quantiles": config.n_quantiles,
        "n_quantiles_act": config.n_quantiles_act,
        "parameters": sum(p.numel() for p in learner.online.parameters()),
        "updates_timed": updates,
        "cpu_s_per_update": round(update_s, 5),
        "updates_per_cpu_s": round(1.0 / update_s, 2),
        "sampled_transitions_per_cpu_s": round(batch_size / update_s, 1),
        "cpu_ms_per_act_batch1": round(1000.0 * act_s, 3),
        "torch": torch.__version__,
    }


def bench_acting(n_envs: int = 4, lockstep_steps: int = 50, threads: int = 1, seed: int = 0) -> dict:
    """Env steps per CPU second as the training loop acts: `n_envs` tracks in lockstep (rendered observations, the
    JPEG round trip and resize), one batched K-quantile forward per step with exploration, and no learning."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    endless = dict(time_limit_s=1e6, offroad_limit_s=1e6, stuck_limit_s=1e6)
    envs = gym.make_vec(ENV_ID, n_envs, vectorization_mode="vector_entry_point", tracks=list(range(n_envs)), **endless)
    try:
        torch.manual_seed(seed)
        learner = Learner(RLConfig(seed=seed), IQNNetwork())
        frames, _ = envs.reset(seed=seed)
        for _ in range(3):  # renderers and their road textures are built outside the timing
            frames = envs.step(learner.act(frames, None, 0.1))[0]
        start = time.process_time()
        for _ in range(lockstep_steps):
            frames = envs.step(learner.act(frames, None, 0.1))[0]
        seconds = time.process_time() - start
    finally:
        envs.close()
        torch.set_num_threads(previous_threads)
    return {f"env_steps_per_cpu_s_{n_envs}_envs": round(n_envs * lockstep_steps / seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    """`tmpretrain bench rl [--batch-size 32 --updates 20 --envs 4 --threads 1]`: env steps and learner updates per
    CPU second on this machine, as JSON."""
    parser = argparse.ArgumentParser(prog="tmpretrain bench rl", description=main.__doc__.split(": ", 1)[1])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--envs", type=int, default=4, help="training envs in lockstep (rl.train_tracks)")
    parser.add_argument("--steps", type=int, default=50, help="timed lockstep steps of acting")
    parser.add_argument("--updates", type=int, default=20, help="timed updates (after 3 untimed ones)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one per process on a shared CPU)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = bench_learner(args.batch_size, args.updates, threads=args.threads, seed=args.seed)
    for n_envs in sorted({1, args.envs}):
        result |= bench_acting(n_envs, args.steps, threads=args.threads, seed=args.seed)
    print(json.dumps(result, indent=2))
    return 0

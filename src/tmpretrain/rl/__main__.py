"""`python -m tmpretrain.rl --bench [--batch-size 32 --updates 20 --envs 4 --threads 1]`: env steps and learner
updates per CPU second on this machine, as JSON."""

from __future__ import annotations

import argparse
import json

from .bench import bench_acting, bench_learner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tmpretrain.rl", description=__doc__)
    parser.add_argument("--bench", action="store_true", help="time learner updates and acting on CPU; print JSON")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--envs", type=int, default=4, help="training envs in lockstep (rl.train_tracks)")
    parser.add_argument("--steps", type=int, default=50, help="timed lockstep steps of acting")
    parser.add_argument("--updates", type=int, default=20, help="timed updates (after 3 untimed ones)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one per process on a shared CPU)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.bench:
        parser.error("nothing to do: pass --bench")
    result = bench_learner(args.batch_size, args.updates, threads=args.threads, seed=args.seed)
    for n_envs in sorted({1, args.envs}):
        result |= bench_acting(n_envs, args.steps, threads=args.threads, seed=args.seed)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

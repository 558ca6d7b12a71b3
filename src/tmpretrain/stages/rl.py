"""Stage `rl`: the agent's IQN network trained in the simulator from scratch and from the exports (models/vis,
models/bc), each arm and seed evaluated on held-out tracks as it learns -> models/rl, reports/rl (docs/rl.md)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ..evaluate import setup_from_params
from ..params import load_params
from ..rl.study import OUT_DIR, run_study, summary_lines
from . import stage_entry


@stage_entry
def main() -> None:
    params = load_params()
    start = time.perf_counter()
    setup = setup_from_params(params, Path(params.data.cache_dir))
    setup = dataclasses.replace(setup, tracks=list(range(params.rl.eval_tracks)))  # the first of eval's tracks
    rl = params.rl
    print(
        f"rl: {len(rl.arms)} arms x {len(rl.seeds)} seeds, {rl.env_steps} env steps each on {rl.train_tracks} "
        f"training tracks, greedy evaluation every {rl.eval_every} steps on {len(setup.tracks)} held-out tracks, "
        f"{rl.workers} workers",
        flush=True,
    )
    metrics = run_study(params, setup)
    print(f"rl: done in {time.perf_counter() - start:.1f} s -> {OUT_DIR}")
    for line in summary_lines(metrics):
        print(line)


if __name__ == "__main__":
    main()

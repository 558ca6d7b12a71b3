"""Stage `evaluate`: drive the exported policy (models/bc), the scripted expert and two baselines on held-out
tracks in the closed loop -> reports/eval (metrics.json, tracks.json, action_mix.json, media/)."""

from __future__ import annotations

import time
from pathlib import Path

from ..evaluate import evaluate, setup_from_params, summary_lines, write_outputs
from ..params import load_params
from . import stage_entry

MODEL_DIR = Path("models/bc")
OUT_DIR = Path("reports/eval")


@stage_entry
def main() -> None:
    params = load_params()
    start = time.perf_counter()
    setup = setup_from_params(params, Path(params.data.cache_dir))
    result = evaluate(setup, MODEL_DIR)
    write_outputs(result, setup, OUT_DIR)
    print(
        f"evaluate: {len(setup.tracks)} held-out tracks ({setup.rollouts_per_track} sampled rollouts each) on "
        f"{setup.env_id}, decisions every "
        f"{setup.decision_interval_ms:g} ms, in {time.perf_counter() - start:.1f} s -> {OUT_DIR}"
    )
    for line in summary_lines(result):
        print(line)


if __name__ == "__main__":
    main()

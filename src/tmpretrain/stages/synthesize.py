"""Stage `synthesize`: regenerate the embedded default data set (params.synth) in the capture layout.

    python -m tmpretrain.stages.synthesize

Deletes and rewrites params.synth.out_dir (only a folder it wrote: tmpretrain.paths), then writes
reports/synthesize/summary.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..params import as_dict, load_params
from ..paths import clear_output_dir
from ..synthetic import generate_dataset
from . import stage_entry

REPORT_DIR = Path("reports/synthesize")


@stage_entry
def main() -> None:
    params = load_params()
    synth = params.synth
    out_dir = clear_output_dir("synth.out_dir", synth.out_dir, others={"data.cache_dir": params.data.cache_dir})
    start = time.perf_counter()
    summary = generate_dataset(synth, out_dir, progress=True)
    elapsed = time.perf_counter() - start
    # The summary is a DVC metrics file: only what the data is, never how fast this machine made it.
    summary["params"] = as_dict(synth)
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")

    mix = ", ".join(f"{name} {100 * frac:.1f}%" for name, frac in summary["class_mix"].items() if frac > 0)
    print(
        f"synthesize: {summary['tracks']} tracks, {summary['replays']} replays, {summary['frames']} frames "
        f"in {elapsed:.1f} s ({summary['frames'] / elapsed:.0f} frames/s) -> {out_dir}"
    )
    print(
        f"  laps completed {summary['laps_completed']}, off road {100 * summary['off_road_fraction']:.2f}%, "
        f"mean speed {summary['mean_speed_mps']:.1f} m/s"
    )
    print(f"  class mix: {mix}")


if __name__ == "__main__":
    main()

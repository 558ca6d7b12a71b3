"""Stage `pretrain_vis` (Level 0): the frame store -> models/vis/encoder.pt, metrics in reports/vis."""

from __future__ import annotations

from pathlib import Path

from ..params import load_params
from ..pretrain import CHECKPOINT_ROOT, print_export_summary, run_vis
from . import stage_entry

MODEL_DIR = Path("models/vis")
LIVE_DIR = Path("reports/vis")


@stage_entry
def main() -> None:
    params = load_params()
    result = run_vis(
        params.vis, Path(params.data.cache_dir), MODEL_DIR, LIVE_DIR, checkpoint_dir=CHECKPOINT_ROOT / "pretrain_vis"
    )
    print_export_summary("pretrain_vis", result, MODEL_DIR)


if __name__ == "__main__":
    main()

"""Stage `pretrain_bc` (Level 1): the frame store (+ models/vis) -> models/bc exports, metrics in reports/bc."""

from __future__ import annotations

from pathlib import Path

from ..params import load_params
from ..pretrain import CHECKPOINT_ROOT, print_export_summary, run_bc
from . import stage_entry

MODEL_DIR = Path("models/bc")
LIVE_DIR = Path("reports/bc")


@stage_entry
def main() -> None:
    params = load_params()
    result = run_bc(
        params.bc, Path(params.data.cache_dir), MODEL_DIR, LIVE_DIR, checkpoint_dir=CHECKPOINT_ROOT / "pretrain_bc"
    )
    print_export_summary("pretrain_bc", result, MODEL_DIR)


if __name__ == "__main__":
    main()

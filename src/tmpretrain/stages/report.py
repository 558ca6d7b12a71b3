"""Stage `report`: the original study's analysis of the workspace's run -> reports/report.html (opens offline).

Other experiments or revisions: tmpretrain report v1.1 v1.2 -o reports/compare.html
"""

from __future__ import annotations

import os
from pathlib import Path

from ..reports import WORKSPACE, write_report
from . import stage_entry

OUT = Path("reports/report.html")
EVAL_DIR = Path("reports/eval")


@stage_entry
def main() -> None:
    # `dvc exp run -n NAME` names the experiment in this variable: the report's title says which run it is.
    label = os.environ.get("DVC_EXP_NAME") or WORKSPACE
    print(f"report: {write_report([WORKSPACE], OUT, labels=[label], eval_dir=EVAL_DIR)}")


if __name__ == "__main__":
    main()

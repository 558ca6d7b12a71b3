"""Stage `report`: the seed's analysis of the workspace's BC run -> reports/report.html (opens offline).

Other experiments or revisions: python -m tmpretrain.reports report v1.1 v1.2 -o reports/compare.html
"""

from __future__ import annotations

from pathlib import Path

from ..errors import stage_entry
from ..reports import WORKSPACE, write_report

OUT = Path("reports/report.html")


@stage_entry
def main() -> None:
    print(f"report: {write_report([WORKSPACE], OUT)}")


if __name__ == "__main__":
    main()

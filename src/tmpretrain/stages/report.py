"""Stage `report`: the seed's analysis of the workspace's BC run -> reports/report.html (opens offline).

Other experiments or revisions: python -m tmpretrain.reports report v1.1 v1.2 -o reports/compare.html
"""

from __future__ import annotations

from pathlib import Path

from ..errors import PretrainError, stage_entry
from ..reports import WORKSPACE, ReportError, write_report

OUT = Path("reports/report.html")


@stage_entry
def main() -> None:
    try:
        out = write_report([WORKSPACE], OUT)
    except ReportError as exc:
        raise PretrainError(str(exc)) from None
    print(f"report: {out}")


if __name__ == "__main__":
    main()

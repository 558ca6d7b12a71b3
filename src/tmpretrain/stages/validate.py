"""Stage `validate`: check every params group before any other stage runs.

DVC deletes a stage's outputs before its command starts, so checks inside the training stages come too late to
save the previous results: this stage runs first (every other stage depends on its output), fails with one line
on invalid params, and DVC then stops before touching models/, reports/ or data/cache. Its output is constant, so
a params change reruns it without invalidating stages whose own params did not change.

Fast on purpose: it imports pydantic and ruamel.yaml, not torch or DVC (torch only to look for a GPU that params
ask for).
"""

from __future__ import annotations

from pathlib import Path

from ..params import GROUPS, PARAMS_FILE, check_pipeline_params, load_params
from . import stage_entry

OUT = Path("data/params.validated")
CONTENT = "params.yaml passed `python -m tmpretrain.stages.validate` (docs/params.md)\n"


@stage_entry
def main() -> None:
    check_pipeline_params(load_params())
    if not OUT.is_file() or OUT.read_text(encoding="utf-8") != CONTENT:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(CONTENT, encoding="utf-8")
    print(f"validate: {PARAMS_FILE} OK ({', '.join(GROUPS)})")


if __name__ == "__main__":
    main()

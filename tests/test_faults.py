"""The fault record: `tmpretrain faults` runs (here on a sample) with no traceback, wrong result or lost
output, and the table in docs/reliability.md lists exactly the corpus's fault classes and variant counts."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from support.capture_faults import hostile_replays
from support.faults import (
    CHECKPOINT,
    HANDLED,
    export_faults,
    export_write_faults,
    input_faults,
    params_faults,
    run_input_faults,
)
from support.judges import CLEAR, clean
from support.workspace_faults import CONCURRENT, META, run_workspace_faults, workspace_faults

REPO = Path(__file__).resolve().parents[1]
ROW = re.compile(
    r"^\| (?P<cls>[^|*]+?) \| (?P<n>\d+) \| (?P<answer>[^|]*?) \| (?P<tb>\d+) \| (?P<hang>\d+) \| (?P<wrong>\d+) \| "
    r"(?P<lost>\d+) \|$"
)


def _rows(text: str) -> dict[str, dict]:
    return {m["cls"]: m.groupdict() for m in map(ROW.match, text.splitlines()) if m}


def test_the_command_on_a_sample_gives_only_clear_answers():
    run = subprocess.run(
        [sys.executable, "-m", "tmpretrain.cli", "faults", "--groups", "params", "exports", "--sample", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = _rows(run.stdout)
    corpus = {f.fault_class for f in params_faults() + export_faults()} | {
        f.fault_class for f, _ in export_write_faults()
    }
    assert set(rows) == corpus
    for cls, row in rows.items():
        assert 1 <= int(row["n"]) <= 2, cls
        assert (row["tb"], row["hang"], row["wrong"], row["lost"]) == ("0", "0", "0", "0"), cls
        assert set(re.sub(r" \(\d+\)", "", row["answer"]).split(", ")) <= {"clear error", "handled"}, cls
    assert "| **total** |" in run.stdout


def test_drift_the_table_in_the_docs_is_the_corpus():
    """Variant counts cannot drift from the corpus (a new params key adds variants): regenerate the table with
    `tmpretrain faults --update docs/reliability.md`."""
    docs = _rows((REPO / "docs/reliability.md").read_text(encoding="utf-8"))
    counts = Counter(f.fault_class for f in params_faults() + export_faults() + input_faults())
    counts.update(f.fault_class for f, _ in export_write_faults())
    counts.update(f.fault_class for f in workspace_faults())
    counts.update(f"ingest: {case.fault_class}" for case in hostile_replays())
    assert {cls: int(row["n"]) for cls, row in docs.items()} == dict(counts)
    for cls, row in docs.items():
        assert (row["tb"], row["hang"], row["wrong"], row["lost"]) == ("0", "0", "0", "0"), cls


def test_damaged_stores_and_checkpoints_and_refused_overrides_are_answered(tmp_path):
    rows = run_input_faults(tmp_path)
    assert len(rows) == len(input_faults())
    bad = [r for r in rows if not clean(r)]
    assert not bad, "\n".join(f"{r['fault_class']} / {r['variant']}: {r['outcome']}: {r['detail']}" for r in bad)
    assert {r["outcome"] for r in rows if r["fault_class"] == CHECKPOINT} == {HANDLED}


def test_workspace_faults_that_need_no_training_are_answered(tmp_path):
    """The workspace group's quick variants (two runs in one workspace, a pretrain_meta.json that is not a file);
    the others are the tests' own cases (test_resume, test_output_room, test_bad_input, test_reports) run again."""
    faults = [f for f in workspace_faults() if f.fault_class in (CONCURRENT, META)]
    rows = run_workspace_faults(tmp_path, faults)
    assert [r["variant"] for r in rows] == [f.variant for f in faults]
    bad = [r for r in rows if not clean(r) or r["outcome"] != CLEAR]
    assert not bad, "\n".join(f"{r['fault_class']} / {r['variant']}: {r['outcome']}: {r['detail']}" for r in bad)

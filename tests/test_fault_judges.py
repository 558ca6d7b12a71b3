"""The judges of the fault table (support/judges.py), fed real small outcomes whose verdict is known: commands that
fail cleanly, print a traceback, hang, fail without a word or accept; real errors from load_export and ingest."""

from __future__ import annotations

import sys
import time

import pytest

from conftest import make_tree
from support.capture_faults import ingest_params
from support.judges import (
    ACCEPTED,
    CLEAR,
    HANDLED,
    HANG,
    SILENT,
    SKIPPED,
    TRACEBACK,
    UNCLEAR,
    Fault,
    clean,
    judge_ingest,
    judge_message,
    judge_run,
    judge_traceback,
    run_command,
    tree,
)
from tmpretrain.errors import ExportError, PretrainError
from tmpretrain.export import load_export
from tmpretrain.frame_store import build_frame_store

FAULT = Fault("judges", "a variant", None, "models/bc")


def _python(code: str, timeout: float = 60):
    return run_command([sys.executable, "-c", code], timeout=timeout)


@pytest.mark.parametrize(
    ("code", "outcome", "finding"),
    [
        ("import sys; sys.exit('error: models/bc: cannot write the export there')", CLEAR, None),
        ("import sys; print('error: models/bc: full', file=sys.stderr); sys.exit(130)", CLEAR, None),
        ("raise OSError('models/bc: read-only')", TRACEBACK, "traceback"),
        ("import sys; sys.exit(1)", SILENT, "wrong_result"),
        ("print('exported models/bc')", ACCEPTED, "wrong_result"),
        ("import sys; sys.exit('error: reports/bc: full')", UNCLEAR, "wrong_result"),  # names another folder
        ("import sys; sys.exit('error: models/bc: full\\n  and a second line')", UNCLEAR, "wrong_result"),
    ],
    ids=["one-line", "one-line-signal-status", "traceback", "silent", "accepted", "names-another", "two-lines"],
)
def test_a_command_is_judged_by_its_exit_and_its_one_line(code, outcome, finding):
    r = judge_run(FAULT, _python(code))
    assert r["outcome"] == outcome, r
    assert clean(r) == (finding is None)
    if finding:
        assert r[finding]


def test_a_command_that_does_not_end_is_a_hang_and_is_killed_with_its_children():
    start = time.monotonic()
    run = _python("import subprocess, sys; subprocess.run([sys.executable, '-c', 'import time; time.sleep(60)'])", 2)
    assert time.monotonic() - start < 30
    r = judge_run(FAULT, run)
    assert run.timed_out and r["outcome"] == HANG and r["hang"] and not clean(r)


def test_an_exit_status_other_than_the_expected_one_is_not_clear():
    run = _python("import sys; sys.exit('error: models/bc: interrupted')")
    assert judge_run(FAULT, run, exit_code=143)["outcome"] == UNCLEAR
    assert judge_run(FAULT, run, exit_code=1)["outcome"] == CLEAR


def test_lost_outputs_are_a_finding_even_with_a_clear_answer(tmp_path):
    (tmp_path / "encoder.pt").write_bytes(b"the previous run's")
    before = tree(tmp_path)
    (tmp_path / "encoder.pt").write_bytes(b"half a new one")
    r = judge_run(FAULT, _python("import sys; sys.exit('error: models/bc: full')"), lost=tree(tmp_path) != before)
    assert r["outcome"] == CLEAR and r["outputs_lost"] and not clean(r)


def test_a_real_export_error_is_clear_when_it_names_the_file(tmp_path):
    with pytest.raises(ExportError) as refused:
        load_export(tmp_path / "bc")
    message = str(refused.value)
    assert judge_message(Fault("x", "y", None, "bc: not found"), message, named="bc: not found" in message) == {
        "fault_class": "x",
        "variant": "y",
        "outcome": CLEAR,
        "traceback": False,
        "hang": False,
        "wrong_result": False,
        "outputs_lost": False,
        "detail": message,
    }
    assert judge_message(Fault("x", "y", None, "encoder.pt"), message, named=False)["outcome"] == UNCLEAR
    # a HANDLED variant answered by an error is a wrong result, however clear the error
    assert judge_message(Fault("x", "y", None, "", HANDLED), message, named=True)["wrong_result"]


def test_any_other_exception_is_a_traceback():
    try:
        {}["no such key"]
    except Exception:
        r = judge_traceback(FAULT)
    assert r["outcome"] == TRACEBACK and r["traceback"] and r["detail"] == "KeyError: 'no such key'"


def _ingest(root, cache, strict):
    try:
        return "report", build_frame_store(ingest_params(root, cache, strict=strict, workers=1), progress=False)[
            "skipped"
        ]
    except PretrainError as exc:
        return "error", str(exc)


def test_ingest_answers_skipped_and_reported_or_wrong(tmp_path):
    root = make_tree(tmp_path / "replays", n_tracks=3, replays_per_track=1)
    valid = _ingest(root, tmp_path / "c0", True), _ingest(root, tmp_path / "c1", False)
    assert judge_ingest(None, valid[1], valid[0]) == (HANDLED, "read as a valid replay")
    bad = root / "track1/pos0_bot_1000ms.replay"
    (bad / "manifest.json").write_text("{", encoding="utf-8")
    lenient, strict = _ingest(root, tmp_path / "c2", False), _ingest(root, tmp_path / "c3", True)
    outcome, detail = judge_ingest(bad / "manifest.json", lenient, strict)
    assert outcome == SKIPPED, detail
    assert judge_ingest(bad / "manifest.json", valid[1], valid[0])[0] == "wrong answer"  # nothing reported
    assert judge_ingest(bad, lenient, strict)[0] == "wrong answer"  # another path named
    assert judge_ingest(None, lenient, strict)[0] == "wrong answer"  # a valid replay refused

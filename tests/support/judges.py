"""The judges of the fault table: what decides whether a fault was answered cleanly.

Every variant ends in one row: fault_class, variant, outcome, traceback, hang, wrong_result, outputs_lost, detail.
The answers a user may get are a clear error (one line that names the key, file or folder at fault), "handled"
(the input read as meant, or the fault survived with nothing lost) and "skipped and reported" (ingest). Anything
else is a finding:

- traceback: any other exception, or a command printing a Python traceback;
- hang: a command that did not end within its time (killed, with its process group);
- silent: a command that failed without a word (non-zero exit, nothing on stderr);
- accepted / unclear error / wrong answer (wrong results): a bad input accepted, an error of several lines or
  naming something else;
- outputs lost: a previous result (export, reports, a frame store, a user's file) not there byte for byte after.

Their own tests: tests/test_fault_judges.py.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CLEAR, HANDLED, SKIPPED = "clear error", "handled", "skipped and reported"
TRACEBACK, HANG, SILENT, ACCEPTED, UNCLEAR = "traceback", "hang", "silent", "accepted", "unclear error"
FINDINGS = ("traceback", "hang", "wrong_result", "outputs_lost")


@dataclass(frozen=True)
class Fault:
    fault_class: str
    variant: str
    apply: Callable | None  # plants the fault (params: returns the params.yaml text or mapping)
    expect: str  # the key / fragment a clear error must name; for HANDLED variants the value expected back
    answer: str = CLEAR
    key: str = ""  # params: the key the fault is planted at


def row(fault: Fault, outcome: str, *, tb=False, wrong=False, lost=False, hang=False, detail="") -> dict:
    return {
        "fault_class": fault.fault_class,
        "variant": fault.variant,
        "outcome": outcome,
        "traceback": tb,
        "hang": hang,
        "wrong_result": wrong,
        "outputs_lost": lost,
        "detail": detail,
    }


def clean(r: dict) -> bool:
    """No finding in the row."""
    return not any(r.get(k) for k in FINDINGS)


def tree(root: Path) -> dict[str, str]:
    """{path: sha256} of every regular file under `root` (what "outputs lost" compares)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(root).rglob("*"))
        if p.is_file()
    }


def one_line(text: str) -> bool:
    text = text.strip()
    return bool(text) and "\n" not in text


def judge_message(fault: Fault, message: str, *, named: bool, lost: bool = False) -> dict:
    """A refused input, answered by an error (PretrainError and its kinds): clear when it is one line and names
    what the fault is about (`named`, the runner's check of the message)."""
    clear = named and one_line(message)
    wrong = not clear or fault.answer != CLEAR
    return row(fault, CLEAR if clear else UNCLEAR, wrong=wrong, lost=lost, detail=message.strip())


def judge_traceback(fault: Fault, lost: bool = False) -> dict:
    """Called from an `except Exception:` around the code under test: the exception is the finding."""
    return row(fault, TRACEBACK, tb=True, lost=lost, detail=traceback.format_exc(limit=-1).strip().splitlines()[-1])


@dataclass(frozen=True)
class Run:
    """A finished command: exit status (None: killed after `timeout`), its output."""

    returncode: int | None
    stdout: str
    stderr: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def run_command(command: list[str], *, timeout: float, **kwargs) -> Run:
    """Run `command` in a process group of its own; past `timeout` seconds the whole group is killed (a hang)."""
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return Run(proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return Run(None, out, err)


def judge_run(fault: Fault, run: Run, *, lost: bool = False, exit_code: int | None = None) -> dict:
    """A command that must refuse the fault: a non-zero exit (`exit_code` when given) and one line on stderr
    holding `fault.expect`, nothing lost."""
    err = run.stderr.strip()
    if run.timed_out:
        return row(fault, HANG, hang=True, lost=lost, detail=err[-200:])
    if "Traceback (most recent call last)" in run.stderr + run.stdout:
        return row(fault, TRACEBACK, tb=True, lost=lost, detail=err.splitlines()[-1] if err else "")
    if run.returncode == 0:
        return row(fault, ACCEPTED, wrong=True, lost=lost, detail="exit 0")
    if not err:
        return row(fault, SILENT, wrong=True, lost=lost, detail=f"exit {run.returncode}, nothing on stderr")
    named = fault.expect in err and (exit_code is None or run.returncode == exit_code)
    out = judge_message(fault, err, named=named, lost=lost)
    out["detail"] = f"exit {run.returncode}: {out['detail']}"
    return out


def judge_ingest(culprit: Path | None, lenient: tuple[str, object], strict: tuple[str, object]) -> tuple[str, str]:
    """Ingest of a tree holding one fault, with data.strict false (`lenient`) and true (`strict`), each answer
    ("report", the report's skipped list) or ("error", its message). With a culprit: skipped and reported with that
    path, and strict stops with one line naming it. Without one (a fault that is allowed): both builds report
    nothing skipped. Returns (outcome, detail)."""
    (l_kind, l_answer), (s_kind, s_answer) = lenient, strict
    if culprit is None:
        handled = l_kind == s_kind == "report" and l_answer == s_answer == []
        return (HANDLED if handled else "wrong answer"), "read as a valid replay"
    reported = l_kind == "report" and [s["path"] for s in l_answer] == [str(culprit)]
    clear = s_kind == "error" and str(culprit) in s_answer and one_line(s_answer)
    detail = l_answer[0]["reason"] if reported else f"{l_answer!r} / {s_answer!r}"
    return (SKIPPED if reported and clear else "wrong answer"), detail

"""Faults of the workspace rather than of an input file: a signal to a training stage, no room for outputs, two runs
in one workspace, an export's metadata that is not a file, a capture tree without permissions, comparisons of
results that are not in the DVC cache. Each is met the way a user meets it: the stage's command as DVC runs it
(`python -m tmpretrain.stages.<stage>`, the shipped params, only the data and the first encoder's source replaced),
or the `tmpretrain` command, in a process of its own, killed with its process group past its time (a hang).

The setups are the tests' own (support.setups); the verdicts the judges' (support.judges).

    workspace_faults() -> list[Fault]                  the variants
    run_workspace_faults(tmpdir, faults) -> list[dict]  one row each
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from support import setups
from support.judges import (
    CLEAR,
    SKIPPED,
    Fault,
    Run,
    judge_message,
    judge_run,
    judge_traceback,
    row,
    run_command,
    tree,
)

SIGNALS = "workspace: a signal to a training stage (SIGTERM, SIGINT)"
ROOM = "workspace: no room for outputs (read-only models/, full disk)"
CONCURRENT = "workspace: two runs in one workspace"
META = "export: pretrain_meta.json not a regular file (tmpretrain export inspect)"
PERMISSIONS = "ingest: capture tree parts without permission (as root too)"
UNCACHED = "compare: results not in this clone's DVC cache"
NOT_RUN = "not run here"
TIMEOUT = 300  # seconds for one command: a stage's first epoch on a busy CPU fits many times over
# The shipped params (their defaults are params.yaml's) but for the data and the first encoder's source, which
# would be the vis stage's export.
BC = {"encoder_init": "none", "trainer": {"accelerator": "cpu"}}


def workspace_faults() -> list[Fault]:
    replay = "track0/pos0_bot_1000ms.replay"
    return [
        Fault(SIGNALS, "SIGTERM to pretrain_bc after its first epoch", signal.SIGTERM, "interrupted by SIGTERM"),
        Fault(SIGNALS, "SIGINT (Ctrl-C) to pretrain_bc after its first epoch", signal.SIGINT, "interrupted by SIGINT"),
        Fault(ROOM, "models/ on a read-only disk", "read-only", "models: cannot write the export there"),
        Fault(ROOM, "reports/ on a full disk (64 KB)", "full", "reports: not enough disk space"),
        Fault(CONCURRENT, "a stage started while another run's stage holds the workspace", "held", "another stage"),
        Fault(CONCURRENT, "params.yaml changed while a stage ran", "changed", "params.yaml changed while ingest ran"),
        Fault(META, "a FIFO (named pipe)", os.mkfifo, "not a regular file: a FIFO"),
        Fault(META, "a link to /dev/zero", lambda p: p.symlink_to("/dev/zero"), "not a regular file: a character"),
        Fault(PERMISSIONS, "a replay directory with mode 000", (replay, 0o000), "cannot be read (Permission denied)"),
        Fault(PERMISSIONS, "a replay directory that cannot be listed (300)", (replay, 0o300), "cannot be listed"),
        Fault(PERMISSIONS, "metadata.json unreadable", (f"{replay}/metadata.json", 0o000), "cannot be read"),
        Fault(PERMISSIONS, "a track directory with mode 000", ("track1", 0o000), "cannot be listed"),
        Fault(PERMISSIONS, "the capture root with mode 000", (".", 0o000), "cannot be listed"),
        Fault(UNCACHED, "tmpretrain report HEAD workspace", ["report", "HEAD", "workspace"], "HEAD: reports/bc"),
        Fault(UNCACHED, "tmpretrain plots HEAD workspace", ["plots", "HEAD", "workspace"], "HEAD: reports/bc"),
    ]


def _previous_outputs(project: Path) -> dict[str, str]:
    """Stand-ins for a finished run's export and reports; returns {path: sha256} of models/bc and reports/bc."""
    for name in ("models/bc/encoder.pt", "reports/bc/metrics.json"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(f"the previous run's {name}\n")
    return _outputs(project)


def _outputs(project: Path) -> dict[str, str]:
    """{path: sha256} of the stage's outputs, models/bc and reports/bc (what DVC records; an interrupted run's own
    reports wait beside them in reports/.bc.partial for the resumed run)."""
    return {f"{d}/{k}": v for d in ("models/bc", "reports/bc") for k, v in tree(project / d).items()}


def _signal(fault: Fault, tmpdir: Path, store: Path) -> dict:
    project = setups.tiny_project(tmpdir / "project", store, bc=BC)
    before = _previous_outputs(project)
    done = setups.interrupt_after_first_epoch(project, "pretrain_bc", fault.apply)
    run = Run(done.returncode, done.stdout, done.stderr)
    if "exported" in run.stdout:  # finished before the signal came: nothing was tested
        return row(fault, "not interrupted", wrong=True, detail="the run ended before the signal")
    return judge_run(fault, run, lost=_outputs(project) != before, exit_code=128 + fault.apply)


def _room(fault: Fault, tmpdir: Path, store: Path) -> dict:
    project = setups.tiny_project(tmpdir / "project", store, bc=BC)
    command = setups.stage_command("pretrain_bc")
    folder = project / ("models" if fault.apply == "read-only" else "reports")
    try:
        if fault.apply == "read-only" and os.geteuid() != 0:
            before = _previous_outputs(project)
            folder.chmod(0o555)
            try:
                run = run_command(command, timeout=TIMEOUT, cwd=project, env=setups.stage_env())
            finally:
                folder.chmod(0o755)
        else:
            with setups.tmpfs(folder, "1m" if fault.apply == "read-only" else "64k"):
                before = _previous_outputs(project)
                if fault.apply == "read-only":
                    subprocess.run(["mount", "-o", "remount,ro", folder], check=True)
                run = run_command(command, timeout=TIMEOUT, cwd=project, env=setups.stage_env())
                after = _outputs(project)
            return judge_run(fault, run, lost=after != before, exit_code=1)
    except setups.Unavailable as exc:
        return row(fault, NOT_RUN, detail=str(exc))
    return judge_run(fault, run, lost=_outputs(project) != before, exit_code=1)


def _workspace(tmpdir: Path) -> Path:
    from tmpretrain.synthetic.trees import write_tree

    ws = tmpdir / "workspace"
    write_tree(ws / "replays", 3, 1, 12, 16, frames="coded")
    (ws / "params.yaml").write_text("data: {replays_dir: replays, cache_dir: cache}\n")
    return ws


def _concurrent(fault: Fault, tmpdir: Path, store: Path) -> dict:
    ws = _workspace(tmpdir)
    if fault.apply == "held":
        with setups.holding_the_run_lock(ws):
            before = tree(ws)
            run = run_command(setups.stage_command("validate"), timeout=TIMEOUT, cwd=ws, env=setups.stage_env())
            lost = tree(ws) != before or (ws / "data/params.validated").exists()
        return judge_run(fault, run, lost=lost, exit_code=1)
    from tmpretrain.errors import PretrainError
    from tmpretrain.locks import one_run_at_a_time

    cwd = Path.cwd()
    os.chdir(ws)
    try:
        with one_run_at_a_time("ingest"):
            (ws / "params.yaml").write_text("data: {replays_dir: replays, cache_dir: cache, split_seed: 1}\n")
        return row(fault, "accepted", wrong=True, detail="the stage ended as if nothing had changed")
    except PretrainError as exc:
        try:
            with one_run_at_a_time("ingest"):  # the lock is free again after the failure
                released = True
        except PretrainError:
            released = False
        verdict = judge_message(fault, str(exc), named=fault.expect in str(exc))
        verdict["wrong_result"] |= not released
        return verdict
    except Exception:
        return judge_traceback(fault)
    finally:
        os.chdir(cwd)


def _meta(fault: Fault, tmpdir: Path, store: Path) -> dict:
    from support.faults import write_valid_export

    export = write_valid_export(tmpdir / "bc")
    (export / "pretrain_meta.json").unlink()
    fault.apply(export / "pretrain_meta.json")
    before = tree(export)
    command = [sys.executable, "-m", "tmpretrain.cli", "export", "inspect", str(export)]
    run = run_command(command, timeout=60, cwd=tmpdir)
    return judge_run(fault, run, lost=tree(export) != before, exit_code=1)


def _permissions(fault: Fault, tmpdir: Path, store: Path) -> dict:
    from tmpretrain.synthetic.trees import write_tree

    root = tmpdir / "replays"
    write_tree(root, 3, 2, 12, 24, frames="coded")
    path, mode = fault.apply
    target = (root / path).resolve()
    before = tree(root)
    try:
        command = setups.ingest_without_privileges_command(tmpdir, workers=2)
    except setups.Unavailable as exc:
        return row(fault, NOT_RUN, detail=str(exc))
    target.chmod(mode)
    try:
        run = run_command(command, timeout=TIMEOUT, cwd=tmpdir)
    finally:
        target.chmod(0o700)
    lost = tree(root) != before
    if run.timed_out or run.returncode != 0 or not run.stdout.strip():
        return judge_run(fault, run, lost=lost)
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    if path == ".":  # no replay left to read: ingest stops, naming the tree and why
        named = isinstance(answer, str) and f"{target}: {fault.expect}" in answer
        return row(fault, CLEAR if named else "wrong answer", wrong=not named, lost=lost, detail=str(answer)[:200])
    culprit = str(target)
    reported = answer == [{"path": culprit, "reason": answer[0]["reason"]}] if isinstance(answer, list) else False
    reported = reported and fault.expect in answer[0]["reason"]
    outcome = SKIPPED if reported else "wrong answer"
    return row(fault, outcome, wrong=not reported, lost=lost, detail=str(answer)[:200])


def _uncached(fault: Fault, tmpdir: Path, store: Path) -> dict:
    ws = tmpdir / "ws"
    curves = ws / "reports/bc/plots/metrics/val"
    curves.mkdir(parents=True)
    (curves / "loss.tsv").write_text("step\tval/loss\n0\t1.0\n1\t0.8\n", encoding="utf-8")
    (ws / "params.yaml").write_text("data: {cache_dir: data/cache}\n", encoding="utf-8")
    try:
        setups.uncached_workspace(ws)
    except setups.Unavailable as exc:
        return row(fault, NOT_RUN, detail=str(exc))
    before = tree(ws / "reports")
    env = setups.dvc_env()
    command = [sys.executable, "-m", "tmpretrain.cli", *fault.apply, "-o", str(tmpdir / "out")]
    run = run_command(command, timeout=TIMEOUT, cwd=ws, env=env)
    return judge_run(fault, run, lost=tree(ws / "reports") != before, exit_code=1)


RUNNERS = {SIGNALS: _signal, ROOM: _room, CONCURRENT: _concurrent, META: _meta, PERMISSIONS: _permissions}
RUNNERS[UNCACHED] = _uncached


def run_workspace_faults(tmpdir: Path, faults: list[Fault] | None = None) -> list[dict]:
    tmpdir = Path(tmpdir)
    faults = workspace_faults() if faults is None else faults
    store = setups.small_store(tmpdir / "data") if any(f.fault_class in (SIGNALS, ROOM) for f in faults) else None
    rows = []
    for k, fault in enumerate(faults):
        case = tmpdir / f"case{k:03d}"
        case.mkdir()
        try:
            rows.append(RUNNERS[fault.fault_class](fault, case, store))
        except Exception:
            rows.append(judge_traceback(fault))
        shutil.rmtree(case, ignore_errors=True)
    return rows

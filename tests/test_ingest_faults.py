"""Ingest under faults that are not in the input files: errors crossing process boundaries, a full disk or a file
size limit, a second ingest into the same cache, a killed parent; and the hostile corpus end to end through the
DVC stage at the shipped defaults (data.workers 2)."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pickle
import pkgutil
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import tmpretrain
from conftest import data_params, make_tree
from support.capture_faults import (
    hostile_replays,
    ingest_params,
    run_ingest_faults,
    stored_replays,
    write_mixed_tree,
    write_valid_tree,
)
from tmpretrain.errors import DataError, PretrainError
from tmpretrain.frame_store import FrameStore, build_frame_store, frame_store_lock

try:
    import resource
except ImportError:  # Windows
    resource = None


def _error_classes() -> set[type]:
    """Every PretrainError subclass in the package, wherever it is defined (so a new one is covered)."""
    for module in pkgutil.walk_packages(tmpretrain.__path__, "tmpretrain."):
        importlib.import_module(module.name)
    found, todo = set(), [PretrainError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo += cls.__subclasses__()
    return found


def test_every_error_class_survives_pickle():
    """What a worker raises comes back to the parent through pickle, whatever the class's __init__ takes."""
    classes = _error_classes()
    assert {"DataError", "ParamsError", "ExportError"} <= {cls.__name__ for cls in classes}
    for cls in classes:
        required = [
            p
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        exc = cls(*[f"<{p.name}>" for p in required])
        exc.note = "extra state"
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is cls and back.args == exc.args and str(back) == str(exc)
        assert back.__dict__ == exc.__dict__, cls


def test_fault_rows_for_the_fault_table(tmp_path):
    cases = [c for c in hostile_replays() if c.variant in ("step_ms 0.5 (fraction)", "truncated JPEG")]
    rows = run_ingest_faults(tmp_path, cases=cases)
    assert [(r["fault_class"], r["variant"], r["outcome"]) for r in rows] == [
        ("numbers", "step_ms 0.5 (fraction)", "skipped and reported"),
        ("decode", "truncated JPEG", "skipped and reported"),
    ]
    assert not any(r["traceback"] or r["wrong_result"] or r["outputs_lost"] for r in rows)
    assert rows[0]["detail"] == "step_ms is 0.5; expected a whole number of ms, 1..1000"


def test_too_little_disk_space_is_refused_before_decoding(tmp_path, capture_tree, monkeypatch):
    build_frame_store(data_params(tmp_path, capture_tree), progress=False)
    before = (tmp_path / "cache" / "frames.npy").read_bytes()
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=300_000))
    with pytest.raises(DataError, match=r"cache: not enough disk space: the frame store needs 1 MB, 0 MB free on "):
        build_frame_store(data_params(tmp_path, capture_tree, workers=2), progress=False)
    assert (tmp_path / "cache" / "frames.npy").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("cache")) == ["cache", "cache.lock"]


def _params_file(project: Path, root: Path, **data) -> None:
    params = {"data": {"replays_dir": str(root), "cache_dir": "cache", **data}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.mark.skipif(resource is None, reason="file size limits (RLIMIT_FSIZE) are POSIX")
def test_a_failing_write_is_one_line_and_keeps_the_previous_cache(tmp_path):
    """A real failing write: the stage under a 40 kB file size limit (the store needs ~300 kB)."""
    root = make_tree(tmp_path / "replays", size=64)
    _params_file(tmp_path, root)
    assert _ingest(tmp_path).returncode == 0
    before = (tmp_path / "cache" / "frames.npy").read_bytes()
    limited = (
        "import resource, runpy; resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000)); "
        "runpy.run_module('tmpretrain.stages.ingest', run_name='__main__')"
    )
    run = subprocess.run([sys.executable, "-c", limited], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 1, run.stderr
    assert run.stderr == "error: cache: cannot write the frame store: File too large; the previous cache is kept\n"
    assert (tmp_path / "cache" / "frames.npy").read_bytes() == before
    assert not (tmp_path / "cache.partial").exists() and not (tmp_path / "cache.holder").exists()


def _ingest(cwd: Path, *python_args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *python_args, "-m", "tmpretrain.stages.ingest"], cwd=cwd, capture_output=True, text=True
    )


def test_a_second_ingest_into_a_cache_in_use_stops_naming_the_holder(tmp_path, capture_tree):
    _params_file(tmp_path, capture_tree, image_height=16, image_width=16)
    with frame_store_lock(tmp_path / "cache"):  # this test process is the first ingest
        run = _ingest(tmp_path)
    assert run.returncode == 1
    holder = f"pid {os.getpid()} on {socket.gethostname()}, since 20"
    pattern = rf"error: cache: in use by another ingest \({re.escape(holder)}.*\); wait for it to end, or stop it\n"
    assert re.fullmatch(pattern, run.stderr), run.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "cache.holder").exists()
    assert _ingest(tmp_path).returncode == 0  # released


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc (Linux)")
@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_pool_workers_exit_when_ingest_is_killed(tmp_path, start_method):
    root = make_tree(tmp_path / "replays", n_tracks=4, replays_per_track=4, n_frames=40, size=96)
    _params_file(tmp_path, root, workers=2, image_height=32, image_width=32)
    code = (
        f"import multiprocessing, runpy; multiprocessing.set_start_method({start_method!r}); "
        "runpy.run_module('tmpretrain.stages.ingest', run_name='__main__')"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while proc.poll() is None and time.monotonic() < deadline:
        workers = _children(proc.pid)  # the pool's workers (and under spawn, multiprocessing's resource tracker)
        if len(workers) >= 2:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "ingest ended before its pool was up"
    assert len(workers) >= 2
    deadline = time.monotonic() + 15
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [w for w in workers if _alive(w)], "pool workers outlived their parent"


@pytest.mark.slow
def test_hostile_tree_through_the_dvc_stage_at_the_defaults(tmp_path):
    """The done-when check of issue 10: a capture tree with every hostile replay of the corpus mixed into valid
    ones, ingested by `dvc repro ingest` in a throwaway project at the shipped data.workers 2: each hostile replay is
    reported with its path, the store holds exactly the valid frames and labels."""
    from support.projects import dvc, make_project

    culprits, must_hold = write_mixed_tree(tmp_path / "captures")
    # The smallest frames validate lets through (the agent's encoder needs 34 x 34).
    clean_params = ingest_params(write_valid_tree(tmp_path / "clean"), tmp_path / "clean_cache", True)
    build_frame_store(clean_params.model_copy(update={"image_height": 34, "image_width": 34}), progress=False)
    clean = stored_replays(tmp_path / "clean_cache")
    data = {"replays_dir": str(tmp_path / "captures"), "image_height": 34, "image_width": 34, "val_fraction": 0.34}
    project = make_project(tmp_path / "project", {"data": {**data, "include_floats": True}})
    assert yaml.safe_load((project / "params.yaml").read_text())["data"]["workers"] == 2  # the shipped value
    out = dvc(project, "repro", "ingest")
    assert "Traceback" not in out and f"{len(culprits)} skipped" in out
    report = json.loads((project / "data" / "cache" / "ingest_report.json").read_text())
    assert sorted(s["path"] for s in report["skipped"]) == sorted(culprits)
    assert stored_replays(project / "data" / "cache") == {r: clean[source] for r, source in must_hold.items()}
    assert FrameStore.open(project / "data" / "cache").meta["n_replays"] == len(must_hold)

"""Exclusive locks that name their holder: one ingest per frame store (`frame_store_lock`), one stage at a time per
workspace (`one_run_at_a_time`, taken by every stage's entry point).

filelock: fcntl on POSIX, msvcrt on Windows, released by the OS when the holder dies (a killed run leaves no stale
lock). The holder's pid, host and start time are in a file beside the lock while it runs, so that the one refused
learns who holds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import psutil
from filelock import FileLock, Timeout

from .errors import PretrainError
from .files import read_capped, shown

RUN_LOCK = Path(".tmpretrain/run.lock")  # .tmpretrain/ is the project's own scratch folder (git- and dvc-ignored)
DVC_RWLOCK = Path(".dvc/tmp/rwlock")  # DVC's record of the outputs its running commands hold
PARAMS_FILE = Path("params.yaml")


class Busy(Exception):
    """The lock is held by another process; str() describes the holder."""


def _holder_file(lock_file: Path) -> Path:
    return lock_file.with_suffix(".holder")


def acquire(lock_file: Path, **about) -> FileLock:
    """Take `lock_file` at once or raise Busy; OSError where it cannot be created. `about` goes into the holder file."""
    lock = FileLock(str(lock_file))
    try:
        lock.acquire(timeout=0)
    except Timeout:  # before OSError: filelock's Timeout is a TimeoutError, an OSError
        raise Busy(_describe_holder(_holder_file(lock_file))) from None
    try:
        now = datetime.now(timezone.utc).isoformat()
        info = {**about, "pid": os.getpid(), "host": socket.gethostname(), "since": now}
        _holder_file(lock_file).write_text(json.dumps(info) + "\n", encoding="utf-8")
    except OSError:
        lock.release()
        raise
    return lock


def release(lock: FileLock) -> None:
    _holder_file(Path(lock.lock_file)).unlink(missing_ok=True)
    lock.release()


def _describe_holder(holder: Path) -> str:
    try:
        info = json.loads(read_capped(holder, 4096))
        stage = f"{info['stage']}, " if "stage" in info else ""
        return f"{stage}pid {info['pid']} on {info['host']}, since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown: it is still starting"


def _is_a_worker_process() -> bool:
    # Lightning's DDP launcher starts ranks > 0 by running the stage's command again: they belong to the run that
    # rank 0 (the process DVC started) holds the lock for.
    return any(os.environ.get(name, "0") != "0" for name in ("LOCAL_RANK", "NODE_RANK", "RANK"))


@contextlib.contextmanager
def one_run_at_a_time(stage: str) -> Iterator[None]:
    """Hold the workspace's run lock while `stage` runs, and refuse to finish if params.yaml changed meanwhile.

    Two `dvc exp run` in one workspace each write their `-S` values into the same params.yaml and run stages side
    by side: the second is refused at its first stage, and a stage that ran while another run rewrote params.yaml
    fails instead of letting DVC record values other than those it ran with."""
    if _is_a_worker_process():
        yield
        return
    try:
        RUN_LOCK.parent.mkdir(parents=True, exist_ok=True)
        lock = acquire(RUN_LOCK, stage=stage)
    except Busy as exc:
        raise PretrainError(
            f"another stage runs in this workspace ({exc}); run one experiment at a time here, or queue them: "
            f"dvc exp run --queue ... && dvc queue start (each runs in its own copy)"
        ) from None
    except OSError as exc:
        raise PretrainError(f"{RUN_LOCK}: cannot create the workspace's run lock ({exc.strerror or exc})") from None
    try:
        params = _params_bytes()
        yield
        if _params_bytes() != params:
            raise PretrainError(
                f"{PARAMS_FILE} changed while {stage} ran (another run in this workspace?): its outputs follow the "
                "earlier values, so it fails rather than have DVC record the new ones; run it again"
            )
    finally:
        release(lock)


def _params_bytes() -> bytes | None:
    try:
        return read_capped(PARAMS_FILE, 1 << 20)
    except OSError:
        return None  # validate reports an unreadable params.yaml


def workspace_busy() -> str | None:
    """Who runs in this workspace now, or None: a stage holding the run lock, or a live DVC command that holds
    outputs (DVC's rwlock; entries of processes that are gone do not count). `tmpretrain exp run` asks before DVC
    writes its -S values into params.yaml, where a second run would change the first one's params under it."""
    if RUN_LOCK.parent.is_dir():
        try:
            release(acquire(RUN_LOCK, stage="a check"))
        except Busy as exc:
            return f"a stage ({exc})"
        except OSError:
            pass
    try:
        held = json.loads(read_capped(DVC_RWLOCK, 1 << 20))
    except (OSError, ValueError):
        return None
    entries = [*(held.get("write") or {}).values(), *(e for v in (held.get("read") or {}).values() for e in v)]
    for entry in entries:
        pid = entry.get("pid") if isinstance(entry, dict) else None
        if isinstance(pid, int) and pid != os.getpid() and psutil.pid_exists(pid):
            return f"{shown(entry.get('cmd', 'dvc'))} (pid {pid})"
    return None

"""Setups the tests and the fault table share: one implementation of each way a workspace is made hostile.

small_store(root)                      the stage tests' 4-track frame store (180 train / 60 val samples)
tiny_project / stage_command / ...     a project directory the stages run in as under `dvc repro`
interrupt_after_first_epoch(...)       a training stage sent a signal once its first epoch is saved
tmpfs(folder, size)                    a small disk of its own on `folder` (root and mount), to fill or remount
holding_the_run_lock(workspace)        another run's stage holding the workspace's run lock
ingest_without_privileges(base)        ingest in a child that file modes apply to, even as root (setpriv)
uncached_workspace(workspace)          a git + DVC repository whose committed outputs are not in the cache
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

STAGE_TIMEOUT = 300


class Unavailable(RuntimeError):
    """This machine cannot make the setup (not root, no mount, no setpriv, no dvc)."""


def small_store(root: Path) -> Path:
    """4 tracks x 2 replays x 30 frames of 40x40 stored at 36x36: 180 train samples, 60 val samples (one held-out
    track). Returns the store's directory, root/cache."""
    from tmpretrain.frame_store import build_frame_store
    from tmpretrain.params import DataParams
    from tmpretrain.synthetic.trees import write_tree

    write_tree(root / "replays", 4, 2, 30, 40, frames="coded")
    params = DataParams(
        replays_dir=str(root / "replays"),
        cache_dir=str(root / "cache"),
        image_height=36,
        image_width=36,
        val_fraction=0.25,
        test_fraction=0.0,
        split_seed=0,
        strict=False,
        workers=1,
    )
    build_frame_store(params, progress=False)
    return root / "cache"


def tiny_project(root: Path, cache_dir: Path, base: dict | None = None, **groups: dict) -> Path:
    """A project directory with a params.yaml over `cache_dir` (on top of `base`, e.g. the shipped params): the
    stages run in it as under `dvc repro`."""
    root.mkdir(parents=True, exist_ok=True)
    params = dict(base or {})
    params["data"] = {**params.get("data", {}), "cache_dir": str(cache_dir)}
    for group, values in groups.items():
        params[group] = {**params.get(group, {}), **values}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def stage_command(stage: str) -> list[str]:
    return [sys.executable, "-m", f"tmpretrain.stages.{stage}"]


def stage_env() -> dict:
    """A stage's environment: no DVC analytics, output unbuffered (a test reads it line by line while it runs)."""
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1"}


def default_signals() -> None:
    # A process started from a background script inherits SIGINT ignored, and a stage keeps an ignored SIGINT ignored
    # (as any program started with `&`): the child takes the default disposition, as in a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_after_first_epoch(root: Path, stage: str, sig: signal.Signals) -> subprocess.CompletedProcess:
    """Start the stage in `root` and send `sig` as soon as its first epoch's checkpoint is on disk (mid-epoch 1).
    Returns the finished process (returncode None: it did not end within STAGE_TIMEOUT after the signal, killed)."""
    checkpoint = root / ".tmpretrain/checkpoints" / stage / "last.ckpt"
    proc = subprocess.Popen(
        stage_command(stage),
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=stage_env(),
        preexec_fn=default_signals,
    )
    deadline = time.monotonic() + STAGE_TIMEOUT
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=STAGE_TIMEOUT)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        code = None
    return subprocess.CompletedProcess(proc.args, code, out, err)


@contextlib.contextmanager
def tmpfs(folder: Path, size: str):
    """A small RAM disk on `folder` (root only: a read-only or full disk even root cannot write past)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder]).returncode:
        raise Unavailable("needs root and mount for a disk of its own")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", folder], check=True)


_HOLD = """
import sys
from tmpretrain.locks import one_run_at_a_time
with one_run_at_a_time("pretrain_bc"):
    print("held", flush=True)
    sys.stdin.read()
"""


@contextlib.contextmanager
def holding_the_run_lock(workspace: Path):
    """Another run's stage (a process of its own) holding the workspace's run lock until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD], cwd=workspace, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        if proc.stdout.readline() != b"held\n":
            raise RuntimeError("the holder did not take the lock")
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


# Ingest of a tree, run in a child process that permissions apply to: as root (CI runs as root) the child loses
# the two capabilities that let root read and list whatever the modes say (setpriv, util-linux). It prints the
# ingest's skipped list, or the DataError's message, as JSON.
_INGEST_CHILD = """
import json, sys
from pathlib import Path
from tmpretrain.frame_store import build_frame_store
from tmpretrain.errors import DataError
from tmpretrain.params import DataParams
base = Path(sys.argv[1])
params = DataParams(replays_dir=str(base / "replays"), cache_dir=str(base / "cache"), image_height=16,
                    image_width=16, val_fraction=0.34, test_fraction=0.0, workers=int(sys.argv[2]))
try:
    print(json.dumps(build_frame_store(params, progress=False)["skipped"]))
except DataError as exc:
    print(json.dumps(str(exc)))
"""


def without_privileges(command: list[str]) -> list[str]:
    """`command` as root runs it: without the capabilities to read and list whatever the modes say."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if not setpriv:
        raise Unavailable("as root this needs setpriv (util-linux) to drop root's read-anything capabilities")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]


def ingest_without_privileges_command(base: Path, workers: int = 2) -> list[str]:
    """The child ingesting base/replays into base/cache; it prints the skipped list or the DataError as JSON."""
    return without_privileges([sys.executable, "-c", _INGEST_CHILD, str(base), str(workers)])


def dvc_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC")}
    return {**env, "DVC_NO_ANALYTICS": "1", "PATH": str(Path(sys.executable).parent) + os.pathsep + env["PATH"]}


def uncached_workspace(workspace: Path, outs: str = "reports/bc/plots/metrics", drop_cache: bool = True) -> Path:
    """`workspace` (holding `outs`) made a git + DVC repository whose commit HEAD records `outs` in dvc.lock, and
    (drop_cache) its DVC cache removed: a fresh clone where nobody ran `dvc pull`."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    env = dvc_env()
    if shutil.which("dvc", path=env["PATH"]) is None:
        raise Unavailable("needs dvc")
    subprocess.run(["git", "init", "-q"], cwd=workspace, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=workspace, check=True, env=env)
    stage = {"cmd": "true", "outs": [outs]}
    (workspace / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"pretrain_bc": stage}}), encoding="utf-8")
    subprocess.run(["dvc", "commit", "-f", "-q", "pretrain_bc"], cwd=workspace, check=True, env=env)
    subprocess.run([*git, "add", "-A"], cwd=workspace, check=True)
    subprocess.run([*git, "commit", "-qm", "a run"], cwd=workspace, check=True)
    if drop_cache:
        shutil.rmtree(workspace / ".dvc/cache")
    return workspace

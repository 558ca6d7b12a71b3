"""One run at a time per workspace: a stage started while another holds the workspace's run lock stops at once
naming the holder and pointing at the queue; a stage during which params.yaml changed fails instead of being
recorded with values it did not run with."""

from __future__ import annotations

import re
import socket

import pytest

from conftest import make_tree
from support.setups import holding_the_run_lock
from tmpretrain.errors import PretrainError
from tmpretrain.locks import one_run_at_a_time


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    make_tree(tmp_path / "replays", n_tracks=3, replays_per_track=1, size=16)
    (tmp_path / "params.yaml").write_text("data: {replays_dir: replays, cache_dir: cache}\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def held(workspace):
    """Another run's stage (a process of its own) holding the workspace's run lock until the test ends."""
    with holding_the_run_lock(workspace) as proc:
        yield proc


def test_a_second_run_in_the_workspace_stops_at_its_first_stage_naming_the_holder(workspace, held, capsys):
    from tmpretrain.stages.validate import main

    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1
    holder = rf"pretrain_bc, pid {held.pid} on {re.escape(socket.gethostname())}, since 20\S+"
    expected = (
        rf"error: another stage runs in this workspace \({holder}\); run one experiment at a time here, or queue "
        r"them: dvc exp run --queue \.\.\. && dvc queue start \(each runs in its own copy\)\n"
    )
    assert re.fullmatch(expected, capsys.readouterr().err)
    assert not (workspace / "data/params.validated").exists()


def test_the_lock_is_free_again_when_the_holder_ends(workspace, held, capsys):
    held.stdin.close()
    held.wait(timeout=30)
    from tmpretrain.stages.validate import main

    main()
    assert capsys.readouterr().out.startswith("validate: params.yaml OK")


def test_ddp_ranks_started_by_the_running_stage_do_not_take_the_lock(workspace, held, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")  # Lightning's DDP launcher runs the stage's command again for rank 1
    with one_run_at_a_time("pretrain_bc"):
        pass


def test_a_stage_fails_when_params_yaml_changed_while_it_ran(workspace):
    with pytest.raises(PretrainError, match=r"params.yaml changed while ingest ran \(another run in this workspace"):
        with one_run_at_a_time("ingest"):
            (workspace / "params.yaml").write_text("data: {replays_dir: replays, cache_dir: cache, split_seed: 1}\n")
    with one_run_at_a_time("ingest"):  # released after the failure
        pass


def test_tmpretrain_exp_run_refuses_while_a_stage_holds_the_workspace(workspace, held, capsys):
    """Before DVC writes -S values into params.yaml (the running stage's params): refused, params.yaml as it was."""
    from tmpretrain.cli import main

    (workspace / "params.yaml").write_text("bc:\n  seed: 1\n")
    assert main(["exp", "run", "-S", "bc.seed=2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: another run holds this workspace: a stage (") and "--queue" in err
    assert (workspace / "params.yaml").read_text() == "bc:\n  seed: 1\n"


def test_a_live_dvc_command_holding_outputs_makes_the_workspace_busy_and_a_dead_one_does_not(workspace):
    """DVC's rwlock names the processes that hold outputs; a process that is gone (a killed run) does not count."""
    import json
    import subprocess
    import sys

    from tmpretrain.locks import DVC_RWLOCK, workspace_busy

    DVC_RWLOCK.parent.mkdir(parents=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        dead_pid = int(dead.stdout)
        entry = {"pid": dead_pid, "cmd": "dvc repro"}
        DVC_RWLOCK.write_text(json.dumps({"write": {"models/bc": entry}, "read": {"params.yaml": [entry]}}))
        assert workspace_busy() is None
        entry = {"pid": live.pid, "cmd": "dvc exp run -S bc.seed=1"}
        DVC_RWLOCK.write_text(json.dumps({"write": {}, "read": {"params.yaml": [entry]}}))
        assert workspace_busy() == f"'dvc exp run -S bc.seed=1' (pid {live.pid})"
    finally:
        live.kill()
        live.wait()

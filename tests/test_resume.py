"""An interrupted training stage, run again with the same params, resumes from its last finished epoch and exports
exactly what an uninterrupted run exports (the real stages, interrupted by SIGINT and SIGKILL); a checkpoint of
other params, data or code is never resumed."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from support.setups import STAGE_TIMEOUT, interrupt_after_first_epoch, stage_command, stage_env, tiny_project
from tmpretrain.frame_store import FrameStore
from tmpretrain.params import parse_params
from tmpretrain.pretrain import checkpoint_key, run_bc

# Early stopping ends the run after epoch 1 (epoch 0 sets the reference, nothing improves by 10), and the selected
# epoch is epoch 0: a resumed run gets both right only from the restored EarlyStopping and selected weights.
BC = {
    "encoder_init": "none",
    "epochs": 4,
    "batch_size": 32,
    "time_offsets_ms": [0, 100],
    "offset_weights": [1.0, 0.5],
    "early_stopping": {"enabled": True, "monitor": "val/loss", "mode": "min", "patience": 1, "min_delta": 10.0},
    "selection": {"metric": "train/loss", "mode": "max"},
    "trainer": {"accelerator": "cpu"},
}
# The VAE draws noise from the module's own generator every step: its state must be restored too.
VIS = {"task": "vae", "epochs": 3, "batch_size": 64, "trainer": {"accelerator": "cpu"}}
OUTPUTS = {"pretrain_bc": ("models/bc", "reports/bc"), "pretrain_vis": ("models/vis", "reports/vis")}


def _files(root: Path, stage: str) -> dict[str, str]:
    """{path: sha256} of every file the stage wrote (weights, pretrain_meta.json, metrics.json, per-epoch TSVs)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for d in OUTPUTS[stage]
        for p in sorted((root / d).rglob("*"))
        if p.is_file()
    }


def _run(root: Path, stage: str) -> str:
    run = subprocess.run(
        stage_command(stage), cwd=root, capture_output=True, text=True, env=stage_env(), timeout=STAGE_TIMEOUT
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def _interrupt_after_first_epoch(root: Path, stage: str, sig: signal.Signals) -> str:
    """Start the stage and send `sig` as soon as its first epoch's checkpoint is on disk (mid-epoch 1)."""
    run = interrupt_after_first_epoch(root, stage, sig)
    expected = 128 + sig if sig != signal.SIGKILL else -sig
    assert run.returncode == expected, run.stdout[-3000:] + run.stderr[-3000:]
    assert "exported" not in run.stdout, "the run finished before it was interrupted"
    return run.stderr


@pytest.mark.parametrize(
    ("stage", "groups", "sig"),
    [("pretrain_bc", {"bc": BC}, signal.SIGINT), ("pretrain_vis", {"vis": VIS}, signal.SIGKILL)],
    ids=["bc-ctrl-c", "vis-kill"],
)
def test_an_interrupted_run_resumes_and_exports_what_an_uninterrupted_run_does(
    stage_store, tmp_path, stage, groups, sig
):
    reference = tiny_project(tmp_path / "reference", stage_store, **groups)
    _run(reference, stage)

    root = tiny_project(tmp_path / "interrupted", stage_store, **groups)
    err = _interrupt_after_first_epoch(root, stage, sig)
    if sig == signal.SIGINT:
        assert err == (
            "pretrain_bc: interrupted by SIGINT; the previous outputs are kept, epochs 0-0 are saved in "
            ".tmpretrain/checkpoints/pretrain_bc: run the stage again with the same params to resume\n"
        )
    for d in OUTPUTS[stage]:  # DVC deletes a stage's outputs before it runs it again
        shutil.rmtree(root / d, ignore_errors=True)

    out = _run(root, stage)
    assert "resuming after epoch 0/" in out
    if stage == "pretrain_bc":  # the restored EarlyStopping ends the run where the uninterrupted one ended
        assert "exported epoch 0 of 2 run (highest train/loss: " in out and "early stopping after 2 of 4" in out
        assert "  actions_head.pt: the A_head of offset 0ms (head 0 of 0ms, +100ms), input img_head" in out
    assert _files(root, stage) == _files(reference, stage)
    assert not (root / ".tmpretrain/checkpoints" / stage).exists()  # removed once the export is written


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_run_keeps_the_previous_export_beside_its_own_reports(stage_store, tmp_path, sig):
    # A finished run, then a run with other params interrupted after its first epoch: one line, the signal's exit
    # status, and models/ and reports/ byte for byte the finished run's (not its export beside new metrics).
    root = tiny_project(tmp_path / "project", stage_store, bc=BC)
    _run(root, "pretrain_bc")
    before = _files(root, "pretrain_bc")
    tiny_project(root, stage_store, bc={**BC, "seed": 7})
    err = _interrupt_after_first_epoch(root, "pretrain_bc", sig)
    assert err.startswith(f"pretrain_bc: interrupted by {sig.name}; the previous outputs are kept, epochs 0-0 ")
    assert err.count("\n") == 1, err
    assert _files(root, "pretrain_bc") == before


def test_a_checkpoint_of_other_params_is_not_resumed(stage_store, tmp_path, capsys):
    # An interrupted run with another seed left its checkpoint: this run must start afresh and export its own
    # epochs, and a finished run leaves no checkpoint behind.
    directory = tmp_path / "checkpoints" / "pretrain_bc"
    directory.mkdir(parents=True)
    (directory / "key").write_text("a run with other params")
    (directory / "last.ckpt").write_bytes(b"not loadable: resuming it would fail")
    params = parse_params({"bc": {**BC, "early_stopping": {"enabled": False}, "epochs": 2}}).bc
    result = run_bc(params, stage_store, tmp_path / "models", tmp_path / "reports", checkpoint_dir=directory)
    assert len(result["history"]) == 2
    out = capsys.readouterr().out
    assert "holds an interrupted run with other params, data or code; starting afresh" in out
    assert "resuming" not in out
    assert not directory.exists()


def test_a_damaged_checkpoint_is_set_aside_and_the_run_starts_over(stage_store, tmp_path, capsys):
    # A checkpoint of this very run, cut short (a full disk, a copy that stopped): resuming it failed on every
    # rerun until someone deleted .tmpretrain/checkpoints by hand.
    params = parse_params({"bc": {**BC, "early_stopping": {"enabled": False}, "epochs": 2}}).bc
    directory = tmp_path / "checkpoints" / "pretrain_bc"
    directory.mkdir(parents=True)
    (directory / "key").write_text(checkpoint_key(params, FrameStore.open(stage_store)))
    damaged = b"PK\x03\x04 the first bytes of a zip archive, then nothing"
    (directory / "last.ckpt").write_bytes(damaged)
    result = run_bc(params, stage_store, tmp_path / "models", tmp_path / "reports", checkpoint_dir=directory)
    assert len(result["history"]) == 2  # from epoch 0
    err = capsys.readouterr().err
    aside = directory.with_name("pretrain_bc.damaged.ckpt")
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {directory / 'last.ckpt'} cannot be resumed (")
    assert warnings[0].endswith(f"); set aside as {aside}, starting from epoch 0")
    assert aside.read_bytes() == damaged  # renamed, not deleted
